//! One recurrent layer-direction over a whole sequence, forward and backward:
//! per step, one product and the cell update (threads splitting the batch,
//! see [`super::recur`]); the weight gradients and the input gradient as single
//! GEMMs over all steps. (The GPU path computes the input projection as one
//! GEMM over all steps; here LSTM and RNN fold it into each step's product.)
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

use super::dims::Dims;
use super::gemm::{add_column_sums, gemm, gemm_batch, Product};
use super::recur::{
    backward_part, forward_part, mask_into, BackwardPart, ForwardPart, Packed, StepInput,
    UnitsForward,
};
use super::scratch;
use super::threads::{for_parts, row_blocks, split_slots};
use crate::model::config::Cell;

/// Largest packed `[W_ih | W_hh]ᵀ` for which LSTM and RNN fold the input
/// projection into each step's product (a core's L2 cache on the machines measured).
pub const JOINT_MAX_BYTES: usize = 2 << 20;

/// Packed `W_hhᵀ` above which an LSTM's forward splits the units, not the
/// batch, across threads (a core's L2 on the machines measured).
pub const UNITS_SPLIT_MIN_BYTES: usize = 2 << 20;

/// Does this forward split the units across threads (else the batch)?
fn units_split(d: &Dims, joint: bool, threads: usize) -> bool {
    d.cell == Cell::Lstm
        && !joint
        && threads > 1
        && d.h >= 32
        && d.h * d.gh() * 4 > UNITS_SPLIT_MIN_BYTES
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
    /// Recurrent dropout's mask `[B, H]` on the state feeding `W_hh`, the
    /// same at every step (see [`crate::dropout`]); `None` outside training.
    pub h_mask: Option<&'a [f32]>,
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

impl Drop for Saved {
    /// Its buffers go back to the pool for the next step (see [`scratch`]).
    fn drop(&mut self) {
        scratch::recycle(std::mem::take(&mut self.gates));
        scratch::recycle(std::mem::take(&mut self.hs));
        scratch::recycle(std::mem::take(&mut self.cs));
    }
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
    let joint = d.cell != Cell::Gru && (d.i + d.h) * d.gh() * 4 <= JOINT_MAX_BYTES;
    let threads = rayon::current_num_threads();
    let units = units_split(d, joint, threads).then_some(threads);
    forward_with(d, w, x, lengths, h0, c0, joint, units)
}

/// [`forward`], with the choices made by the caller: folding the input
/// projection into each step's product (`joint`, LSTM and RNN only), and
/// splitting the units over `units` threads rather than the batch (LSTM, not joint).
#[allow(clippy::too_many_arguments)]
fn forward_with(
    d: &Dims,
    w: Weights,
    x: &[f32],
    lengths: Option<&[usize]>,
    h0: Option<&[f32]>,
    c0: Option<&[f32]>,
    joint: bool,
    units: Option<usize>,
) -> Saved {
    let (t_len, b, h, gh_w) = (d.t, d.b, d.h, d.gh());
    let bh = b * h;
    let gru = d.cell == Cell::Gru;
    assert!(!(gru && joint), "the GRU's input projection stays apart");
    // 1. The input projection for all steps, Gx = X·W_ihᵀ [T*B, G*H]: the GRU
    // always, with b_ih (r scales W_hn h + b_hn, so the two stay apart); LSTM
    // and RNN fold it into each step's product, [x_t | h_prev]·[W_ih | W_hh]ᵀ,
    // as long as those packed weights fit in a core's cache: each thread reads
    // them once a step, and beyond that (H=1024: 32 MiB) the stream costs more
    // than the separate GEMM (measured, BENCHMARKS.md). Where they compute it
    // apart, both biases start each step's product instead (no pass over Gx
    // to fill it with b_ih first).
    let mut gx = Vec::new();
    if !joint {
        // Written whole: by the GEMM (beta 0), or the GRU's bias rows first.
        gx = scratch::for_overwrite(t_len * b * gh_w);
        let beta = if gru {
            for row in gx.chunks_exact_mut(gh_w) {
                row.copy_from_slice(w.b_ih);
            }
            1.0
        } else {
            0.0
        };
        gemm(t_len * b, gh_w, d.i, x, false, w.w_ih, true, &mut gx, beta);
    }
    // What each step's product starts from: the GRU's b_hh, else both biases.
    let step_bias: Vec<f32> = if gru {
        w.b_hh.to_vec()
    } else {
        w.b_ih.iter().zip(w.b_hh).map(|(a, c)| a + c).collect()
    };
    // Every step writes its output slot of hs and cs, masked rows included
    // (they pass the state through); the first slot is h0 / c0 or zeros. The
    // saved gates too: zeros at masked rows (never read, but so a Saved is
    // the same whatever ran before).
    let mut s = Saved {
        gates: scratch::for_overwrite(t_len * b * d.saved()),
        hs: scratch::for_overwrite((t_len + 1) * bh),
        cs: if d.cell == Cell::Lstm {
            scratch::for_overwrite((t_len + 1) * bh)
        } else {
            Vec::new()
        },
    };
    let first = d.first_slot() * bh;
    match h0 {
        Some(h0) => s.hs[first..first + bh].copy_from_slice(h0),
        None => s.hs[first..first + bh].fill(0.0),
    }
    if d.cell == Cell::Lstm {
        match c0 {
            Some(c0) => s.cs[first..first + bh].copy_from_slice(c0),
            None => s.cs[first..first + bh].fill(0.0),
        }
    }
    // 2. The recurrence. LSTM with recurrent weights too large for a core's
    // cache: threads split the units (see `recur::UnitsForward`); else the batch.
    if let Some(threads) = units {
        assert!(
            d.cell == Cell::Lstm && !joint,
            "the units split is the LSTM's, projected"
        );
        UnitsForward {
            d,
            gx: &gx,
            bias: &step_bias,
            w_hh: w.w_hh,
            lengths,
            h_mask: w.h_mask,
            hs: &mut s.hs,
            cs: &mut s.cs,
            gates: &mut s.gates,
        }
        .run(threads);
        scratch::recycle(gx);
        return s;
    }
    let (packed, input) = if !joint {
        let packed = Packed::transposed(w.w_hh, gh_w, h);
        (packed, StepInput::Projected(&gx))
    } else {
        let packed = Packed::stacked_transposed(w.w_ih, d.i, w.w_hh, h, gh_w);
        (packed, StepInput::Joint(x, d.i))
    };
    let bounds = row_blocks(b, t_len * b * gh_w * (h + if joint { d.i } else { 0 }));
    let hs = split_slots(&mut s.hs, bh, &bounds, h);
    let mut cs = split_slots(&mut s.cs, bh, &bounds, h).into_iter();
    let gates = split_slots(&mut s.gates, b * d.saved(), &bounds, d.saved());
    let mut gates = gates.into_iter();
    let parts: Vec<ForwardPart> = hs
        .into_iter()
        .zip(bounds.windows(2))
        .map(|(hs, r)| ForwardPart {
            d,
            r0: r[0],
            rows: r[1] - r[0],
            bias: &step_bias,
            input,
            w: &packed,
            lengths,
            h_mask: w.h_mask,
            hs,
            cs: cs.next().unwrap_or_default(),
            gates: gates.next().unwrap_or_default(),
        })
        .collect();
    for_parts(parts, forward_part);
    scratch::recycle(gx);
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
    let gru = d.cell == Cell::Gru;
    // dG for the input projection, and (GRU only) the separate one for the recurrent projection.
    // Written whole by the steps (masked rows: zeros).
    let mut dgx = scratch::for_overwrite(t_len * b * gh_w);
    let mut dgh_sep = if gru {
        scratch::for_overwrite(t_len * b * gh_w)
    } else {
        Vec::new()
    };
    // The recurrence, threads splitting the batch (see `recur`).
    let packed = Packed::plain(w.w_hh, gh_w, h);
    let bounds = row_blocks(b, t_len * b * gh_w * h);
    let dgx_parts = split_slots(&mut dgx, b * gh_w, &bounds, gh_w);
    let mut dgh_parts = split_slots(&mut dgh_sep, b * gh_w, &bounds, gh_w).into_iter();
    let parts: Vec<BackwardPart> = dgx_parts
        .into_iter()
        .zip(bounds.windows(2))
        .map(|(dgx, r)| BackwardPart {
            d,
            r0: r[0],
            rows: r[1] - r[0],
            w: &packed,
            lengths,
            h_mask: w.h_mask,
            gates: &s.gates,
            hs: &s.hs,
            cs: &s.cs,
            dy,
            dhn: dhn.map(|v| &v[r[0] * h..r[1] * h]),
            dcn: dcn.map(|v| &v[r[0] * h..r[1] * h]),
            dgx,
            dgh: dgh_parts.next().unwrap_or_default(),
        })
        .collect();
    let mut dh0 = Vec::with_capacity(bh);
    let mut dc0 = Vec::new();
    for (dh, dc) in for_parts(parts, backward_part) {
        dh0.extend_from_slice(&dh);
        dc0.extend_from_slice(&dc);
    }
    let dgh = if gru { &dgh_sep } else { &dgx };
    // Weight gradients over all steps at once, and the input gradient: three
    // independent products, run together (see `gemm_batch`).
    // prev(t) for all t is one contiguous block: slots 0..T (forward) or 1..T+1 (reverse).
    let prev0 = d.prev_slot(0) * bh;
    let h_prev = &s.hs[prev0..prev0 + t_len * bh];
    // Under recurrent dropout the product saw the states with their mask.
    let masked = w.h_mask.map(|m| {
        let mut v = scratch::for_overwrite(t_len * bh);
        for (slot, prev) in v.chunks_exact_mut(bh).zip(h_prev.chunks_exact(bh)) {
            mask_into(slot, prev, m);
        }
        v
    });
    let mut products = vec![
        Product {
            m: gh_w,
            n: d.i,
            k: t_len * b,
            a: &dgx,
            ta: true,
            b: x,
            tb: false,
            c: g.w_ih,
        },
        Product {
            m: gh_w,
            n: h,
            k: t_len * b,
            a: dgh,
            ta: true,
            b: masked.as_deref().unwrap_or(h_prev),
            tb: false,
            c: g.w_hh,
        },
    ];
    if let Some(dx) = dx {
        products.push(Product {
            m: t_len * b,
            n: d.i,
            k: gh_w,
            a: &dgx,
            ta: false,
            b: w.w_ih,
            tb: false,
            c: dx,
        });
    }
    gemm_batch(products);
    if gru {
        add_column_sums(&dgx, gh_w, g.b_ih);
        add_column_sums(dgh, gh_w, g.b_hh);
    } else {
        // dG_h is dG_x: the same sums as b_ih's.
        let mut sums = vec![0.0f32; gh_w];
        add_column_sums(&dgx, gh_w, &mut sums);
        for ((bh, bi), s) in g.b_hh.iter_mut().zip(g.b_ih.iter_mut()).zip(&sums) {
            *bh += s;
            *bi += s;
        }
    }
    scratch::recycle(dgx);
    scratch::recycle(dgh_sep);
    if let Some(v) = masked {
        scratch::recycle(v);
    }
    Grads { dh0, dc0 }
}

/// Where backward accumulates the weight gradients (same shapes as [`Weights`]).
pub struct GradsOut<'a> {
    pub w_ih: &'a mut [f32],
    pub w_hh: &'a mut [f32],
    pub b_ih: &'a mut [f32],
    pub b_hh: &'a mut [f32],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Nonlinearity;
    use std::mem::take;

    /// Deterministic test values in `[-scale/2, scale/2)`, seeded by `seed`.
    fn val(n: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|k| (((k * 7919 + seed) % 1000) as f32 / 1000.0 - 0.5) * scale)
            .collect()
    }

    /// A layer-direction's weights, input, initial states and lengths
    /// (`1 + row % T`), deterministic; with `masked`, a recurrent dropout
    /// mask (every third unit dropped, the rest scaled by 1.5).
    struct Fixture {
        h_mask: Option<Vec<f32>>,
        w_ih: Vec<f32>,
        w_hh: Vec<f32>,
        b_ih: Vec<f32>,
        b_hh: Vec<f32>,
        x: Vec<f32>,
        h0: Vec<f32>,
        c0: Vec<f32>,
        lengths: Vec<usize>,
    }

    impl Fixture {
        fn new(d: &Dims, scale: f32, masked: bool) -> Self {
            let gw = d.gh();
            Fixture {
                h_mask: masked.then(|| {
                    (0..d.b * d.h)
                        .map(|k| if k % 3 == 0 { 0.0 } else { 1.5 })
                        .collect()
                }),
                w_ih: val(gw * d.i, 1, scale),
                w_hh: val(gw * d.h, 2, scale),
                b_ih: val(gw, 3, scale),
                b_hh: val(gw, 4, scale),
                x: val(d.t * d.b * d.i, 5, scale),
                h0: val(d.b * d.h, 6, scale),
                c0: val(d.b * d.h, 7, scale),
                lengths: (0..d.b).map(|r| 1 + r % d.t).collect(),
            }
        }

        fn weights(&self) -> Weights<'_> {
            Weights {
                w_ih: &self.w_ih,
                w_hh: &self.w_hh,
                b_ih: &self.b_ih,
                b_hh: &self.b_hh,
                h_mask: self.h_mask.as_deref(),
            }
        }

        /// [`forward_with`] from this fixture's states, with its lengths.
        fn forward(&self, d: &Dims, joint: bool, units: Option<usize>) -> Saved {
            let (h0, c0) = (Some(&self.h0[..]), Some(&self.c0[..]));
            let lengths = Some(&self.lengths[..]);
            forward_with(d, self.weights(), &self.x, lengths, h0, c0, joint, units)
        }
    }

    /// Runs forward and backward of one layer-direction; returns every output and gradient.
    fn run(d: &Dims, lengths: Option<&[usize]>, masked: bool) -> Vec<Vec<f32>> {
        let gw = d.gh();
        let f = Fixture::new(d, 0.4, masked);
        let (w, x, h0, c0) = (f.weights(), &f.x, &f.h0, &f.c0);
        let val = |n, seed| val(n, seed, 0.4);
        let s = forward(d, w, x, lengths, Some(h0), Some(c0));
        let dy = val(d.t * d.b * d.h, 8);
        let (dhn, dcn) = (val(d.b * d.h, 9), val(d.b * d.h, 10));
        let mut g = [
            vec![0.0; gw * d.i],
            vec![0.0; gw * d.h],
            vec![0.0; gw],
            vec![0.0; gw],
        ];
        let mut dx = vec![0.0; d.t * d.b * d.i];
        let [g0, g1, g2, g3] = &mut g;
        let r = backward(
            d,
            w,
            x,
            &s,
            lengths,
            &dy,
            Some(&dhn),
            Some(&dcn),
            GradsOut {
                w_ih: g0,
                w_hh: g1,
                b_ih: g2,
                b_hh: g3,
            },
            Some(&mut dx),
        );
        let mut s = s;
        let (hs, cs, gates) = (take(&mut s.hs), take(&mut s.cs), take(&mut s.gates));
        let mut out = vec![hs, cs, gates, dx, r.dh0, r.dc0];
        out.extend(g);
        out
    }

    /// LSTM and RNN fold the input projection into the step's product when the
    /// weights are small and not when they are large; both ways give the same
    /// states and saved gates (to rounding), with lengths and in reverse,
    /// with and without a recurrent dropout mask.
    #[test]
    fn joint_and_projected_steps_agree() {
        for (cell, masked) in [Cell::Lstm, Cell::Rnn]
            .into_iter()
            .flat_map(|c| [(c, false), (c, true)])
        {
            for reverse in [false, true] {
                let d = Dims {
                    cell,
                    act: Nonlinearity::Tanh,
                    t: 7,
                    b: 13,
                    i: 9,
                    h: 33,
                    reverse,
                };
                let f = Fixture::new(&d, 0.6, masked);
                let (a, p) = (f.forward(&d, true, None), f.forward(&d, false, None));
                for (u, v) in [(&a.hs, &p.hs), (&a.cs, &p.cs), (&a.gates, &p.gates)] {
                    assert_eq!(u.len(), v.len());
                    for (x, y) in u.iter().zip(v.iter()) {
                        assert!(
                            (x - y).abs() <= 1e-5,
                            "{cell:?} reverse={reverse} masked={masked}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    /// An LSTM with large recurrent weights splits the units across threads
    /// instead of the batch; every output is computed by the same arithmetic,
    /// so states and saved gates are the same bits (lengths, both directions,
    /// unit blocks of uneven sizes, with and without a recurrent dropout mask).
    #[test]
    fn the_units_split_gives_the_same_bits_as_the_batch_split() {
        for (reverse, masked) in [(false, false), (true, false), (false, true), (true, true)] {
            for (h, parts) in [(40, 3), (64, 2), (7, 2)] {
                let d = Dims {
                    cell: Cell::Lstm,
                    act: Nonlinearity::Tanh,
                    t: 6,
                    b: 13,
                    i: 5,
                    h,
                    reverse,
                };
                let f = Fixture::new(&d, 0.6, masked);
                let run = |units| f.forward(&d, false, units);
                let (rows, units) = (run(None), run(Some(parts)));
                for (u, v) in [
                    (&rows.hs, &units.hs),
                    (&rows.cs, &units.cs),
                    (&rows.gates, &units.gates),
                ] {
                    assert!(
                        u.iter()
                            .zip(v.iter())
                            .all(|(p, q)| p.to_bits() == q.to_bits()),
                        "h={h} parts={parts} reverse={reverse} masked={masked}"
                    );
                }
            }
        }
    }

    /// The threads split the batch; every row's arithmetic is the same whatever
    /// their number, so results are bit-identical with one thread and with four
    /// (odd batch, lengths, both directions, every cell, a recurrent dropout mask).
    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let (one, four) = (pool(1), pool(4));
        for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
            for reverse in [false, true] {
                let d = Dims {
                    cell,
                    act: Nonlinearity::Tanh,
                    t: 12,
                    b: 23,
                    i: 20,
                    h: 100,
                    reverse,
                };
                assert!(d.t * d.b * d.gh() * d.h >= 1 << 21, "too small to be split");
                let lengths: Vec<usize> = (0..d.b).map(|r| 1 + r % d.t).collect();
                for (lengths, masked) in [
                    (None, false),
                    (Some(&lengths[..]), false),
                    (Some(&lengths[..]), true),
                ] {
                    let a = one.install(|| run(&d, lengths, masked));
                    let b = four.install(|| run(&d, lengths, masked));
                    assert!(four.install(|| row_blocks(d.b, usize::MAX).len()) > 2);
                    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                        assert!(
                            x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                            "{cell:?} reverse={reverse} lengths={} masked={masked}: output {k} differs",
                            lengths.is_some()
                        );
                    }
                }
            }
        }
    }
}
