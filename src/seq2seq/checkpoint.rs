//! Seq2seq checkpoints: safetensors with the reference's `state_dict` names
//! (`src_embed.`, `encoder.`, `tgt_embed.`, `decoder.`, `attn.`, `combine.`,
//! `head.`), f32, and header metadata `recurrent` = `{"arch": "seq2seq",
//! "cell", "nonlinearity", "attention", "bos", "eos"}`, so that the
//! reference's PyTorch model loads ours and we load its. Sizes, layers and
//! directions follow from the tensors' names and shapes.

use super::config::{Attention, Seq2SeqConfig, Seq2SeqLayout};
use super::model::Seq2Seq;
use crate::error::{Error, Result};
use crate::io::checkpoint::{entries_to_bytes, META_KEY};
use crate::io::st::{self, Values};
use crate::model::config::{Cell, Nonlinearity};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The `arch` of a seq2seq checkpoint's metadata.
pub const ARCH: &str = "seq2seq";

#[derive(Serialize, Deserialize)]
struct Meta {
    arch: String,
    cell: String,
    #[serde(default = "tanh")]
    nonlinearity: String,
    attention: String,
    bos: usize,
    eos: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}
fn tanh() -> String {
    "tanh".into()
}

/// Is this metadata a seq2seq checkpoint's?
pub fn is_seq2seq(metadata: &HashMap<String, String>) -> bool {
    metadata
        .get(META_KEY)
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .is_some_and(|v| v["arch"] == ARCH)
}

/// Saves `model` atomically, with `extra` metadata entries (vocabularies).
pub fn save_with(
    model: &Seq2Seq,
    path: impl AsRef<Path>,
    extra: &HashMap<String, String>,
) -> Result<()> {
    let cfg = model.config();
    let meta = Meta {
        arch: ARCH.into(),
        cell: cfg.cell.name().into(),
        nonlinearity: cfg.nonlinearity.name().into(),
        attention: cfg.attention.name().into(),
        bos: cfg.bos,
        eos: cfg.eos,
        version: Some(env!("CARGO_PKG_VERSION").into()),
    };
    let bytes = entries_to_bytes(&model.layout().entries, model.params(), &meta, extra)?;
    st::write_atomic(path.as_ref(), &bytes)
}

pub fn save(model: &Seq2Seq, path: impl AsRef<Path>) -> Result<()> {
    save_with(model, path, &HashMap::new())
}

/// Loads a seq2seq checkpoint and its metadata.
pub fn load_with_metadata(path: impl AsRef<Path>) -> Result<(Seq2Seq, HashMap<String, String>)> {
    let path = path.as_ref();
    let p = path.display().to_string();
    let bad = |reason: String| Error::Checkpoint {
        path: p.clone(),
        reason,
    };
    let file = st::read(path).map_err(|e| match e {
        Error::Data { reason, .. } => bad(reason),
        other => other,
    })?;
    let json = file.metadata.get(META_KEY).ok_or_else(|| {
        bad(format!(
            "no `{META_KEY}` metadata: a seq2seq checkpoint says {{\"arch\": \"seq2seq\", ...}} there"
        ))
    })?;
    if !is_seq2seq(&file.metadata) {
        return Err(bad(
            "this is a plain model's checkpoint (one stack and a head), not a seq2seq one: use it with a plain data file, or train a seq2seq model with --arch seq2seq".into(),
        ));
    }
    let m: Meta = serde_json::from_str(json).map_err(|e| {
        bad(format!(
            "metadata `{META_KEY}` is not of the expected form ({e}): {json}"
        ))
    })?;
    let tensor = |name: &str| -> Result<(&Vec<usize>, &Vec<f32>)> {
        let t = file
            .tensors
            .get(name)
            .ok_or_else(|| bad(format!("missing tensor `{name}`")))?;
        match &t.values {
            Values::F32(v) => Ok((&t.shape, v)),
            Values::I64(_) => Err(bad(format!(
                "tensor `{name}` has an integer dtype; weights are floating point"
            ))),
        }
    };
    let two = |name: &str| -> Result<[usize; 2]> {
        match tensor(name)?.0[..] {
            [a, b] => Ok([a, b]),
            ref s => Err(bad(format!(
                "tensor `{name}` has shape {s:?}: expected 2-D"
            ))),
        }
    };
    let cell = Cell::parse(&m.cell).map_err(|e| bad(e.to_string()))?;
    let [src_vocab, embed] = two("src_embed.weight")?;
    let [tgt_vocab, _] = two("tgt_embed.weight")?;
    let [rows, hidden] = two("encoder.weight_hh_l0")?;
    if rows != cell.gates() * hidden {
        return Err(bad(format!(
            "encoder.weight_hh_l0 has shape [{rows}, {hidden}], not that of a {} ({} gates)",
            cell.name(),
            cell.gates()
        )));
    }
    let layers = (0..)
        .take_while(|k| {
            file.tensors
                .contains_key(&format!("encoder.weight_ih_l{k}"))
        })
        .count();
    let cfg = Seq2SeqConfig {
        cell,
        nonlinearity: Nonlinearity::parse(&m.nonlinearity).map_err(|e| bad(e.to_string()))?,
        src_vocab,
        tgt_vocab,
        embed,
        hidden,
        layers,
        bidirectional: file.tensors.contains_key("encoder.weight_ih_l0_reverse"),
        attention: Attention::parse(&m.attention).map_err(|e| bad(e.to_string()))?,
        bos: m.bos,
        eos: m.eos,
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    let layout = Seq2SeqLayout::new(&cfg);
    let mut params = vec![0.0f32; layout.total];
    for e in &layout.entries {
        let (shape, v) = tensor(&e.name)?;
        if *shape != e.shape {
            return Err(bad(format!(
                "tensor `{}` has shape {shape:?}, expected {:?} for this model ({}, embed {embed}, hidden {hidden}, {layers} layer(s), bidirectional {}, attention {})",
                e.name,
                e.shape,
                cell.name(),
                cfg.bidirectional,
                cfg.attention.name()
            )));
        }
        params[e.range()].copy_from_slice(v);
    }
    let unknown: Vec<&String> = file
        .tensors
        .keys()
        .filter(|k| !layout.entries.iter().any(|e| &e.name == *k))
        .collect();
    if !unknown.is_empty() {
        return Err(bad(format!(
            "unexpected tensors {unknown:?}: not part of this model (attention {})",
            cfg.attention.name()
        )));
    }
    let model = Seq2Seq::from_params(cfg, params).map_err(|e| bad(e.to_string()))?;
    Ok((model, file.metadata))
}

pub fn load(path: impl AsRef<Path>) -> Result<Seq2Seq> {
    Ok(load_with_metadata(path)?.0)
}
