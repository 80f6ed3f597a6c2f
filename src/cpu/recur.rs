//! The recurrence of one layer-direction on the CPU. Forward, per step: the
//! product of `[x_t | h_prev]` with the packed `[W_ih | W_hh]ᵀ` (LSTM, RNN: the
//! input projection folded into the step, so no `[T, B, G·H]` buffer is
//! written and read back; the GRU multiplies `h_prev` by `W_hhᵀ` alone, since
//! `r` scales that part, and reads input projections computed beforehand),
//! then the cell update. Backward, per step: the cell's backward, then the
//! product of the gate gradients with `W_hh`.
//!
//! ## Threads split the batch, for the whole sequence
//! Row `b`'s state at step `t` depends only on row `b`'s state at `t-1`, and
//! the same holds for the gradient carried backward. So each thread takes a
//! block of batch rows and runs every step for them on its own: one parallel
//! region per layer-direction, no synchronisation between steps, and each
//! row's arithmetic the same whatever the number of threads (results do not
//! depend on it).
//!
//! ## The per-step product
//! The recurrent weights are packed once per call into column panels of
//! [`NR`] columns, each panel `[k][NR]` contiguous ([`Packed`]); the product
//! keeps a block of [`MR`] rows × [`NR`] columns in vector registers across
//! the whole `k` loop (24 AVX-512 registers), so each packed weight is loaded
//! once per [`MR`] rows. General GEMM libraries pack both operands on every
//! call, which dominates at these shapes (the MNIST layer: 16 rows a thread ×
//! 512 × 156, 56 times per training step). Packing costs `k·n` copies against
//! `T·B·k·n` multiply-adds.
//!
//! ## Instruction sets
//! Each part's whole step loop (product and cell update) is compiled three
//! times, for AVX-512, AVX2 + FMA and the baseline, and chosen at run time, so
//! the cell's activations vectorise with the same instruction set.

use super::cell::*;
use super::dims::{valid, Dims};
use super::threads::join_all;
use crate::model::config::Cell;

/// The body of a function that runs `$imp::<true>` compiled for AVX-512, or
/// for AVX2 + FMA, when the CPU has those (chosen at run time), else
/// `$imp::<false>` (no FMA): so the whole step loop, its product and its cell
/// updates, vectorise with one instruction set. `$imp` must be
/// `#[inline(always)]` for the features to reach its code.
macro_rules! simd_dispatch {
    ($imp:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                $imp::<true>($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                $imp::<true>($($arg),*)
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has the features the function is compiled for.
                return unsafe { avx512($($arg),*) };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                return unsafe { avx2($($arg),*) };
            }
        }
        $imp::<false>($($arg),*)
    }};
}

/// Rows of the register block. 12 rows × 32 columns keep 24 AVX-512
/// accumulators. Measured against 4×64, 8×32, 10×32 and 14×32 on one core
/// (BENCHMARKS.md, "register block"): all within 10% at the MNIST layer's
/// 16×128×512, and at H=512's 32×512×2048 12×32 took 482 µs (70 GMAC/s),
/// 4×64 652 µs: it reads each packed weight from L2 once per 4 rows.
pub const MR: usize = 12;
/// Columns of the register block and of a packed panel.
pub const NR: usize = 32;

/// A `[k × n]` matrix packed in column panels: panel `q` holds columns
/// `q·NR .. q·NR+NR` as `[k][NR]`, zero beyond `n`.
#[derive(Clone, Debug)]
pub struct Packed {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Packed {
    /// Packs the matrix whose element `(p, j)` is `get(p, j)`.
    fn new(k: usize, n: usize, get: impl Fn(usize, usize) -> f32) -> Self {
        let panels = n.div_ceil(NR);
        let mut data = super::scratch::for_overwrite(panels * k * NR);
        for (q, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let cols = NR.min(n - q * NR);
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                for (jj, v) in row[..cols].iter_mut().enumerate() {
                    *v = get(p, q * NR + jj);
                }
                row[cols..].fill(0.0);
            }
        }
        Self { k, n, data }
    }

    /// `Mᵀ` for a row-major `[n × k]` matrix `M` (forward: `W_hhᵀ`, `[H, G·H]`).
    pub fn transposed(m: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(m.len(), n * k, "Packed::transposed: shape");
        Self::rows_transposed(m, k, n, |j| j)
    }

    /// `n` rows of a row-major `[· × k]` matrix `M`, transposed: column `j`
    /// of the result is row `row(j)` of `M` (a thread's gate columns of
    /// `W_hhᵀ` in [`UnitsForward`]). Each panel reads its `NR` rows as
    /// contiguous slices: no index arithmetic per value.
    pub fn rows_transposed(m: &[f32], k: usize, n: usize, row: impl Fn(usize) -> usize) -> Self {
        let panels = n.div_ceil(NR);
        let mut data = super::scratch::for_overwrite(panels * k * NR);
        for (q, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let cols = NR.min(n - q * NR);
            let src: [&[f32]; NR] = std::array::from_fn(|jj| {
                if jj < cols {
                    let r = row(q * NR + jj);
                    &m[r * k..(r + 1) * k]
                } else {
                    &[]
                }
            });
            for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                for (o, s) in out[..cols].iter_mut().zip(&src) {
                    *o = s[p];
                }
                out[cols..].fill(0.0);
            }
        }
        Self { k, n, data }
    }

    /// `[Aᵀ ; Bᵀ]` for row-major `[n × ka]` and `[n × kb]` matrices: the
    /// forward's `[W_ih | W_hh]ᵀ`, `[I+H, G·H]`, for `[x_t | h_prev]` rows.
    pub fn stacked_transposed(a: &[f32], ka: usize, b: &[f32], kb: usize, n: usize) -> Self {
        assert!(
            a.len() == n * ka && b.len() == n * kb,
            "Packed::stacked_transposed: shapes"
        );
        Self::new(ka + kb, n, |p, j| {
            if p < ka {
                a[j * ka + p]
            } else {
                b[j * kb + p - ka]
            }
        })
    }

    /// `M` itself for a row-major `[k × n]` matrix (backward: `W_hh`, `[G·H, H]`).
    pub fn plain(m: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(m.len(), k * n, "Packed::plain: shape");
        Self::new(k, n, |p, j| m[p * n + j])
    }
}

impl Drop for Packed {
    /// Its buffer goes back to the pool for the next call (see [`super::scratch`]).
    fn drop(&mut self) {
        super::scratch::recycle(std::mem::take(&mut self.data));
    }
}

/// The left operand of a product: `m` rows of `k` values, row `i` at
/// `a[i·ld..]`. A product may take its rows from two such sources side by
/// side (`[X | H]`), which the packed right operand stacks in the same order.
#[derive(Clone, Copy)]
pub struct Src<'a> {
    pub a: &'a [f32],
    pub ld: usize,
    pub k: usize,
}

impl Src<'_> {
    /// No columns.
    pub const NONE: Src<'static> = Src {
        a: &[],
        ld: 0,
        k: 0,
    };
}

/// `c[m × n] += [a0 | a1] · B`, with row stride `ldc`; `a0.k + a1.k` is `B`'s `k`.
#[inline(always)]
fn gemm_acc<const FMA: bool>(m: usize, a0: Src, a1: Src, b: &Packed, c: &mut [f32], ldc: usize) {
    let (k, n) = (b.k, b.n);
    assert_eq!(a0.k + a1.k, k, "product: inner sizes");
    for (q, panel) in b.data.chunks_exact(k * NR).enumerate() {
        let (j0, nr) = (q * NR, NR.min(n - q * NR));
        let mut i0 = 0;
        while i0 + MR <= m {
            block::<MR, FMA>(a0, a1, i0, panel, c, ldc, j0, nr);
            i0 += MR;
        }
        match m - i0 {
            1 => block::<1, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            2 => block::<2, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            3 => block::<3, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            4 => block::<4, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            5 => block::<5, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            6 => block::<6, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            7 => block::<7, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            8 => block::<8, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            9 => block::<9, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            10 => block::<10, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            11 => block::<11, FMA>(a0, a1, i0, panel, c, ldc, j0, nr),
            _ => {}
        }
    }
}

/// `c[m × n] += [a0 | a1] · B`: the per-step product on its own, for
/// benchmarks and tests (the step loops inline it).
pub fn product(m: usize, a0: Src, a1: Src, b: &Packed, c: &mut [f32], ldc: usize) {
    simd_dispatch!(gemm_acc(m: usize, a0: Src, a1: Src, b: &Packed, c: &mut [f32], ldc: usize))
}

/// Rows `i0..i0+M` of a source.
#[inline(always)]
fn rows_of<'a, const M: usize>(s: Src<'a>, i0: usize) -> [&'a [f32]; M] {
    std::array::from_fn(|i| &s.a[(i0 + i) * s.ld..(i0 + i) * s.ld + s.k])
}

/// One `M × NR` register block over the whole `k` loop.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<const M: usize, const FMA: bool>(
    a0: Src,
    a1: Src,
    i0: usize,
    panel: &[f32],
    c: &mut [f32],
    ldc: usize,
    j0: usize,
    nr: usize,
) {
    let (r0, r1) = (rows_of::<M>(a0, i0), rows_of::<M>(a1, i0));
    let out: [&mut [f32]; M] = {
        let mut rest = &mut c[i0 * ldc..];
        std::array::from_fn(|_| {
            let cut = ldc.min(rest.len());
            let (row, tail) = std::mem::take(&mut rest).split_at_mut(cut);
            rest = tail;
            &mut row[j0..j0 + nr]
        })
    };
    let (p0, p1) = panel.split_at(a0.k * NR);
    #[cfg(target_arch = "x86_64")]
    if FMA && std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; row and panel lengths are checked inside.
        return unsafe { block_avx512::<M>(r0, p0, r1, p1, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if FMA && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA; row and panel lengths are checked inside.
        return unsafe { block_avx2::<M>(r0, p0, r1, p1, out) };
    }
    block_generic::<M, FMA>(r0, p0, r1, p1, out)
}

/// [`block`] in plain code (the baseline, and the reference of the register kernels).
#[inline(always)]
fn block_generic<const M: usize, const FMA: bool>(
    r0: [&[f32]; M],
    p0: &[f32],
    r1: [&[f32]; M],
    p1: &[f32],
    out: [&mut [f32]; M],
) {
    let mut acc = [[0.0f32; NR]; M];
    for (rows, panel) in [(r0, p0), (r1, p1)] {
        for (p, brow) in panel.chunks_exact(NR).enumerate() {
            let brow: &[f32; NR] = brow.try_into().unwrap();
            for i in 0..M {
                let av = rows[i][p];
                for j in 0..NR {
                    acc[i][j] = if FMA {
                        av.mul_add(brow[j], acc[i][j])
                    } else {
                        acc[i][j] + av * brow[j]
                    };
                }
            }
        }
    }
    for (o, acc) in out.into_iter().zip(&acc) {
        for (o, v) in o.iter_mut().zip(acc) {
            *o += v;
        }
    }
}

/// [`block`] with the accumulators written as AVX-512 registers: left to
/// itself, the compiler keeps a `[[f32; NR]; M]` accumulator in memory and
/// stores it back on every `k` step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_avx512<const M: usize>(
    r0: [&[f32]; M],
    p0: &[f32],
    r1: [&[f32]; M],
    p1: &[f32],
    out: [&mut [f32]; M],
) {
    use std::arch::x86_64::*;
    const V: usize = NR / 16;
    let mut acc = [[_mm512_setzero_ps(); V]; M];
    for (rows, panel) in [(r0, p0), (r1, p1)] {
        let k = panel.len() / NR;
        assert!(panel.len() == k * NR && rows.iter().all(|r| r.len() >= k));
        let bp = panel.as_ptr();
        for p in 0..k {
            let mut bv = [_mm512_setzero_ps(); V];
            for (q, b) in bv.iter_mut().enumerate() {
                *b = _mm512_loadu_ps(bp.add(p * NR + q * 16));
            }
            for i in 0..M {
                let av = _mm512_set1_ps(*rows[i].get_unchecked(p));
                for q in 0..V {
                    acc[i][q] = _mm512_fmadd_ps(av, bv[q], acc[i][q]);
                }
            }
        }
    }
    for (o, acc) in out.into_iter().zip(&acc) {
        if o.len() == NR {
            for (q, v) in acc.iter().enumerate() {
                let ptr = o.as_mut_ptr().add(q * 16);
                _mm512_storeu_ps(ptr, _mm512_add_ps(_mm512_loadu_ps(ptr), *v));
            }
        } else {
            let mut tmp = [0.0f32; NR];
            for (q, v) in acc.iter().enumerate() {
                _mm512_storeu_ps(tmp.as_mut_ptr().add(q * 16), *v);
            }
            for (o, v) in o.iter_mut().zip(&tmp) {
                *o += v;
            }
        }
    }
}

/// [`block`] for AVX2 + FMA, whose 16 vector registers hold a 6 × 16 block
/// (12 accumulators): the `M × NR` block goes as row groups of up to 6 by the
/// two 16-column halves of the panel. Each output element is the same chain
/// of fused multiply-adds in `k` order as [`block`]'s, so the bits are its
/// bits; left to itself the compiler keeps [`block`]'s accumulators in
/// memory on AVX2 (measured: the MNIST layer's forward 16x slower than on
/// AVX-512, where [`block_avx512`] runs).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block_avx2<const M: usize>(
    r0: [&[f32]; M],
    p0: &[f32],
    r1: [&[f32]; M],
    p1: &[f32],
    out: [&mut [f32]; M],
) {
    let mut out = out;
    let mut g = 0;
    while g < M {
        let n = (M - g).min(6);
        macro_rules! group {
            ($($r:literal),*) => {
                match n {
                    $($r => {
                        let a0: [&[f32]; $r] = std::array::from_fn(|i| r0[g + i]);
                        let a1: [&[f32]; $r] = std::array::from_fn(|i| r1[g + i]);
                        let (_, tail) = out.split_at_mut(g);
                        for half in 0..2 {
                            rows_avx2::<$r>(a0, p0, a1, p1, half, &mut tail[..$r]);
                        }
                    })*
                    _ => unreachable!(),
                }
            };
        }
        group!(1, 2, 3, 4, 5, 6);
        g += n;
    }
}

/// `R` (≤ 6) rows by the 16 columns of panel half `half` (AVX2 + FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn rows_avx2<const R: usize>(
    r0: [&[f32]; R],
    p0: &[f32],
    r1: [&[f32]; R],
    p1: &[f32],
    half: usize,
    out: &mut [&mut [f32]],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (rows, panel) in [(r0, p0), (r1, p1)] {
        let k = panel.len() / NR;
        assert!(panel.len() == k * NR && rows.iter().all(|r| r.len() >= k));
        let bp = panel.as_ptr().add(half * 16);
        for p in 0..k {
            let b0 = _mm256_loadu_ps(bp.add(p * NR));
            let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
            for i in 0..R {
                let av = _mm256_set1_ps(*rows[i].get_unchecked(p));
                acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
            }
        }
    }
    for (o, acc) in out.iter_mut().zip(&acc) {
        let c0 = half * 16;
        if o.len() >= c0 + 16 {
            for (q, v) in acc.iter().enumerate() {
                let ptr = o.as_mut_ptr().add(c0 + q * 8);
                _mm256_storeu_ps(ptr, _mm256_add_ps(_mm256_loadu_ps(ptr), *v));
            }
        } else if o.len() > c0 {
            let mut tmp = [0.0f32; 16];
            for (q, v) in acc.iter().enumerate() {
                _mm256_storeu_ps(tmp.as_mut_ptr().add(q * 8), *v);
            }
            for (o, v) in o[c0..].iter_mut().zip(&tmp) {
                *o += v;
            }
        }
    }
}

/// What one thread's forward reads (shared) and writes (its own rows).
pub struct ForwardPart<'a> {
    pub d: &'a Dims,
    /// First batch row of this part.
    pub r0: usize,
    pub rows: usize,
    /// What each step's product starts from, per gate column: `b_ih + b_hh`
    /// (LSTM and RNN, whose `gx`, if any, is the bare product `X·W_ihᵀ`), or
    /// `b_hh` (the GRU, whose `gx` holds `b_ih`).
    pub bias: &'a [f32],
    /// The step's input: `Joint`: `[x_t | h_prev]` times the packed
    /// `[W_ih | W_hh]ᵀ` in one product (LSTM and RNN, when those weights fit in
    /// cache), so `x [T, B, I]` (all rows) is read here; `Projected`: the input
    /// projections `gx [T, B, G·H]` computed beforehand, and `w` is `W_hhᵀ`
    /// (the GRU always: it needs `W_hh h` apart, `r` scales it).
    pub input: StepInput<'a>,
    pub w: &'a Packed,
    pub lengths: Option<&'a [usize]>,
    /// Recurrent dropout's mask `[B, H]` (all rows) on the state feeding
    /// `W_hh`, if any: the product reads `h_prev ⊙ mask`, the cell update
    /// `h_prev` itself.
    pub h_mask: Option<&'a [f32]>,
    /// `T+1` slots of this part's rows `[rows, H]`.
    pub hs: Vec<&'a mut [f32]>,
    /// As `hs`, LSTM only (else empty).
    pub cs: Vec<&'a mut [f32]>,
    /// `T` slots of `[rows, saved]`.
    pub gates: Vec<&'a mut [f32]>,
}

/// See [`ForwardPart::input`].
#[derive(Clone, Copy)]
pub enum StepInput<'a> {
    /// `x [T, B, I]`, with `I`.
    Joint(&'a [f32], usize),
    /// `gx [T, B, G·H]`.
    Projected(&'a [f32]),
}

/// Two different slots of a slot list: `(read, write)`.
fn two<'s>(v: &'s mut [&mut [f32]], r: usize, w: usize) -> (&'s [f32], &'s mut [f32]) {
    if r < w {
        let (lo, hi) = v.split_at_mut(w);
        (&*lo[r], &mut *hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(r);
        (&*hi[0], &mut *lo[w])
    }
}

#[inline(always)]
fn forward_impl<const FMA: bool>(mut p: ForwardPart) {
    let d = p.d;
    let (b, h, gw, sv) = (d.b, d.h, d.gh(), d.saved());
    let mut gh = vec![0.0f32; p.rows * gw];
    // This part's rows of the mask, and the masked state (recurrent dropout).
    let mask = p.h_mask.map(|m| &m[p.r0 * h..(p.r0 + p.rows) * h]);
    let mut masked = if mask.is_some() {
        vec![0.0f32; p.rows * h]
    } else {
        Vec::new()
    };
    for t in d.order() {
        let (ps, os) = (d.prev_slot(t), d.out_slot(t));
        // Each row's product starts from the biases, plus (LSTM and RNN
        // projected apart) its input projection: the gates' sum.
        for (r, row) in gh.chunks_exact_mut(gw).enumerate() {
            match p.input {
                StepInput::Projected(gx) if d.cell != Cell::Gru => {
                    let gx = &gx[(t * b + p.r0 + r) * gw..(t * b + p.r0 + r + 1) * gw];
                    for ((v, c), x) in row.iter_mut().zip(p.bias).zip(gx) {
                        *v = c + x;
                    }
                }
                _ => row.copy_from_slice(p.bias),
            }
        }
        let h_prev = Src {
            a: match mask {
                Some(m) => {
                    mask_into(&mut masked, p.hs[ps], m);
                    &masked
                }
                None => p.hs[ps],
            },
            ld: h,
            k: h,
        };
        match p.input {
            StepInput::Joint(x, i) => {
                let rows = (t * b + p.r0) * i..(t * b + p.r0 + p.rows) * i;
                let x_t = Src {
                    a: &x[rows],
                    ld: i,
                    k: i,
                };
                gemm_acc::<FMA>(p.rows, x_t, h_prev, p.w, &mut gh, gw)
            }
            StepInput::Projected(_) => gemm_acc::<FMA>(p.rows, h_prev, Src::NONE, p.w, &mut gh, gw),
        }
        let (hp, ho) = two(&mut p.hs, ps, os);
        // The RNN cell saves nothing: no slots.
        let sav: &mut [f32] = p.gates.get_mut(t).map_or(&mut [], |v| &mut **v);
        let (cp, co) = if d.cell == Cell::Lstm {
            two(&mut p.cs, ps, os)
        } else {
            (&[][..], &mut [][..])
        };
        for r in 0..p.rows {
            let hr = r * h..(r + 1) * h;
            if !valid(p.lengths, p.r0 + r, t) {
                ho[hr.clone()].copy_from_slice(&hp[hr.clone()]);
                if d.cell == Cell::Lstm {
                    co[hr.clone()].copy_from_slice(&cp[hr]);
                }
                // Never read; written so that the saves are whole (see layer.rs).
                sav[r * sv..(r + 1) * sv].fill(0.0);
                continue;
            }
            let pre = &mut gh[r * gw..(r + 1) * gw];
            let sv_r = &mut sav[r * sv..(r + 1) * sv];
            match (d.cell, p.input) {
                (Cell::Gru, StepInput::Projected(gx)) => {
                    let g_in = &gx[(t * b + p.r0 + r) * gw..(t * b + p.r0 + r + 1) * gw];
                    gru_step_forward(g_in, pre, &hp[hr.clone()], &mut ho[hr], sv_r)
                }
                (Cell::Lstm, _) => lstm_step_forward(
                    pre,
                    &cp[hr.clone()],
                    &mut co[hr.clone()],
                    &mut ho[hr],
                    gates_mut(sv_r),
                ),
                (Cell::Rnn, _) => rnn_step_forward(pre, d.act, &mut ho[hr]),
                (Cell::Gru, StepInput::Joint(..)) => {
                    unreachable!("the GRU's step input is its projections")
                }
            }
        }
    }
}

/// `out = v ⊙ mask`, element by element.
pub fn mask_into(out: &mut [f32], v: &[f32], mask: &[f32]) {
    for ((o, x), m) in out.iter_mut().zip(v).zip(mask) {
        *o = x * m;
    }
}

/// Runs one part's forward over the whole sequence.
pub fn forward_part(p: ForwardPart) {
    simd_dispatch!(forward_impl(p: ForwardPart))
}

/// LSTM forward with the hidden units, not the batch, split across threads:
/// for recurrent weights too large for a core's cache. Split by rows, every
/// thread streams all of `W_hhᵀ` from memory at every step (H=512: 4 MiB, a
/// thread's product ran at ~40 GMAC/s against 70 in cache); split by units,
/// each thread packs and streams only the columns of its units' four gates.
/// A step then needs every unit of the previous state, so the threads meet
/// once a step (a rayon join). Each output is computed by the same
/// arithmetic as in the row split, so the results are the same bits.
pub struct UnitsForward<'a> {
    pub d: &'a Dims,
    /// `[T, B, 4H]` input projections (`W_ih x`, no bias).
    pub gx: &'a [f32],
    /// `[4H]` what each step's product starts from: `b_ih + b_hh`.
    pub bias: &'a [f32],
    /// `[4H, H]`, PyTorch layout.
    pub w_hh: &'a [f32],
    pub lengths: Option<&'a [usize]>,
    /// As [`ForwardPart::h_mask`].
    pub h_mask: Option<&'a [f32]>,
    /// `[T+1, B, H]` states, `[T, B, 4H]` saved gates (as [`ForwardPart`]'s, all rows).
    pub hs: &'a mut [f32],
    pub cs: &'a mut [f32],
    pub gates: &'a mut [f32],
}

/// Unit boundaries `[0, .., H]` for `parts` threads (multiples of 16 where H allows).
pub fn unit_blocks(h: usize, parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, h.max(1));
    let align = if h >= 16 * parts { 16 } else { 1 };
    let mut bounds: Vec<usize> = (0..parts)
        .map(|p| (p * h / parts) / align * align)
        .collect();
    bounds.push(h);
    bounds.dedup();
    bounds
}

/// One thread's share of the units of [`UnitsForward`], with its scratch:
/// all allocated once per sequence, before the time loop.
struct UnitsPart {
    u0: usize,
    n: usize,
    /// Its columns of `W_hhᵀ`, packed: column `j` is gate `j / n` of unit `u0 + j % n`.
    w: Packed,
    /// What its columns of each step's product start from.
    bias: Vec<f32>,
    /// `[B, 4n]` the step's pre-activations.
    gh: Vec<f32>,
}

/// A step's state buffers, shared by the parts: each reads all of `hr`
/// (every unit of the previous state, as the product sees it) and writes
/// only its own units of the rows of `ho`, `co` (`[B, H]`) and `sav` (`[B, 4H]`).
#[derive(Clone, Copy)]
struct UnitsBufs<'s> {
    t: usize,
    hp: &'s [f32],
    /// The product's input: `hp`, or `hp ⊙ mask` under recurrent dropout.
    hr: &'s [f32],
    cp: &'s [f32],
    ho: *mut f32,
    co: *mut f32,
    sav: *mut f32,
}

// SAFETY: the pointers address buffers that outlive the step's join, and the
// parts write disjoint unit ranges of them (see `units_step_impl`).
unsafe impl Send for UnitsBufs<'_> {}
unsafe impl Sync for UnitsBufs<'_> {}

#[inline(always)]
fn units_step_impl<const FMA: bool>(
    d: &Dims,
    gx: &[f32],
    lengths: Option<&[usize]>,
    p: &mut UnitsPart,
    s: UnitsBufs,
) {
    let (n, u0) = (p.n, p.u0);
    let (b, h) = (d.b, d.h);
    let gw = 4 * n;
    // Each row's product starts from the biases plus its input projection.
    for (r, row) in p.gh.chunks_exact_mut(gw).enumerate() {
        let gx = &gx[(s.t * b + r) * 4 * h..(s.t * b + r + 1) * 4 * h];
        for (g, (pre, bias)) in row
            .chunks_exact_mut(n)
            .zip(p.bias.chunks_exact(n))
            .enumerate()
        {
            for ((v, c), x) in pre
                .iter_mut()
                .zip(bias)
                .zip(&gx[g * h + u0..g * h + u0 + n])
            {
                *v = c + x;
            }
        }
    }
    let h_prev = Src {
        a: s.hr,
        ld: h,
        k: h,
    };
    gemm_acc::<FMA>(b, h_prev, Src::NONE, &p.w, &mut p.gh, gw);
    // This part's `n` units of the `H`-wide block `blk` of a buffer at `base`.
    let piece = |base: *mut f32, blk: usize| {
        // SAFETY: `base` is the start of a live buffer of at least `B` rows of
        // `H` (`ho`, `co`) or `4H` (`sav`) values (asserted in `run`), and units
        // `u0..u0+n` of every block are this part's alone (`unit_blocks` gives
        // disjoint ranges): no other part reads or writes them during the step.
        unsafe { std::slice::from_raw_parts_mut(base.add(blk * h + u0), n) }
    };
    for r in 0..b {
        let own = r * h + u0..r * h + u0 + n;
        let (ho, co) = (piece(s.ho, r), piece(s.co, r));
        if !valid(lengths, r, s.t) {
            ho.copy_from_slice(&s.hp[own.clone()]);
            co.copy_from_slice(&s.cp[own]);
            // Never read; written so that the saves are whole (see layer.rs).
            for g in 0..4 {
                piece(s.sav, 4 * r + g).fill(0.0);
            }
            continue;
        }
        let pre = &p.gh[r * gw..(r + 1) * gw];
        // The saved gates' rows are [4H]: gate g of row r is block 4r + g.
        let saved = [0, 1, 2, 3].map(|g| piece(s.sav, 4 * r + g));
        lstm_step_forward(pre, &s.cp[own], co, ho, saved);
    }
}

fn units_step(d: &Dims, gx: &[f32], lengths: Option<&[usize]>, p: &mut UnitsPart, s: UnitsBufs) {
    simd_dispatch!(units_step_impl(
        d: &Dims,
        gx: &[f32],
        lengths: Option<&[usize]>,
        p: &mut UnitsPart,
        s: UnitsBufs
    ))
}

impl UnitsForward<'_> {
    /// Runs the sequence with the units split over `parts` threads.
    pub fn run(self, parts: usize) {
        let d = self.d;
        assert_eq!(d.cell, Cell::Lstm, "UnitsForward is the LSTM's");
        let (b, h) = (d.b, d.h);
        let bh = b * h;
        assert!(
            self.hs.len() == (d.t + 1) * bh
                && self.cs.len() == (d.t + 1) * bh
                && self.gates.len() == d.t * b * 4 * h,
            "UnitsForward: state buffer sizes"
        );
        let bounds = unit_blocks(h, parts);
        // Column `j` of a part's `4n` is gate `j / n` of unit `u0 + j % n`.
        let col = |u0: usize, n: usize, j: usize| (j / n) * h + u0 + j % n;
        let mut parts: Vec<UnitsPart> = bounds
            .windows(2)
            .map(|u| {
                let (u0, n) = (u[0], u[1] - u[0]);
                UnitsPart {
                    u0,
                    n,
                    // Packed below, each part by its own thread.
                    w: Packed {
                        k: h,
                        n: 0,
                        data: Vec::new(),
                    },
                    bias: (0..4 * n).map(|j| self.bias[col(u0, n, j)]).collect(),
                    gh: vec![0.0; b * 4 * n],
                }
            })
            .collect();
        // (4 MiB at H=512: milliseconds, which one thread would spend alone.)
        let w_hh = self.w_hh;
        join_all(&mut parts, &|p| {
            p.w = Packed::rows_transposed(w_hh, h, 4 * p.n, |j| col(p.u0, p.n, j))
        });
        let (gx, lengths) = (self.gx, self.lengths);
        let mut masked = if self.h_mask.is_some() {
            vec![0.0f32; bh]
        } else {
            Vec::new()
        };
        for t in d.order() {
            let (ps, os) = (d.prev_slot(t), d.out_slot(t));
            let (hp, ho) = slot_pair(self.hs, bh, ps, os);
            let (cp, co) = slot_pair(self.cs, bh, ps, os);
            let hr: &[f32] = match self.h_mask {
                Some(m) => {
                    mask_into(&mut masked, hp, m);
                    &masked
                }
                None => hp,
            };
            let bufs = UnitsBufs {
                t,
                hp,
                hr,
                cp,
                ho: ho.as_mut_ptr(),
                co: co.as_mut_ptr(),
                sav: self.gates[t * b * 4 * h..].as_mut_ptr(),
            };
            join_all(&mut parts, &|p| units_step(d, gx, lengths, p, bufs));
        }
    }
}

/// Slots `r` (read) and `w` (written) of a buffer of `len`-long slots.
fn slot_pair(buf: &mut [f32], len: usize, r: usize, w: usize) -> (&[f32], &mut [f32]) {
    if r < w {
        let (lo, hi) = buf.split_at_mut(w * len);
        (&lo[r * len..(r + 1) * len], &mut hi[..len])
    } else {
        let (lo, hi) = buf.split_at_mut(r * len);
        (&hi[..len], &mut lo[w * len..(w + 1) * len])
    }
}

/// What one thread's backward reads (shared) and writes (its own rows).
pub struct BackwardPart<'a> {
    pub d: &'a Dims,
    pub r0: usize,
    pub rows: usize,
    /// `W_hh` packed.
    pub w: &'a Packed,
    pub lengths: Option<&'a [usize]>,
    /// As [`ForwardPart::h_mask`]: the recurrent product's gradient reaches
    /// `h_prev` through it.
    pub h_mask: Option<&'a [f32]>,
    /// Forward's saves, all rows: gates `[T, B, saved]`, states `[T+1, B, H]`.
    pub gates: &'a [f32],
    pub hs: &'a [f32],
    pub cs: &'a [f32],
    /// `[T, B, H]` output gradient, all rows.
    pub dy: &'a [f32],
    /// This part's rows of the final-state gradients, if any.
    pub dhn: Option<&'a [f32]>,
    pub dcn: Option<&'a [f32]>,
    /// `T` slots of `[rows, G·H]`: gate gradients (input side).
    pub dgx: Vec<&'a mut [f32]>,
    /// GRU only: `T` slots of the recurrent side's gate gradients (else empty).
    pub dgh: Vec<&'a mut [f32]>,
}

/// Gradients of this part's rows of the initial states `(dh0, dc0)`.
pub type PartGrads = (Vec<f32>, Vec<f32>);

#[inline(always)]
fn backward_impl<'a, const FMA: bool>(mut p: BackwardPart<'a>) -> PartGrads {
    let d = p.d;
    let (b, h, gw, sv) = (d.b, d.h, d.gh(), d.saved());
    let (bh, n) = (b * h, p.rows * h);
    let r0 = p.r0;
    let own =
        |v: &'a [f32], slot: usize| -> &'a [f32] { &v[slot * bh + r0 * h..slot * bh + r0 * h + n] };
    let mut dh_carry = p.dhn.map_or_else(|| vec![0.0; n], <[f32]>::to_vec);
    let mut dc_carry = match (d.cell, p.dcn) {
        (Cell::Lstm, Some(v)) => v.to_vec(),
        (Cell::Lstm, None) => vec![0.0; n],
        _ => Vec::new(),
    };
    let mut dh = vec![0.0f32; n];
    let mut direct = vec![0.0f32; n];
    let mask = p.h_mask.map(|m| &m[r0 * h..r0 * h + n]);
    let mut recurrent = if mask.is_some() {
        vec![0.0f32; n]
    } else {
        Vec::new()
    };
    let order: Vec<usize> = d.order().collect();
    for &t in order.iter().rev() {
        let (ps, os) = (d.prev_slot(t), d.out_slot(t));
        for ((v, c), y) in dh.iter_mut().zip(&dh_carry).zip(own(p.dy, t)) {
            *v = c + y;
        }
        let dgx = &mut *p.dgx[t];
        let sav = &p.gates[(t * b + p.r0) * sv..(t * b + p.r0 + p.rows) * sv];
        for r in 0..p.rows {
            let hr = r * h..(r + 1) * h;
            let gi = r * gw..(r + 1) * gw;
            if !valid(p.lengths, p.r0 + r, t) {
                // Pass-through: state unchanged, so its gradient goes straight back.
                direct[hr.clone()].copy_from_slice(&dh[hr]);
                dgx[gi.clone()].fill(0.0);
                if d.cell == Cell::Gru {
                    p.dgh[t][gi].fill(0.0);
                }
                continue;
            }
            let sav = &sav[r * sv..(r + 1) * sv];
            match d.cell {
                Cell::Lstm => {
                    lstm_step_backward(
                        sav,
                        &own(p.cs, ps)[hr.clone()],
                        &own(p.cs, os)[hr.clone()],
                        &dh[hr.clone()],
                        &mut dc_carry[hr.clone()],
                        &mut dgx[gi],
                    );
                    direct[hr].fill(0.0);
                }
                Cell::Gru => gru_step_backward(
                    sav,
                    &own(p.hs, ps)[hr.clone()],
                    &dh[hr.clone()],
                    &mut dgx[gi.clone()],
                    &mut p.dgh[t][gi],
                    &mut direct[hr],
                ),
                Cell::Rnn => {
                    rnn_step_backward(
                        &own(p.hs, os)[hr.clone()],
                        &dh[hr.clone()],
                        d.act,
                        &mut dgx[gi],
                    );
                    direct[hr].fill(0.0);
                }
            }
        }
        // dh_prev = dG_h[t] · W_hh (⊙ the recurrent mask) + the direct part.
        let dg = if d.cell == Cell::Gru {
            &*p.dgh[t]
        } else {
            &*p.dgx[t]
        };
        let dg = Src {
            a: dg,
            ld: gw,
            k: gw,
        };
        match mask {
            None => {
                dh_carry.copy_from_slice(&direct);
                gemm_acc::<FMA>(p.rows, dg, Src::NONE, p.w, &mut dh_carry, h);
            }
            Some(m) => {
                recurrent.fill(0.0);
                gemm_acc::<FMA>(p.rows, dg, Src::NONE, p.w, &mut recurrent, h);
                for ((c, x), (v, k)) in dh_carry
                    .iter_mut()
                    .zip(&direct)
                    .zip(recurrent.iter().zip(m))
                {
                    *c = x + v * k;
                }
            }
        }
    }
    (dh_carry, dc_carry)
}

/// Runs one part's backward over the whole sequence.
pub fn backward_part(p: BackwardPart) -> PartGrads {
    simd_dispatch!(backward_impl(p: BackwardPart) -> PartGrads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::threads::{row_blocks, split_slots};

    #[test]
    fn packed_product_matches_the_gemm_on_edge_shapes() {
        for (m, n, k) in [
            (1, 1, 1),
            (4, 64, 3),
            (5, 67, 13),
            (32, 512, 128),
            (9, 130, 7),
            (37, 600, 300),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                .collect();
            // B given transposed ([n × k]) as the forward's W_hh, and plain as the backward's.
            let bt: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1)
                .collect();
            let mut want = vec![0.5f32; m * n];
            crate::cpu::gemm::gemm(m, n, k, &a, false, &bt, true, &mut want, 1.0);
            let mut b = vec![0.0f32; k * n];
            for j in 0..n {
                for p in 0..k {
                    b[p * n + j] = bt[j * k + p];
                }
            }
            for packed in [Packed::transposed(&bt, n, k), Packed::plain(&b, k, n)] {
                for fma in [false, true] {
                    let mut got = vec![0.5f32; m * n];
                    let a = Src { a: &a, ld: k, k };
                    if fma {
                        gemm_acc::<true>(m, a, Src::NONE, &packed, &mut got, n);
                    } else {
                        gemm_acc::<false>(m, a, Src::NONE, &packed, &mut got, n);
                    }
                    for (x, y) in got.iter().zip(&want) {
                        assert!(
                            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                            "{m}x{n}x{k}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    /// `[a0 | a1] · [W_a | W_b]ᵀ` as the forward's joint step product, against
    /// the packed GEMM on the concatenated operands.
    #[test]
    fn two_source_product_matches_the_gemm() {
        for (m, n, ka, kb) in [
            (1, 5, 1, 1),
            (13, 70, 7, 20),
            (24, 512, 28, 128),
            (5, 33, 0, 9),
        ] {
            let k = ka + kb;
            let val = |len: usize, s: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| (((i * 7 + s) % 13) as f32 - 6.0) * 0.1)
                    .collect()
            };
            let (a0, a1) = (val(m * ka, 1), val(m * kb, 2));
            let (wa, wb) = (val(n * ka, 3), val(n * kb, 4));
            let mut a = Vec::new();
            let mut w = Vec::new();
            for r in 0..m {
                a.extend_from_slice(&a0[r * ka..(r + 1) * ka]);
                a.extend_from_slice(&a1[r * kb..(r + 1) * kb]);
            }
            for j in 0..n {
                w.extend_from_slice(&wa[j * ka..(j + 1) * ka]);
                w.extend_from_slice(&wb[j * kb..(j + 1) * kb]);
            }
            let mut want = vec![0.25f32; m * n];
            crate::cpu::gemm::gemm(m, n, k, &a, false, &w, true, &mut want, 1.0);
            let packed = Packed::stacked_transposed(&wa, ka, &wb, kb, n);
            let mut got = vec![0.25f32; m * n];
            let s0 = Src {
                a: &a0,
                ld: ka,
                k: ka,
            };
            let s1 = Src {
                a: &a1,
                ld: kb,
                k: kb,
            };
            product(m, s0, s1, &packed, &mut got, n);
            for (x, y) in got.iter().zip(&want) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{m}x{n}x{ka}+{kb}: {x} vs {y}"
                );
            }
        }
    }

    /// With FMA (AVX-512 or AVX2 kernels) every output is the chain of fused
    /// multiply-adds over `k` in order, `a0`'s part then `a1`'s, added to C
    /// once: the same bits whichever register kernel runs, on every edge of
    /// the row groups (1-13 rows) and column halves (tails of 1-31).
    #[test]
    fn the_register_kernels_give_the_bits_of_one_fma_chain() {
        #[cfg(target_arch = "x86_64")]
        if !std::is_x86_feature_detected!("fma") {
            return; // the baseline kernel multiplies and adds apart
        }
        for (m, n, ka, kb) in [
            (1, 5, 3, 4),
            (6, 16, 2, 9),
            (7, 17, 5, 1),
            (13, 70, 7, 20),
            (12, 64, 28, 128),
        ] {
            let val = |len: usize, s: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| (((i * 7 + s) % 13) as f32 - 6.0) * 0.173)
                    .collect()
            };
            let (a0, a1) = (val(m * ka, 1), val(m * kb, 2));
            let (wa, wb) = (val(n * ka, 3), val(n * kb, 4));
            let mut want = vec![0.25f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0.0f32;
                    for p in 0..ka {
                        acc = a0[i * ka + p].mul_add(wa[j * ka + p], acc);
                    }
                    for p in 0..kb {
                        acc = a1[i * kb + p].mul_add(wb[j * kb + p], acc);
                    }
                    want[i * n + j] += acc;
                }
            }
            let packed = Packed::stacked_transposed(&wa, ka, &wb, kb, n);
            let mut got = vec![0.25f32; m * n];
            let s0 = Src {
                a: &a0,
                ld: ka,
                k: ka,
            };
            let s1 = Src {
                a: &a1,
                ld: kb,
                k: kb,
            };
            product(m, s0, s1, &packed, &mut got, n);
            for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "{m}x{n}x{ka}+{kb} [{i}]: {x} vs {y}"
                );
            }
        }
    }

    /// The AVX2 kernel against the plain FMA block directly (whatever the
    /// host's widest kernel is), every row count 1-12 and every column tail
    /// 1-32 of a panel: the same bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_kernel_gives_the_plain_blocks_bits() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        fn one<const M: usize>(nr: usize) {
            let (k0, k1) = (7, 5);
            let val = |len: usize, s: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| (((i * 7 + s) % 13) as f32 - 6.0) * 0.173)
                    .collect()
            };
            let (a0, a1) = (val(M * k0, 1), val(M * k1, 2));
            let (p0, p1) = (val(k0 * NR, 3), val(k1 * NR, 4));
            let rows = |a: &[f32], k: usize| -> Vec<Vec<f32>> {
                (0..M).map(|i| a[i * k..(i + 1) * k].to_vec()).collect()
            };
            let (r0, r1) = (rows(&a0, k0), rows(&a1, k1));
            let r0: [&[f32]; M] = std::array::from_fn(|i| &r0[i][..]);
            let r1: [&[f32]; M] = std::array::from_fn(|i| &r1[i][..]);
            let mut want = vec![vec![0.5f32; nr]; M];
            let mut got = want.clone();
            {
                let mut it = want.iter_mut();
                let out: [&mut [f32]; M] = std::array::from_fn(|_| &mut it.next().unwrap()[..]);
                block_generic::<M, true>(r0, &p0, r1, &p1, out);
            }
            {
                let mut it = got.iter_mut();
                let out: [&mut [f32]; M] = std::array::from_fn(|_| &mut it.next().unwrap()[..]);
                // SAFETY: the host has AVX2 and FMA (checked above).
                unsafe { block_avx2::<M>(r0, &p0, r1, &p1, out) };
            }
            for (i, (g, w)) in got.iter().flatten().zip(want.iter().flatten()).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "M={M} nr={nr} [{i}]: {g} vs {w}");
            }
        }
        for nr in 1..=NR {
            one::<1>(nr);
            one::<2>(nr);
            one::<3>(nr);
            one::<4>(nr);
            one::<5>(nr);
            one::<6>(nr);
            one::<7>(nr);
            one::<8>(nr);
            one::<9>(nr);
            one::<10>(nr);
            one::<11>(nr);
            one::<12>(nr);
        }
    }

    #[test]
    fn row_blocks_split_the_batch_evenly() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for b in [1, 2, 3, 4, 7, 32, 33, 64, 129] {
            let bounds = pool.install(|| row_blocks(b, usize::MAX));
            assert_eq!(bounds[0], 0);
            assert_eq!(*bounds.last().unwrap(), b);
            assert_eq!(bounds.len() - 1, b.min(3), "b={b}: {bounds:?}");
            let sizes: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "b={b}: {bounds:?}"
            );
        }
        assert_eq!(row_blocks(64, 10), vec![0, 64]);
    }

    #[test]
    fn split_slots_gives_each_part_its_rows_of_every_slot() {
        let mut buf: Vec<f32> = (0..3 * 5 * 2).map(|v| v as f32).collect();
        let parts = split_slots(&mut buf, 10, &[0, 2, 5], 2);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 3);
        assert_eq!(&*parts[0][1], &[10.0, 11.0, 12.0, 13.0]);
        assert_eq!(&*parts[1][2], &[24.0, 25.0, 26.0, 27.0, 28.0, 29.0]);
    }
}
