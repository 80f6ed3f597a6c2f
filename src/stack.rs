//! The recurrent stack as an op that applications compose: forward over a
//! time-major batch from given states, returning the output of the top
//! layer, the final states and a handle; backward from the gradients of the
//! output and of the final states, returning those of the input, of the
//! initial states and of every weight. It is the code path of the library's
//! own models ([`crate::cpu::forward_stack`], [`crate::cpu::backward_stack`]),
//! without their embedding and head, so a convolutional front end,
//! attention or a custom loss can sit around it. The GPU path's twin is
//! [`crate::gpu::GpuStack`].
//!
//! Layouts are `nn.LSTM`'s with `batch_first=False`: inputs `[T, B, I]`,
//! outputs `[T, B, D·H]` (zero at steps past a sequence's length),
//! states `[L·D, B, H]`; the parameters are one flat vector in the order of
//! `nn.LSTM`'s `state_dict` ([`RecurrentStack::params`] names them).
//!
//! ```
//! use recurrent::{Cell, RecurrentStack, Tensor};
//! let op = RecurrentStack::new(Cell::Gru, 3, 4).layers(2);
//! let p = op.init(7);
//! let x = Tensor::new(vec![5, 2, 3], vec![0.1; 30]); // T=5, B=2, I=3
//! let f = op.forward(&p, &x, None, None, None)?;
//! assert_eq!(f.y.shape, vec![5, 2, 4]);
//! assert_eq!(f.h_n.shape, vec![2, 2, 4]);
//! // A loss of the application's own: the sum of the outputs.
//! let dy = Tensor::new(f.y.shape.clone(), vec![1.0; f.y.len()]);
//! let g = op.backward(&p, &f, &dy, None, None)?;
//! assert_eq!(g.dx.shape, vec![5, 2, 3]);
//! assert_eq!(g.dparams.len(), p.len());
//! # Ok::<(), recurrent::Error>(())
//! ```

use crate::cpu::{self, StackCache, States};
use crate::data::Inputs;
use crate::error::{Error, Result};
use crate::model::config::{Cell, ModelConfig, Nonlinearity, OutputMode};
use crate::model::params::{self, Init, Layout};
use crate::tensor::Tensor;

/// A recurrent stack: cell, sizes, layers, directions.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentStack {
    /// As a model without embedding, whose head the op never touches.
    cfg: ModelConfig,
}

/// What [`RecurrentStack::forward`] returns: the top layer's output, the
/// final states, and what backward needs.
pub struct StackForward {
    /// `[T, B, D·H]`, zero at steps past a sequence's length.
    pub y: Tensor,
    /// `[L·D, B, H]`: each sequence's state after its own last step.
    pub h_n: Tensor,
    /// LSTM only.
    pub c_n: Option<Tensor>,
    cache: StackCache,
}

/// What [`RecurrentStack::backward`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct StackGradients {
    /// `[T, B, I]`.
    pub dx: Tensor,
    /// `[L·D, B, H]`.
    pub dh0: Tensor,
    /// LSTM only.
    pub dc0: Option<Tensor>,
    /// Every parameter's gradient, in [`RecurrentStack::params`] order.
    pub dparams: Vec<f32>,
}

impl RecurrentStack {
    /// One unidirectional layer of `hidden` units over `input` features (tanh for RNN).
    pub fn new(cell: Cell, input: usize, hidden: usize) -> RecurrentStack {
        RecurrentStack {
            cfg: ModelConfig::new(cell, input, hidden, 1).output(OutputMode::Sequence),
        }
    }
    pub fn layers(mut self, layers: usize) -> Self {
        self.cfg = self.cfg.layers(layers);
        self
    }
    pub fn bidirectional(mut self, on: bool) -> Self {
        self.cfg = self.cfg.bidirectional(on);
        self
    }
    /// tanh or relu (plain RNN only).
    pub fn nonlinearity(mut self, n: Nonlinearity) -> Self {
        self.cfg = self.cfg.nonlinearity(n);
        self
    }
    /// The stack of a model (its `rnn.` part).
    pub fn of(model: &ModelConfig) -> RecurrentStack {
        RecurrentStack {
            cfg: ModelConfig {
                vocab: None,
                output: OutputMode::Sequence,
                out_features: 1,
                // The op is the stack alone; dropout is the trainer's.
                dropout: Default::default(),
                ..model.clone()
            },
        }
    }

    /// As a model configuration (output `sequence`, an unused head of width 1).
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    /// Layers × directions: the first dimension of the states.
    pub fn state_rows(&self) -> usize {
        self.cfg.layers * self.cfg.directions()
    }
    /// Width of the output, directions × hidden.
    pub fn output_width(&self) -> usize {
        self.cfg.top_width()
    }

    pub(crate) fn layout(&self) -> Layout {
        Layout::new(&self.cfg)
    }

    /// The parameters' names (`nn.LSTM`'s `state_dict`: `weight_ih_l0`,
    /// `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, then `_reverse`, then the
    /// next layer), shapes and ranges in the flat vector.
    pub fn params(&self) -> Vec<(String, Vec<usize>, std::ops::Range<usize>)> {
        self.layout()
            .entries
            .iter()
            .filter_map(|e| {
                let name = e.name.strip_prefix("rnn.")?;
                Some((name.to_string(), e.shape.clone(), e.range()))
            })
            .collect()
    }
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layout().layers.last().map_or(0, |s| s.b_hh.end)
    }
    /// Fresh parameters as `nn.LSTM` draws them: U(-1/√H, 1/√H), seeded.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut p = params::initialise(&self.cfg, &self.layout(), &Init::seed(seed));
        p.truncate(self.num_params());
        p
    }

    fn check_params(&self, p: &[f32]) -> Result<()> {
        if p.len() != self.num_params() {
            return Err(Error::shape(
                "stack parameters",
                format!("[{}]", self.num_params()),
                &[p.len()],
            ));
        }
        Error::check_finite("stack parameters", p)?;
        Ok(())
    }

    /// Checks a `[L·D, B, H]` state (or its gradient) named `what`.
    fn check_state(&self, what: &str, s: Option<&Tensor>, b: usize) -> Result<Option<Vec<f32>>> {
        let Some(s) = s else { return Ok(None) };
        let want = [self.state_rows(), b, self.cfg.hidden];
        if s.shape != want {
            return Err(Error::shape(what, format!("{want:?}"), &s.shape));
        }
        Error::check_finite(what, &s.data)?;
        Ok(Some(s.data.clone()))
    }

    /// Forward over `x [T, B, I]` from `h0` (and `c0`, LSTM) `[L·D, B, H]`
    /// (zeros when absent), with optional `lengths [B]` (each in 1..=T,
    /// packed-sequence semantics).
    pub fn forward(
        &self,
        params: &[f32],
        x: &Tensor,
        lengths: Option<&[usize]>,
        h0: Option<&Tensor>,
        c0: Option<&Tensor>,
    ) -> Result<StackForward> {
        self.check_params(params)?;
        let [t, b, i] = x.shape[..] else {
            return Err(Error::shape(
                "x",
                format!("[T, B, {}] (time-major)", self.cfg.input),
                &x.shape,
            ));
        };
        if i != self.cfg.input || t == 0 || b == 0 {
            return Err(Error::shape(
                "x",
                format!("[T >= 1, B >= 1, {}] (time-major)", self.cfg.input),
                &x.shape,
            ));
        }
        if c0.is_some() && self.cfg.cell != Cell::Lstm {
            return Err(Error::Argument(format!(
                "c0 was given, but only an LSTM has a cell state; this stack is a {}",
                self.cfg.cell.name()
            )));
        }
        if c0.is_some() && h0.is_none() {
            return Err(Error::Argument(
                "c0 without h0: give the pair (h0, c0)".into(),
            ));
        }
        let init = States {
            h: self.check_state("h0", h0, b)?,
            c: self.check_state("c0", c0, b)?,
        };
        // The model path's input is batch-first: the op's time-major x goes
        // through as the same values, read in time-major order.
        let xb = cpu::transpose_bt(&x.data, t, b, i);
        let inputs = Inputs::features(xb, b, t, i)?;
        let data = crate::data::Dataset::new(inputs, None, lengths.map(|l| l.to_vec()));
        data.check_inputs(&self.cfg)?;
        let cache = cpu::forward_stack(
            &self.cfg,
            &self.layout(),
            params,
            &data.x,
            lengths,
            &init,
            None,
        );
        let (ld, h, d) = (self.state_rows(), self.cfg.hidden, self.output_width());
        Ok(StackForward {
            y: Tensor::new(vec![t, b, d], cache.inputs[self.cfg.layers].clone()),
            h_n: Tensor::new(vec![ld, b, h], cache.h_n.clone()),
            c_n: (self.cfg.cell == Cell::Lstm)
                .then(|| Tensor::new(vec![ld, b, h], cache.c_n.clone())),
            cache,
        })
    }

    /// Backward of `fwd` from `dy [T, B, D·H]` and optional `dh_n` (`dc_n`)
    /// `[L·D, B, H]`: the gradients of the input, the initial states and
    /// every parameter (`params` must be those of the forward).
    pub fn backward(
        &self,
        params: &[f32],
        fwd: &StackForward,
        dy: &Tensor,
        dh_n: Option<&Tensor>,
        dc_n: Option<&Tensor>,
    ) -> Result<StackGradients> {
        self.check_params(params)?;
        let (t, b) = (fwd.cache.t, fwd.cache.b);
        if dy.shape != fwd.y.shape {
            return Err(Error::shape(
                "dy",
                format!("{:?} (the output's shape)", fwd.y.shape),
                &dy.shape,
            ));
        }
        Error::check_finite("dy", &dy.data)?;
        if dc_n.is_some() && self.cfg.cell != Cell::Lstm {
            return Err(Error::Argument(
                "dc_n was given, but only an LSTM has a cell state".into(),
            ));
        }
        let (ld, h, i) = (self.state_rows(), self.cfg.hidden, self.cfg.input);
        let dhn = self
            .check_state("dh_n", dh_n, b)?
            .unwrap_or_else(|| vec![0.0; ld * b * h]);
        let dcn = self.check_state("dc_n", dc_n, b)?;
        let dcn = match (self.cfg.cell, dcn) {
            (Cell::Lstm, None) => Some(vec![0.0; ld * b * h]),
            (_, c) => c,
        };
        // Gradients at steps past a length do not flow (the output is 0 there).
        let mut dy_tm = dy.data.clone();
        if let Some(l) = &fwd.cache.lengths {
            let d = self.output_width();
            for ti in 0..t {
                for bi in 0..b {
                    if ti >= l[bi] {
                        dy_tm[(ti * b + bi) * d..(ti * b + bi + 1) * d].fill(0.0);
                    }
                }
            }
        }
        let mut dparams = vec![0.0; self.num_params()];
        let (ds, dx) = cpu::backward_stack(
            &self.cfg,
            &self.layout(),
            params,
            &fwd.cache,
            dy_tm,
            &dhn,
            dcn.as_deref(),
            &mut dparams,
            true,
        );
        Ok(StackGradients {
            dx: Tensor::new(vec![t, b, i], dx),
            dh0: Tensor::new(vec![ld, b, h], ds.h.unwrap_or_default()),
            dc0: ds.c.map(|c| Tensor::new(vec![ld, b, h], c)),
            dparams,
        })
    }
}
