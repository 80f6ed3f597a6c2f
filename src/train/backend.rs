//! The seam between the training loop and a compute path.
//!
//! A backend owns a model's weights wherever it computes (host memory for the
//! CPU path, device buffers for a GPU path) and does whole operations: one
//! training step on a batch, an evaluation, a prediction. The loop never
//! touches weights directly; it asks the backend to copy them to a host
//! [`Model`] when it needs them (checkpoints, best-weights snapshots) and to
//! take them back (restoring the best weights).

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::{Evaluation, Model, StepOptions, StepStats};
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use crate::Loss;

/// A compute path that can train and run one model.
pub trait Backend {
    /// Which device this is, for messages (`"cpu"`, or the GPU adapter's name).
    fn device(&self) -> String;

    /// The model's architecture.
    fn config(&self) -> &ModelConfig;

    /// Submits one step on `batch`: forward, loss, backward, clipping, update by `opt`.
    /// `batch.x`: `[B, T, F]` (or token ids `[B, T]`); `batch.y` as the loss wants.
    /// Returns the statistics of the steps that have finished since the last call,
    /// oldest first: the CPU path returns this step's at once; a GPU path returns
    /// them a few steps later, so that the host never waits inside a step.
    fn train_step(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<Vec<StepStats>>;

    /// [`Backend::train_step`], and the final states its forward pass leaves
    /// on `batch` (before the update), for stateful training. By default a
    /// forward pass of its own before the step; the CPU and GPU paths take
    /// them from the step's own forward.
    fn train_step_states(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<(Vec<StepStats>, FinalStates)> {
        let finals = self.predict_states(batch, batch.len())?.into_parts().1;
        let stats = self.train_step(batch, opts, opt)?;
        Ok((stats, finals))
    }

    /// Keeps the training set `data` (with the targets of `loss`) where the
    /// steps run, for [`Backend::train_step_rows`]; returns whether it did.
    /// The CPU path reads the set in memory already (`false`: the loop
    /// gathers its batches); the GPU path uploads it once if it can keep it
    /// (no initial states, within the adapter's storage limits).
    fn keep_training_set(&mut self, _data: &Dataset, _loss: Loss) -> Result<bool> {
        Ok(false)
    }

    /// [`Backend::train_step`] on rows `rows` of the kept set (cut to their
    /// longest sequence with `trim`), gathered where the set is kept.
    fn train_step_rows(
        &mut self,
        _rows: &[usize],
        _trim: bool,
        _opts: &StepOptions,
        _opt: &mut Optimizer,
    ) -> Result<Vec<StepStats>> {
        Err(Error::Argument(
            "train_step_rows: this backend keeps no training set".into(),
        ))
    }

    /// Lets go of a kept training set.
    fn release_training_set(&mut self) {}

    /// Waits for every submitted step; returns the statistics not returned yet.
    fn finish(&mut self) -> Result<Vec<StepStats>> {
        Ok(Vec::new())
    }

    /// Mean loss (and accuracy for `ce`) over `data`, in batches of `batch_size`.
    fn evaluate(&mut self, data: &Dataset, loss: Loss, batch_size: usize) -> Result<Evaluation>;

    /// Raw outputs for `data`, `[N, out]` or `[N, T, out]`, in batches of `batch_size`.
    fn predict(&mut self, data: &Dataset, batch_size: usize) -> Result<Tensor>;

    /// [`Backend::predict`] with the final states `h_n` (and `c_n`) of every sequence.
    fn predict_states(&mut self, data: &Dataset, batch_size: usize) -> Result<Prediction>;

    /// Copies the current weights into `model` (same architecture).
    fn sync_to(&mut self, model: &mut Model) -> Result<()>;

    /// Replaces the current weights with `model`'s (same architecture).
    fn load_from(&mut self, model: &Model) -> Result<()>;

    /// Brings the optimizer's moments into the host [`Optimizer`]'s `m` and `v`
    /// (before a checkpoint saves them). The CPU path keeps them there already;
    /// a GPU path downloads them.
    fn moments_to_host(&mut self, _opt: &mut Optimizer) -> Result<()> {
        Ok(())
    }

    /// Puts the host [`Optimizer`]'s moments where the steps read them (after a
    /// resume restored them). The CPU path reads them from the host already.
    fn moments_from_host(&mut self, _opt: &Optimizer) -> Result<()> {
        Ok(())
    }
}

/// The GPU path: weights live on the device; statistics come back asynchronously.
impl Backend for crate::gpu::GpuModel {
    fn device(&self) -> String {
        self.context().describe()
    }
    fn config(&self) -> &ModelConfig {
        crate::gpu::GpuModel::config(self)
    }
    fn train_step(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<Vec<StepStats>> {
        crate::gpu::GpuModel::train_step(self, batch, opts, opt)?;
        self.poll_stats()
    }
    fn train_step_states(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<(Vec<StepStats>, FinalStates)> {
        let finals = crate::gpu::GpuModel::train_step_states(self, batch, opts, opt)?;
        let stats = self.poll_stats()?;
        let cfg = crate::gpu::GpuModel::config(self);
        Ok((stats, FinalStates::from_host(cfg, batch.len(), finals)))
    }
    fn keep_training_set(&mut self, data: &Dataset, loss: Loss) -> Result<bool> {
        if data.states.is_some() {
            return Ok(false);
        }
        match self.keep_dataset(data, loss) {
            Ok(()) => Ok(true),
            // Too large for the adapter's buffers: the loop uploads batches.
            Err(Error::Gpu(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn train_step_rows(
        &mut self,
        rows: &[usize],
        trim: bool,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<Vec<StepStats>> {
        crate::gpu::GpuModel::train_step_rows(self, rows, trim, opts, opt)?;
        self.poll_stats()
    }
    fn release_training_set(&mut self) {
        self.drop_dataset();
    }
    fn finish(&mut self) -> Result<Vec<StepStats>> {
        crate::gpu::GpuModel::finish(self)
    }
    fn evaluate(&mut self, data: &Dataset, loss: Loss, batch_size: usize) -> Result<Evaluation> {
        let cfg = crate::gpu::GpuModel::config(self).clone();
        crate::model::evaluate_by(&cfg, data, loss, batch_size, |b| self.forward(b))
    }
    fn predict(&mut self, data: &Dataset, batch_size: usize) -> Result<Tensor> {
        let cfg = crate::gpu::GpuModel::config(self).clone();
        predict_by(&cfg, data, batch_size, |b| self.forward(b))
    }
    fn predict_states(&mut self, data: &Dataset, batch_size: usize) -> Result<Prediction> {
        let cfg = crate::gpu::GpuModel::config(self).clone();
        predict_states_by(&cfg, data, batch_size, |b| self.forward_states(b))
    }
    fn sync_to(&mut self, model: &mut Model) -> Result<()> {
        same_architecture(crate::gpu::GpuModel::config(self), model.config())?;
        self.download_into(model)
    }
    fn load_from(&mut self, model: &Model) -> Result<()> {
        same_architecture(crate::gpu::GpuModel::config(self), model.config())?;
        self.upload(model.params())
    }
    fn moments_to_host(&mut self, opt: &mut Optimizer) -> Result<()> {
        self.download_moments(opt)
    }
    fn moments_from_host(&mut self, opt: &Optimizer) -> Result<()> {
        self.upload_moments(opt)
    }
}

/// The CPU path: a [`Model`] trains itself.
impl Backend for Model {
    fn device(&self) -> String {
        "cpu".into()
    }
    fn config(&self) -> &ModelConfig {
        Model::config(self)
    }
    fn train_step(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<Vec<StepStats>> {
        Ok(vec![Model::train_step(self, batch, opts, opt)?])
    }
    fn train_step_states(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<(Vec<StepStats>, FinalStates)> {
        let (stats, finals) = Model::train_step_states(self, batch, opts, opt)?;
        let cfg = Model::config(self);
        Ok((
            vec![stats],
            FinalStates::from_host(cfg, batch.len(), finals),
        ))
    }
    fn evaluate(&mut self, data: &Dataset, loss: Loss, batch_size: usize) -> Result<Evaluation> {
        Model::evaluate(self, data, loss, batch_size)
    }
    fn predict(&mut self, data: &Dataset, batch_size: usize) -> Result<Tensor> {
        predict_batched(self, data, batch_size)
    }
    fn predict_states(&mut self, data: &Dataset, batch_size: usize) -> Result<Prediction> {
        predict_states_by(Model::config(self), data, batch_size, |b| {
            self.forward_states(b)
        })
    }
    fn sync_to(&mut self, model: &mut Model) -> Result<()> {
        same_architecture(Model::config(self), model.config())?;
        model.params_mut().copy_from_slice(self.params());
        Ok(())
    }
    fn load_from(&mut self, model: &Model) -> Result<()> {
        same_architecture(Model::config(self), model.config())?;
        self.params_mut().copy_from_slice(model.params());
        Ok(())
    }
}

/// `model.forward` over `data` in slices of `batch_size` rows, concatenated:
/// the memory of one forward pass stays bounded by the batch, not the data set.
pub fn predict_batched(model: &Model, data: &Dataset, batch_size: usize) -> Result<Tensor> {
    predict_by(model.config(), data, batch_size, |b| model.forward(b))
}

/// Outputs of `forward` (any path) over `data` in batches of `batch_size`, concatenated.
pub fn predict_by(
    cfg: &ModelConfig,
    data: &Dataset,
    batch_size: usize,
    mut forward: impl FnMut(&Dataset) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut out = Vec::new();
    for_batches(cfg, data, batch_size, |batch| {
        out.extend_from_slice(&forward(batch)?.data);
        Ok(())
    })?;
    Ok(Tensor::new(output_shape(cfg, data), out))
}

/// The final states of a forward pass: `h_n` (and `c_n` for LSTM)
/// `[L*D, N, H]` laid out as `nn.LSTM` returns them.
#[derive(Clone, Debug, PartialEq)]
pub struct FinalStates {
    pub h_n: Tensor,
    pub c_n: Option<Tensor>,
}

impl FinalStates {
    /// Flat host states of `n` sequences of a `cfg` model, as tensors.
    fn from_host(cfg: &ModelConfig, n: usize, s: crate::States) -> FinalStates {
        let shape = vec![cfg.layers * cfg.directions(), n, cfg.hidden];
        FinalStates {
            h_n: Tensor::new(shape.clone(), s.h.unwrap_or_default()),
            c_n: s.c.map(|c| Tensor::new(shape, c)),
        }
    }
}

/// A prediction with the final states: `output` as [`Backend::predict`]
/// gives it; `h_n` (and `c_n` for LSTM) `[L*D, N, H]` laid out as `nn.LSTM`
/// returns them (with lengths, each sequence's state after its own last step).
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub output: Tensor,
    pub h_n: Tensor,
    pub c_n: Option<Tensor>,
}

impl Prediction {
    /// The outputs and the final states apart.
    pub fn into_parts(self) -> (Tensor, FinalStates) {
        let states = FinalStates {
            h_n: self.h_n,
            c_n: self.c_n,
        };
        (self.output, states)
    }
}

/// Outputs and final states of `forward` (any path) over `data` in batches
/// of `batch_size`, the states joined along their sequence axis.
pub fn predict_states_by(
    cfg: &ModelConfig,
    data: &Dataset,
    batch_size: usize,
    mut forward: impl FnMut(&Dataset) -> Result<(Tensor, crate::States)>,
) -> Result<Prediction> {
    let (ld, n, h) = (cfg.layers * cfg.directions(), data.len(), cfg.hidden);
    let lstm = cfg.cell == crate::Cell::Lstm;
    let mut out = Vec::new();
    let mut h_n = vec![0.0; ld * n * h];
    let mut c_n = vec![0.0; if lstm { ld * n * h } else { 0 }];
    let mut start = 0;
    for_batches(cfg, data, batch_size, |batch| {
        let (o, s) = forward(batch)?;
        out.extend_from_slice(&o.data);
        let b = batch.len();
        // [L*D, b, H] into rows start..start+b of [L*D, N, H].
        let put = |dst: &mut [f32], src: &[f32]| {
            for l in 0..ld {
                dst[(l * n + start) * h..(l * n + start + b) * h]
                    .copy_from_slice(&src[l * b * h..(l + 1) * b * h]);
            }
        };
        put(&mut h_n, s.h.as_deref().unwrap_or_default());
        if lstm {
            put(&mut c_n, s.c.as_deref().unwrap_or_default());
        }
        start += b;
        Ok(())
    })?;
    Ok(Prediction {
        output: Tensor::new(output_shape(cfg, data), out),
        h_n: Tensor::new(vec![ld, n, h], h_n),
        c_n: lstm.then(|| Tensor::new(vec![ld, n, h], c_n)),
    })
}

/// `f` on every batch of `batch_size` rows of `data`, in order (output
/// `last`: each cut to its longest sequence, which changes neither the
/// output nor the final states).
fn for_batches(
    cfg: &ModelConfig,
    data: &Dataset,
    batch_size: usize,
    mut f: impl FnMut(&Dataset) -> Result<()>,
) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::Argument("batch size must be at least 1".into()));
    }
    data.check_inputs(cfg)?;
    for start in (0..data.len()).step_by(batch_size) {
        let mut batch = data.slice(start, (start + batch_size).min(data.len()));
        if cfg.output == crate::OutputMode::Last {
            // Output `last` does not depend on steps past every length: cut them.
            batch = batch.trim_to_longest();
        }
        f(&batch)?;
    }
    Ok(())
}

fn output_shape(cfg: &ModelConfig, data: &Dataset) -> Vec<usize> {
    match cfg.output {
        crate::OutputMode::Last => vec![data.len(), cfg.out_features],
        crate::OutputMode::Sequence => vec![data.len(), data.steps(), cfg.out_features],
    }
}

fn same_architecture(a: &ModelConfig, b: &ModelConfig) -> Result<()> {
    if a != b {
        return Err(Error::Config(format!(
            "cannot copy weights between different architectures ({a:?} vs {b:?}); build the host model from the backend's config"
        )));
    }
    Ok(())
}
