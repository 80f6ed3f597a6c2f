//! Sequence-to-sequence data: a safetensors file with `src` i64 `[N, S]`,
//! `src_lengths` i64 `[N]` (optional: all S), `tgt_in` i64 `[N, T]` (bos
//! first, then the target shifted right) and `tgt_out` i64 `[N, T]` (the
//! target, -100 where nothing is predicted).

use super::config::Seq2SeqConfig;
use crate::error::{Error, Result};
use crate::io::st::{self, Values, Write_};
use std::path::Path;

/// Source sequences, batch-first: what an encoder reads and decoding starts from.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub n: usize,
    /// Steps S.
    pub s: usize,
    /// `[N, S]` ids (any id past a row's length is never read).
    pub ids: Vec<i64>,
    /// `[N]`, each in 1..=S.
    pub lengths: Vec<usize>,
}

impl Source {
    /// Checks the shape and the lengths (`None`: every row is S long).
    pub fn new(ids: Vec<i64>, shape: [usize; 2], lengths: Option<Vec<usize>>) -> Result<Source> {
        let [n, s] = shape;
        if n == 0 || s == 0 {
            return Err(Error::Empty(format!("the source ({n} rows of {s} steps)")));
        }
        if ids.len() != n * s {
            return Err(Error::shape("src", format!("[{n}, {s}]"), &[ids.len()]));
        }
        let lengths = lengths.unwrap_or_else(|| vec![s; n]);
        if lengths.len() != n {
            return Err(Error::shape(
                "src_lengths",
                format!("[{n}]"),
                &[lengths.len()],
            ));
        }
        if let Some((index, &l)) = lengths.iter().enumerate().find(|(_, &l)| l == 0 || l > s) {
            return Err(Error::LengthOutOfRange {
                index,
                length: l as i64,
                steps: s,
            });
        }
        Ok(Source { n, s, ids, lengths })
    }

    /// Ids within each row's length inside the source vocabulary (and the
    /// shape and lengths [`Source::new`] checks, the fields being public).
    pub fn check(&self, cfg: &Seq2SeqConfig) -> Result<()> {
        if self.n == 0 || self.s == 0 {
            return Err(Error::Empty(format!(
                "the source ({} rows of {} steps)",
                self.n, self.s
            )));
        }
        if self.ids.len() != self.n * self.s {
            return Err(Error::shape(
                "src",
                format!("[{}, {}]", self.n, self.s),
                &[self.ids.len()],
            ));
        }
        if self.lengths.len() != self.n {
            return Err(Error::shape(
                "src_lengths",
                format!("[{}]", self.n),
                &[self.lengths.len()],
            ));
        }
        if let Some((index, &l)) = self
            .lengths
            .iter()
            .enumerate()
            .find(|(_, &l)| l == 0 || l > self.s)
        {
            return Err(Error::LengthOutOfRange {
                index,
                length: l as i64,
                steps: self.s,
            });
        }
        for i in 0..self.n {
            for j in 0..self.lengths[i] {
                let index = i * self.s + j;
                let id = self.ids[index];
                if id < 0 || id as usize >= cfg.src_vocab {
                    return Err(Error::TokenOutOfRange {
                        id,
                        index,
                        vocab: cfg.src_vocab,
                    });
                }
            }
        }
        Ok(())
    }

    /// The rows `idx`, in that order.
    pub fn gather(&self, idx: &[usize]) -> Source {
        Source {
            n: idx.len(),
            s: self.s,
            ids: pick(&self.ids, self.s, idx),
            lengths: idx.iter().map(|&i| self.lengths[i]).collect(),
        }
    }
}

fn pick(v: &[i64], w: usize, idx: &[usize]) -> Vec<i64> {
    idx.iter()
        .flat_map(|&i| v[i * w..(i + 1) * w].iter().copied())
        .collect()
}

/// Pairs of token sequences, batch-first: sources and teacher-forced targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Seq2SeqData {
    pub src: Source,
    /// Target steps T.
    pub t: usize,
    /// `[N, T]` decoder inputs.
    pub tgt_in: Vec<i64>,
    /// `[N, T]` targets, -100 ignored.
    pub tgt_out: Vec<i64>,
}

impl Seq2SeqData {
    /// Checks that the targets are `[N, T]` for the source's N.
    pub fn new(src: Source, tgt_in: Vec<i64>, tgt_out: Vec<i64>, t: usize) -> Result<Seq2SeqData> {
        let n = src.n;
        if t == 0 {
            return Err(Error::Empty("the targets (0 steps)".into()));
        }
        for (name, v) in [("tgt_in", &tgt_in), ("tgt_out", &tgt_out)] {
            if v.len() != n * t {
                return Err(Error::shape(
                    name,
                    format!("[{n}, {t}] (as many rows as src)"),
                    &[v.len()],
                ));
            }
        }
        Ok(Seq2SeqData {
            src,
            t,
            tgt_in,
            tgt_out,
        })
    }

    pub fn n(&self) -> usize {
        self.src.n
    }

    /// Ids within the model's vocabularies: the source (within each row's
    /// length) and `tgt_in` in theirs, `tgt_out` too or -100.
    pub fn check(&self, cfg: &Seq2SeqConfig) -> Result<()> {
        self.src.check(cfg)?;
        let (n, t) = (self.src.n, self.t);
        if t == 0 {
            return Err(Error::Empty("the targets (0 steps)".into()));
        }
        for (name, v) in [("tgt_in", &self.tgt_in), ("tgt_out", &self.tgt_out)] {
            if v.len() != n * t {
                return Err(Error::shape(
                    name,
                    format!("[{n}, {t}] (as many rows as src)"),
                    &[v.len()],
                ));
            }
        }
        if let Some((index, &id)) = self
            .tgt_in
            .iter()
            .enumerate()
            .find(|(_, &id)| id < 0 || id as usize >= cfg.tgt_vocab)
        {
            return Err(Error::TokenOutOfRange {
                id,
                index,
                vocab: cfg.tgt_vocab,
            });
        }
        if let Some((index, &label)) = self
            .tgt_out
            .iter()
            .enumerate()
            .find(|(_, &id)| id != -100 && (id < 0 || id as usize >= cfg.tgt_vocab))
        {
            return Err(Error::LabelOutOfRange {
                label,
                index,
                classes: cfg.tgt_vocab,
            });
        }
        Ok(())
    }

    /// The rows `idx`, in that order.
    pub fn gather(&self, idx: &[usize]) -> Seq2SeqData {
        Seq2SeqData {
            src: self.src.gather(idx),
            t: self.t,
            tgt_in: pick(&self.tgt_in, self.t, idx),
            tgt_out: pick(&self.tgt_out, self.t, idx),
        }
    }
}

/// Loads a seq2seq data file (see the module's documentation).
pub fn load(path: impl AsRef<Path>) -> Result<Seq2SeqData> {
    let path = path.as_ref();
    let f = File::read(path)?;
    let src = f.source()?;
    let (tgt_in, ts) = f.ids("tgt_in")?;
    let (tgt_out, os) = f.ids("tgt_out")?;
    let [tn, t] = f.two("tgt_in", &ts)?;
    if os != ts {
        return Err(f.bad(format!(
            "`tgt_out` has shape {os:?} but `tgt_in` has {ts:?}: they must agree"
        )));
    }
    if tn != src.n {
        return Err(f.bad(format!(
            "`tgt_in` has {tn} rows but `src` has {}: one target per source",
            src.n
        )));
    }
    Seq2SeqData::new(src, tgt_in, tgt_out, t)
}

/// Loads the source of a seq2seq data file (`src`, `src_lengths`; targets,
/// if there, are not read): what decoding needs.
pub fn load_source(path: impl AsRef<Path>) -> Result<Source> {
    File::read(path.as_ref())?.source()
}

/// A parsed file and its name, for errors.
struct File {
    f: st::File,
    path: String,
}

impl File {
    fn read(path: &Path) -> Result<File> {
        let f = File {
            f: st::read(path)?,
            path: path.display().to_string(),
        };
        if !f.f.tensors.contains_key("src") && f.f.tensors.contains_key("x") {
            return Err(f.bad(
                "this is a data file for a plain model (`x`), not a seq2seq one (`src`, `tgt_in`, `tgt_out`)".into(),
            ));
        }
        Ok(f)
    }

    fn bad(&self, reason: String) -> Error {
        Error::Data {
            path: self.path.clone(),
            reason,
        }
    }

    fn ids(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let t = self.f.tensors.get(name).ok_or_else(|| {
            self.bad(format!(
                "missing tensor `{name}` (a seq2seq data file has src, tgt_in, tgt_out and optionally src_lengths)"
            ))
        })?;
        match &t.values {
            Values::I64(v) => Ok((v.clone(), t.shape.clone())),
            Values::F32(_) => Err(self.bad(format!(
                "`{name}` has dtype {:?}: token ids must be integers (i64)",
                t.dtype
            ))),
        }
    }

    fn two(&self, name: &str, shape: &[usize]) -> Result<[usize; 2]> {
        match shape {
            [a, b] => Ok([*a, *b]),
            _ => Err(self.bad(format!("`{name}` has shape {shape:?}: expected [N, steps]"))),
        }
    }

    fn source(&self) -> Result<Source> {
        let (ids, shape) = self.ids("src")?;
        let [n, s] = self.two("src", &shape)?;
        let lengths = match self.f.tensors.get("src_lengths") {
            None => None,
            Some(_) => {
                let (l, shape) = self.ids("src_lengths")?;
                if shape != [n] {
                    return Err(
                        self.bad(format!("`src_lengths` has shape {shape:?}: expected [{n}]"))
                    );
                }
                if let Some((index, &length)) =
                    l.iter().enumerate().find(|(_, &v)| v < 1 || v as usize > s)
                {
                    return Err(Error::LengthOutOfRange {
                        index,
                        length,
                        steps: s,
                    });
                }
                Some(l.iter().map(|&v| v as usize).collect())
            }
        };
        Source::new(ids, [n, s], lengths)
    }
}

/// Saves `data` atomically.
pub fn save(data: &Seq2SeqData, path: impl AsRef<Path>) -> Result<()> {
    let (n, s, t) = (data.src.n, data.src.s, data.t);
    let lengths: Vec<i64> = data.src.lengths.iter().map(|&l| l as i64).collect();
    let tensors = vec![
        ("src".to_string(), vec![n, s], Write_::I64(&data.src.ids)),
        ("src_lengths".to_string(), vec![n], Write_::I64(&lengths)),
        ("tgt_in".to_string(), vec![n, t], Write_::I64(&data.tgt_in)),
        (
            "tgt_out".to_string(),
            vec![n, t],
            Write_::I64(&data.tgt_out),
        ),
    ];
    let bytes = st::serialize(&tensors, Default::default())?;
    st::write_atomic(path.as_ref(), &bytes)
}
