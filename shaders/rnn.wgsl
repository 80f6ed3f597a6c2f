// requires: half.wgsl mask.wgsl step_common.wgsl
// Plain RNN steps, h = act(gx + h_prev·W_hhᵀ + b_hh) with act = tanh (u.act = 0)
// or relu (u.act = 1), mirroring cpu/cell.rs rnn_step_forward / rnn_step_backward.
// One invocation per (hidden unit j, RB batch rows b).

// What the shared step tiles (step_common.wgsl) need of this cell: its gates
// per unit, and the start of the gate gradients that W_hh multiplies backward.
const GATES: u32 = 1u;
fn recurrent_dg(dir: u32) -> u32 {
    return pick(u.dg0, u.dg1, dir);
}

@compute @workgroup_size(TJ, TB, SK)
fn rnn_step_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    run_forward(wid, lid, li);
}

// The forward epilogue of row b, unit j, given gh = (h_prev·W_hhᵀ)[b, j].
fn forward_row(dir: u32, t: u32, b: u32, j: u32, gates: vec4<f32>) {
    let gh = gates.x;
    let H = u.h;
    let B = u.b;
    let hs = pick(u.hs0, u.hs1, dir);
    let hp = hs + prev_slot(t, dir) * B * H + b * H;
    let ho = hs + out_slot(t, dir) * B * H + b * H + j;
    let yi = u.y_off + (t * B + b) * u.ld + dir * H + j;
    if !valid(b, t) {
        work[ho] = work[hp + j];
        work[yi] = 0.0;
        return;
    }
    let acc = params[pick(u.bhh0, u.bhh1, dir) + j] + gh;
    let a = work[pick(u.gx0, u.gx1, dir) + (t * B + b) * H + j] + acc;
    var h = max(a, 0.0);
    if u.act == 0u {
        h = tanh_s(a);
    }
    work[ho] = h;
    work[yi] = h;
}

@compute @workgroup_size(TJ, TB, SK)
fn rnn_step_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    run_backward(wid, lid, li);
}

// The backward epilogue of row b, unit j, given dh_w = (dG[t']·W_hh)[b, j].
fn backward_row(dir: u32, t: u32, b: u32, j: u32, dh_w: f32) {
    let H = u.h;
    let B = u.b;
    let ci = u.carry_off + b * u.ld + dir * H + j;
    var dh = work[ci] + dh_w;
    let dgt = pick(u.dg0, u.dg1, dir) + (t * B + b) * H + j;
    if !valid(b, t) {
        work[ci] = dh;
        work[dgt] = 0.0;
        return;
    }
    if u.has_dy != 0u {
        dh += work[u.dy_off + (t * B + b) * u.ld + dir * H + j];
    }
    let h = work[pick(u.hs0, u.hs1, dir) + out_slot(t, dir) * B * H + b * H + j];
    var d = 0.0;
    if u.act == 0u {
        d = 1.0 - h * h;
    } else if h > 0.0 {
        d = 1.0;
    }
    work[dgt] = dh * d;
    work[ci] = 0.0;
}
