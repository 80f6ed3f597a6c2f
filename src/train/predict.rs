//! Evaluation and prediction helpers over any [`Backend`].

use super::backend::Backend;
use crate::cpu::loss::argmax;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Evaluation;
use crate::tensor::Tensor;
use crate::Loss;

/// Mean loss and, for `ce`, accuracy over `data` (with targets), in batches of `batch_size`.
pub fn evaluate<B: Backend + ?Sized>(
    backend: &mut B,
    data: &Dataset,
    loss: Loss,
    batch_size: usize,
) -> Result<Evaluation> {
    backend.evaluate(data, loss, batch_size)
}

/// Raw model outputs (logits for `ce`) for `data.x`: `[N, out]` or `[N, T, out]`.
pub fn predict<B: Backend + ?Sized>(
    backend: &mut B,
    data: &Dataset,
    batch_size: usize,
) -> Result<Tensor> {
    backend.predict(data, batch_size)
}

/// The arg-max class of every output row: `[N]` for output `last`, `[N * T]`
/// (batch-first) for output `sequence`.
pub fn predict_classes<B: Backend + ?Sized>(
    backend: &mut B,
    data: &Dataset,
    batch_size: usize,
) -> Result<Vec<usize>> {
    let out = backend.predict(data, batch_size)?;
    let o = *out
        .shape
        .last()
        .ok_or_else(|| Error::Empty("the model output".into()))?;
    Ok(out.data.chunks_exact(o).map(argmax).collect())
}
