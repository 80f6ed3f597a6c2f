// Token embedding (nn.Embedding): gather forward, deterministic scatter-add backward.
//
//   table  [V, W] (params) / its gradient (grads)
//   ids    [B, T] (ints, batch-first as given)
//   x      [T, B, W] (work) time-major layer-0 input; dx its gradient

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read> ints: array<i32>;

struct Embed {
    b: u32,
    t_len: u32,
    width: u32,
    vocab: u32,
    ids_off: u32,
    table_off: u32,
    x_off: u32,
    dx_off: u32,
}
@group(0) @binding(5) var<uniform> u: Embed;

override WG: u32 = 64u;

// x[t, b, f] = table[ids[b, t], f], one invocation per element (grid-stride).
@compute @workgroup_size(WG)
fn embed_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.t_len * u.b * u.width;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let f = i % u.width;
        let p = i / u.width;
        let t = p / u.b;
        let b = p % u.b;
        let id = u32(ints[u.ids_off + b * u.t_len + t]);
        work[u.x_off + i] = params[u.table_off + id * u.width + f];
    }
}

// grad_table[v, f] += Σ dx[t, b, f] over positions with ids[b, t] == v, in the
// CPU's order (b outer, t inner). One invocation per (v, f): no float atomics.
@compute @workgroup_size(WG)
fn embed_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.vocab * u.width;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let f = i % u.width;
        let v = i32(i / u.width);
        var acc = grads[u.table_off + i];
        for (var b = 0u; b < u.b; b++) {
            for (var t = 0u; t < u.t_len; t++) {
                if ints[u.ids_off + b * u.t_len + t] == v {
                    acc += work[u.dx_off + (t * u.b + b) * u.width + f];
                }
            }
        }
        grads[u.table_off + i] = acc;
    }
}
