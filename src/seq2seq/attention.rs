//! Luong global attention on the CPU path, forward and backward, over
//! batch-first blocks: memory `m [N, S, Hd]` (the encoder's top layer,
//! zero past each source length), decoder output `d [N, T, Hd]`:
//!
//! - keys `k = m·W_aᵀ` (general) or `m` (dot);
//! - scores `e[t, s] = d_t · k_s`, `-inf` where `s ≥ src_length`;
//! - weights `a = softmax_s(e)`, context `c_t = Σ_s a[t, s]·m_s`;
//! - output `o = tanh([c; d]·W_cᵀ + b_c)` `[N·T, Hd]`.
//!
//! With [`Attention::None`] the output is `d` itself.

use super::config::Attention;
use crate::cpu::gemm::{add_column_sums, gemm};

/// Sizes of one batch.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub n: usize,
    pub s: usize,
    pub t: usize,
    pub hd: usize,
}

/// The weights attention reads (those its kind has).
pub struct Weights<'a> {
    /// `[Hd, Hd]` (general).
    pub w_a: Option<&'a [f32]>,
    /// `[Hd, 2·Hd]`, `[Hd]` (general, dot).
    pub w_c: Option<&'a [f32]>,
    pub b_c: Option<&'a [f32]>,
}

/// Their gradients, accumulated with `+=`.
pub struct Grads<'a> {
    pub w_a: Option<&'a mut [f32]>,
    pub w_c: Option<&'a mut [f32]>,
    pub b_c: Option<&'a mut [f32]>,
}

/// What forward computed and backward reads.
pub struct Forward {
    /// `[N·T, Hd]` the head's input.
    pub o: Vec<f32>,
    /// `[N, S, Hd]` keys (general; empty otherwise: the memory is the key).
    keys: Vec<f32>,
    /// `[N, T, S]` attention weights (0 past each length).
    pub a: Vec<f32>,
    /// `[N·T, 2·Hd]` `[c; d]`.
    cat: Vec<f32>,
}

/// Attention of kind `kind` over memory `m` for decoder outputs `d`.
pub fn forward(
    kind: Attention,
    w: &Weights,
    dm: Dims,
    m: &[f32],
    lengths: &[usize],
    d: &[f32],
) -> Forward {
    let Dims { n, s, t, hd } = dm;
    if kind == Attention::None {
        return Forward {
            o: d.to_vec(),
            keys: Vec::new(),
            a: Vec::new(),
            cat: Vec::new(),
        };
    }
    let keys = match kind {
        Attention::General => {
            let mut k = vec![0.0; n * s * hd];
            gemm(
                n * s,
                hd,
                hd,
                m,
                false,
                w.w_a.expect("general has attn.weight"),
                true,
                &mut k,
                0.0,
            );
            k
        }
        _ => Vec::new(),
    };
    let kv: &[f32] = if keys.is_empty() { m } else { &keys };
    let mut a = vec![0.0; n * t * s];
    let mut cat = vec![0.0; n * t * 2 * hd];
    for b in 0..n {
        let len = lengths[b];
        for ti in 0..t {
            let dt = &d[(b * t + ti) * hd..(b * t + ti + 1) * hd];
            let row = &mut a[(b * t + ti) * s..(b * t + ti + 1) * s];
            for (si, e) in row[..len].iter_mut().enumerate() {
                let ks = &kv[(b * s + si) * hd..(b * s + si + 1) * hd];
                *e = dot(dt, ks);
            }
            softmax_in_place(&mut row[..len]);
            let c = &mut cat[(b * t + ti) * 2 * hd..(b * t + ti) * 2 * hd + hd];
            for (si, &wgt) in row[..len].iter().enumerate() {
                let ms = &m[(b * s + si) * hd..(b * s + si + 1) * hd];
                for (cv, &mv) in c.iter_mut().zip(ms) {
                    *cv += wgt * mv;
                }
            }
            cat[(b * t + ti) * 2 * hd + hd..(b * t + ti + 1) * 2 * hd].copy_from_slice(dt);
        }
    }
    let rows = n * t;
    let mut o = vec![0.0; rows * hd];
    gemm(
        rows,
        hd,
        2 * hd,
        &cat,
        false,
        w.w_c.expect("combine.weight"),
        true,
        &mut o,
        0.0,
    );
    let b_c = w.b_c.expect("combine.bias");
    for r in o.chunks_exact_mut(hd) {
        for (v, &bias) in r.iter_mut().zip(b_c) {
            *v = (*v + bias).tanh();
        }
    }
    Forward { o, keys, a, cat }
}

/// Backward from `d_o [N·T, Hd]`: the weights' gradients (accumulated),
/// and those of the memory `[N, S, Hd]` and of the decoder outputs `[N, T, Hd]`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    kind: Attention,
    w: &Weights,
    g: Grads,
    dm: Dims,
    m: &[f32],
    lengths: &[usize],
    d: &[f32],
    f: &Forward,
    d_o: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let Dims { n, s, t, hd } = dm;
    if kind == Attention::None {
        return (vec![0.0; n * s * hd], d_o.to_vec());
    }
    let rows = n * t;
    // Through tanh: dz = do·(1 - o²); then the combine layer.
    let dz: Vec<f32> = d_o
        .iter()
        .zip(&f.o)
        .map(|(&g, &o)| g * (1.0 - o * o))
        .collect();
    gemm(
        hd,
        2 * hd,
        rows,
        &dz,
        true,
        &f.cat,
        false,
        g.w_c.expect("combine.weight grad"),
        1.0,
    );
    add_column_sums(&dz, hd, g.b_c.expect("combine.bias grad"));
    let mut dcat = vec![0.0; rows * 2 * hd];
    gemm(
        rows,
        2 * hd,
        hd,
        &dz,
        false,
        w.w_c.expect("combine.weight"),
        false,
        &mut dcat,
        0.0,
    );
    let kv: &[f32] = if f.keys.is_empty() { m } else { &f.keys };
    let mut d_m = vec![0.0; n * s * hd];
    let mut d_k = vec![0.0; n * s * hd];
    let mut d_d = vec![0.0; n * t * hd];
    let mut da = vec![0.0; s];
    for b in 0..n {
        let len = lengths[b];
        for ti in 0..t {
            let r = b * t + ti;
            let dc = &dcat[r * 2 * hd..r * 2 * hd + hd];
            let a = &f.a[r * s..r * s + len];
            // c = Σ a_s m_s: dm_s += a_s dc, da_s = dc · m_s.
            for si in 0..len {
                let ms = &m[(b * s + si) * hd..(b * s + si + 1) * hd];
                da[si] = dot(dc, ms);
                for (g, &v) in d_m[(b * s + si) * hd..(b * s + si + 1) * hd]
                    .iter_mut()
                    .zip(dc)
                {
                    *g += a[si] * v;
                }
            }
            // Softmax: de_s = a_s (da_s - Σ a·da).
            let mean: f32 = a.iter().zip(&da[..len]).map(|(&x, &y)| x * y).sum();
            let dt = &d[r * hd..(r + 1) * hd];
            let ddt = &mut d_d[r * hd..(r + 1) * hd];
            ddt.copy_from_slice(&dcat[r * 2 * hd + hd..(r + 1) * 2 * hd]);
            for si in 0..len {
                let de = a[si] * (da[si] - mean);
                // e = d_t · k_s
                let ks = &kv[(b * s + si) * hd..(b * s + si + 1) * hd];
                for (g, &v) in ddt.iter_mut().zip(ks) {
                    *g += de * v;
                }
                for (g, &v) in d_k[(b * s + si) * hd..(b * s + si + 1) * hd]
                    .iter_mut()
                    .zip(dt)
                {
                    *g += de * v;
                }
            }
        }
    }
    match kind {
        Attention::General => {
            // k = m·W_aᵀ
            let w_a = w.w_a.expect("attn.weight");
            gemm(
                hd,
                hd,
                n * s,
                &d_k,
                true,
                m,
                false,
                g.w_a.expect("attn.weight grad"),
                1.0,
            );
            gemm(n * s, hd, hd, &d_k, false, w_a, false, &mut d_m, 1.0);
        }
        _ => {
            for (g, &v) in d_m.iter_mut().zip(&d_k) {
                *g += v;
            }
        }
    }
    (d_m, d_d)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}

/// Softmax of a row in place (max subtracted, as `torch.softmax`).
fn softmax_in_place(row: &mut [f32]) {
    let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - mx).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}
