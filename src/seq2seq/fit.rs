//! Training a sequence-to-sequence model over epochs: batches in order or shuffled
//! (seeded, a fresh order each epoch: [`crate::train::batch_indices`]), one
//! optimizer step each, the validation set evaluated after every epoch, and
//! each epoch reported as it ends.

use super::backend::Backend;
use super::data::Seq2SeqData;
use super::model::Evaluation;
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::train::batch_indices;
use std::time::Instant;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub epochs: usize,
    pub batch_size: usize,
    /// A fresh order every epoch, from `seed`; `false`: file order.
    pub shuffle: bool,
    pub seed: u64,
    /// Clip the global gradient norm to this.
    pub clip: Option<f32>,
}

impl Fit {
    pub fn new(epochs: usize, batch_size: usize) -> Fit {
        Fit {
            epochs,
            batch_size,
            shuffle: true,
            seed: 0,
            clip: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Argument("--batch-size must be at least 1".into()));
        }
        if let Some(c) = self.clip {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::Argument(format!(
                    "--clip {c} must be a positive number"
                )));
            }
        }
        Ok(())
    }
}

/// One epoch's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Epoch {
    /// From 1.
    pub epoch: usize,
    /// Mean of the batches' losses.
    pub loss: f32,
    pub validation: Option<Evaluation>,
    pub seconds: f64,
}

/// Trains `model` (on either path: [`Backend`]) on `data` with `opt`;
/// `report` sees each epoch as it ends.
pub fn fit(
    model: &mut dyn Backend,
    data: &Seq2SeqData,
    validation: Option<&Seq2SeqData>,
    opt: &mut Optimizer,
    fit: &Fit,
    mut report: impl FnMut(&Epoch),
) -> Result<Vec<Epoch>> {
    fit.validate()?;
    opt.validate()?;
    data.check(model.config())?;
    if let Some(v) = validation {
        v.check(model.config())?;
    }
    let mut rng = Rng::new(fit.seed);
    let mut epochs = Vec::new();
    for e in 1..=fit.epochs {
        let t0 = Instant::now();
        let order = batch_indices(
            data.n(),
            fit.batch_size,
            fit.shuffle.then_some(&mut rng),
            false,
        );
        let mut total = 0.0f64;
        for idx in &order {
            total += model.train_step(&data.gather(idx), opt, fit.clip)? as f64;
        }
        let validation = match validation {
            Some(v) => Some(model.evaluate(v, fit.batch_size)?),
            None => None,
        };
        let epoch = Epoch {
            epoch: e,
            loss: (total / order.len().max(1) as f64) as f32,
            validation,
            seconds: t0.elapsed().as_secs_f64(),
        };
        report(&epoch);
        epochs.push(epoch);
    }
    Ok(epochs)
}
