// requires: half.wgsl mask.wgsl step_common.wgsl
// LSTM steps (gates i, f, g, o), mirroring cpu/cell.rs lstm_step_forward /
// lstm_step_backward.
// One invocation per (hidden unit j, RB batch rows b) owns all four gates of j.

// What the shared step tiles (step_common.wgsl) need of this cell: its gates
// per unit, and the start of the gate gradients that W_hh multiplies backward.
const GATES: u32 = 4u;
fn recurrent_dg(dir: u32) -> u32 {
    return pick(u.dg0, u.dg1, dir);
}

// Forward step: gh = h_prev·W_hhᵀ + b_hh for the 4 gates of unit j, then
// c = f*c_prev + i*g, h = o*tanh(c). Masked rows pass the state through.
@compute @workgroup_size(TJ, TB, SK)
fn lstm_step_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    run_forward(wid, lid, li);
}

// The forward epilogue of row b, unit j, given gh = h_prev·W_hhᵀ for its 4 gates.
fn forward_row(dir: u32, t: u32, b: u32, j: u32, gh: vec4<f32>) {
    let H = u.h;
    let B = u.b;
    let hs = pick(u.hs0, u.hs1, dir);
    let cs = pick(u.cs0, u.cs1, dir);
    let hp = hs + prev_slot(t, dir) * B * H + b * H;
    let ho = hs + out_slot(t, dir) * B * H + b * H + j;
    let cp = cs + prev_slot(t, dir) * B * H + b * H + j;
    let co = cs + out_slot(t, dir) * B * H + b * H + j;
    let yi = u.y_off + (t * B + b) * u.ld + dir * H + j;
    if !valid(b, t) {
        work[ho] = work[hp + j];
        work[co] = work[cp];
        work[yi] = 0.0;
        return;
    }
    let bhh = pick(u.bhh0, u.bhh1, dir);
    let acc = vec4<f32>(params[bhh + j], params[bhh + H + j], params[bhh + 2u * H + j], params[bhh + 3u * H + j]) + gh;
    let gx = pick(u.gx0, u.gx1, dir) + (t * B + b) * 4u * H;
    let i = sigmoid(work[gx + j] + acc.x);
    let f = sigmoid(work[gx + H + j] + acc.y);
    let g = tanh_s(work[gx + 2u * H + j] + acc.z);
    let o = sigmoid(work[gx + 3u * H + j] + acc.w);
    let c = f * work[cp] + i * g;
    work[co] = c;
    let h = o * tanh_s(c);
    work[ho] = h;
    work[yi] = h;
    let sv = pick(u.sv0, u.sv1, dir) + (t * B + b) * 4u * H;
    work[sv + j] = i;
    work[sv + H + j] = f;
    work[sv + 2u * H + j] = g;
    work[sv + 3u * H + j] = o;
}

// Backward step: dh = carry + dG[t']·W_hh (t' = step processed before, none
// at the first) + dy[t]; then the gate gradients of unit j into dG[t], and
// dc carried to the previous step. Masked rows: dG[t] = 0, dh passes back.
@compute @workgroup_size(TJ, TB, SK)
fn lstm_step_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    run_backward(wid, lid, li);
}

// The backward epilogue of row b, unit j, given dh_w = (dG[t']·W_hh)[b, j].
fn backward_row(dir: u32, t: u32, b: u32, j: u32, dh_w: f32) {
    let H = u.h;
    let B = u.b;
    let GH = 4u * H;
    let dg = pick(u.dg0, u.dg1, dir);
    let ci = u.carry_off + b * u.ld + dir * H + j;
    var dh = work[ci] + dh_w;
    let dgt = dg + (t * B + b) * GH;
    if !valid(b, t) {
        work[ci] = dh;
        work[dgt + j] = 0.0;
        work[dgt + H + j] = 0.0;
        work[dgt + 2u * H + j] = 0.0;
        work[dgt + 3u * H + j] = 0.0;
        return;
    }
    if u.has_dy != 0u {
        dh += work[u.dy_off + (t * B + b) * u.ld + dir * H + j];
    }
    let sv = pick(u.sv0, u.sv1, dir) + (t * B + b) * GH;
    let i = work[sv + j];
    let f = work[sv + H + j];
    let g = work[sv + 2u * H + j];
    let o = work[sv + 3u * H + j];
    let cs = pick(u.cs0, u.cs1, dir);
    let c_prev = work[cs + prev_slot(t, dir) * B * H + b * H + j];
    let c = work[cs + out_slot(t, dir) * B * H + b * H + j];
    let dci = pick(u.dc0, u.dc1, dir) + b * H + j;
    let tc = tanh_s(c);
    let dc = work[dci] + dh * o * (1.0 - tc * tc);
    work[dgt + j] = dc * g * i * (1.0 - i);
    work[dgt + H + j] = dc * c_prev * f * (1.0 - f);
    work[dgt + 2u * H + j] = dc * i * (1.0 - g * g);
    work[dgt + 3u * H + j] = dh * tc * o * (1.0 - o);
    work[dci] = dc * f;
    work[ci] = 0.0;
}
