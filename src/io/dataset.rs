//! Data sets in safetensors: `x` f32 `[N,T,F]` or token ids (i64/i32) `[N,T]`,
//! `y` class indices (i64/i32/u8) `[N]`/`[N,T]` or f32 values, optional `lengths` i64 `[N]`,
//! optional initial states `h0` (and `c0`, LSTM) f32 `[L*D, N, H]`.

use super::st::{self, Values, Write_};
use crate::data::{Dataset, InitialStates, Inputs, Targets};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// Reads a data set file.
pub fn load(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let f = st::read(path)?;
    let p = path.display().to_string();
    from_file(f, &p)
}

/// Builds a data set from a parsed file.
pub fn from_file(f: st::File, p: &str) -> Result<Dataset> {
    let bad = |reason: String| Error::Data {
        path: p.into(),
        reason,
    };
    if !f.tensors.contains_key("x") && f.tensors.contains_key("src") {
        return Err(bad(
            "this is a seq2seq data file (src, tgt_in, tgt_out), not one for a plain model (x, y): train a seq2seq model on it (--arch seq2seq)".into(),
        ));
    }
    let x = f
        .tensors
        .get("x")
        .ok_or_else(|| bad("missing tensor `x` (inputs [N,T,F] f32 or token ids [N,T])".into()))?;
    let x = match (&x.values, x.shape.len()) {
        (Values::F32(v), 3) => Inputs::features(v.clone(), x.shape[0], x.shape[1], x.shape[2])?,
        (Values::I64(v), 2) => Inputs::tokens(v.clone(), x.shape[0], x.shape[1])?,
        (Values::F32(_), _) => {
            return Err(bad(format!(
                "`x` is f32 with shape {:?}: expected [N, T, F]",
                x.shape
            )))
        }
        (Values::I64(_), _) => {
            return Err(bad(format!(
                "`x` holds integers with shape {:?}: token ids must be [N, T]",
                x.shape
            )))
        }
    };
    let n = x.n();
    let y = match f.tensors.get("y") {
        None => None,
        Some(y) => {
            if y.shape.first() != Some(&n) {
                return Err(bad(format!(
                    "`y` has shape {:?} but `x` has {n} sequences",
                    y.shape
                )));
            }
            Some(match &y.values {
                Values::F32(v) => Targets::Values {
                    data: v.clone(),
                    shape: y.shape.clone(),
                },
                Values::I64(v) => Targets::Classes {
                    data: v.clone(),
                    shape: y.shape.clone(),
                },
            })
        }
    };
    let lengths = match f.tensors.get("lengths") {
        None => None,
        Some(l) => match &l.values {
            Values::I64(v) if l.shape == [n] => {
                let t = x.steps();
                if let Some((i, &len)) = v
                    .iter()
                    .enumerate()
                    .find(|(_, &len)| len < 1 || len as usize > t)
                {
                    return Err(Error::LengthOutOfRange {
                        index: i,
                        length: len,
                        steps: t,
                    });
                }
                Some(v.iter().map(|&v| v as usize).collect())
            }
            _ => {
                return Err(bad(format!(
                    "`lengths` must be integers of shape [{n}], got {:?} {:?}",
                    l.dtype, l.shape
                )))
            }
        },
    };
    let state = |name: &str| -> Result<Option<Tensor>> {
        let Some(s) = f.tensors.get(name) else {
            return Ok(None);
        };
        match &s.values {
            Values::F32(v) if s.shape.len() == 3 && s.shape[1] == n => {
                Ok(Some(Tensor::new(s.shape.clone(), v.clone())))
            }
            Values::F32(_) => Err(bad(format!(
                "`{name}` has shape {:?}: initial states are [layers x directions, N, hidden] with N = {n}, the sequences of `x`",
                s.shape
            ))),
            Values::I64(_) => Err(bad(format!(
                "`{name}` holds {:?} integers: initial states are f32 [layers x directions, N, hidden]",
                s.dtype
            ))),
        }
    };
    let states = match (state("h0")?, state("c0")?) {
        (Some(h0), c0) => Some(InitialStates { h0, c0 }),
        (None, Some(_)) => {
            return Err(bad(
                "`c0` without `h0`: an LSTM's initial states are the pair (h0, c0); add h0 (zeros for none)".into(),
            ))
        }
        (None, None) => None,
    };
    Ok(Dataset {
        x,
        y,
        lengths,
        states,
    })
}

/// Writes a data set file atomically (`x` f32 or i64, `y` i64 or f32, `lengths` i64, `h0`/`c0` f32).
pub fn save(data: &Dataset, path: impl AsRef<Path>) -> Result<()> {
    let lengths: Option<Vec<i64>> = data
        .lengths
        .as_ref()
        .map(|l| l.iter().map(|&v| v as i64).collect());
    let mut t: Vec<(String, Vec<usize>, Write_)> = Vec::new();
    match &data.x {
        Inputs::Features { data: v, .. } => t.push(("x".into(), data.x.shape(), Write_::F32(v))),
        Inputs::Tokens { ids, .. } => t.push(("x".into(), data.x.shape(), Write_::I64(ids))),
    }
    match &data.y {
        Some(Targets::Classes { data, shape }) => {
            t.push(("y".into(), shape.clone(), Write_::I64(data)))
        }
        Some(Targets::Values { data, shape }) => {
            t.push(("y".into(), shape.clone(), Write_::F32(data)))
        }
        None => {}
    }
    if let Some(l) = &lengths {
        t.push(("lengths".into(), vec![l.len()], Write_::I64(l)));
    }
    if let Some(s) = &data.states {
        t.push(("h0".into(), s.h0.shape.clone(), Write_::F32(&s.h0.data)));
        if let Some(c0) = &s.c0 {
            t.push(("c0".into(), c0.shape.clone(), Write_::F32(&c0.data)));
        }
    }
    st::write_atomic(path.as_ref(), &st::serialize(&t, HashMap::new())?)
}

/// Writes named f32 tensors (e.g. predictions) atomically.
pub fn save_tensors(path: impl AsRef<Path>, tensors: &[(&str, &crate::Tensor)]) -> Result<()> {
    let t: Vec<_> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.shape.clone(), Write_::F32(&t.data)))
        .collect();
    st::write_atomic(path.as_ref(), &st::serialize(&t, HashMap::new())?)
}
