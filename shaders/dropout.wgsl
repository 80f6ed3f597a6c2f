// requires: mask.wgsl
// Dropout masks (training only), the same as the CPU path's (src/dropout.rs):
// element i of a site's mask keeps its value, times `scale`, when the top 24
// bits of mix(site_key ^ mix(i)) are at least `threshold`, and zeroes it
// otherwise; site_key = mix(step_key ^ mix(site)). The step's key and an
// on/off flag are in ints ([key, on]): evaluation writes off, and the kernel
// then copies its values unchanged (in place: touches nothing).
//
//   src  [rows, cols] at src_off, row stride src_ld (work)
//   dst  [rows, cols] at dst_off, row stride dst_ld (work); may be src, but
//        not with accumulate = 1, which adds to dst instead of writing it
//   the mask's index of (r, c): mask_base + (r % mask_rows) * mask_ld + c

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read> ints: array<i32>;

struct Drop {
    rows: u32,
    cols: u32,
    src_off: u32,
    src_ld: u32,
    dst_off: u32,
    dst_ld: u32,
    mask_base: u32,
    mask_ld: u32,
    mask_rows: u32,
    site: u32,
    threshold: u32,
    scale: f32,
    key_off: u32,
    accumulate: u32,
}
@group(0) @binding(5) var<uniform> u: Drop;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn dropout_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.rows * u.cols;
    let on = ints[u.key_off + 1u] != 0;
    let key = site_key(bitcast<u32>(ints[u.key_off]), u.site);
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let r = i / u.cols;
        let c = i % u.cols;
        var v = work[u.src_off + r * u.src_ld + c];
        if on {
            v *= mask_at(key, u.mask_base + (r % u.mask_rows) * u.mask_ld + c, u.threshold, u.scale);
        }
        let o = u.dst_off + r * u.dst_ld + c;
        if u.accumulate != 0u {
            v += work[o];
        }
        work[o] = v;
    }
}
