// Plain RNN steps, h = act(gx + h_prev·W_hhᵀ + b_hh) with act = tanh (u.act = 0)
// or relu (u.act = 1), mirroring cpu/cell.rs rnn_step_forward / rnn_step_backward.
// step_common.wgsl is prepended. One invocation per (hidden unit j, RB batch rows b).

@compute @workgroup_size(TJ, TB, SK)
fn rnn_step_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    run_forward(wid, lid, li);
}

// Tile (wx, wy) of step s (the s-th processed) of direction dir: a
// workgroup of the per-step dispatch.
fn forward_tile(dir: u32, s: u32, wx: u32, wy: u32, lid: vec3<u32>, li: u32) {
    let t = fwd_step(s, dir);
    let hp_slot = pick(u.hs0, u.hs1, dir) + prev_slot(t, dir) * u.b * u.h;
    let b0 = wy * TB * RB;
    let j = wx * TJ + lid.x;
    var gh = recurrent_tile(1u, pick(u.whh0, u.whh1, dir), hp_slot, b0, wx * TJ, lid, li);
    // Slice 0 alone (see SK) runs the epilogue.
    if j < u.h && lid.z == 0u {
        for (var r = 0u; r < RB; r++) {
            let b = tile_row(b0, lid, r);
            if b < u.b {
                rnn_forward_row(dir, t, b, j, gh[r].x);
            }
        }
    }
}

// The forward epilogue of row b, unit j, given gh = (h_prev·W_hhᵀ)[b, j].
fn rnn_forward_row(dir: u32, t: u32, b: u32, j: u32, gh: f32) {
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

// Tile (wx, wy) of step s (the s-th processed backward) of direction dir: a
// workgroup of the per-step dispatch.
fn backward_tile(dir: u32, s: u32, wx: u32, wy: u32, lid: vec3<u32>, li: u32) {
    let H = u.h;
    let b0 = wy * TB * RB;
    let j0 = wx * TJ * UB;
    let t = bwd_step(s, dir);
    var dh_w: array<f32, RBU_MAX>; // zero at the first step processed
    if s > 0u {
        let dgp = pick(u.dg0, u.dg1, dir) + bwd_prev_step(t, dir) * u.b * H;
        dh_w = recurrent_tile_t(H, pick(u.whh0, u.whh1, dir), dgp, b0, j0, lid, li);
    }
    // Slice 0 alone (see SK) runs the epilogue, for units j0 + lid.x + v*TJ (see UB).
    if lid.z == 0u {
        for (var v = 0u; v < UB; v++) {
            let j = j0 + lid.x + v * TJ;
            if j < H {
                for (var r = 0u; r < RB; r++) {
                    let b = tile_row(b0, lid, r);
                    if b < u.b {
                        rnn_backward_row(dir, t, b, j, dh_w[v * RB + r]);
                    }
                }
            }
        }
    }
}

// The backward epilogue of row b, unit j, given dh_w = (dG[t']·W_hh)[b, j].
fn rnn_backward_row(dir: u32, t: u32, b: u32, j: u32, dh_w: f32) {
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
