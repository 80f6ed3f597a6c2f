//! One recurrent layer-direction over a whole sequence, forward and backward,
//! structured as the GPU path is: one input-projection GEMM for all steps, one
//! recurrent GEMM per step with the cell update after it, and the weight
//! gradients as single GEMMs over all steps.
//!
//! ## Layout
//! Everything is time-major. States live in `[T+1, B, H]` buffers so that the
//! states before and after every step are contiguous for both directions:
//! forward: slot `t` = state before step `t`, slot `t+1` = after it;
//! reverse: slot `t+1` = state before step `t`, slot `t` = after it.
//! So `prev(t)` is the contiguous range of slots `0..T` (forward) or `1..T+1`
//! (reverse), which is what the `dW_hh` GEMM reads.
//!
//! Lengths follow PyTorch's packed sequences by masking: at a step `t >= len[b]`
//! the state of row `b` passes through unchanged, the output is 0 and the
//! gradient passes straight back.

use super::cell::*;
use super::gemm::{add_column_sums, gemm};
use super::small_gemm::{gemm_acc, SMALL_MAX_MACS};
use crate::model::config::{Cell, Nonlinearity};

/// Sizes and options of one layer-direction.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub cell: Cell,
    pub act: Nonlinearity,
    /// Steps.
    pub t: usize,
    /// Batch rows.
    pub b: usize,
    /// Input features.
    pub i: usize,
    /// Hidden units.
    pub h: usize,
    pub reverse: bool,
}

impl Dims {
    pub fn gh(&self) -> usize {
        self.cell.gates() * self.h
    }
    /// Values saved per row and step for backward.
    pub fn saved(&self) -> usize {
        match self.cell {
            Cell::Lstm => LSTM_SAVED * self.h,
            Cell::Gru => GRU_SAVED * self.h,
            Cell::Rnn => 0,
        }
    }
    /// State slot read by step `t`.
    pub fn prev_slot(&self, t: usize) -> usize {
        if self.reverse {
            t + 1
        } else {
            t
        }
    }
    /// State slot written by step `t`.
    pub fn out_slot(&self, t: usize) -> usize {
        if self.reverse {
            t
        } else {
            t + 1
        }
    }
    /// Slot of the initial state.
    pub fn first_slot(&self) -> usize {
        if self.reverse {
            self.t
        } else {
            0
        }
    }
    /// Slot of the final state (`h_n`).
    pub fn last_slot(&self) -> usize {
        if self.reverse {
            0
        } else {
            self.t
        }
    }
    /// Steps in processing order.
    pub fn order(&self) -> Box<dyn Iterator<Item = usize>> {
        if self.reverse {
            Box::new((0..self.t).rev())
        } else {
            Box::new(0..self.t)
        }
    }
}

/// Is step `t` of row `b` part of its sequence?
#[inline]
pub fn valid(lengths: Option<&[usize]>, b: usize, t: usize) -> bool {
    lengths.is_none_or(|l| t < l[b])
}

/// A layer-direction's weights, PyTorch layout.
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    /// `[G*H, I]`
    pub w_ih: &'a [f32],
    /// `[G*H, H]`
    pub w_hh: &'a [f32],
    /// `[G*H]`
    pub b_ih: &'a [f32],
    /// `[G*H]`
    pub b_hh: &'a [f32],
}

/// What forward keeps for backward.
#[derive(Clone, Debug, Default)]
pub struct Saved {
    /// `[T, B, saved]` gate activations (see `cell.rs`).
    pub gates: Vec<f32>,
    /// `[T+1, B, H]` hidden states (slots as in the module docs).
    pub hs: Vec<f32>,
    /// `[T+1, B, H]` cell states (LSTM only, else empty).
    pub cs: Vec<f32>,
}

/// Runs the layer-direction over `x [T, B, I]`. `h0`, `c0`: `[B, H]` or zeros.
pub fn forward(
    d: &Dims,
    w: Weights,
    x: &[f32],
    lengths: Option<&[usize]>,
    h0: Option<&[f32]>,
    c0: Option<&[f32]>,
) -> Saved {
    let (t_len, b, h, gh_w) = (d.t, d.b, d.h, d.gh());
    let bh = b * h;
    // 1. Input projection for all steps: Gx = X·W_ihᵀ + b_ih  [T*B, G*H].
    let mut gx = vec![0.0f32; t_len * b * gh_w];
    for row in gx.chunks_exact_mut(gh_w) {
        row.copy_from_slice(w.b_ih);
    }
    gemm(t_len * b, gh_w, d.i, x, false, w.w_ih, true, &mut gx, 1.0);

    let mut s = Saved {
        gates: vec![0.0; t_len * b * d.saved()],
        hs: vec![0.0; (t_len + 1) * bh],
        cs: if d.cell == Cell::Lstm {
            vec![0.0; (t_len + 1) * bh]
        } else {
            Vec::new()
        },
    };
    let first = d.first_slot() * bh;
    if let Some(h0) = h0 {
        s.hs[first..first + bh].copy_from_slice(h0);
    }
    if let (Some(c0), Cell::Lstm) = (c0, d.cell) {
        s.cs[first..first + bh].copy_from_slice(c0);
    }
    let mut gh = vec![0.0f32; b * gh_w];
    // Small per-step products use the register-blocked kernel, which reads
    // W_hhᵀ [H, G*H] row by row; large ones the packed GEMM.
    let small = b * gh_w * h <= SMALL_MAX_MACS;
    let mut w_hh_t = vec![0.0f32; if small { h * gh_w } else { 0 }];
    for (r, row) in w.w_hh.chunks_exact(h).enumerate().filter(|_| small) {
        for (c, &v) in row.iter().enumerate() {
            w_hh_t[c * gh_w + r] = v;
        }
    }
    let sv = d.saved();
    for t in d.order() {
        let (ps, os) = (d.prev_slot(t) * bh, d.out_slot(t) * bh);
        // 2. Recurrent projection: Gh = h_prev·W_hhᵀ + b_hh  [B, G*H].
        for row in gh.chunks_exact_mut(gh_w) {
            row.copy_from_slice(w.b_hh);
        }
        if small {
            gemm_acc(b, gh_w, h, &s.hs[ps..ps + bh], &w_hh_t, &mut gh);
        } else {
            gemm(
                b,
                gh_w,
                h,
                &s.hs[ps..ps + bh],
                false,
                w.w_hh,
                true,
                &mut gh,
                1.0,
            );
        }
        // Split the state buffer so that prev (read) and out (written) slots do not alias.
        let (lo, hi) = s.hs.split_at_mut(ps.max(os));
        let (hp, ho) = if ps < os {
            (&lo[ps..ps + bh], &mut hi[..bh])
        } else {
            (&hi[..bh], &mut lo[os..os + bh])
        };
        let (clo, chi) = if d.cell == Cell::Lstm {
            s.cs.split_at_mut(ps.max(os))
        } else {
            (&mut [][..], &mut [][..])
        };
        for r in 0..b {
            let hr = r * h..(r + 1) * h;
            let g_in = &gx[(t * b + r) * gh_w..(t * b + r + 1) * gh_w];
            let g_h = &gh[r * gh_w..(r + 1) * gh_w];
            let sav = &mut s.gates[(t * b + r) * sv..(t * b + r + 1) * sv];
            if !valid(lengths, r, t) {
                ho[hr.clone()].copy_from_slice(&hp[hr.clone()]);
                if d.cell == Cell::Lstm {
                    let (cp, co) = if ps < os {
                        (&clo[ps..ps + bh], &mut chi[..bh])
                    } else {
                        (&chi[..bh], &mut clo[os..os + bh])
                    };
                    co[hr.clone()].copy_from_slice(&cp[hr.clone()]);
                }
                continue;
            }
            match d.cell {
                Cell::Lstm => {
                    let (cp, co) = if ps < os {
                        (&clo[ps..ps + bh], &mut chi[..bh])
                    } else {
                        (&chi[..bh], &mut clo[os..os + bh])
                    };
                    lstm_step_forward(
                        g_in,
                        g_h,
                        &cp[hr.clone()],
                        &mut co[hr.clone()],
                        &mut ho[hr.clone()],
                        sav,
                    );
                }
                Cell::Gru => gru_step_forward(g_in, g_h, &hp[hr.clone()], &mut ho[hr.clone()], sav),
                Cell::Rnn => rnn_step_forward(g_in, g_h, d.act, &mut ho[hr.clone()]),
            }
        }
    }
    s
}

/// Gradients of one layer-direction.
#[derive(Clone, Debug)]
pub struct Grads {
    /// `[B, H]` gradient of the initial hidden state.
    pub dh0: Vec<f32>,
    /// `[B, H]` gradient of the initial cell state (LSTM; else empty).
    pub dc0: Vec<f32>,
}

/// Backpropagation through time.
///
/// - `dy [T, B, H]`: gradient of this direction's outputs (zero at masked steps);
/// - `dhn`, `dcn [B, H]`: gradient of the final states, if any;
/// - `g_*`: weight gradients, accumulated with `+=`;
/// - `dx [T, B, I]`: gradient of the input, accumulated with `+=` (both directions add into it),
///   or `None` for the bottom layer without an embedding.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: &Dims,
    w: Weights,
    x: &[f32],
    s: &Saved,
    lengths: Option<&[usize]>,
    dy: &[f32],
    dhn: Option<&[f32]>,
    dcn: Option<&[f32]>,
    g: GradsOut,
    dx: Option<&mut [f32]>,
) -> Grads {
    let (t_len, b, h, gh_w) = (d.t, d.b, d.h, d.gh());
    let bh = b * h;
    let sv = d.saved();
    let gru = d.cell == Cell::Gru;
    // dG for the input projection, and (GRU only) the separate one for the recurrent projection.
    let mut dgx = vec![0.0f32; t_len * b * gh_w];
    let mut dgh_sep = if gru {
        vec![0.0f32; t_len * b * gh_w]
    } else {
        Vec::new()
    };
    let mut dh_carry = dhn.map_or_else(|| vec![0.0; bh], |v| v.to_vec());
    let mut dc_carry = match (d.cell, dcn) {
        (Cell::Lstm, Some(v)) => v.to_vec(),
        (Cell::Lstm, None) => vec![0.0; bh],
        _ => Vec::new(),
    };
    let mut dh = vec![0.0f32; bh];
    let mut direct = vec![0.0f32; bh];
    let rev_order: Vec<usize> = d.order().collect();
    for &t in rev_order.iter().rev() {
        let (ps, os) = (d.prev_slot(t) * bh, d.out_slot(t) * bh);
        for (k, v) in dh.iter_mut().enumerate() {
            *v = dh_carry[k] + dy[t * bh + k];
        }
        for r in 0..b {
            let hr = r * h..(r + 1) * h;
            let gi = (t * b + r) * gh_w..(t * b + r + 1) * gh_w;
            if !valid(lengths, r, t) {
                // Pass-through: state unchanged, so its gradient goes straight back.
                direct[hr.clone()].copy_from_slice(&dh[hr]);
                continue;
            }
            let sav = &s.gates[(t * b + r) * sv..(t * b + r + 1) * sv];
            match d.cell {
                Cell::Lstm => {
                    lstm_step_backward(
                        sav,
                        &s.cs[ps..ps + bh][hr.clone()],
                        &s.cs[os..os + bh][hr.clone()],
                        &dh[hr.clone()],
                        &mut dc_carry[hr.clone()],
                        &mut dgx[gi],
                    );
                    direct[hr].fill(0.0);
                }
                Cell::Gru => {
                    gru_step_backward(
                        sav,
                        &s.hs[ps..ps + bh][hr.clone()],
                        &dh[hr.clone()],
                        &mut dgx[gi.clone()],
                        &mut dgh_sep[gi],
                        &mut direct[hr],
                    );
                }
                Cell::Rnn => {
                    rnn_step_backward(
                        &s.hs[os..os + bh][hr.clone()],
                        &dh[hr.clone()],
                        d.act,
                        &mut dgx[gi],
                    );
                    direct[hr].fill(0.0);
                }
            }
        }
        // dh_prev = dGh[t]·W_hh + direct part.
        let dgh_t = if gru {
            &dgh_sep[t * b * gh_w..(t + 1) * b * gh_w]
        } else {
            &dgx[t * b * gh_w..(t + 1) * b * gh_w]
        };
        dh_carry.copy_from_slice(&direct);
        if b * gh_w * h <= SMALL_MAX_MACS {
            gemm_acc(b, h, gh_w, dgh_t, w.w_hh, &mut dh_carry);
        } else {
            gemm(b, h, gh_w, dgh_t, false, w.w_hh, false, &mut dh_carry, 1.0);
        }
    }
    let dgh = if gru { &dgh_sep } else { &dgx };
    // Weight gradients over all steps at once.
    gemm(gh_w, d.i, t_len * b, &dgx, true, x, false, g.w_ih, 1.0);
    add_column_sums(&dgx, gh_w, g.b_ih);
    // prev(t) for all t is one contiguous block: slots 0..T (forward) or 1..T+1 (reverse).
    let prev0 = d.prev_slot(0) * bh;
    gemm(
        gh_w,
        h,
        t_len * b,
        dgh,
        true,
        &s.hs[prev0..prev0 + t_len * bh],
        false,
        g.w_hh,
        1.0,
    );
    add_column_sums(dgh, gh_w, g.b_hh);
    if let Some(dx) = dx {
        gemm(t_len * b, d.i, gh_w, &dgx, false, w.w_ih, false, dx, 1.0);
    }
    Grads {
        dh0: dh_carry,
        dc0: dc_carry,
    }
}

/// Where backward accumulates the weight gradients (same shapes as [`Weights`]).
pub struct GradsOut<'a> {
    pub w_ih: &'a mut [f32],
    pub w_hh: &'a mut [f32],
    pub b_ih: &'a mut [f32],
    pub b_hh: &'a mut [f32],
}
