// requires: half.wgsl
// The f16 copy of W_hh (opt-in, see src/gpu/weights.rs): converts each
// layer-direction's W_hh in params to binary16, two per u32, into whh16.
// Runs after every upload of the parameters and after
// every optimizer step, in the step's command buffer.

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
// The f16 copy, bound in place of the optimizer state (which no kernel that
// reads the copy uses): element e of a block is the half at bits 16*(e%2) of word e/2.
@group(0) @binding(4) var<storage, read_write> whh16: array<u32>;

// One layer, both directions (workgroup_id.z = direction): `len` elements
// from params[src_d..] to the words whh16[dst_d..].
struct Convert {
    len: u32,
    src0: u32,
    src1: u32,
    dst0: u32,
    dst1: u32,
}
@group(0) @binding(5) var<uniform> u: Convert;

override WG: u32 = 64u;

// One invocation per word (grid-stride): elements 2w and 2w+1 (zero past the end).
@compute @workgroup_size(WG)
fn whh_to_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let dir = gid.z;
    let src = select(u.src0, u.src1, dir == 1u);
    let dst = select(u.dst0, u.dst1, dir == 1u);
    let words = (u.len + 1u) / 2u;
    for (var w = gid.x; w < words; w += nwg.x * WG) {
        let e = 2u * w;
        let lo = f16_bits(params[src + e]);
        var hi = 0u;
        if e + 1u < u.len {
            hi = f16_bits(params[src + e + 1u]);
        }
        whh16[dst + w] = lo | (hi << 16u);
    }
}
