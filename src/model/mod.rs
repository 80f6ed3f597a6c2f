//! The [`Model`]: a configuration and its parameters (PyTorch layout, host memory).

pub mod config;
pub mod params;

use crate::cpu::{self, loss, ForwardCache, States};
use crate::data::{Dataset, Targets};
use crate::dropout::{StepDropout, StepKey};
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use crate::Loss;
use config::{ModelConfig, OutputMode};
use params::{Init, Layout};

/// A recurrent model: optional embedding, recurrent stack, linear head.
#[derive(Clone, Debug)]
pub struct Model {
    config: ModelConfig,
    layout: Layout,
    /// Every parameter, flat, in `layout` order.
    params: Vec<f32>,
}

/// Result of one training step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean loss of the batch, before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

/// Options of a training step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOptions {
    pub loss: Loss,
    /// Clip the global gradient norm to this value (`clip_grad_norm_`).
    pub clip: Option<f32>,
}

impl Model {
    /// A new model with fresh weights drawn as `init` says.
    pub fn new(config: ModelConfig, init: &Init) -> Result<Model> {
        config.validate()?;
        let layout = Layout::new(&config);
        let params = params::initialise(&config, &layout, init);
        Ok(Model {
            config,
            layout,
            params,
        })
    }

    /// A model from given parameters (flat, in [`Layout`] order).
    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Result<Model> {
        config.validate()?;
        let layout = Layout::new(&config);
        if params.len() != layout.total {
            return Err(Error::shape(
                "parameters",
                format!("[{}]", layout.total),
                &[params.len()],
            ));
        }
        Ok(Model {
            config,
            layout,
            params,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// All parameters, flat, in [`Layout`] order.
    pub fn params(&self) -> &[f32] {
        &self.params
    }
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }
    /// One named parameter (PyTorch name, e.g. `rnn.weight_hh_l0`).
    pub fn param(&self, name: &str) -> Option<Tensor> {
        self.layout
            .entry(name)
            .map(|e| Tensor::new(e.shape.clone(), self.params[e.range()].to_vec()))
    }
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layout.total
    }

    /// Output shape for `n` sequences of `t` steps: `[n, out]` or `[n, t, out]`.
    pub fn output_shape(&self, n: usize, t: usize) -> Vec<usize> {
        match self.config.output {
            OutputMode::Last => vec![n, self.config.out_features],
            OutputMode::Sequence => vec![n, t, self.config.out_features],
        }
    }

    /// Raw output (logits for `ce`) of `data.x`: `[N, out]` or `[N, T, out]`,
    /// each sequence starting from `data.states` (zeros without them).
    pub fn forward(&self, data: &Dataset) -> Result<Tensor> {
        Ok(self.forward_states(data)?.0)
    }

    /// The output and the final states `h_n` (and `c_n` for LSTM), `[L*D, N, H]`
    /// laid out as `nn.LSTM` returns them; with lengths, each sequence's state
    /// after its own last step.
    pub fn forward_states(&self, data: &Dataset) -> Result<(Tensor, States)> {
        self.forward_with_states(data, &States::default())
    }

    /// Forward with initial states `h0`/`c0 [L*dirs, N, H]` given apart from
    /// the data (which then must carry none); returns the output and the
    /// final states (same shape).
    pub fn forward_with_states(&self, data: &Dataset, init: &States) -> Result<(Tensor, States)> {
        data.check_inputs(&self.config)?;
        let init = self.initial_states(data, init)?;
        let fc = cpu::forward(
            &self.config,
            &self.layout,
            &self.params,
            &data.x,
            data.lengths.as_deref(),
            &init,
            None,
        );
        let shape = self.output_shape(data.len(), data.steps());
        let mut fc = fc;
        let finals = fc.stack.take_final_states();
        Ok((Tensor::new(shape, std::mem::take(&mut fc.out)), finals))
    }

    /// The states a forward over `data` starts from: the data's own, or
    /// `explicit` (checked), never both.
    fn initial_states(&self, data: &Dataset, explicit: &States) -> Result<States> {
        let given = explicit.h.is_some() || explicit.c.is_some();
        match (&data.states, given) {
            (Some(_), true) => Err(Error::Argument(
                "initial states were given twice: in the data (h0/c0) and as an argument; give them once".into(),
            )),
            (Some(_), false) => Ok(data.cpu_states()),
            (None, _) => {
                self.check_states(explicit, data.len())?;
                Ok(explicit.clone())
            }
        }
    }

    fn check_states(&self, s: &States, n: usize) -> Result<()> {
        let want = self.config.layers * self.config.directions() * n * self.config.hidden;
        let shape = format!(
            "[{}, {n}, {}]",
            self.config.layers * self.config.directions(),
            self.config.hidden
        );
        if s.c.is_some() && s.h.is_none() {
            return Err(Error::Argument(
                "c0 without h0: give the pair (h0, c0)".into(),
            ));
        }
        for (name, v) in [("h0", &s.h), ("c0", &s.c)] {
            let Some(v) = v else { continue };
            if v.len() != want {
                return Err(Error::shape(name, shape.clone(), &[v.len()]));
            }
            Error::check_finite(name, v)?;
        }
        if s.c.is_some() && self.config.cell != config::Cell::Lstm {
            return Err(Error::Argument("c0 is only for LSTM models".into()));
        }
        Ok(())
    }

    /// Loss and gradient of every parameter (flat, [`Layout`] order) on a
    /// batch (starting from its initial states, if it has them).
    pub fn loss_and_gradients(&self, batch: &Dataset, loss: Loss) -> Result<(f32, Vec<f32>)> {
        let (l, g, _, _) = self.gradients_and_finals(batch, loss, &States::default(), None)?;
        Ok((l, g))
    }

    /// [`Model::loss_and_gradients`] under the dropout masks of training step
    /// `step` (the optimizer's count after it, from 1) of this model's
    /// [`crate::Dropout`]: what [`Model::train_step`] computes at that step.
    pub fn gradients_with_dropout(
        &self,
        batch: &Dataset,
        loss: Loss,
        step: u64,
    ) -> Result<(f32, Vec<f32>)> {
        let d = self.step_dropout(step);
        let (l, g, _, _) = self.gradients_and_finals(batch, loss, &States::default(), d)?;
        Ok((l, g))
    }

    /// The dropout of training step `step`, if the model trains with any.
    fn step_dropout(&self, step: u64) -> Option<StepDropout> {
        let rates = self.config.dropout;
        (!rates.is_off()).then(|| StepDropout {
            rates,
            key: StepKey::new(rates.seed, step),
        })
    }

    /// Like [`Model::loss_and_gradients`]; also returns the gradients of the
    /// initial states `h0`/`c0` (`[L*D, N, H]`). The states are the batch's
    /// own or `init` (not both).
    pub fn gradients_with_states(
        &self,
        batch: &Dataset,
        loss: Loss,
        init: &States,
    ) -> Result<(f32, Vec<f32>, States)> {
        let (l, g, ds, _) = self.gradients_and_finals(batch, loss, init, None)?;
        Ok((l, g, ds))
    }

    /// [`Model::gradients_with_states`], and the final states of the forward
    /// pass (`h_n`, `c_n` `[L*D, N, H]`) as fourth; under `dropout`'s masks if given.
    fn gradients_and_finals(
        &self,
        batch: &Dataset,
        loss: Loss,
        init: &States,
        dropout: Option<StepDropout>,
    ) -> Result<(f32, Vec<f32>, States, States)> {
        batch.check_inputs(&self.config)?;
        let init = self.initial_states(batch, init)?;
        let y = batch.check_targets(&self.config, loss)?;
        let mut fc: ForwardCache = cpu::forward(
            &self.config,
            &self.layout,
            &self.params,
            &batch.x,
            batch.lengths.as_deref(),
            &init,
            dropout,
        );
        let (l, dout) = loss_of(&self.config, &fc.out, batch, y, loss);
        let finals = fc.stack.take_final_states();
        let mut grads = vec![0.0; self.layout.total];
        let ds = cpu::backward(
            &self.config,
            &self.layout,
            &self.params,
            &fc,
            &dout,
            &mut grads,
            &States::default(),
        );
        Ok((l, grads, ds, finals))
    }

    /// One training step on a batch: forward, loss, backward, clipping, update.
    /// On a non-finite loss or gradient the weights are left as they were and
    /// [`Error::Diverged`] is returned.
    pub fn train_step(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<StepStats> {
        Ok(self.train_step_states(batch, opts, opt)?.0)
    }

    /// [`Model::train_step`], and the final states `h_n` (`c_n`) `[L*D, N, H]`
    /// of its forward pass (before the update): what stateful training
    /// carries to the next batch.
    pub fn train_step_states(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<(StepStats, States)> {
        opt.validate()?;
        let dropout = self.step_dropout(opt.step + 1);
        let (l, mut grads, _, finals) =
            self.gradients_and_finals(batch, opts.loss, &States::default(), dropout)?;
        let grad_norm = match opts.clip {
            Some(c) => cpu::optim::clip_grad_norm(&mut grads, c),
            None => grads
                .iter()
                .map(|&g| (g as f64).powi(2))
                .sum::<f64>()
                .sqrt() as f32,
        };
        if !l.is_finite() || !grad_norm.is_finite() {
            return Err(Error::Diverged {
                step: opt.step as usize + 1,
                loss: if l.is_finite() { grad_norm } else { l },
            });
        }
        opt.update(&mut self.params, &grads);
        Ok((StepStats { loss: l, grad_norm }, finals))
    }

    /// Mean loss and, for `ce`, accuracy over `data`, in batches of `batch_size`.
    pub fn evaluate(&self, data: &Dataset, loss: Loss, batch_size: usize) -> Result<Evaluation> {
        evaluate_by(&self.config, data, loss, batch_size, |b| self.forward(b))
    }
}

/// Mean loss and, for `ce`, accuracy over `data` in batches of `batch_size`,
/// with outputs from `forward` (any path: CPU or GPU); losses computed on the host.
pub fn evaluate_by(
    cfg: &ModelConfig,
    data: &Dataset,
    loss: Loss,
    batch_size: usize,
    mut forward: impl FnMut(&Dataset) -> Result<Tensor>,
) -> Result<Evaluation> {
    if batch_size == 0 {
        return Err(Error::Argument("batch size must be at least 1".into()));
    }
    data.check_inputs(cfg)?;
    data.check_targets(cfg, loss)?;
    let (mut total, mut weight, mut right, mut counted) = (0.0f64, 0usize, 0usize, 0usize);
    for start in (0..data.len()).step_by(batch_size) {
        // Cut to the batch's longest sequence: the same loss, less work.
        let batch = data
            .slice(start, (start + batch_size).min(data.len()))
            .trim_to_longest();
        let y = batch.y.as_ref().expect("checked");
        let out = forward(&batch)?;
        let mask = cpu::loss_mask(cfg, batch.len(), batch.steps(), batch.lengths.as_deref());
        let (l, _) = loss_of(cfg, &out.data, &batch, y, loss);
        let positions = match y {
            Targets::Classes { data, .. } => {
                let (r, c) = loss::correct(&out.data, cfg.out_features, &mask, data);
                right += r;
                counted += c;
                c
            }
            Targets::Values { .. } => mask.iter().filter(|&&m| m).count(),
        };
        total += l as f64 * positions as f64;
        weight += positions;
    }
    Ok(Evaluation {
        loss: if weight == 0 {
            0.0
        } else {
            (total / weight as f64) as f32
        },
        accuracy: if counted == 0 {
            None
        } else {
            Some(right as f32 / counted as f32)
        },
    })
}

/// Loss and output gradient of a batch (batch-first outputs).
fn loss_of(
    cfg: &ModelConfig,
    out: &[f32],
    batch: &Dataset,
    y: &Targets,
    loss: Loss,
) -> (f32, Vec<f32>) {
    let mask = cpu::loss_mask(cfg, batch.len(), batch.steps(), batch.lengths.as_deref());
    let mut dout = vec![0.0; out.len()];
    let (classes, values) = match y {
        Targets::Classes { data, .. } => (Some(&data[..]), None),
        Targets::Values { data, .. } => (None, Some(&data[..])),
    };
    let l = loss::loss_and_grad(
        loss,
        out,
        cfg.out_features,
        &mask,
        classes,
        values,
        &mut dout,
    );
    (l, dout)
}

/// Mean loss and accuracy over a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f32,
    /// Fraction of counted positions whose arg-max is the class (`ce` only).
    pub accuracy: Option<f32>,
}
