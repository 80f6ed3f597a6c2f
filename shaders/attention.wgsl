// The element-wise and row-wise parts of sequence to sequence on the GPU
// (src/gpu/seq2seq/), mirroring src/seq2seq/attention.rs and decode.rs; the
// products around them are gemm.wgsl's GEMMs.
//
//   attn_softmax:    rows [rows, cols] of scores at dst (row stride dst_ld), in
//                    place: softmax over the first len of each row, 0 past it;
//                    row r's length is ints[len_off + r / len_div] (rows are
//                    [B, T] of a [B, T, S] block: len_div = T).
//   attn_softmax_backward: a at src, da at dst (same shape), in place:
//                    da <- a * (da - Σ_s a·da).
//   tanh_forward:    dst <- tanh(dst) over [rows, cols].
//   tanh_backward:   dst <- dst * (1 - src²) (src the tanh's output).
//   copy_block:      dst (ld dst_ld) <- src (ld src_ld) over [rows, cols]: the
//                    bridge between the stacks and its gradient, and decoding's
//                    states from one step to the next.
//   argmax:          for each row of src [rows, cols] (logits), the first
//                    largest column (as an f32 value: exact below 2^24) into
//                    dst[r] (the next step's token) and out[out_off + r * out_ld]
//                    (the decoded tokens).
//   gather_rows:     dst row r (ld dst_ld) <- src row work[idx_off + r] (an f32
//                    value; ld src_ld) over [rows, cols]: beam search's states
//                    taken from the hypotheses they continue.
//   embed_tokens:    dst [rows, cols] (ld dst_ld) <- rows of the table at
//                    params[table_off] [V, cols] for the tokens work[src_off + r]
//                    (f32 values, argmax's): the decoder's next input.

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read> ints: array<i32>;

struct Attn {
    rows: u32,
    cols: u32,
    src_off: u32,
    src_ld: u32,
    dst_off: u32,
    dst_ld: u32,
    len_off: u32,
    len_div: u32,
    out_off: u32,
    out_ld: u32,
    table_off: u32,
    idx_off: u32,
}
@group(0) @binding(5) var<uniform> u: Attn;

override WG: u32 = 64u;

// One invocation per row (grid-stride): the rows are short (the source's steps).
@compute @workgroup_size(WG)
fn attn_softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var r = gid.x; r < u.rows; r += nwg.x * WG) {
        let row = u.dst_off + r * u.dst_ld;
        let len = min(u32(max(ints[u.len_off + r / u.len_div], 0)), u.cols);
        var mx = work[row];
        for (var s = 1u; s < len; s++) {
            mx = max(mx, work[row + s]);
        }
        var sum = 0.0;
        for (var s = 0u; s < len; s++) {
            let e = exp(work[row + s] - mx);
            work[row + s] = e;
            sum += e;
        }
        for (var s = 0u; s < u.cols; s++) {
            if s < len {
                work[row + s] = work[row + s] / sum;
            } else {
                work[row + s] = 0.0;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn attn_softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var r = gid.x; r < u.rows; r += nwg.x * WG) {
        let a = u.src_off + r * u.src_ld;
        let d = u.dst_off + r * u.dst_ld;
        var dot = 0.0;
        for (var s = 0u; s < u.cols; s++) {
            dot += work[a + s] * work[d + s];
        }
        for (var s = 0u; s < u.cols; s++) {
            work[d + s] = work[a + s] * (work[d + s] - dot);
        }
    }
}

@compute @workgroup_size(WG)
fn tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.rows * u.cols;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let o = u.dst_off + (i / u.cols) * u.dst_ld + i % u.cols;
        work[o] = tanh(work[o]);
    }
}

@compute @workgroup_size(WG)
fn tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.rows * u.cols;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let r = i / u.cols;
        let c = i % u.cols;
        let y = work[u.src_off + r * u.src_ld + c];
        let o = u.dst_off + r * u.dst_ld + c;
        work[o] = work[o] * (1.0 - y * y);
    }
}

@compute @workgroup_size(WG)
fn copy_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.rows * u.cols;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let r = i / u.cols;
        let c = i % u.cols;
        work[u.dst_off + r * u.dst_ld + c] = work[u.src_off + r * u.src_ld + c];
    }
}

@compute @workgroup_size(WG)
fn argmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var r = gid.x; r < u.rows; r += nwg.x * WG) {
        let row = u.src_off + r * u.src_ld;
        var best = 0u;
        for (var j = 1u; j < u.cols; j++) {
            if work[row + j] > work[row + best] {
                best = j;
            }
        }
        work[u.dst_off + r] = f32(best);
        work[u.out_off + r * u.out_ld] = f32(best);
    }
}

@compute @workgroup_size(WG)
fn embed_tokens(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.rows * u.cols;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let r = i / u.cols;
        let c = i % u.cols;
        let id = u32(work[u.src_off + r]);
        work[u.dst_off + r * u.dst_ld + c] = params[u.table_off + id * u.cols + c];
    }
}

@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = u.rows * u.cols;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let r = i / u.cols;
        let c = i % u.cols;
        let src_row = u32(work[u.idx_off + r]);
        work[u.dst_off + r * u.dst_ld + c] = work[u.src_off + src_row * u.src_ld + c];
    }
}
