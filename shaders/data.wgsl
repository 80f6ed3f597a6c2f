// A training set kept on the device (src/gpu/resident.rs): each step's batch
// is gathered from it into the plan's workspace by the rows' indices, in the
// layouts the host path uploads (GpuModel::upload_batch): the same values,
// so the same results bit for bit.
//
// Its own bindings (not the other kernels'): the data set as f32 (features,
// mse targets) and as i32 (token ids, lengths, class targets), the plan's
// work and ints (both written here), the batch's row indices.
//
//   gather_f32: work[dst_off + ...] <- data_f[src_off + ...]
//   gather_i32: ints[dst_off + ...] <- data_i[src_off + ...]
// over b rows, t steps (of the set's t_full), width values a step:
//   order 0, time-major:  dst[(t*B + b)*width + f] = src[(rows[b]*t_full + t)*width + f]
//   order 1, batch-first: dst[(b*T + t)*width + f] = src[(rows[b]*t_full + t)*width + f]
//   order 2, per row:     dst[b*width + f]         = src[rows[b]*width + f]
//   fill = 1: dst[b] = value for each row (lengths when the set has none).

@group(0) @binding(0) var<storage, read> data_f: array<f32>;
@group(0) @binding(1) var<storage, read> data_i: array<i32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read_write> ints: array<i32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;

struct Gather {
    b: u32,
    t: u32,
    t_full: u32,
    width: u32,
    src_off: u32,
    dst_off: u32,
    order: u32,
    fill: u32,
    value: i32,
}
@group(0) @binding(5) var<uniform> u: Gather;

override WG: u32 = 64u;

fn total() -> u32 {
    if u.fill != 0u {
        return u.b;
    }
    if u.order == 2u {
        return u.b * u.width;
    }
    return u.t * u.b * u.width;
}

// (destination, source) of element i.
fn place(i: u32) -> vec2<u32> {
    let f = i % u.width;
    let p = i / u.width;
    if u.order == 2u {
        return vec2<u32>(u.dst_off + i, u.src_off + rows[p] * u.width + f);
    }
    var t: u32;
    var b: u32;
    if u.order == 0u {
        t = p / u.b;
        b = p % u.b;
    } else {
        b = p / u.t;
        t = p % u.t;
    }
    return vec2<u32>(u.dst_off + i, u.src_off + (rows[b] * u.t_full + t) * u.width + f);
}

@compute @workgroup_size(WG)
fn gather_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = total();
    for (var i = gid.x; i < n; i += nwg.x * WG) {
        let at = place(i);
        work[at.x] = data_f[at.y];
    }
}

@compute @workgroup_size(WG)
fn gather_i32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = total();
    for (var i = gid.x; i < n; i += nwg.x * WG) {
        if u.fill != 0u {
            ints[u.dst_off + i] = u.value;
        } else {
            let at = place(i);
            ints[at.x] = data_i[at.y];
        }
    }
}
