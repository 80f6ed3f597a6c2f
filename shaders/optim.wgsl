// Gradient-norm clipping and the optimizers, mirroring cpu/optim.rs
// (clip_grad_norm, SGD and Adam in torch.optim's order of f32 operations).
// One dispatch updates the whole flat parameter buffer.
//
//   params, grads [P]; state [2P] = SGD momentum / Adam exp_avg, then Adam exp_avg_sq
//   scalars (work): [0] loss, [1] count, [2] grad norm, [3] clip coefficient
//   partials (work) [NORM_GROUPS]: per-workgroup sums of squares

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

struct Opt {
    n: u32,
    kind: u32,
    scalars_off: u32,
    partials_off: u32,
    partials: u32,
    has_clip: u32,
    max_norm: f32,
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    nesterov: u32,
    first: u32,
    w1: f32,
    beta2: f32,
    w2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
}
@group(0) @binding(5) var<uniform> u: Opt;

// Invocations per workgroup (a power of two).
override WG: u32 = 256u;

var<workgroup> red: array<f32, WG>;

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Pass 1 of the norm: workgroup w sums g² over indices w*WG + lid + k*stride.
@compute @workgroup_size(WG)
fn grad_norm_partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var acc = 0.0;
    let stride = nwg.x * WG;
    for (var k = wid.x * WG + lid; k < u.n; k += stride) {
        let g = grads[k];
        acc += g * g;
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        work[u.partials_off + wid.x] = red[0];
    }
}

// Pass 2 (one workgroup): norm = sqrt(Σ partials), clip coefficient
// min(max_norm / (norm + 1e-6), 1) as clip_grad_norm_.
@compute @workgroup_size(WG)
fn grad_norm_finish(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var k = lid; k < u.partials; k += WG) {
        acc += work[u.partials_off + k];
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let norm = sqrt(red[0]);
        var coef = 1.0;
        if u.has_clip != 0u {
            coef = min(u.max_norm / (norm + 1e-6), 1.0);
        }
        work[u.scalars_off + 2u] = norm;
        work[u.scalars_off + 3u] = coef;
    }
}

// One optimizer step over every parameter (grid-stride). Skipped entirely when
// the loss or the gradient norm is not finite: the last good weights are kept.
@compute @workgroup_size(WG)
fn optimizer_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let loss = work[u.scalars_off];
    let norm = work[u.scalars_off + 2u];
    if !(finite(loss) && finite(norm)) {
        return;
    }
    let coef = work[u.scalars_off + 3u];
    let stride = nwg.x * WG;
    for (var k = gid.x; k < u.n; k += stride) {
        var g = grads[k];
        if coef < 1.0 {
            g = g * coef;
        }
        if u.weight_decay != 0.0 {
            g += u.weight_decay * params[k];
        }
        if u.kind == 0u {
            // SGD
            if u.momentum != 0.0 {
                var buf = g;
                if u.first == 0u {
                    buf = u.momentum * state[k] + g;
                }
                state[k] = buf;
                if u.nesterov != 0u {
                    g = g + u.momentum * buf;
                } else {
                    g = buf;
                }
            }
            params[k] += -u.lr * g;
        } else {
            // Adam
            let m = state[k] + u.w1 * (g - state[k]);
            let v = state[u.n + k] * u.beta2 + u.w2 * (g * g);
            state[k] = m;
            state[u.n + k] = v;
            let denom = sqrt(v) / u.bc2_sqrt + u.eps;
            params[k] += -u.step_size * (m / denom);
        }
    }
}
