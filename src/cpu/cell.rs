//! One step of each cell for one sequence (one batch row), forward and
//! backward: the clearest statement of the maths, mirrored by the GPU kernels
//! of the same names in `shaders/`.
//!
//! Conventions for a row with `H` units:
//! - `pre [G*H]` (LSTM, RNN): the gates' pre-activations `W_ih x + b_ih + W_hh h_prev + b_hh`;
//! - `gx [G*H]` (GRU): the input projection `W_ih x + b_ih` for this step;
//! - `gh [G*H]` (GRU): the recurrent projection `W_hh h_prev + b_hh`;
//! - `saved`: what backward needs (LSTM: activated `i,f,g,o`; GRU: `r,z,n` and `gh_n`).

use crate::model::config::Nonlinearity;

/// Values saved per unit for backward, per cell (LSTM 4, GRU 4, RNN 0: it uses `h`).
pub const LSTM_SAVED: usize = 4;
pub const GRU_SAVED: usize = 4;

/// `exp(x)` to about 2 ulp (Cephes' polynomial), written without branches or
/// library calls so that loops over slices vectorise. Inputs are clamped to
/// `[-87.3, 88.3]`, where the result is a normal f32.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and removing 1.5·2^23 rounds to the nearest integer in plain SSE2.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 0.166_666_65)
        * r
        + 0.5)
        * r
        * r
        + r
        + 1.0;
    // `shifted`'s low mantissa bits hold n (|n| ≤ 127) on top of ROUND's bits
    // 0x4B40_0000: 2^n is built from them with integer operations only (a
    // float-to-int conversion would not vectorise: Rust's `as` saturates).
    p * f32::from_bits((shifted.to_bits().wrapping_sub(0x4B40_0000 - 127)) << 23)
}

/// `1 / (1 + exp(-x))`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 1 - 2 / (exp(2x) + 1)`: absolute error about 1e-7.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// In-place activations over a slice (vectorised loops).
#[inline(always)]
pub fn sigmoid_slice(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = sigmoid(*x));
}
#[inline(always)]
pub fn tanh_slice(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = tanh(*x));
}

/// Values per chunk of the cell loops. The loops below work on local arrays of
/// this many values, which the compiler keeps in vector registers: over
/// slices, the many arrays read and written in one loop defeat its alias
/// analysis and the loop stays scalar.
const L: usize = 16;
type Lanes = [f32; L];

/// The `L` values of `s` from `j0` (zero beyond its end).
#[inline(always)]
fn ld(s: &[f32], j0: usize) -> Lanes {
    let mut v = [0.0; L];
    if j0 + L <= s.len() {
        // A copy of constant length: vector moves, not a call to memcpy.
        v.copy_from_slice(&s[j0..j0 + L]);
    } else {
        v[..s.len() - j0].copy_from_slice(&s[j0..]);
    }
    v
}

/// Stores `v` into `d` from `j0` (as much of it as fits).
#[inline(always)]
fn st(d: &mut [f32], j0: usize, v: &Lanes) {
    if j0 + L <= d.len() {
        d[j0..j0 + L].copy_from_slice(v);
    } else {
        let m = d.len() - j0;
        d[j0..].copy_from_slice(&v[..m]);
    }
}

/// `f` applied lane by lane.
#[inline(always)]
fn lanes(f: impl Fn(usize) -> f32) -> Lanes {
    let mut v = [0.0; L];
    for (l, x) in v.iter_mut().enumerate() {
        *x = f(l);
    }
    v
}

/// Gate block `k` (of `n` values) of a row.
#[inline(always)]
fn gate(v: &[f32], k: usize, n: usize) -> &[f32] {
    &v[k * n..(k + 1) * n]
}

/// As [`gate`], mutable.
#[inline(always)]
fn gate_mut(v: &mut [f32], k: usize, n: usize) -> &mut [f32] {
    &mut v[k * n..(k + 1) * n]
}

/// From the gates' pre-activations `pre [4H]` (`W_ih x + b_ih + W_hh h_prev + b_hh`):
/// `c = f*c_prev + i*g`, `h = o*tanh(c)`. The activated gates go to
/// `saved`, one slice per gate (`i, f, g, o`: the row's gate blocks, or a
/// thread's units of them). Each activation is its own loop over a slice,
/// which vectorises better than one fused loop over all four (measured: the
/// fused loop took the MNIST layer's forward from 1.5 to 1.9 ms).
#[inline(always)]
pub fn lstm_step_forward(
    pre: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    saved: [&mut [f32]; 4],
) {
    let n = h.len();
    let [si, sf, sg, so] = saved;
    for (k, s) in [&mut *si, &mut *sf, &mut *sg, &mut *so]
        .into_iter()
        .enumerate()
    {
        s.copy_from_slice(gate(pre, k, n));
    }
    sigmoid_slice(si);
    sigmoid_slice(sf);
    tanh_slice(sg);
    sigmoid_slice(so);
    for j in 0..n {
        c[j] = sf[j] * c_prev[j] + si[j] * sg[j];
    }
    h.copy_from_slice(c);
    tanh_slice(h);
    for j in 0..n {
        h[j] *= so[j];
    }
}

/// The four gate blocks of a row's `[4n]` values, mutable.
#[inline(always)]
pub fn gates_mut(v: &mut [f32]) -> [&mut [f32]; 4] {
    let n = v.len() / 4;
    let (a, rest) = v.split_at_mut(n);
    let (b, rest) = rest.split_at_mut(n);
    let (c, d) = rest.split_at_mut(n);
    [a, b, c, d]
}

/// Given `dh` (total gradient of `h`) and `dc` (gradient of `c` from the next
/// step, replaced by that of `c_prev`), writes the pre-activation gate gradients `dg [4H]`.
#[inline(always)]
pub fn lstm_step_backward(
    saved: &[f32],
    c_prev: &[f32],
    c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dg: &mut [f32],
) {
    let n = dh.len();
    for j in (0..n).step_by(L) {
        let [i, f, g, o] = [0, 1, 2, 3].map(|k| ld(gate(saved, k, n), j));
        let (cp, cn, dhj, dcj) = (ld(c_prev, j), ld(c, j), ld(dh, j), ld(dc, j));
        let tc = lanes(|l| tanh(cn[l]));
        let dct = lanes(|l| dcj[l] + dhj[l] * o[l] * (1.0 - tc[l] * tc[l]));
        let di = lanes(|l| dct[l] * g[l] * i[l] * (1.0 - i[l]));
        let df = lanes(|l| dct[l] * cp[l] * f[l] * (1.0 - f[l]));
        let dgg = lanes(|l| dct[l] * i[l] * (1.0 - g[l] * g[l]));
        let dgo = lanes(|l| dhj[l] * tc[l] * o[l] * (1.0 - o[l]));
        for (k, v) in [di, df, dgg, dgo].iter().enumerate() {
            st(gate_mut(dg, k, n), j, v);
        }
        st(dc, j, &lanes(|l| dct[l] * f[l]));
    }
}

/// `r = σ(gx_r + gh_r)`, `z = σ(gx_z + gh_z)`, `n = tanh(gx_n + r*gh_n)`, `h = (1-z)*n + z*h_prev`.
#[inline(always)]
pub fn gru_step_forward(gx: &[f32], gh: &[f32], h_prev: &[f32], h: &mut [f32], saved: &mut [f32]) {
    let u = h.len();
    for k in 0..2 * u {
        saved[k] = gx[k] + gh[k];
    }
    sigmoid_slice(&mut saved[..2 * u]);
    let (rz, rest) = saved.split_at_mut(2 * u);
    let (nn, ghn) = rest.split_at_mut(u);
    ghn.copy_from_slice(&gh[2 * u..3 * u]);
    for j in 0..u {
        nn[j] = gx[2 * u + j] + rz[j] * ghn[j];
    }
    tanh_slice(nn);
    for j in 0..u {
        let z = rz[u + j];
        h[j] = (1.0 - z) * nn[j] + z * h_prev[j];
    }
}

/// Writes `dgx [3H]` (gradient of `gx`), `dgh [3H]` (of `gh`) and the direct
/// part of the gradient of `h_prev` (`dh * z`; the part through `W_hh` is added by the caller).
#[inline(always)]
pub fn gru_step_backward(
    saved: &[f32],
    h_prev: &[f32],
    dh: &[f32],
    dgx: &mut [f32],
    dgh: &mut [f32],
    dh_prev: &mut [f32],
) {
    let u = dh.len();
    for j in (0..u).step_by(L) {
        let [r, z, nn, ghn] = [0, 1, 2, 3].map(|k| ld(gate(saved, k, u), j));
        let (hp, dhj) = (ld(h_prev, j), ld(dh, j));
        let dn = lanes(|l| dhj[l] * (1.0 - z[l]) * (1.0 - nn[l] * nn[l]));
        let dz = lanes(|l| dhj[l] * (hp[l] - nn[l]) * z[l] * (1.0 - z[l]));
        let dr = lanes(|l| dn[l] * ghn[l] * r[l] * (1.0 - r[l]));
        for (k, v) in [dr, dz, dn].iter().enumerate() {
            st(gate_mut(dgx, k, u), j, v);
        }
        let dnr = lanes(|l| dn[l] * r[l]);
        for (k, v) in [dr, dz, dnr].iter().enumerate() {
            st(gate_mut(dgh, k, u), j, v);
        }
        st(dh_prev, j, &lanes(|l| dhj[l] * z[l]));
    }
}

/// `h = act(pre)`, `pre = W_ih x + b_ih + W_hh h_prev + b_hh`.
#[inline(always)]
pub fn rnn_step_forward(pre: &[f32], act: Nonlinearity, h: &mut [f32]) {
    h.copy_from_slice(&pre[..h.len()]);
    match act {
        Nonlinearity::Tanh => tanh_slice(h),
        Nonlinearity::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// `dg = dh * act'(h)`.
#[inline(always)]
pub fn rnn_step_backward(h: &[f32], dh: &[f32], act: Nonlinearity, dg: &mut [f32]) {
    let (dh, dg) = (&dh[..h.len()], &mut dg[..h.len()]);
    for j in 0..h.len() {
        dg[j] = dh[j]
            * match act {
                Nonlinearity::Tanh => 1.0 - h[j] * h[j],
                Nonlinearity::Relu => {
                    if h[j] > 0.0 {
                        1.0
                    } else {
                        0.0
                    }
                }
            };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_sigmoid_tanh_match_libm() {
        let mut worst = (0.0f64, 0.0f64, 0.0f64);
        for k in -20000..=20000 {
            let x = k as f32 * 0.004;
            let e = (x as f64).exp();
            worst.0 = worst.0.max(((exp(x) as f64 - e) / e).abs());
            worst.1 = worst
                .1
                .max((sigmoid(x) as f64 - 1.0 / (1.0 + (-x as f64).exp())).abs());
            worst.2 = worst.2.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst.0 < 3e-7, "exp relative error {}", worst.0);
        assert!(worst.1 < 2e-7, "sigmoid absolute error {}", worst.1);
        assert!(worst.2 < 3e-7, "tanh absolute error {}", worst.2);
        assert_eq!(sigmoid(-200.0), 0.0f32.max(sigmoid(-200.0)));
        assert!(sigmoid(-200.0) < 1e-37 && sigmoid(200.0) == 1.0);
        assert!(tanh(100.0) == 1.0 && tanh(-100.0) == -1.0);
    }
}
