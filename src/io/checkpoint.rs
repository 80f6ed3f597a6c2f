//! Checkpoints: safetensors with PyTorch `state_dict` names (`embed.`, `rnn.`,
//! `head.`), f32, and header metadata `recurrent` =
//! `{"cell","nonlinearity","output"}`. A plain PyTorch export without that key
//! loads too: cell, sizes, layers and directions follow from names and shapes
//! (defaults: tanh, last). Names without the `rnn.` prefix (a bare `nn.LSTM`
//! state_dict inside a model with `head.`) are accepted.

use super::st::{self, Write_};
use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::model::config::{Cell, ModelConfig, Nonlinearity, OutputMode};
use crate::model::params::Entry;
use crate::model::Model;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The metadata key holding the model description.
pub const META_KEY: &str = "recurrent";

#[derive(Serialize, Deserialize)]
struct Meta {
    cell: String,
    #[serde(default = "tanh")]
    nonlinearity: String,
    #[serde(default = "last")]
    output: String,
    /// Library version that wrote the file (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    /// The dropout the model trains with (absent: none).
    #[serde(default, skip_serializing_if = "Dropout::is_off")]
    dropout: Dropout,
}
fn tanh() -> String {
    "tanh".into()
}
fn last() -> String {
    "last".into()
}

/// Serialises a model to safetensors bytes, with `extra` metadata entries.
pub fn to_bytes(model: &Model, extra: &HashMap<String, String>) -> Result<Vec<u8>> {
    let cfg = model.config();
    let meta = Meta {
        cell: cfg.cell.name().into(),
        nonlinearity: cfg.nonlinearity.name().into(),
        output: cfg.output.name().into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        dropout: cfg.dropout,
    };
    entries_to_bytes(&model.layout().entries, model.params(), &meta, extra)
}

/// Safetensors bytes of the named tensors `entries` of the flat `params`,
/// with `meta` as JSON under [`META_KEY`] beside the `extra` entries (the
/// checkpoints of plain and of seq2seq models).
pub(crate) fn entries_to_bytes(
    entries: &[Entry],
    params: &[f32],
    meta: &impl Serialize,
    extra: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut metadata = extra.clone();
    metadata.insert(
        META_KEY.into(),
        serde_json::to_string(meta).expect("metadata serialises"),
    );
    let tensors: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.shape.clone(),
                Write_::F32(&params[e.range()]),
            )
        })
        .collect();
    st::serialize(&tensors, metadata)
}

/// Saves a model atomically (temporary file, then rename).
pub fn save(model: &Model, path: impl AsRef<Path>) -> Result<()> {
    save_with(model, path, &HashMap::new())
}

/// Saves with extra metadata entries (e.g. a vocabulary).
pub fn save_with(
    model: &Model,
    path: impl AsRef<Path>,
    extra: &HashMap<String, String>,
) -> Result<()> {
    st::write_atomic(path.as_ref(), &to_bytes(model, extra)?)
}

/// Loads a model, returning it with the file's metadata.
pub fn load_with_metadata(path: impl AsRef<Path>) -> Result<(Model, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&bytes, &path.display().to_string())
}

/// Loads a model.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    Ok(load_with_metadata(path)?.0)
}

/// Parses a checkpoint from bytes (`path` names it in errors).
pub fn from_bytes(bytes: &[u8], path: &str) -> Result<(Model, HashMap<String, String>)> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    let file = st::parse(bytes, path).map_err(|e| match e {
        Error::Data { reason, .. } => bad(reason),
        other => other,
    })?;
    // Normalise names: a bare nn.LSTM state_dict has no `rnn.` prefix.
    let mut tensors: BTreeMap<String, st::Read> = BTreeMap::new();
    for (name, t) in file.tensors {
        let key = if name.starts_with("weight_") || name.starts_with("bias_") {
            format!("rnn.{name}")
        } else {
            name
        };
        if !matches!(t.values, st::Values::F32(_)) {
            return Err(bad(format!(
                "tensor `{key}` has integer dtype {:?}; weights must be floating point",
                t.dtype
            )));
        }
        tensors.insert(key, t);
    }
    let get = |name: &str| {
        tensors
            .get(name)
            .ok_or_else(|| bad(format!("missing tensor `{name}`")))
    };
    let w_hh0 = get("rnn.weight_hh_l0")?;
    let w_ih0 = get("rnn.weight_ih_l0")?;
    if w_hh0.shape.len() != 2 || w_ih0.shape.len() != 2 || w_hh0.shape[1] == 0 {
        return Err(bad(format!(
            "rnn.weight_hh_l0 {:?} / rnn.weight_ih_l0 {:?} must be 2-D, [G*H, H] and [G*H, I]",
            w_hh0.shape, w_ih0.shape
        )));
    }
    let hidden = w_hh0.shape[1];
    let rows = w_hh0.shape[0];
    let inferred = match rows / hidden {
        4 if rows == 4 * hidden => Cell::Lstm,
        3 if rows == 3 * hidden => Cell::Gru,
        1 if rows == hidden => Cell::Rnn,
        _ => return Err(bad(format!("rnn.weight_hh_l0 has shape {:?}: rows must be 4H (lstm), 3H (gru) or H (rnn) for H = {hidden}", w_hh0.shape))),
    };
    let (cell, nonlinearity, output, dropout) = match file.metadata.get(META_KEY) {
        Some(json) => {
            let m: Meta = serde_json::from_str(json).map_err(|e| {
                bad(format!(
                    "metadata `{META_KEY}` is not valid JSON of the expected form ({e}): {json}"
                ))
            })?;
            let cell = Cell::parse(&m.cell).map_err(|_| {
                bad(format!(
                    "metadata names unknown cell '{}': expected lstm, gru or rnn",
                    m.cell
                ))
            })?;
            if cell != inferred {
                return Err(bad(format!(
                    "metadata says cell {} but rnn.weight_hh_l0 {:?} is shaped for {}",
                    cell.name(),
                    w_hh0.shape,
                    inferred.name()
                )));
            }
            let nl = Nonlinearity::parse(&m.nonlinearity).map_err(|e| bad(e.to_string()))?;
            let out = OutputMode::parse(&m.output).map_err(|e| bad(e.to_string()))?;
            (cell, nl, out, m.dropout)
        }
        None => (
            inferred,
            Nonlinearity::Tanh,
            OutputMode::Last,
            Dropout::default(),
        ),
    };
    let layers = (0..)
        .take_while(|k| tensors.contains_key(&format!("rnn.weight_ih_l{k}")))
        .count();
    let bidirectional = tensors.contains_key("rnn.weight_ih_l0_reverse");
    let head = get("head.weight")?;
    if head.shape.len() != 2 {
        return Err(bad(format!(
            "head.weight has shape {:?}, expected [out, H or 2H]",
            head.shape
        )));
    }
    let vocab = match tensors.get("embed.weight") {
        Some(e) if e.shape.len() == 2 => Some(e.shape[0]),
        Some(e) => {
            return Err(bad(format!(
                "embed.weight has shape {:?}, expected [V, I]",
                e.shape
            )))
        }
        None => None,
    };
    let cfg = ModelConfig {
        cell,
        nonlinearity,
        input: w_ih0.shape[1],
        hidden,
        layers,
        bidirectional,
        output,
        out_features: head.shape[0],
        vocab,
        dropout,
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    let layout = crate::model::params::Layout::new(&cfg);
    let mut params = vec![0.0f32; layout.total];
    for e in &layout.entries {
        let t = get(&e.name)?;
        if t.shape != e.shape {
            return Err(bad(format!("tensor `{}` has shape {:?}, expected {:?} for a {} model with input {}, hidden {}, {} layer(s){}", e.name, t.shape, e.shape, cell.name(), cfg.input, hidden, layers, if bidirectional { ", bidirectional" } else { "" })));
        }
        if let st::Values::F32(v) = &t.values {
            params[e.range()].copy_from_slice(v);
        }
    }
    let unknown: Vec<&String> = tensors
        .keys()
        .filter(|k| layout.entry(k).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(bad(format!(
            "unexpected tensors {unknown:?}: not part of a {}-layer {} model",
            layers,
            cell.name()
        )));
    }
    crate::model::params::check_finite(&layout, &params, "checkpoint tensor")
        .map_err(|e| bad(e.to_string()))?;
    Ok((Model::from_params(cfg, params)?, file.metadata))
}
