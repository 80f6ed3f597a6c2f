//! The seam between the training loop and a compute path.
//!
//! A backend owns a model's weights wherever it computes (host memory for the
//! CPU path, device buffers for a GPU path) and does whole operations: one
//! training step on a batch, an evaluation, a prediction. The loop never
//! touches weights directly; it asks the backend to copy them to a host
//! [`Model`] when it needs them (checkpoints, best-weights snapshots) and to
//! take them back (restoring the best weights).

use crate::cpu::optim::Optimizer;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::{Evaluation, Model, StepOptions, StepStats};
use crate::tensor::Tensor;
use crate::Loss;

/// A compute path that can train and run one model.
pub trait Backend {
    /// Which device this is, for messages (`"cpu"`, or the GPU adapter's name).
    fn device(&self) -> String;

    /// The model's architecture.
    fn config(&self) -> &ModelConfig;

    /// One step on `batch`: forward, loss, backward, clipping, update by `opt`.
    /// `batch.x`: `[B, T, F]` (or token ids `[B, T]`); `batch.y` as the loss wants.
    fn train_step(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<StepStats>;

    /// Mean loss (and accuracy for `ce`) over `data`, in batches of `batch_size`.
    fn evaluate(&mut self, data: &Dataset, loss: Loss, batch_size: usize) -> Result<Evaluation>;

    /// Raw outputs for `data`, `[N, out]` or `[N, T, out]`, in batches of `batch_size`.
    fn predict(&mut self, data: &Dataset, batch_size: usize) -> Result<Tensor>;

    /// Copies the current weights into `model` (same architecture).
    fn sync_to(&mut self, model: &mut Model) -> Result<()>;

    /// Replaces the current weights with `model`'s (same architecture).
    fn load_from(&mut self, model: &Model) -> Result<()>;
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
    ) -> Result<StepStats> {
        Model::train_step(self, batch, opts, opt)
    }
    fn evaluate(&mut self, data: &Dataset, loss: Loss, batch_size: usize) -> Result<Evaluation> {
        Model::evaluate(self, data, loss, batch_size)
    }
    fn predict(&mut self, data: &Dataset, batch_size: usize) -> Result<Tensor> {
        predict_batched(self, data, batch_size)
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
    if batch_size == 0 {
        return Err(Error::Argument("batch size must be at least 1".into()));
    }
    data.check_inputs(model.config())?;
    let mut out = Vec::new();
    for start in (0..data.len()).step_by(batch_size) {
        let batch = data.slice(start, (start + batch_size).min(data.len()));
        out.extend_from_slice(&model.forward(&batch)?.data);
    }
    Ok(Tensor::new(
        model.output_shape(data.len(), data.steps()),
        out,
    ))
}

fn same_architecture(a: &ModelConfig, b: &ModelConfig) -> Result<()> {
    if a != b {
        return Err(Error::Config(format!(
            "cannot copy weights between different architectures ({a:?} vs {b:?}); build the host model from the backend's config"
        )));
    }
    Ok(())
}
