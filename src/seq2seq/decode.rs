//! Decoding a source into target tokens, one token at a time: the encoder
//! runs once, then each step feeds the previous token through the decoder
//! from the state the step before left (the memory and its attention the
//! same throughout). Greedy (the arg-max, ties to the lower id) as the
//! reference's `greedy`, and beam search.

use super::data::Source;
use super::model::Seq2Seq;
use crate::cpu::loss::argmax;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Decoded tokens `[N, max_len]`: each row's picks up to and including its
/// `eos`, then 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub n: usize,
    pub max_len: usize,
    pub tokens: Vec<i64>,
}

impl Decoded {
    /// Row `i`'s tokens before its `eos` (or all of them if it has none).
    pub fn row(&self, i: usize, eos: usize) -> &[i64] {
        let r = &self.tokens[i * self.max_len..(i + 1) * self.max_len];
        let end = r.iter().position(|&v| v == eos as i64).unwrap_or(r.len());
        &r[..end]
    }
}

/// Greedy decoding of `src`, `max_len` steps from `bos`.
pub fn greedy(model: &Seq2Seq, src: &Source, max_len: usize) -> Result<Decoded> {
    if max_len == 0 {
        return Err(Error::Argument("--max-len must be at least 1".into()));
    }
    let cfg = model.config();
    let n = src.n;
    let enc = model.encode(src)?;
    let (mut h, mut c) = (enc.h0.clone(), enc.c0.clone());
    let mut prev = vec![cfg.bos as i64; n];
    let mut done = vec![false; n];
    let mut tokens = vec![0i64; n * max_len];
    let w = cfg.tgt_vocab;
    for k in 0..max_len {
        let (dec, d) = model.decode_steps(&prev, n, 1, &h, c.as_ref())?;
        let (_, logits) = model.read_out(&enc.m, &src.lengths, &d, 1);
        for b in 0..n {
            let pick = argmax(&logits[b * w..(b + 1) * w]);
            if !done[b] {
                tokens[b * max_len + k] = pick as i64;
            }
            done[b] |= pick == cfg.eos;
            prev[b] = pick as i64;
        }
        h = dec.h_n;
        c = dec.c_n;
        if done.iter().all(|&v| v) {
            break;
        }
    }
    Ok(Decoded { n, max_len, tokens })
}

/// Beam search's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Beam {
    /// Hypotheses kept per row (1: greedy).
    pub width: usize,
    /// Rank ended hypotheses by their log-probability per token (their eos
    /// included) instead of in total, which favours short ones.
    pub length_norm: bool,
}

/// One hypothesis: its source row, tokens so far and log-probability.
#[derive(Clone, Debug)]
struct Hyp {
    row: usize,
    tokens: Vec<i64>,
    score: f64,
}

impl Hyp {
    fn ranked(&self, norm: bool) -> f64 {
        if norm {
            self.score / self.tokens.len() as f64
        } else {
            self.score
        }
    }
}

/// One decoder step over the live hypotheses of a beam search, on either
/// path: hypothesis `k` continues source row `rows[k]` from token `prev[k]`
/// and from the state that hypothesis `parents[k]` of the step before left
/// (`None` at the first step: one hypothesis a row, from the row's encoder
/// states); returns the logits `[rows.len(), W]`.
pub(crate) trait BeamStep {
    fn step(&mut self, rows: &[usize], prev: &[i64], parents: Option<&[usize]>)
        -> Result<Vec<f32>>;
}

/// The CPU path's [`BeamStep`]: the encoder once, then `decode_steps` over
/// the live hypotheses with their states gathered by parent.
struct CpuStep<'a> {
    model: &'a Seq2Seq,
    src: &'a Source,
    enc: super::model::Encoded,
    h: Tensor,
    c: Option<Tensor>,
}

impl BeamStep for CpuStep<'_> {
    fn step(
        &mut self,
        rows: &[usize],
        prev: &[i64],
        parents: Option<&[usize]>,
    ) -> Result<Vec<f32>> {
        let (hd, s) = (self.model.config().width(), self.src.s);
        if let Some(p) = parents {
            self.h = gather_state(&self.h, p);
            self.c = self.c.as_ref().map(|c| gather_state(c, p));
        }
        let m: Vec<f32> = rows
            .iter()
            .flat_map(|&r| self.enc.m[r * s * hd..(r + 1) * s * hd].iter().copied())
            .collect();
        let lengths: Vec<usize> = rows.iter().map(|&r| self.src.lengths[r]).collect();
        let (dec, d) = self
            .model
            .decode_steps(prev, rows.len(), 1, &self.h, self.c.as_ref())?;
        let (_, logits) = self.model.read_out(&m, &lengths, &d, 1);
        self.h = dec.h_n;
        self.c = dec.c_n;
        Ok(logits)
    }
}

/// Refuses a zero `max_len` or beam width.
pub(crate) fn check_beam(max_len: usize, beam: Beam) -> Result<()> {
    if max_len == 0 {
        return Err(Error::Argument("--max-len must be at least 1".into()));
    }
    if beam.width == 0 {
        return Err(Error::Argument("--beam must be at least 1".into()));
    }
    Ok(())
}

/// Beam search over `src`, at most `max_len` tokens a row: every step
/// extends each row's live hypotheses by every token, keeps the `width`
/// best by total log-probability (ties: the earlier hypothesis, then the
/// lower token), and sets aside those that end in `eos`; a row is done when
/// `width` have ended, or after `max_len` steps. Each row gets its best
/// ended hypothesis (or, if none ended, its best live one), written as
/// [`greedy`] writes: the tokens with their `eos`, then 0.
pub fn beam(model: &Seq2Seq, src: &Source, max_len: usize, beam: Beam) -> Result<Decoded> {
    check_beam(max_len, beam)?;
    let enc = model.encode(src)?;
    let (h, c) = (enc.h0.clone(), enc.c0.clone());
    let mut step = CpuStep {
        model,
        src,
        enc,
        h,
        c,
    };
    search(model.config(), src.n, max_len, beam, &mut step)
}

/// The search of [`beam`] over `n` source rows, each step's logits from `step`.
pub(crate) fn search(
    cfg: &super::Seq2SeqConfig,
    n: usize,
    max_len: usize,
    beam: Beam,
    step: &mut dyn BeamStep,
) -> Result<Decoded> {
    check_beam(max_len, beam)?;
    let w = cfg.tgt_vocab;
    // Live hypotheses in row order; the state row k continues live[k].
    let mut live: Vec<Hyp> = (0..n)
        .map(|row| Hyp {
            row,
            tokens: Vec::new(),
            score: 0.0,
        })
        .collect();
    let mut ended: Vec<Vec<Hyp>> = vec![Vec::new(); n];
    let mut parents: Option<Vec<usize>> = None;
    for _ in 0..max_len {
        if live.is_empty() {
            break;
        }
        let nh = live.len();
        let prev: Vec<i64> = live
            .iter()
            .map(|x| x.tokens.last().copied().unwrap_or(cfg.bos as i64))
            .collect();
        let rows: Vec<usize> = live.iter().map(|x| x.row).collect();
        let logits = step.step(&rows, &prev, parents.as_deref())?;
        let mut next: Vec<Hyp> = Vec::new();
        let mut chosen: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < nh {
            // Every extension of row `row`'s live hypotheses i..j.
            let row = live[i].row;
            let mut j = i;
            let mut cands: Vec<(f64, usize, usize)> = Vec::new();
            while j < nh && live[j].row == row {
                let lp = log_softmax(&logits[j * w..(j + 1) * w]);
                cands.extend(
                    lp.iter()
                        .enumerate()
                        .map(|(tok, &v)| (live[j].score + v, j, tok)),
                );
                j += 1;
            }
            cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let first = next.len();
            for (score, parent, tok) in cands {
                if next.len() - first == beam.width || ended[row].len() == beam.width {
                    break;
                }
                let mut tokens = live[parent].tokens.clone();
                tokens.push(tok as i64);
                let hyp = Hyp { row, tokens, score };
                if tok == cfg.eos {
                    ended[row].push(hyp);
                } else {
                    next.push(hyp);
                    chosen.push(parent);
                }
            }
            if ended[row].len() == beam.width {
                // The row is done: its live hypotheses go.
                next.truncate(first);
                chosen.truncate(first);
            }
            i = j;
        }
        parents = Some(chosen);
        live = next;
    }
    let mut tokens = vec![0i64; n * max_len];
    for row in 0..n {
        let pick = best(ended[row].iter(), beam.length_norm)
            .or_else(|| best(live.iter().filter(|x| x.row == row), beam.length_norm));
        if let Some(p) = pick {
            tokens[row * max_len..row * max_len + p.tokens.len()].copy_from_slice(&p.tokens);
        }
    }
    Ok(Decoded { n, max_len, tokens })
}

/// The best-ranked hypothesis, the first of equals.
fn best<'a>(v: impl Iterator<Item = &'a Hyp>, norm: bool) -> Option<&'a Hyp> {
    v.fold(None, |b: Option<&Hyp>, x| match b {
        Some(b) if b.ranked(norm) >= x.ranked(norm) => Some(b),
        _ => Some(x),
    })
}

/// `log(softmax(row))` in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = mx + row.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln();
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// Rows `idx` of a `[L, N, H]` state, in that order.
fn gather_state(s: &Tensor, idx: &[usize]) -> Tensor {
    let (l, n, h) = (s.shape[0], s.shape[1], s.shape[2]);
    let mut out = Vec::with_capacity(l * idx.len() * h);
    for k in 0..l {
        for &i in idx {
            out.extend_from_slice(&s.data[(k * n + i) * h..(k * n + i + 1) * h]);
        }
    }
    Tensor::new(vec![l, idx.len(), h], out)
}
