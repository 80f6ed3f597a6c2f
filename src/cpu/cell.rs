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

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `c = f*c_prev + i*g`, `h = o*tanh(c)`.
pub fn lstm_step_forward(gx: &[f32], gh: &[f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32], saved: &mut [f32]) {
    let n = h.len();
    for j in 0..n {
        let i = sigmoid(gx[j] + gh[j]);
        let f = sigmoid(gx[n + j] + gh[n + j]);
        let g = (gx[2 * n + j] + gh[2 * n + j]).tanh();
        let o = sigmoid(gx[3 * n + j] + gh[3 * n + j]);
        let cj = f * c_prev[j] + i * g;
        c[j] = cj;
        h[j] = o * cj.tanh();
        saved[j] = i;
        saved[n + j] = f;
        saved[2 * n + j] = g;
        saved[3 * n + j] = o;
    }
}

/// Given `dh` (total gradient of `h`) and `dc` (gradient of `c` from the next
/// step, replaced by that of `c_prev`), writes the pre-activation gate gradients `dg [4H]`.
pub fn lstm_step_backward(saved: &[f32], c_prev: &[f32], c: &[f32], dh: &[f32], dc: &mut [f32], dg: &mut [f32]) {
    let n = dh.len();
    for j in 0..n {
        let (i, f, g, o) = (saved[j], saved[n + j], saved[2 * n + j], saved[3 * n + j]);
        let tc = c[j].tanh();
        let dcj = dc[j] + dh[j] * o * (1.0 - tc * tc);
        dg[j] = dcj * g * i * (1.0 - i);
        dg[n + j] = dcj * c_prev[j] * f * (1.0 - f);
        dg[2 * n + j] = dcj * i * (1.0 - g * g);
        dg[3 * n + j] = dh[j] * tc * o * (1.0 - o);
        dc[j] = dcj * f;
    }
}

/// `r = σ(gx_r + gh_r)`, `z = σ(gx_z + gh_z)`, `n = tanh(gx_n + r*gh_n)`, `h = (1-z)*n + z*h_prev`.
pub fn gru_step_forward(gx: &[f32], gh: &[f32], h_prev: &[f32], h: &mut [f32], saved: &mut [f32]) {
    let u = h.len();
    for j in 0..u {
        let r = sigmoid(gx[j] + gh[j]);
        let z = sigmoid(gx[u + j] + gh[u + j]);
        let ghn = gh[2 * u + j];
        let nn = (gx[2 * u + j] + r * ghn).tanh();
        h[j] = (1.0 - z) * nn + z * h_prev[j];
        saved[j] = r;
        saved[u + j] = z;
        saved[2 * u + j] = nn;
        saved[3 * u + j] = ghn;
    }
}

/// Writes `dgx [3H]` (gradient of `gx`), `dgh [3H]` (of `gh`) and the direct
/// part of the gradient of `h_prev` (`dh * z`; the part through `W_hh` is added by the caller).
pub fn gru_step_backward(saved: &[f32], h_prev: &[f32], dh: &[f32], dgx: &mut [f32], dgh: &mut [f32], dh_prev: &mut [f32]) {
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
pub fn rnn_step_forward(gx: &[f32], gh: &[f32], act: Nonlinearity, h: &mut [f32]) {
    for j in 0..h.len() {
        let a = gx[j] + gh[j];
        h[j] = match act {
            Nonlinearity::Tanh => a.tanh(),
            Nonlinearity::Relu => a.max(0.0),
        };
    }
}

/// `dg = dh * act'(h)`.
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
