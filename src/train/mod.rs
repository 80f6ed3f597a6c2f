//! Training: [`Trainer`] runs epochs of shuffled mini-batches over a
//! [`Backend`], with validation, metrics, early stopping, checkpoints,
//! learning-rate schedules and gradient clipping, and returns the
//! [`History`] of per-epoch metrics.
//!
//! ```
//! use recurrent::train::{FitConfig, Trainer, LrSchedule};
//! use recurrent::{Cell, Dataset, Inputs, Init, Model, ModelConfig, Optimizer, Targets};
//!
//! // 64 sequences of 5 steps, 2 features; the class is the sign of the first feature's sum.
//! let mut rng = recurrent::rng::Rng::new(1);
//! let x: Vec<f32> = (0..64 * 5 * 2).map(|_| rng.uniform(-1.0, 1.0)).collect();
//! let y: Vec<i64> = (0..64).map(|n| (x[n * 10..n * 10 + 10].iter().step_by(2).sum::<f32>() > 0.0) as i64).collect();
//! let data = Dataset::new(Inputs::features(x, 64, 5, 2)?, Some(Targets::Classes { data: y, shape: vec![64] }), None);
//! let mut model = Model::new(ModelConfig::new(Cell::Gru, 2, 16, 2), &Init::seed(3))?;
//! let mut opt = Optimizer::adam(1e-2);
//! let cfg = FitConfig { epochs: 5, batch_size: 16, schedule: LrSchedule::Cosine { eta_min: 1e-3 }, ..FitConfig::default() };
//! let history = Trainer::new(cfg).fit(&mut model, &mut opt, &data, Some(&data))?;
//! assert_eq!(history.epochs.len(), 5);
//! assert!(history.epochs[4].train_loss < history.epochs[0].train_loss);
//! # Ok::<(), recurrent::Error>(())
//! ```
//!
//! ## Design
//! - [`backend`]: the seam between the loop and a compute path. The loop only
//!   asks a [`Backend`] for whole training steps, evaluations and predictions,
//!   and to copy its weights to or from a host [`Model`](crate::Model) (for
//!   checkpoints and for keeping the best weights). The CPU path is `Model`
//!   itself; a GPU path implements the same trait and keeps its weights and
//!   optimizer state on the device between calls.
//! - [`batches`]: which rows go in which batch (seeded shuffle, or file order
//!   with a partial last batch, as a PyTorch `DataLoader`).
//! - [`schedule`]: learning rate per epoch (constant, step, cosine).
//! - [`fit`]: the loop, early stopping, checkpoints, history.
//! - [`progress`]: the per-epoch progress bar (quiet when stderr is not a terminal).
//! - [`predict`]: batched evaluation and prediction helpers.
//! - [`stateful`]: truncated-BPTT training of language models (`FitConfig::stateful`).

pub mod backend;
pub mod batches;
pub mod fit;
pub mod predict;
pub mod progress;
pub mod schedule;
pub mod stateful;

pub use backend::{Backend, FinalStates, Prediction};
pub use batches::batch_indices;
pub use fit::{
    CheckpointConfig, Control, EarlyStopping, EpochMetrics, FitConfig, History, Monitor,
    OnNonFinite, Trainer,
};
pub use predict::{evaluate, predict, predict_classes};
pub use schedule::LrSchedule;
pub use stateful::Stateful;
