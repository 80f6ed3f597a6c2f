//! The optimizer-state sidecar of a checkpoint, for resuming training exactly.
//!
//! A checkpoint `M.safetensors` stays a plain PyTorch `state_dict` (PyTorch
//! loads it with `load_state_dict(strict=True)`: no extra tensors). The state
//! needed to continue training as if never interrupted goes next to it, in
//! [`sidecar_path`]`(M)` = `M.optim.safetensors` (for `M.safetensors`; any
//! other name gets `.optim.safetensors` appended):
//!
//! - tensors `m` `[P]` (SGD momentum buffer / Adam `exp_avg`) and `v` `[P]`
//!   (Adam `exp_avg_sq`), f32, flat in the model's [`Layout`](crate::model::params::Layout)
//!   order; `[0]` when the optimizer has not created them yet;
//! - header metadata [`META_KEY`] = JSON with the optimizer kind and
//!   hyper-parameters (the base learning rate, before any schedule), the
//!   step count, the epochs completed, the shuffling generator's state, the
//!   early-stopping bookkeeping, and `model_fnv1a64`;
//! - whether the moments were saved at all (`moments_saved`: the GPU path
//!   keeps its moments on the device and cannot hand them over).
//!
//! ## Pairing rule
//! The sidecar records the FNV-1a 64-bit hash of the exact bytes of the model
//! file it belongs to (`model_fnv1a64`); a sidecar pairs with a model file
//! when the hashes agree, and [`load_pair`] never combines a model and an
//! optimizer state that do not pair. [`save_pair`] writes and flushes both
//! temporary files, then renames the current sidecar to
//! `M.optim.prev.safetensors`, the new sidecar to `M.optim.safetensors`, and
//! the new model over `M.safetensors`. Whenever the process is killed, the
//! model file on disk (old or new, never partial) pairs with one of the two
//! sidecars, and [`load_pair`] takes that one. Copy all three files to move a
//! resumable checkpoint (the model file alone is a complete PyTorch state_dict).

use super::checkpoint;
use super::st::{self, Write_};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::optim::{Optimizer, OptimizerKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Metadata key holding the optimizer description in the sidecar.
pub const META_KEY: &str = "recurrent.optimizer";

/// The sidecar file of checkpoint `model`: `M.safetensors` → `M.optim.safetensors`.
pub fn sidecar_path(model: &Path) -> PathBuf {
    let name = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    model.with_file_name(format!("{stem}.optim.safetensors"))
}

/// FNV-1a 64-bit hash (the pairing fingerprint of a model file's bytes).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Early-stopping bookkeeping carried across a resume.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct MonitorState {
    /// Best monitored value so far (lower is better; accuracy is stored negated).
    pub best: Option<f32>,
    /// Epoch (from 1) of the best value.
    pub best_epoch: Option<usize>,
    /// Epochs since the best.
    pub since_best: usize,
}

/// Everything besides the weights that a resumed fit needs.
#[derive(Clone, Debug)]
pub struct TrainState {
    /// Kind, base hyper-parameters (learning rate before any schedule), step count and moments.
    pub optimizer: Optimizer,
    /// Whether `optimizer.m`/`v` hold the real moments (false when they stayed on a GPU).
    pub moments_saved: bool,
    /// Epochs completed.
    pub epoch: usize,
    /// State of the shuffling generator after `epoch` epochs ([`crate::rng::Rng::state`]).
    pub rng_state: u64,
    pub monitor: MonitorState,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    /// "sgd" or "adam".
    kind: String,
    lr: f32,
    #[serde(default)]
    momentum: f32,
    #[serde(default)]
    nesterov: bool,
    #[serde(default)]
    beta1: f32,
    #[serde(default)]
    beta2: f32,
    #[serde(default)]
    eps: f32,
    #[serde(default)]
    weight_decay: f32,
    /// u64 values as decimal strings: JSON numbers lose bits above 2^53.
    step: String,
    epoch: usize,
    rng_state: String,
    moments_saved: bool,
    #[serde(default)]
    monitor: MonitorState,
    model_fnv1a64: String,
}

/// Serialises `state` as the sidecar of a model file whose bytes are `model_bytes`.
pub fn to_bytes(state: &TrainState, model_bytes: &[u8]) -> Result<Vec<u8>> {
    let o = &state.optimizer;
    let mut meta = Meta {
        kind: String::new(),
        lr: o.lr(),
        momentum: 0.0,
        nesterov: false,
        beta1: 0.0,
        beta2: 0.0,
        eps: 0.0,
        weight_decay: 0.0,
        step: o.step.to_string(),
        epoch: state.epoch,
        rng_state: state.rng_state.to_string(),
        moments_saved: state.moments_saved,
        monitor: state.monitor,
        model_fnv1a64: format!("{:016x}", fnv1a64(model_bytes)),
    };
    match o.kind {
        OptimizerKind::Sgd {
            momentum,
            weight_decay,
            nesterov,
            ..
        } => {
            meta.kind = "sgd".into();
            meta.momentum = momentum;
            meta.weight_decay = weight_decay;
            meta.nesterov = nesterov;
        }
        OptimizerKind::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } => {
            meta.kind = "adam".into();
            meta.beta1 = beta1;
            meta.beta2 = beta2;
            meta.eps = eps;
            meta.weight_decay = weight_decay;
        }
    }
    let json = serde_json::to_string(&meta)
        .map_err(|e| Error::Argument(format!("cannot serialise the optimizer state: {e}")))?;
    let (m, v): (&[f32], &[f32]) = if state.moments_saved {
        (&o.m, &o.v)
    } else {
        (&[], &[])
    };
    let tensors = vec![
        ("m".to_string(), vec![m.len()], Write_::F32(m)),
        ("v".to_string(), vec![v.len()], Write_::F32(v)),
    ];
    st::serialize(&tensors, HashMap::from([(META_KEY.to_string(), json)]))
}

/// Parses a sidecar (`path` names it in errors) and checks that it pairs with `model_bytes`.
/// `params` is the model's parameter count: non-empty moments must have exactly that length.
pub fn from_bytes(
    bytes: &[u8],
    path: &str,
    model_bytes: &[u8],
    params: usize,
) -> Result<TrainState> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    let file = st::parse(bytes, path).map_err(|e| match e {
        Error::Data { reason, .. } => bad(reason),
        other => other,
    })?;
    let json = file.metadata.get(META_KEY).ok_or_else(|| {
        bad(format!(
            "no `{META_KEY}` metadata: this is not an optimizer-state file written by recurrent"
        ))
    })?;
    let meta: Meta = serde_json::from_str(json).map_err(|e| {
        bad(format!(
            "metadata `{META_KEY}` is not valid JSON of the expected form ({e}): {json}"
        ))
    })?;
    let want = format!("{:016x}", fnv1a64(model_bytes));
    if meta.model_fnv1a64 != want {
        return Err(bad(format!(
            "belongs to a different save of the model (model hash {} recorded, the model file has {want}); the model file was replaced after the fit saved it, or copied without its own optimizer-state files. Resume from a checkpoint copied together with its `.optim` files, or start a new fit from the weights alone (--model instead of --resume)",
            meta.model_fnv1a64
        )));
    }
    let kind = match meta.kind.as_str() {
        "sgd" => OptimizerKind::Sgd {
            lr: meta.lr,
            momentum: meta.momentum,
            weight_decay: meta.weight_decay,
            nesterov: meta.nesterov,
        },
        "adam" => OptimizerKind::Adam {
            lr: meta.lr,
            beta1: meta.beta1,
            beta2: meta.beta2,
            eps: meta.eps,
            weight_decay: meta.weight_decay,
        },
        other => {
            return Err(bad(format!(
                "unknown optimizer kind '{other}': expected sgd or adam"
            )))
        }
    };
    let num = |s: &str, what: &str| {
        s.parse::<u64>()
            .map_err(|_| bad(format!("`{what}` = '{s}' is not an unsigned integer")))
    };
    let mut optimizer = Optimizer::new(kind);
    optimizer.validate().map_err(|e| bad(e.to_string()))?;
    optimizer.step = num(&meta.step, "step")?;
    let tensor = |name: &str| -> Result<Vec<f32>> {
        let t = file
            .tensors
            .get(name)
            .ok_or_else(|| bad(format!("missing tensor `{name}`")))?;
        let v = t.floats(path, name).map_err(|e| bad(e.to_string()))?;
        if t.shape.len() != 1 || !(v.is_empty() || v.len() == params) {
            return Err(bad(format!("tensor `{name}` has shape {:?}; expected [{params}] (the model's parameter count) or [0]", t.shape)));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!(
                "tensor `{name}` holds non-finite value {} at index {i}",
                v[i]
            )));
        }
        Ok(v)
    };
    optimizer.m = tensor("m")?;
    optimizer.v = tensor("v")?;
    // The moments must be what the optimizer would have made: Adam both or
    // neither, SGD no `v`, and none missing after steps that create them.
    let (m, v, step) = (optimizer.m.len(), optimizer.v.len(), optimizer.step);
    let consistent = match optimizer.kind {
        OptimizerKind::Adam { .. } => m == v && (m > 0 || step == 0 || !meta.moments_saved),
        OptimizerKind::Sgd { momentum, .. } => {
            v == 0 && (m > 0 || momentum == 0.0 || step == 0 || !meta.moments_saved)
        }
    };
    if !consistent {
        return Err(bad(format!(
            "moments `m` [{m}] and `v` [{v}] do not fit {:?} after {step} step(s); the file was not written by a fit",
            optimizer.kind
        )));
    }
    if step > i32::MAX as u64 {
        return Err(bad(format!(
            "step count {step} is beyond 2^31 - 1, which Adam's bias correction cannot take"
        )));
    }
    Ok(TrainState {
        optimizer,
        moments_saved: meta.moments_saved,
        epoch: meta.epoch,
        rng_state: num(&meta.rng_state, "rng_state")?,
        monitor: meta.monitor,
    })
}

/// Where the previous sidecar is kept during and after a save: `M.optim.prev.safetensors`.
pub fn previous_sidecar_path(model: &Path) -> PathBuf {
    let side = sidecar_path(model);
    let name = side
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    side.with_file_name(name.replace(".optim.safetensors", ".optim.prev.safetensors"))
}

/// Writes the model bytes to `model_path` and `state` as its sidecar, so that
/// at every instant the model file on disk has a sidecar that pairs with it
/// (see the pairing rule): both temporary files are written and flushed
/// first; then the current sidecar becomes the previous one, the new sidecar
/// takes its place, and last the new model takes the model's place.
pub fn save_pair(model_path: &Path, model_bytes: &[u8], state: &TrainState) -> Result<()> {
    let side = sidecar_path(model_path);
    let side_tmp = st::write_temp(&side, &to_bytes(state, model_bytes)?)?;
    let model_tmp = match st::write_temp(model_path, model_bytes) {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&side_tmp);
            return Err(e);
        }
    };
    let renames = || -> Result<()> {
        if side.exists() {
            st::rename_durable(&side, &previous_sidecar_path(model_path))?;
        }
        st::rename_durable(&side_tmp, &side)?;
        st::rename_durable(&model_tmp, model_path)
    };
    renames().inspect_err(|_| {
        let _ = std::fs::remove_file(&side_tmp);
        let _ = std::fs::remove_file(&model_tmp);
    })
}

/// Loads checkpoint `model_path` and the sidecar that pairs with it (one read
/// of the model file): `M.optim.safetensors`, or `M.optim.prev.safetensors`
/// when a save was interrupted between its renames.
pub fn load_pair(model_path: &Path) -> Result<(Model, TrainState)> {
    let model_bytes = std::fs::read(model_path).map_err(|e| Error::io(model_path, e))?;
    let (model, _) = checkpoint::from_bytes(&model_bytes, &model_path.display().to_string())?;
    let mut first_err = None;
    for side in [sidecar_path(model_path), previous_sidecar_path(model_path)] {
        match std::fs::read(&side) {
            Ok(bytes) => match from_bytes(
                &bytes,
                &side.display().to_string(),
                &model_bytes,
                model.num_params(),
            ) {
                Ok(state) => return Ok((model, state)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&side, e)),
        }
    }
    Err(first_err.unwrap_or_else(|| Error::Checkpoint {
        path: model_path.display().to_string(),
        reason: format!(
            "no optimizer state next to it ({} does not exist): resuming needs a checkpoint written during a fit; to start from these weights alone, use --model instead of --resume",
            sidecar_path(model_path).display()
        ),
    }))
}
