// Plain RNN steps, h = act(gx + h_prev·W_hhᵀ + b_hh) with act = tanh (u.act = 0)
// or relu (u.act = 1), mirroring cpu/cell.rs rnn_step_forward / rnn_step_backward.
// step_common.wgsl is prepended. One invocation per (batch row b, hidden unit j).

@compute @workgroup_size(TJ, TB)
fn rnn_step_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let dir = wid.z;
    let H = u.h;
    let B = u.b;
    let t = fwd_step(dir);
    let hs = pick(u.hs0, u.hs1, dir);
    let hp_slot = hs + prev_slot(t, dir) * B * H;
    let b = wid.y * TB + lid.y;
    let j = wid.x * TJ + lid.x;
    let gh = recurrent_tile(1u, pick(u.whh0, u.whh1, dir), hp_slot, wid.y * TB, wid.x * TJ, lid, li);
    if b >= B || j >= H {
        return;
    }
    let hp = hp_slot + b * H;
    let ho = hs + out_slot(t, dir) * B * H + b * H + j;
    let yi = u.y_off + (t * B + b) * u.ld + dir * H + j;
    if !valid(b, t) {
        work[ho] = work[hp + j];
        work[yi] = 0.0;
        return;
    }
    let acc = params[pick(u.bhh0, u.bhh1, dir) + j] + gh.x;
    let a = work[pick(u.gx0, u.gx1, dir) + (t * B + b) * H + j] + acc;
    var h = max(a, 0.0);
    if u.act == 0u {
        h = tanh_s(a);
    }
    work[ho] = h;
    work[yi] = h;
}

@compute @workgroup_size(TJ, TB)
fn rnn_step_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let dir = wid.z;
    let H = u.h;
    let B = u.b;
    let b = wid.y * TB + lid.y;
    let j = wid.x * TJ + lid.x;
    let t = bwd_step(dir);
    let dg = pick(u.dg0, u.dg1, dir);
    let whh = pick(u.whh0, u.whh1, dir);
    var dh_w = 0.0;
    if u.s > 0u {
        dh_w = recurrent_tile_t(H, whh, dg + bwd_prev_step(t, dir) * B * H, wid.y * TB, wid.x * TJ, lid, li);
    }
    if b >= B || j >= H {
        return;
    }
    let ci = u.carry_off + b * u.ld + dir * H + j;
    var dh = work[ci] + dh_w;
    let dgt = dg + (t * B + b) * H + j;
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
