// Token embedding (nn.Embedding): gather forward, deterministic scatter-add backward.
//
//   table  [V, W] (params) / its gradient (grads)
//   ids    [B, T] (ints, batch-first as given); offsets [V + 1], rows [B*T]
//          (ints) each token's positions, for the backward
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
    offsets_off: u32,
    rows_off: u32,
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
// The positions of token v are rows[offsets[v]..offsets[v + 1]] (rows t*B + b
// of dx, in (b, t) order: the host's index, src/gpu/tokens.rs), so the work is
// V*W + B*T*W, not V*W*B*T.
@compute @workgroup_size(WG)
fn embed_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.vocab * u.width;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let f = i % u.width;
        let v = i / u.width;
        var acc = grads[u.table_off + i];
        let end = u32(ints[u.offsets_off + v + 1u]);
        for (var p = u32(ints[u.offsets_off + v]); p < end; p++) {
            let row = u32(ints[u.rows_off + p]);
            acc += work[u.dx_off + row * u.width + f];
        }
        grads[u.table_off + i] = acc;
    }
}
