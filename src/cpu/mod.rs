//! The CPU path: the reference every GPU result is checked against, and the
//! baseline it is benchmarked against. Whole-model forward and backward over
//! a batch, built from [`layer`] (one layer-direction over a sequence),
//! [`cell`] (one step), [`loss`] and [`optim`].

pub mod cell;
pub mod dims;
pub mod gemm;
pub mod layer;
pub mod loss;
pub mod optim;
pub mod recur;
pub mod scratch;
pub mod threads;

use crate::data::Inputs;
use crate::dropout::{Site, StepDropout};
use crate::model::config::{Cell, ModelConfig, OutputMode};
use crate::model::params::Layout;
use dims::Dims;
use gemm::{add_column_sums, gemm};
use layer::{GradsOut, Saved, Weights};

impl Drop for StackCache {
    /// The layer inputs go back to the pool for the next step (see [`scratch`];
    /// the saved activations go back as each [`Saved`] drops).
    fn drop(&mut self) {
        for v in self.inputs.drain(..) {
            scratch::recycle(v);
        }
    }
}

pub use crate::data::States;

/// What the recurrent stack's forward keeps for backward.
pub struct StackCache {
    pub t: usize,
    pub b: usize,
    pub lengths: Option<Vec<usize>>,
    /// Token ids `[B, T]` when the model has an embedding.
    pub tokens: Option<Vec<i64>>,
    /// Per layer, its input `[T, B, I_k]`; `inputs[L]` is the top layer's output `[T, B, D]`
    /// (zero at masked steps).
    pub inputs: Vec<Vec<f32>>,
    /// Per layer-direction (`layer * dirs + dir`).
    pub saved: Vec<Saved>,
    /// Final states `[L*dirs, B, H]` (`c_n` empty unless LSTM).
    pub h_n: Vec<f32>,
    pub c_n: Vec<f32>,
    /// The step's dropout, if it trains with some: backward draws the same masks.
    pub dropout: Option<StepDropout>,
}

impl StackCache {
    /// Moves the final states out (`c` only for LSTM); backward does not read them.
    pub fn take_final_states(&mut self) -> States {
        let c = std::mem::take(&mut self.c_n);
        States {
            h: Some(std::mem::take(&mut self.h_n)),
            c: (!c.is_empty()).then_some(c),
        }
    }
}

/// Everything the model's forward computed that backward needs.
pub struct ForwardCache {
    pub stack: StackCache,
    /// `[B, D]` head input for output `last`.
    pub feat: Vec<f32>,
    /// Model output, batch-first: `[B, O]` or `[B, T, O]`.
    pub out: Vec<f32>,
}

fn dims(cfg: &ModelConfig, k: usize, dir: usize, t: usize, b: usize) -> Dims {
    Dims {
        cell: cfg.cell,
        act: cfg.nonlinearity,
        t,
        b,
        i: cfg.layer_input(k),
        h: cfg.hidden,
        reverse: dir == 1,
    }
}

/// Layer-direction `idx`'s weights, and recurrent dropout's mask `h_mask` if any.
fn weights<'a>(
    layout: &Layout,
    p: &'a [f32],
    idx: usize,
    h_mask: Option<&'a [f32]>,
) -> Weights<'a> {
    let s = &layout.layers[idx];
    Weights {
        w_ih: &p[s.w_ih.clone()],
        w_hh: &p[s.w_hh.clone()],
        b_ih: &p[s.b_ih.clone()],
        b_hh: &p[s.b_hh.clone()],
        h_mask,
    }
}

/// Recurrent dropout's `[B, H]` mask of layer-direction `idx`, if the step has one.
fn recurrent_mask(dropout: Option<&StepDropout>, idx: usize, bh: usize) -> Option<Vec<f32>> {
    dropout.and_then(|d| d.mask(Site::Recurrent(idx), bh))
}

/// Batch-first `[B, T, F]` to time-major `[T, B, F]` (and back with `b`, `t` swapped).
pub fn transpose_bt(x: &[f32], b: usize, t: usize, f: usize) -> Vec<f32> {
    assert_eq!(x.len(), b * t * f, "transpose_bt: shape");
    // Written whole below: no zeroing first.
    let mut out = scratch::for_overwrite(x.len());
    for bi in 0..b {
        for ti in 0..t {
            out[(ti * b + bi) * f..(ti * b + bi + 1) * f]
                .copy_from_slice(&x[(bi * t + ti) * f..(bi * t + ti + 1) * f]);
        }
    }
    out
}

/// The recurrent stack alone (embedding included, no head) over a batch,
/// with a training step's dropout if given: the input and each layer's input
/// above the first multiplied by their masks (see [`crate::dropout`]).
/// Inputs must have been checked against the model.
pub fn forward_stack(
    cfg: &ModelConfig,
    layout: &Layout,
    p: &[f32],
    x: &Inputs,
    lengths: Option<&[usize]>,
    init: &States,
    dropout: Option<StepDropout>,
) -> StackCache {
    let (b, t) = (x.n(), x.steps());
    let (h, dirs, d_top) = (cfg.hidden, cfg.directions(), cfg.top_width());
    let bh = b * h;
    // Layer 0 input, time-major.
    let (mut x0, tokens) = match x {
        Inputs::Features { data, f, .. } => (transpose_bt(data, b, t, *f), None),
        Inputs::Tokens { ids, .. } => {
            let e = &p[layout
                .embed
                .clone()
                .expect("token inputs need an embedding")];
            let w = cfg.input;
            let mut x0 = vec![0.0; t * b * w];
            for bi in 0..b {
                for ti in 0..t {
                    let id = ids[bi * t + ti] as usize;
                    x0[(ti * b + bi) * w..(ti * b + bi + 1) * w]
                        .copy_from_slice(&e[id * w..(id + 1) * w]);
                }
            }
            (x0, Some(ids.clone()))
        }
    };
    if let Some(d) = &dropout {
        d.apply(Site::Input, &mut x0);
    }
    let mut inputs = vec![x0];
    let mut saved = Vec::with_capacity(cfg.layers * dirs);
    let mut h_n = vec![0.0; cfg.layers * dirs * bh];
    let mut c_n = if cfg.cell == Cell::Lstm {
        vec![0.0; cfg.layers * dirs * bh]
    } else {
        Vec::new()
    };
    for k in 0..cfg.layers {
        let mut y = scratch::zeroed(t * b * d_top);
        for dir in 0..dirs {
            let idx = k * dirs + dir;
            let d = dims(cfg, k, dir, t, b);
            let h0 = init.h.as_ref().map(|v| &v[idx * bh..(idx + 1) * bh]);
            let c0 = init.c.as_ref().map(|v| &v[idx * bh..(idx + 1) * bh]);
            let mask = recurrent_mask(dropout.as_ref(), idx, bh);
            let w = weights(layout, p, idx, mask.as_deref());
            let s = layer::forward(&d, w, &inputs[k], lengths, h0, c0);
            for ti in 0..t {
                let hs = &s.hs[d.out_slot(ti) * bh..(d.out_slot(ti) + 1) * bh];
                for bi in 0..b {
                    if dims::valid(lengths, bi, ti) {
                        let o = (ti * b + bi) * d_top + dir * h;
                        y[o..o + h].copy_from_slice(&hs[bi * h..(bi + 1) * h]);
                    }
                }
            }
            let last = d.last_slot() * bh;
            h_n[idx * bh..(idx + 1) * bh].copy_from_slice(&s.hs[last..last + bh]);
            if cfg.cell == Cell::Lstm {
                c_n[idx * bh..(idx + 1) * bh].copy_from_slice(&s.cs[last..last + bh]);
            }
            saved.push(s);
        }
        if let (Some(d), true) = (&dropout, k + 1 < cfg.layers) {
            d.apply(Site::Between(k + 1), &mut y);
        }
        inputs.push(y);
    }
    StackCache {
        t,
        b,
        lengths: lengths.map(|l| l.to_vec()),
        tokens,
        inputs,
        saved,
        h_n,
        c_n,
        dropout,
    }
}

/// Forward over a batch, with a training step's dropout if given (the
/// stack's, then the output's on the head's input; backward reads it from
/// the cache). Inputs must have been checked against the model.
pub fn forward(
    cfg: &ModelConfig,
    layout: &Layout,
    p: &[f32],
    x: &Inputs,
    lengths: Option<&[usize]>,
    init: &States,
    dropout: Option<StepDropout>,
) -> ForwardCache {
    let mut stack = forward_stack(cfg, layout, p, x, lengths, init, dropout);
    if let Some(d) = &dropout {
        if cfg.output == OutputMode::Sequence {
            d.apply(Site::Output, &mut stack.inputs[cfg.layers]);
        }
    }
    let (b, t) = (stack.b, stack.t);
    let (h, dirs, d_top) = (cfg.hidden, cfg.directions(), cfg.top_width());
    let bh = b * h;
    let h_n = &stack.h_n;
    let inputs = &stack.inputs;
    // Head.
    let (w, bias) = (&p[layout.head_w.clone()], &p[layout.head_b.clone()]);
    let o = cfg.out_features;
    let mut feat = Vec::new();
    let out = match cfg.output {
        OutputMode::Last => {
            let top = (cfg.layers - 1) * dirs;
            feat = vec![0.0; b * d_top];
            for dir in 0..dirs {
                let hn = &h_n[(top + dir) * bh..(top + dir + 1) * bh];
                for bi in 0..b {
                    feat[bi * d_top + dir * h..bi * d_top + (dir + 1) * h]
                        .copy_from_slice(&hn[bi * h..(bi + 1) * h]);
                }
            }
            if let Some(d) = &dropout {
                d.apply(Site::Output, &mut feat);
            }
            let mut out = vec![0.0; b * o];
            for row in out.chunks_exact_mut(o) {
                row.copy_from_slice(bias);
            }
            gemm(b, o, d_top, &feat, false, w, true, &mut out, 1.0);
            out
        }
        OutputMode::Sequence => {
            let mut out_tm = vec![0.0; t * b * o];
            for row in out_tm.chunks_exact_mut(o) {
                row.copy_from_slice(bias);
            }
            gemm(
                t * b,
                o,
                d_top,
                &inputs[cfg.layers],
                false,
                w,
                true,
                &mut out_tm,
                1.0,
            );
            transpose_bt(&out_tm, t, b, o)
        }
    };
    ForwardCache { stack, feat, out }
}

/// Backward from `dout` (batch-first, shaped like the output), accumulating
/// into `grads` (laid out like the parameters). Optional gradients of the
/// final states `[L*dirs, B, H]` join those from the head.
pub fn backward(
    cfg: &ModelConfig,
    layout: &Layout,
    p: &[f32],
    fc: &ForwardCache,
    dout: &[f32],
    grads: &mut [f32],
    dstates: &States,
) -> States {
    let (t, b) = (fc.stack.t, fc.stack.b);
    let (h, dirs, d_top, o) = (
        cfg.hidden,
        cfg.directions(),
        cfg.top_width(),
        cfg.out_features,
    );
    let bh = b * h;
    let lengths = fc.stack.lengths.as_deref();
    let w = &p[layout.head_w.clone()];
    // Head backward: into dy of the top layer, or the final states.
    let mut dhn = dstates
        .h
        .clone()
        .unwrap_or_else(|| vec![0.0; cfg.layers * dirs * bh]);
    let dcn = dstates.c.clone();
    let mut dy = vec![0.0f32; t * b * d_top];
    match cfg.output {
        OutputMode::Last => {
            gemm(
                o,
                d_top,
                b,
                dout,
                true,
                &fc.feat,
                false,
                &mut grads[layout.head_w.clone()],
                1.0,
            );
            add_column_sums(dout, o, &mut grads[layout.head_b.clone()]);
            let mut dfeat = vec![0.0; b * d_top];
            gemm(b, d_top, o, dout, false, w, false, &mut dfeat, 0.0);
            if let Some(d) = &fc.stack.dropout {
                d.apply(Site::Output, &mut dfeat);
            }
            let top = (cfg.layers - 1) * dirs;
            for dir in 0..dirs {
                for bi in 0..b {
                    let dst = (top + dir) * bh + bi * h;
                    for j in 0..h {
                        dhn[dst + j] += dfeat[bi * d_top + dir * h + j];
                    }
                }
            }
        }
        OutputMode::Sequence => {
            let dout_tm = transpose_bt(dout, b, t, o);
            gemm(
                o,
                d_top,
                t * b,
                &dout_tm,
                true,
                &fc.stack.inputs[cfg.layers],
                false,
                &mut grads[layout.head_w.clone()],
                1.0,
            );
            add_column_sums(&dout_tm, o, &mut grads[layout.head_b.clone()]);
            gemm(t * b, d_top, o, &dout_tm, false, w, false, &mut dy, 0.0);
            mask_steps(&mut dy, lengths, t, b, d_top);
            if let Some(d) = &fc.stack.dropout {
                d.apply(Site::Output, &mut dy);
            }
        }
    }
    let (ds, _) = backward_stack(
        cfg,
        layout,
        p,
        &fc.stack,
        dy,
        &dhn,
        dcn.as_deref(),
        grads,
        false,
    );
    ds
}

/// Backward through the recurrent stack (and embedding) from `dy [T, B, D]`
/// (gradient of the top layer's output, time-major) and `dhn`/`dcn [L*dirs, B, H]`.
/// Accumulates weight gradients into `grads`; returns the gradients of the
/// initial states and, if `want_dx`, of the layer-0 input `[T, B, I]`.
#[allow(clippy::too_many_arguments)]
pub fn backward_stack(
    cfg: &ModelConfig,
    layout: &Layout,
    p: &[f32],
    fc: &StackCache,
    mut dy: Vec<f32>,
    dhn: &[f32],
    dcn: Option<&[f32]>,
    grads: &mut [f32],
    want_dx: bool,
) -> (States, Vec<f32>) {
    let (t, b) = (fc.t, fc.b);
    let (h, dirs, d_top) = (cfg.hidden, cfg.directions(), cfg.top_width());
    let bh = b * h;
    let lengths = fc.lengths.as_deref();
    let mut dx0 = Vec::new();
    let mut dh0 = vec![0.0; cfg.layers * dirs * bh];
    let mut dc0 = if cfg.cell == Cell::Lstm {
        vec![0.0; cfg.layers * dirs * bh]
    } else {
        Vec::new()
    };
    for k in (0..cfg.layers).rev() {
        let need_dx = k > 0 || cfg.vocab.is_some() || want_dx;
        let mut dx = if need_dx {
            scratch::zeroed(t * b * cfg.layer_input(k))
        } else {
            Vec::new()
        };
        for dir in 0..dirs {
            let idx = k * dirs + dir;
            let d = dims(cfg, k, dir, t, b);
            let mut dy_dir = scratch::for_overwrite(t * bh);
            for (r, row) in dy_dir.chunks_exact_mut(h).enumerate() {
                row.copy_from_slice(&dy[r * d_top + dir * h..r * d_top + (dir + 1) * h]);
            }
            let slots = &layout.layers[idx];
            // The four gradient ranges are disjoint and in order w_ih, w_hh, b_ih, b_hh.
            let (_, rest) = grads.split_at_mut(slots.w_ih.start);
            let (g_wih, rest) = rest.split_at_mut(slots.w_ih.len());
            let (g_whh, rest) = rest.split_at_mut(slots.w_hh.len());
            let (g_bih, rest) = rest.split_at_mut(slots.b_ih.len());
            let g_bhh = &mut rest[..slots.b_hh.len()];
            let g = GradsOut {
                w_ih: g_wih,
                w_hh: g_whh,
                b_ih: g_bih,
                b_hh: g_bhh,
            };
            let mask = recurrent_mask(fc.dropout.as_ref(), idx, bh);
            let r = layer::backward(
                &d,
                weights(layout, p, idx, mask.as_deref()),
                &fc.inputs[k],
                &fc.saved[idx],
                lengths,
                &dy_dir,
                Some(&dhn[idx * bh..(idx + 1) * bh]),
                dcn.map(|v| &v[idx * bh..(idx + 1) * bh]),
                g,
                if need_dx { Some(&mut dx) } else { None },
            );
            scratch::recycle(dy_dir);
            dh0[idx * bh..(idx + 1) * bh].copy_from_slice(&r.dh0);
            if cfg.cell == Cell::Lstm {
                dc0[idx * bh..(idx + 1) * bh].copy_from_slice(&r.dc0);
            }
        }
        if let Some(d) = &fc.dropout {
            if need_dx {
                d.apply(if k > 0 { Site::Between(k) } else { Site::Input }, &mut dx);
            }
        }
        if k > 0 {
            mask_steps(&mut dx, lengths, t, b, d_top);
            scratch::recycle(std::mem::replace(&mut dy, dx));
        } else if let (Some(ids), Some(er)) = (&fc.tokens, &layout.embed) {
            // Embedding backward: scatter-add of the input gradient into the rows used.
            let wdt = cfg.input;
            let ge = &mut grads[er.clone()];
            for bi in 0..b {
                for ti in 0..t {
                    let id = ids[bi * t + ti] as usize;
                    let src = &dx[(ti * b + bi) * wdt..(ti * b + bi + 1) * wdt];
                    for (g, v) in ge[id * wdt..(id + 1) * wdt].iter_mut().zip(src) {
                        *g += v;
                    }
                }
            }
        } else {
            dx0 = dx;
        }
    }
    scratch::recycle(dy);
    (
        States {
            h: Some(dh0),
            c: if cfg.cell == Cell::Lstm {
                Some(dc0)
            } else {
                None
            },
        },
        dx0,
    )
}

/// Zeroes rows of a time-major `[T, B, F]` buffer at steps outside each sequence.
fn mask_steps(v: &mut [f32], lengths: Option<&[usize]>, t: usize, b: usize, f: usize) {
    if let Some(l) = lengths {
        for ti in 0..t {
            for bi in 0..b {
                if ti >= l[bi] {
                    v[(ti * b + bi) * f..(ti * b + bi + 1) * f].fill(0.0);
                }
            }
        }
    }
}

/// Positions of a batch-first output that count in the loss: `[B]` (last) or `[B*T]` (sequence).
pub fn loss_mask(cfg: &ModelConfig, b: usize, t: usize, lengths: Option<&[usize]>) -> Vec<bool> {
    match cfg.output {
        OutputMode::Last => vec![true; b],
        OutputMode::Sequence => (0..b * t)
            .map(|p| lengths.is_none_or(|l| p % t < l[p / t]))
            .collect(),
    }
}
