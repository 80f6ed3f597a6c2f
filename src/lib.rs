//! # recurrent
//!
//! Train LSTM, GRU and plain RNN models on any GPU that wgpu reaches, with a
//! CPU path that computes the same things and proves every GPU result.
//! Weights are PyTorch-compatible safetensors.
//!
//! ```
//! use recurrent::{Cell, Dataset, Inputs, Init, Loss, Model, ModelConfig, Optimizer, StepOptions, Targets};
//!
//! // 4 sequences of 6 steps with 3 features, two classes.
//! let x: Vec<f32> = (0..4 * 6 * 3).map(|i| (i as f32 * 0.1).sin()).collect();
//! let data = Dataset::new(
//!     Inputs::features(x, 4, 6, 3)?,
//!     Some(Targets::Classes { data: vec![0, 1, 1, 0], shape: vec![4] }),
//!     None,
//! );
//! let mut model = Model::new(ModelConfig::new(Cell::Lstm, 3, 16, 2), &Init::seed(7))?;
//! let mut opt = Optimizer::adam(1e-2);
//! let opts = StepOptions { loss: Loss::Ce, clip: Some(1.0) };
//! let first = model.train_step(&data, &opts, &mut opt)?.loss;
//! for _ in 0..50 {
//!     model.train_step(&data, &opts, &mut opt)?;
//! }
//! assert!(model.evaluate(&data, Loss::Ce, 4)?.loss < first);
//! let logits = model.forward(&data)?; // [4, 2]
//! assert_eq!(logits.shape, vec![4, 2]);
//! # let dir = std::env::temp_dir().join("recurrent-doc-example.safetensors");
//! recurrent::io::checkpoint::save(&model, &dir)?;
//! let back = recurrent::io::checkpoint::load(&dir)?;
//! assert_eq!(back.params(), model.params());
//! # Ok::<(), recurrent::Error>(())
//! ```
//!
//! ## Design
//! - [`model`]: configuration, parameters in PyTorch `state_dict` layout, initialisation.
//! - [`cpu`]: the reference path — whole-layer forward and backward through
//!   time built on GEMMs, losses, optimizers exactly as `torch.optim`.
//! - [`io`]: checkpoints and data files (safetensors).
//! - [`data`]: in-memory batches.
//! - [`onnx`]: export to ONNX (ONNX Runtime, tract, OpenVINO).
//! - [`generate`]: sampling text from a language model on the streaming API (both paths).
//! - [`text`]: vocabularies (characters, words), class names, data sets from raw text.
//! - [`train`]: the training loop ([`train::Trainer`]): batching, validation, early
//!   stopping, checkpoints, schedules, progress bar; and the [`train::Backend`] seam.

pub mod bench;
pub mod cpu;
pub mod data;
pub mod device;
pub mod dropout;
pub mod error;
pub mod generate;
pub mod gpu;
pub mod io;
pub mod model;
pub mod onnx;
pub mod optim;
pub mod rng;
pub mod seq2seq;
pub mod stack;
pub mod stream;
pub mod tensor;
pub mod text;
pub(crate) mod timing;
pub mod train;

pub use cpu::States;
pub use data::{Dataset, InitialStates, Inputs, Targets};
pub use device::{Device, DeviceChoice};
pub use dropout::Dropout;
pub use error::{Error, Result};
pub use model::config::{Cell, ModelConfig, Nonlinearity, OutputMode};
pub use model::params::Init;
pub use model::{Evaluation, Model, StepOptions, StepStats};
pub use optim::{AdamStep, Optimizer, OptimizerKind};
pub use stack::{RecurrentStack, StackForward, StackGradients};
pub use stream::Stream;
pub use tensor::Tensor;

/// Training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Mean softmax cross-entropy over counted positions (targets -100 ignored).
    Ce,
    /// Mean squared error.
    Mse,
}

impl Loss {
    pub fn parse(s: &str) -> Result<Loss> {
        match s.to_ascii_lowercase().as_str() {
            "ce" | "cross-entropy" | "cross_entropy" => Ok(Loss::Ce),
            "mse" => Ok(Loss::Mse),
            other => Err(Error::Argument(format!(
                "unknown loss '{other}': use ce or mse"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Loss::Ce => "ce",
            Loss::Mse => "mse",
        }
    }
}
