//! [`Seq2Seq`]: an encoder–decoder's configuration and flat parameters, and
//! its CPU path: teacher-forced forward, the loss and every gradient,
//! training steps and evaluation. The encoder and the decoder are the
//! recurrent stack op ([`crate::RecurrentStack`]), the attention is
//! `attention.rs`; decoding is `decode.rs`.

use super::attention::{self, Dims};
use super::config::{Attention, Seq2SeqConfig, Seq2SeqLayout};
use super::data::{Seq2SeqData, Source};
use crate::cpu::gemm::{add_column_sums, gemm};
use crate::cpu::{self, loss::loss_and_grad};
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::stack::StackForward;
use crate::tensor::Tensor;
use crate::Loss;

/// An encoder–decoder model.
#[derive(Clone, Debug, PartialEq)]
pub struct Seq2Seq {
    cfg: Seq2SeqConfig,
    layout: Seq2SeqLayout,
    params: Vec<f32>,
}

/// Loss and token accuracy over a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy over the target positions (not -100).
    pub loss: f32,
    /// Fraction of those positions whose arg-max is the target.
    pub accuracy: f32,
    /// Positions counted.
    pub tokens: usize,
}

/// The encoder's results that decoding and backward read.
pub(crate) struct Encoded {
    pub fwd: StackForward,
    /// `[N, S, Hd]` the memory (zero past each length).
    pub m: Vec<f32>,
    /// The decoder's initial states `[L, N, Hd]`.
    pub h0: Tensor,
    pub c0: Option<Tensor>,
}

/// One teacher-forced forward, kept for backward.
struct Pass {
    enc: Encoded,
    dec: StackForward,
    /// `[N, T, Hd]` decoder outputs.
    d: Vec<f32>,
    att: attention::Forward,
    /// `[N·T, W]`.
    logits: Vec<f32>,
}

impl Seq2Seq {
    /// Fresh weights drawn as PyTorch's modules draw them: embeddings
    /// N(0, 1), the stacks U(±1/√units), the linear layers U(±1/√fan_in).
    pub fn new(cfg: Seq2SeqConfig, seed: u64) -> Result<Seq2Seq> {
        cfg.validate()?;
        let layout = Seq2SeqLayout::new(&cfg);
        let mut p = vec![0.0f32; layout.total];
        let mut rng = Rng::new(seed);
        let hd = cfg.width();
        for r in [&layout.src_embed, &layout.tgt_embed] {
            p[r.clone()]
                .iter_mut()
                .for_each(|v| *v = rng.normal() as f32);
        }
        p[layout.encoder.clone()].copy_from_slice(&cfg.encoder().init(rng.next_u64()));
        p[layout.decoder.clone()].copy_from_slice(&cfg.decoder().init(rng.next_u64()));
        let linear = [
            (layout.attn.clone(), hd),
            (layout.combine_w.clone(), 2 * hd),
            (layout.combine_b.clone(), 2 * hd),
            (Some(layout.head_w.clone()), hd),
            (Some(layout.head_b.clone()), hd),
        ];
        for (r, fan_in) in linear {
            let k = 1.0 / (fan_in as f32).sqrt();
            if let Some(r) = r {
                p[r].iter_mut().for_each(|v| *v = rng.uniform(-k, k));
            }
        }
        Ok(Seq2Seq {
            cfg,
            layout,
            params: p,
        })
    }

    /// A model from its flat parameters (in [`Seq2SeqLayout`] order).
    pub fn from_params(cfg: Seq2SeqConfig, params: Vec<f32>) -> Result<Seq2Seq> {
        cfg.validate()?;
        let layout = Seq2SeqLayout::new(&cfg);
        if params.len() != layout.total {
            return Err(Error::shape(
                "seq2seq parameters",
                format!("[{}]", layout.total),
                &[params.len()],
            ));
        }
        Error::check_finite("seq2seq parameters", &params)?;
        Ok(Seq2Seq {
            cfg,
            layout,
            params,
        })
    }

    pub fn config(&self) -> &Seq2SeqConfig {
        &self.cfg
    }
    pub fn layout(&self) -> &Seq2SeqLayout {
        &self.layout
    }
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    fn weights(&self) -> attention::Weights<'_> {
        let l = &self.layout;
        let at = |r: &Option<std::ops::Range<usize>>| r.clone().map(|r| &self.params[r]);
        attention::Weights {
            w_a: at(&l.attn),
            w_c: at(&l.combine_w),
            b_c: at(&l.combine_b),
        }
    }

    /// Runs the encoder over `src`: the memory and the decoder's initial
    /// states (the final states of each layer, directions concatenated).
    pub(crate) fn encode(&self, src: &Source) -> Result<Encoded> {
        src.check(&self.cfg)?;
        let (n, s, hd) = (src.n, src.s, self.cfg.width());
        let x = embed(
            &self.params[self.layout.src_embed.clone()],
            self.cfg.embed,
            &src.ids,
            n,
            s,
            Some(&src.lengths),
        );
        let fwd = self.cfg.encoder().forward(
            &self.params[self.layout.encoder.clone()],
            &x,
            Some(&src.lengths),
            None,
            None,
        )?;
        let m = cpu::transpose_bt(&fwd.y.data, s, n, hd);
        let h0 = self.bridge(&fwd.h_n);
        let c0 = fwd.c_n.as_ref().map(|c| self.bridge(c));
        Ok(Encoded { fwd, m, h0, c0 })
    }

    /// `[L·D, N, H]` encoder final states → `[L, N, D·H]`: layer l's
    /// directions side by side (the reference's `bridge`).
    fn bridge(&self, h: &Tensor) -> Tensor {
        self.bridge_copy(h, true)
    }

    /// The gradient of [`Seq2Seq::bridge`]'s output back to its input.
    fn unbridge(&self, g: &Tensor) -> Tensor {
        self.bridge_copy(g, false)
    }

    /// Moves each layer-direction's `[N, H]` rows between the encoder's
    /// `[L·D, N, H]` and the decoder's `[L, N, D·H]` layout, either way.
    fn bridge_copy(&self, x: &Tensor, to_decoder: bool) -> Tensor {
        let (l, dirs, hh) = (self.cfg.layers, self.cfg.directions(), self.cfg.hidden);
        let n = x.shape[1];
        let mut out = vec![0.0; x.data.len()];
        for k in 0..l {
            for d in 0..dirs {
                for b in 0..n {
                    let enc = ((k * dirs + d) * n + b) * hh;
                    let dec = (k * n + b) * dirs * hh + d * hh;
                    let (from, to) = if to_decoder { (enc, dec) } else { (dec, enc) };
                    out[to..to + hh].copy_from_slice(&x.data[from..from + hh]);
                }
            }
        }
        let shape = if to_decoder {
            vec![l, n, dirs * hh]
        } else {
            vec![l * dirs, n, hh]
        };
        Tensor::new(shape, out)
    }

    /// The decoder's outputs after attention, as logits `[N·T', W]`, for
    /// decoder outputs `d [N, T', Hd]` over the memory `m [N, S, Hd]`.
    pub(crate) fn read_out(
        &self,
        m: &[f32],
        lengths: &[usize],
        d: &[f32],
        t: usize,
    ) -> (attention::Forward, Vec<f32>) {
        let (n, hd, w) = (lengths.len(), self.cfg.width(), self.cfg.tgt_vocab);
        let dims = Dims {
            n,
            s: m.len() / (n * hd),
            t,
            hd,
        };
        let att = attention::forward(self.cfg.attention, &self.weights(), dims, m, lengths, d);
        let mut logits = vec![0.0; n * t * w];
        gemm(
            n * t,
            w,
            hd,
            &att.o,
            false,
            &self.params[self.layout.head_w.clone()],
            true,
            &mut logits,
            0.0,
        );
        let bias = &self.params[self.layout.head_b.clone()];
        for row in logits.chunks_exact_mut(w) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
        (att, logits)
    }

    /// The decoder over `tokens [N, T]` (batch-first) from `h0`/`c0`:
    /// its stack forward and its outputs `[N, T, Hd]`.
    pub(crate) fn decode_steps(
        &self,
        tokens: &[i64],
        n: usize,
        t: usize,
        h0: &Tensor,
        c0: Option<&Tensor>,
    ) -> Result<(StackForward, Vec<f32>)> {
        let x = embed(
            &self.params[self.layout.tgt_embed.clone()],
            self.cfg.embed,
            tokens,
            n,
            t,
            None,
        );
        let dec = self.cfg.decoder().forward(
            &self.params[self.layout.decoder.clone()],
            &x,
            None,
            Some(h0),
            c0,
        )?;
        let d = cpu::transpose_bt(&dec.y.data, t, n, self.cfg.width());
        Ok((dec, d))
    }

    fn pass(&self, data: &Seq2SeqData) -> Result<Pass> {
        data.check(&self.cfg)?;
        let (n, t) = (data.n(), data.t);
        let enc = self.encode(&data.src)?;
        let (dec, d) = self.decode_steps(&data.tgt_in, n, t, &enc.h0, enc.c0.as_ref())?;
        let (att, logits) = self.read_out(&enc.m, &data.src.lengths, &d, t);
        Ok(Pass {
            enc,
            dec,
            d,
            att,
            logits,
        })
    }

    /// Teacher-forced logits `[N, T, tgt_vocab]`.
    pub fn forward(&self, data: &Seq2SeqData) -> Result<Tensor> {
        let p = self.pass(data)?;
        Ok(Tensor::new(
            vec![data.n(), data.t, self.cfg.tgt_vocab],
            p.logits,
        ))
    }

    /// Where the decoder looks: the attention weights `[N, T, S]` of the
    /// teacher-forced forward over `data` (each row sums to 1 over the
    /// source's length, 0 past it); `None` without attention. Over the tokens
    /// a decoding produced (as `tgt_in`, after `bos`), they are the weights
    /// that decoding used.
    pub fn attention_weights(&self, data: &Seq2SeqData) -> Result<Option<Tensor>> {
        if !self.attends() {
            return Ok(None);
        }
        let p = self.pass(data)?;
        Ok(Some(Tensor::new(
            vec![data.n(), data.t, data.src.s],
            p.att.a,
        )))
    }

    /// The mean cross-entropy over the positions where `tgt_out` is not
    /// -100, and its gradient for every parameter (in layout order).
    pub fn loss_and_gradients(&self, data: &Seq2SeqData) -> Result<(f32, Vec<f32>)> {
        let p = self.pass(data)?;
        let (n, t, s) = (data.n(), data.t, data.src.s);
        let (hd, w, l) = (self.cfg.width(), self.cfg.tgt_vocab, &self.layout);
        let rows = n * t;
        let mut dl = vec![0.0; rows * w];
        let mask = vec![true; rows];
        let loss = loss_and_grad(
            Loss::Ce,
            &p.logits,
            w,
            &mask,
            Some(&data.tgt_out),
            None,
            &mut dl,
        );
        let mut g = vec![0.0f32; l.total];
        // The head: logits = o·W_hᵀ + b_h.
        gemm(
            w,
            hd,
            rows,
            &dl,
            true,
            &p.att.o,
            false,
            &mut g[l.head_w.clone()],
            1.0,
        );
        add_column_sums(&dl, w, &mut g[l.head_b.clone()]);
        let mut d_o = vec![0.0; rows * hd];
        gemm(
            rows,
            hd,
            w,
            &dl,
            false,
            &self.params[l.head_w.clone()],
            false,
            &mut d_o,
            0.0,
        );
        // Attention.
        let (d_m, d_d) = {
            let dims = Dims { n, s, t, hd };
            attention::backward(
                self.cfg.attention,
                &self.weights(),
                split_attention_grads(&mut g, l),
                dims,
                &p.enc.m,
                &data.src.lengths,
                &p.d,
                &p.att,
                &d_o,
            )
        };
        // The decoder, from its outputs' gradient (time-major).
        let dec = self.cfg.decoder();
        let dy = Tensor::new(vec![t, n, hd], cpu::transpose_bt(&d_d, n, t, hd));
        let gd = dec.backward(&self.params[l.decoder.clone()], &p.dec, &dy, None, None)?;
        g[l.decoder.clone()].copy_from_slice(&gd.dparams);
        scatter(
            &mut g[l.tgt_embed.clone()],
            self.cfg.embed,
            &gd.dx.data,
            &data.tgt_in,
            n,
            t,
            None,
        );
        // The encoder, from the memory's gradient and the initial states'.
        let enc = self.cfg.encoder();
        let dy = Tensor::new(vec![s, n, hd], cpu::transpose_bt(&d_m, n, s, hd));
        let dh = self.unbridge(&gd.dh0);
        let dc = gd.dc0.as_ref().map(|c| self.unbridge(c));
        let ge = enc.backward(
            &self.params[l.encoder.clone()],
            &p.enc.fwd,
            &dy,
            Some(&dh),
            dc.as_ref(),
        )?;
        g[l.encoder.clone()].copy_from_slice(&ge.dparams);
        scatter(
            &mut g[l.src_embed.clone()],
            self.cfg.embed,
            &ge.dx.data,
            &data.src.ids,
            n,
            s,
            Some(&data.src.lengths),
        );
        Ok((loss, g))
    }

    /// One optimizer step on `data` (clipping the gradient norm to `clip`
    /// if given); returns the batch's loss. A step whose loss or gradient
    /// norm is not finite is refused (`Error::Diverged`, with the loss, or
    /// the norm if the loss is finite) and leaves the weights as they were,
    /// as `Model::train_step` does.
    pub fn train_step(
        &mut self,
        data: &Seq2SeqData,
        opt: &mut Optimizer,
        clip: Option<f32>,
    ) -> Result<f32> {
        let (loss, mut g) = self.loss_and_gradients(data)?;
        let norm = match clip {
            Some(c) => cpu::optim::clip_grad_norm(&mut g, c),
            None => g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt() as f32,
        };
        if !loss.is_finite() || !norm.is_finite() {
            return Err(Error::Diverged {
                step: opt.step as usize + 1,
                loss: if loss.is_finite() { norm } else { loss },
            });
        }
        opt.update(&mut self.params, &g);
        Ok(loss)
    }

    /// Loss and token accuracy over `data`, in batches of `batch`.
    pub fn evaluate(&self, data: &Seq2SeqData, batch: usize) -> Result<Evaluation> {
        evaluate_with(data, batch, self.cfg.tgt_vocab, |b| {
            Ok(self.pass(b)?.logits)
        })
    }

    /// Does the model attend?
    pub fn attends(&self) -> bool {
        self.cfg.attention != Attention::None
    }
}

/// Loss and token accuracy over `data` in batches of `batch`, the
/// teacher-forced logits `[n·T, W]` (batch-first rows) of each batch from
/// `logits`: either path's evaluation.
pub(crate) fn evaluate_with(
    data: &Seq2SeqData,
    batch: usize,
    w: usize,
    mut logits: impl FnMut(&Seq2SeqData) -> Result<Vec<f32>>,
) -> Result<Evaluation> {
    if batch == 0 {
        return Err(Error::Argument("the batch size must be at least 1".into()));
    }
    let (mut total, mut right, mut tokens) = (0.0f64, 0usize, 0usize);
    for start in (0..data.n()).step_by(batch) {
        let idx: Vec<usize> = (start..(start + batch).min(data.n())).collect();
        let b = data.gather(&idx);
        let z = logits(&b)?;
        let mask = vec![true; b.n() * b.t];
        let mut dl = vec![0.0; z.len()];
        let loss = loss_and_grad(Loss::Ce, &z, w, &mask, Some(&b.tgt_out), None, &mut dl);
        let (c, counted) = cpu::loss::correct(&z, w, &mask, &b.tgt_out);
        total += loss as f64 * counted as f64;
        right += c;
        tokens += counted;
    }
    let per = |v: f64| {
        if tokens == 0 {
            0.0
        } else {
            (v / tokens as f64) as f32
        }
    };
    Ok(Evaluation {
        loss: per(total),
        accuracy: per(right as f64),
        tokens,
    })
}

/// The attention gradients' parts of `g`, each `None` where the kind has none.
fn split_attention_grads<'a>(g: &'a mut [f32], l: &Seq2SeqLayout) -> attention::Grads<'a> {
    // attn, combine.weight, combine.bias are adjacent, in that order.
    let Some(cw) = l.combine_w.clone() else {
        return attention::Grads {
            w_a: None,
            w_c: None,
            b_c: None,
        };
    };
    let cb = l
        .combine_b
        .clone()
        .expect("combine.bias with combine.weight");
    let start = l.attn.as_ref().map_or(cw.start, |a| a.start);
    let part = &mut g[start..cb.end];
    let (a, rest) = part.split_at_mut(cw.start - start);
    let (w, b) = rest.split_at_mut(cw.len());
    attention::Grads {
        w_a: (!a.is_empty()).then_some(a),
        w_c: Some(w),
        b_c: Some(b),
    }
}

/// Rows of `table [V, E]` for `ids [N, steps]`, time-major `[steps, N, E]`
/// (zeros past a row's length, where the stack never reads).
fn embed(
    table: &[f32],
    e: usize,
    ids: &[i64],
    n: usize,
    steps: usize,
    lengths: Option<&[usize]>,
) -> Tensor {
    let mut x = vec![0.0; steps * n * e];
    for b in 0..n {
        let len = lengths.map_or(steps, |l| l[b]);
        for t in 0..len {
            let id = ids[b * steps + t] as usize;
            x[(t * n + b) * e..(t * n + b + 1) * e].copy_from_slice(&table[id * e..(id + 1) * e]);
        }
    }
    Tensor::new(vec![steps, n, e], x)
}

/// The embedding's gradient: `dx [steps, N, E]` added to the rows of `ids`.
fn scatter(
    g: &mut [f32],
    e: usize,
    dx: &[f32],
    ids: &[i64],
    n: usize,
    steps: usize,
    lengths: Option<&[usize]>,
) {
    for b in 0..n {
        let len = lengths.map_or(steps, |l| l[b]);
        for t in 0..len {
            let id = ids[b * steps + t] as usize;
            let src = &dx[(t * n + b) * e..(t * n + b + 1) * e];
            for (gv, &v) in g[id * e..(id + 1) * e].iter_mut().zip(src) {
                *gv += v;
            }
        }
    }
}
