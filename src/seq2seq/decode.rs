//! Decoding a source into target tokens, one token at a time: the encoder
//! runs once, then each step feeds the previous token through the decoder
//! from the state the step before left (the memory and its attention the
//! same throughout). Greedy (the arg-max, ties to the lower id) as the
//! reference's `greedy`, and beam search.

use super::data::Source;
use super::model::Seq2Seq;
use crate::cpu::loss::argmax;
use crate::error::{Error, Result};

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
        let (_, logits) = model.read_out(&enc, &src.lengths, &d, 1);
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
