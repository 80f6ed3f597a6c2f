//! One error type for the whole crate: every variant says what was wrong and,
//! where it helps, what to do about it. No user input reaches a panic.

use std::path::PathBuf;

/// Everything that can go wrong in `recurrent`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor had the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        what: String,
        expected: String,
        got: Vec<usize>,
    },
    /// A tensor had a dtype we cannot use for this role.
    #[error("{what}: dtype {got} is not supported here (use {expected})")]
    Dtype {
        what: String,
        got: String,
        expected: String,
    },
    /// NaN or infinity found in input data.
    #[error("{what}: non-finite value {value} at flat index {index}; clean or impute the data before training")]
    NonFinite {
        what: String,
        index: usize,
        value: f32,
    },
    /// A class label outside `0..classes` (and not the ignore index -100).
    #[error("label {label} at flat index {index} is out of range: the model has {classes} output classes (valid labels are 0..{classes}, or -100 to ignore a position)")]
    LabelOutOfRange {
        label: i64,
        index: usize,
        classes: usize,
    },
    /// A token id outside the embedding's vocabulary.
    #[error("token id {id} at flat index {index} is out of range: the embedding has {vocab} rows")]
    TokenOutOfRange { id: i64, index: usize, vocab: usize },
    /// A sequence length outside `1..=T`.
    #[error("lengths[{index}] = {length} is out of range: every length must be in 1..={steps}")]
    LengthOutOfRange {
        index: usize,
        length: i64,
        steps: usize,
    },
    /// A model configuration that cannot be built.
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// A checkpoint that does not describe a model we can load.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    /// A data file that cannot be used.
    #[error("data {path}: {reason}")]
    Data { path: String, reason: String },
    /// Input that is empty where data is required.
    #[error("{0} is empty: nothing to do")]
    Empty(String),
    /// An invalid argument (learning rate, batch size, flag value...).
    #[error("invalid argument: {0}")]
    Argument(String),
    /// Training diverged.
    #[error("loss became {loss} at step {step}; the weights of the last good step are kept. Lower the learning rate or enable gradient clipping")]
    Diverged { step: usize, loss: f32 },
    /// GPU failures: no adapter, lost device, out of memory, kernel problems.
    #[error("GPU: {0}")]
    Gpu(String),
    /// The adapter lacks an optional feature that an operation needs (e.g.
    /// timestamp queries for per-kernel profiles).
    #[error("GPU: {adapter} has no {feature}, which {needed_for} needs. HINT: `recurrent info` lists each adapter's features; another backend (RECURRENT_BACKEND=vulkan|gl|metal|dx12) or GPU may have it")]
    MissingFeature {
        /// The adapter, as [`crate::gpu::GpuContext::describe`] names it.
        adapter: String,
        /// The feature, in words and by its wgpu name.
        feature: String,
        /// What asked for it.
        needed_for: String,
    },
    /// File system errors, with the path involved.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// [`Error::NonFinite`] at the first NaN or infinity of `values`, named `what`.
    pub(crate) fn check_finite(what: &str, values: &[f32]) -> Result<()> {
        match values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            Some((index, &value)) => Err(Error::NonFinite {
                what: what.into(),
                index,
                value,
            }),
            None => Ok(()),
        }
    }
    pub(crate) fn shape(
        what: impl Into<String>,
        expected: impl Into<String>,
        got: &[usize],
    ) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }
}
