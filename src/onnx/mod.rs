//! ONNX export: a trained model as an `.onnx` file that ONNX Runtime, tract,
//! OpenVINO and the other ONNX runtimes run, computing what
//! `recurrent predict` computes.
//!
//! The graph takes `x` (f32 `[N, T, F]`, or i64 token ids `[N, T]` for a
//! model with an embedding) and, as asked, `lengths` i64 `[N]` and the initial
//! states `h0` (`c0`) f32 `[L*D, N, H]`; it gives `output` and, with states,
//! `h_n` (`c_n`). N and T are dynamic.
//!
//! ```no_run
//! use recurrent::onnx::{ExportOptions, Recurrence};
//! let model = recurrent::io::checkpoint::load("model.safetensors")?;
//! let opts = ExportOptions { lengths: true, ..ExportOptions::default() };
//! recurrent::onnx::save(&model, "model.onnx", &opts)?;
//! # Ok::<(), recurrent::Error>(())
//! ```
//!
//! `proto.rs` declares the messages, `graph.rs` builds graphs, `export.rs`
//! lays out the model, `operators.rs` and `scan.rs` are the two ways to write
//! a recurrent layer ([`Recurrence`]), `build.rs` is what those share.

mod build;
mod export;
mod graph;
mod operators;
pub mod proto;
mod scan;

use crate::{Error, Model, Result};
use prost::Message;
use std::path::Path;

/// The lowest opset whose operator forms this exporter writes (Unsqueeze,
/// Squeeze and Split take their axes and sizes as inputs from opset 13).
pub const MIN_OPSET: i64 = 13;
/// The highest opset checked against the operators' definitions: none of the
/// operators used changed meaning between 13 and 21.
pub const MAX_OPSET: i64 = 21;
/// The default: supported by every current runtime (ONNX Runtime ≥ 1.12,
/// tract, OpenVINO ≥ 2022.3).
pub const DEFAULT_OPSET: i64 = 17;

/// How a recurrent layer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recurrence {
    /// ONNX's own `LSTM`, `GRU` and `RNN` operators, one node per layer
    /// (both directions in it), lengths as `sequence_lens`: what PyTorch's
    /// exporter writes, and the fused kernels of ONNX Runtime and OpenVINO.
    Operators,
    /// A `Scan` loop per layer and direction over the cell in plain operators,
    /// lengths as masks: for runtimes whose recurrent operators are partial.
    /// tract (0.23) needs it for lengths (it refuses a non-constant
    /// `sequence_lens`) and for ReLU RNNs (it ignores `activations`).
    Scan,
}

impl Recurrence {
    pub fn name(self) -> &'static str {
        match self {
            Recurrence::Operators => "operators",
            Recurrence::Scan => "scan",
        }
    }
    pub fn parse(s: &str) -> Result<Recurrence> {
        match s {
            "operators" => Ok(Recurrence::Operators),
            "scan" => Ok(Recurrence::Scan),
            other => Err(Error::Argument(format!(
                "unknown recurrence '{other}': use operators (ONNX's LSTM/GRU/RNN) or scan (Scan loops, for tract)"
            ))),
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Recurrence::Operators => "ONNX LSTM/GRU/RNN operators",
            Recurrence::Scan => "Scan loops",
        }
    }
}

/// What the exported graph takes and how it is written.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// A `lengths` input (PyTorch packed semantics: steps past a length are
    /// not fed; `last` output takes each sequence's own final state).
    pub lengths: bool,
    /// `h0` (and `c0`) inputs and `h_n` (and `c_n`) outputs.
    pub states: bool,
    /// ONNX opset, [`MIN_OPSET`]..=[`MAX_OPSET`].
    pub opset: i64,
    pub recurrence: Recurrence,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            lengths: false,
            states: false,
            opset: DEFAULT_OPSET,
            recurrence: Recurrence::Operators,
        }
    }
}

impl ExportOptions {
    fn check(&self) -> Result<()> {
        if !(MIN_OPSET..=MAX_OPSET).contains(&self.opset) {
            return Err(Error::Argument(format!(
                "opset {} is not supported: the graph needs opset {MIN_OPSET} or later (axes as inputs), and opsets above {MAX_OPSET} are not checked yet; use {MIN_OPSET}..={MAX_OPSET} (default {DEFAULT_OPSET})",
                self.opset
            )));
        }
        Ok(())
    }
}

/// Protobuf messages, and so ONNX files with their weights inside, stop at 2 GiB.
const MAX_WEIGHT_BYTES: usize = (1 << 31) - (64 << 20);

/// The model as ONNX protobuf bytes.
pub fn to_bytes(model: &Model, opts: &ExportOptions) -> Result<Vec<u8>> {
    opts.check()?;
    let bytes = model.num_params() * 4;
    if bytes > MAX_WEIGHT_BYTES {
        return Err(Error::Argument(format!(
            "the model's weights take {} MiB, and an ONNX file holding its weights stops at 2 GiB (protobuf's limit); weights in external data files are not written yet",
            bytes >> 20
        )));
    }
    Ok(export::build(model, opts).encode_to_vec())
}

/// The model as an ONNX message, for inspection.
pub fn to_proto(model: &Model, opts: &ExportOptions) -> Result<proto::ModelProto> {
    opts.check()?;
    // (No size limit here: the message is not encoded.)
    Ok(export::build(model, opts))
}

/// One line on what an export of `model` with `opts` takes and gives.
pub fn describe(model: &Model, opts: &ExportOptions) -> String {
    export::describe(model, opts)
}

/// Writes the model to `path` atomically (a temporary file renamed into
/// place: a failure leaves no partial file). The folder must exist.
pub fn save(model: &Model, path: impl AsRef<Path>, opts: &ExportOptions) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(model, opts)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(Error::Argument(format!(
            "cannot write {}: the folder {} does not exist",
            path.display(),
            folder.display()
        )));
    }
    crate::io::st::write_atomic(path, &bytes)
}
