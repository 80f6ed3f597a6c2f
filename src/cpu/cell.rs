//! One step of each cell for one sequence (one batch row), forward and
//! backward: the clearest statement of the maths, mirrored by the GPU kernels
//! of the same names in `shaders/`.
//!
//! Conventions for a row with `H` units:
//! - `gx [G*H]`: the input projection `W_ih x + b_ih` for this step;
//! - `gh [G*H]`: the recurrent projection `W_hh h_prev + b_hh`;
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

/// `c = f*c_prev + i*g`, `h = o*tanh(c)`.
#[inline(always)]
pub fn lstm_step_forward(
    gx: &[f32],
    gh: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    saved: &mut [f32],
) {
    let n = h.len();
    for ((s, a), b) in saved.iter_mut().zip(gx).zip(gh) {
        *s = a + b;
    }
    sigmoid_slice(&mut saved[..2 * n]);
    tanh_slice(&mut saved[2 * n..3 * n]);
    sigmoid_slice(&mut saved[3 * n..4 * n]);
    let (ifg, o) = saved.split_at(3 * n);
    for j in 0..n {
        c[j] = ifg[n + j] * c_prev[j] + ifg[j] * ifg[2 * n + j];
    }
    h.copy_from_slice(c);
    tanh_slice(h);
    for j in 0..n {
        h[j] *= o[j];
    }
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
    // tanh(c) goes through the output-gate slot first.
    let (dg_ifg, dg_o) = dg.split_at_mut(3 * n);
    dg_o.copy_from_slice(c);
    tanh_slice(dg_o);
    for j in 0..n {
        let (i, f, g, o) = (saved[j], saved[n + j], saved[2 * n + j], saved[3 * n + j]);
        let tc = dg_o[j];
        let dcj = dc[j] + dh[j] * o * (1.0 - tc * tc);
        dg_ifg[j] = dcj * g * i * (1.0 - i);
        dg_ifg[n + j] = dcj * c_prev[j] * f * (1.0 - f);
        dg_ifg[2 * n + j] = dcj * i * (1.0 - g * g);
        dg_o[j] = dh[j] * tc * o * (1.0 - o);
        dc[j] = dcj * f;
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
    for j in 0..u {
        let (r, z, nn, ghn) = (saved[j], saved[u + j], saved[2 * u + j], saved[3 * u + j]);
        let dn = dh[j] * (1.0 - z) * (1.0 - nn * nn);
        let dz = dh[j] * (h_prev[j] - nn) * z * (1.0 - z);
        let dr = dn * ghn * r * (1.0 - r);
        dgx[j] = dr;
        dgx[u + j] = dz;
        dgx[2 * u + j] = dn;
        dgh[j] = dr;
        dgh[u + j] = dz;
        dgh[2 * u + j] = dn * r;
        dh_prev[j] = dh[j] * z;
    }
}

/// `h = act(gx + gh)`.
#[inline(always)]
pub fn rnn_step_forward(gx: &[f32], gh: &[f32], act: Nonlinearity, h: &mut [f32]) {
    for j in 0..h.len() {
        h[j] = gx[j] + gh[j];
    }
    match act {
        Nonlinearity::Tanh => tanh_slice(h),
        Nonlinearity::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// `dg = dh * act'(h)`.
#[inline(always)]
pub fn rnn_step_backward(h: &[f32], dh: &[f32], act: Nonlinearity, dg: &mut [f32]) {
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
