// requires: half.wgsl mask.wgsl step_common.wgsl
// GRU steps (gates r, z, n; PyTorch formulation with b_hn inside r*(W_hn h + b_hn)),
// mirroring cpu/cell.rs gru_step_forward / gru_step_backward.
// One invocation per (hidden unit j, RB batch rows b) owns all three gates of j.

// What the shared step tiles (step_common.wgsl) need of this cell: its gates
// per unit, and the start of the gate gradients that W_hh multiplies backward.
const GATES: u32 = 3u;
fn recurrent_dg(dir: u32) -> u32 {
    return pick(u.dgh0, u.dgh1, dir);
}

@compute @workgroup_size(TJ, TB, SK)
fn gru_step_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    run_forward(wid, lid, li);
}

// The forward epilogue of row b, unit j, given gh = h_prev·W_hhᵀ for its 3 gates.
fn forward_row(dir: u32, t: u32, b: u32, j: u32, gates: vec4<f32>) {
    let gh = gates.xyz;
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
    let bhh = pick(u.bhh0, u.bhh1, dir);
    let acc = vec3<f32>(params[bhh + j], params[bhh + H + j], params[bhh + 2u * H + j]) + gh;
    let gx = pick(u.gx0, u.gx1, dir) + (t * B + b) * 3u * H;
    let r = sigmoid(work[gx + j] + acc.x);
    let z = sigmoid(work[gx + H + j] + acc.y);
    let ghn = acc.z;
    let n = tanh_s(work[gx + 2u * H + j] + r * ghn);
    let h = (1.0 - z) * n + z * work[hp + j];
    work[ho] = h;
    work[yi] = h;
    let sv = pick(u.sv0, u.sv1, dir) + (t * B + b) * 4u * H;
    work[sv + j] = r;
    work[sv + H + j] = z;
    work[sv + 2u * H + j] = n;
    work[sv + 3u * H + j] = ghn;
}

// dh = carry + dGh[t']·W_hh + dy[t]; writes dG[t] (of gx), dGh[t] (of gh) and
// carry = dh*z (the direct part of the gradient of h_prev).
@compute @workgroup_size(TJ, TB, SK)
fn gru_step_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    run_backward(wid, lid, li);
}

// The backward epilogue of row b, unit j, given dh_w = (dGh[t']·W_hh)[b, j].
fn backward_row(dir: u32, t: u32, b: u32, j: u32, dh_w: f32) {
    let H = u.h;
    let B = u.b;
    let GH = 3u * H;
    let dg = pick(u.dg0, u.dg1, dir);
    let dgh = pick(u.dgh0, u.dgh1, dir);
    let ci = u.carry_off + b * u.ld + dir * H + j;
    var dh = work[ci] + dh_w;
    let dgt = dg + (t * B + b) * GH;
    let dght = dgh + (t * B + b) * GH;
    if !valid(b, t) {
        work[ci] = dh;
        for (var g = 0u; g < 3u; g++) {
            work[dgt + g * H + j] = 0.0;
            work[dght + g * H + j] = 0.0;
        }
        return;
    }
    if u.has_dy != 0u {
        dh += work[u.dy_off + (t * B + b) * u.ld + dir * H + j];
    }
    let sv = pick(u.sv0, u.sv1, dir) + (t * B + b) * 4u * H;
    let r = work[sv + j];
    let z = work[sv + H + j];
    let n = work[sv + 2u * H + j];
    let ghn = work[sv + 3u * H + j];
    let hs = pick(u.hs0, u.hs1, dir);
    let h_prev = work[hs + prev_slot(t, dir) * B * H + b * H + j];
    let dn = dh * (1.0 - z) * (1.0 - n * n);
    let dz = dh * (h_prev - n) * z * (1.0 - z);
    let dr = dn * ghn * r * (1.0 - r);
    work[dgt + j] = dr;
    work[dgt + H + j] = dz;
    work[dgt + 2u * H + j] = dn;
    work[dght + j] = dr;
    work[dght + H + j] = dz;
    work[dght + 2u * H + j] = dn * r;
    work[ci] = dh * z;
}
