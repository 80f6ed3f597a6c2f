// Tiled GEMM and column sums over the three f32 storage buffers of the GPU path.
//
//   gemm:        C = beta*C + op(A)·op(B) (+ bias[col])
//                op(A) is [m, k]: A row-major with leading dimension lda, or
//                its transpose (A stored [k, m]) when a_t != 0; same for B ([k, n]).
//                4x4 outputs per invocation.
//   gemm_rm:     the same with RMG x RMG outputs per invocation (RMG an override).
//   gemm_wide:   the same with 8x8 outputs per invocation on 128x128 (WT 16) or
//                64x64 (WT 8) blocks, vec4 workgroup tiles, double-buffered over K
//                (at the end of the file).
//   gemm_small:  the same with one output per invocation (small grids), optionally split over K
//                (gemm_split_reduce then adds the splits in order).
//   column_sums: C[0, j] += Σ_row A[row, j] (fixed order, deterministic): bias gradients.
//
// Every operand is addressed as (buffer id, element offset, leading dimension):
// buffer 0 = params, 1 = grads, 2 = work. workgroup_id.z selects a batch entry
// whose offsets move by a_z, b_z, c_z, bias_z elements (both directions of a
// bidirectional layer in one dispatch).

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;

struct Gemm {
    m: u32,
    n: u32,
    k: u32,
    beta: f32,
    a_buf: u32,
    a_off: u32,
    lda: u32,
    a_t: u32,
    b_buf: u32,
    b_off: u32,
    ldb: u32,
    b_t: u32,
    c_buf: u32,
    c_off: u32,
    ldc: u32,
    bias_buf: u32,
    bias_off: u32,
    has_bias: u32,
    a_z: u32,
    b_z: u32,
    c_z: u32,
    bias_z: u32,
    // Split-K (gemm_small, gemm_split_reduce): workgroup_id.z = batch * splits + split;
    // split s covers k in [s*k_chunk, (s+1)*k_chunk) and writes its partial
    // product to work[part_off + ((batch*splits + s)*m + row)*n + col].
    splits: u32,
    k_chunk: u32,
    part_off: u32,
}
@group(0) @binding(5) var<uniform> u: Gemm;

// The operands' buffers, transposes, bias and beta as the kernels read them:
// from the uniform in the generic module; in a module specialised to one
// GEMM's operands (RECURRENT_GEMM_SPECIALISE=1: src/gpu/gemm_spec.rs) each
// line marked `// spec:` returns a constant instead, so the buffer switches
// and the other transpose's and the bias's branches fold away. The same
// arithmetic either way.
fn a_buf() -> u32 { return u.a_buf; } // spec: a_buf
fn b_buf() -> u32 { return u.b_buf; } // spec: b_buf
fn c_buf() -> u32 { return u.c_buf; } // spec: c_buf
fn bias_buf() -> u32 { return u.bias_buf; } // spec: bias_buf
fn a_t() -> bool { return u.a_t != 0u; } // spec: a_t
fn b_t() -> bool { return u.b_t != 0u; } // spec: b_t
fn has_bias() -> bool { return u.has_bias != 0u; } // spec: has_bias
fn beta_on() -> bool { return u.beta != 0.0; } // spec: beta_on

// The workgroup is TILE x TILE invocations; each computes RM x RM outputs
// (rows ty + i*TILE, columns tx + j*TILE), so a workgroup owns a BM x BM
// block of C and walks K in steps of TILE, staging op(A) and op(B) blocks in
// workgroup memory with coalesced loads for either transpose.
// TILE (8 or 16) is chosen per GEMM shape by the host's autotuner
// (src/gpu/gemm_config.rs, src/gpu/gemm_tune.rs); every value is a separate pipeline.
//
// Two register-blocked entry points (the host picks by RM, see Kernel::GemmRm):
//   gemm:    RM fixed at 4, its 4x4 block written out on vec4s with constant
//            indices. The kernel measured on an H200 (BENCHMARKS.md) and the
//            fixed choice; every configuration with RM = 4 runs it.
//   gemm_rm: the same algorithm with the block edge an override (RMG below:
//            2 or 8; 4 validates too), the block in function-scope arrays
//            indexed by loop variables.
//            Only for the autotuner's other register blocks: unmeasured on
//            real GPUs, where such arrays may live in local memory unless the
//            driver unrolls the loops, so it must win its measurement to be used.
override TILE: u32 = 16u;
const RM: u32 = 4u;
// gemm uses the default. The host sets BM = TILE for gemm_small, gemm_split_reduce
// and column_sums, which stage TILE x TILE of each array (less workgroup memory).
override BM: u32 = TILE * RM;

// op(A) block, k-major: tile_a[kk * BM + r]
var<workgroup> tile_a: array<f32, BM * TILE>;
// op(B) block, k-major: tile_b[kk * BM + c]
var<workgroup> tile_b: array<f32, BM * TILE>;

fn ld(buf: u32, i: u32) -> f32 {
    switch buf {
        case 0u: { return params[i]; }
        case 1u: { return grads[i]; }
        default: { return work[i]; }
    }
}

fn st(buf: u32, i: u32, v: f32) {
    switch buf {
        case 0u: { params[i] = v; }
        case 1u: { grads[i] = v; }
        default: { work[i] = v; }
    }
}

// The epilogue of every GEMM entry point: C[ci] = v (+ bias[col] of batch
// entry z) (+ beta * C[ci]), in that order.
fn store_c(z: u32, ci: u32, col: u32, v: f32) {
    var x = v;
    if has_bias() {
        x += ld(bias_buf(), u.bias_off + z * u.bias_z + col);
    }
    // beta = 0 overwrites C: NaN or garbage in it is not propagated.
    if beta_on() {
        x += u.beta * ld(c_buf(), ci);
    }
    st(c_buf(), ci, x);
}

@compute @workgroup_size(TILE, TILE)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let z = wid.z;
    let a0 = u.a_off + z * u.a_z;
    let b0 = u.b_off + z * u.b_z;
    let c0 = u.c_off + z * u.c_z;
    let row0 = wid.y * BM;
    let col0 = wid.x * BM;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < RM; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let tiles = (u.k + TILE - 1u) / TILE;
    for (var kt = 0u; kt < tiles; kt++) {
        let k0 = kt * TILE;
        for (var e = li; e < BM * TILE; e += TILE * TILE) {
            // A: consecutive invocations read consecutive addresses in memory.
            var r = e / TILE;
            var kk = e % TILE;
            if a_t() {
                kk = e / BM;
                r = e % BM;
            }
            let row = row0 + r;
            let k = k0 + kk;
            var av = 0.0;
            if row < u.m && k < u.k {
                var ai = row * u.lda + k;
                if a_t() {
                    ai = k * u.lda + row;
                }
                av = ld(a_buf(), a0 + ai);
            }
            tile_a[kk * BM + r] = av;
            // B
            var c = e % BM;
            var kb = e / BM;
            if b_t() {
                c = e / TILE;
                kb = e % TILE;
            }
            let col = col0 + c;
            let kq = k0 + kb;
            var bv = 0.0;
            if kq < u.k && col < u.n {
                var bi = kq * u.ldb + col;
                if b_t() {
                    bi = col * u.ldb + kq;
                }
                bv = ld(b_buf(), b0 + bi);
            }
            tile_b[kb * BM + c] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            let a = vec4<f32>(tile_a[kk * BM + lid.y], tile_a[kk * BM + lid.y + TILE], tile_a[kk * BM + lid.y + 2u * TILE], tile_a[kk * BM + lid.y + 3u * TILE]);
            let b = vec4<f32>(tile_b[kk * BM + lid.x], tile_b[kk * BM + lid.x + TILE], tile_b[kk * BM + lid.x + 2u * TILE], tile_b[kk * BM + lid.x + 3u * TILE]);
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < RM; i++) {
        let row = row0 + lid.y + i * TILE;
        for (var j = 0u; j < RM; j++) {
            let col = col0 + lid.x + j * TILE;
            if row < u.m && col < u.n {
                store_c(z, c0 + row * u.ldc + col, col, acc[i][j]);
            }
        }
    }
}

// gemm_rm: RMG x RMG outputs per invocation (RMG 2, 4 or 8; the host runs it for 2
// and 8 only), BMG = TILE * RMG, staged in its own workgroup arrays.
override RMG: u32 = 4u;
override BMG: u32 = TILE * RMG;
// Largest RMG: the size of the per-invocation register arrays of gemm_rm
// (function-scope arrays need a constant size; after override substitution
// the RMG loops have constant trip counts and may unroll, so only RMG x RMG of them live).
const RMAX: u32 = 8u;

// op(A) block, k-major: tile_ga[kk * BMG + r]
var<workgroup> tile_ga: array<f32, BMG * TILE>;
// op(B) block, k-major: tile_gb[kk * BMG + c]
var<workgroup> tile_gb: array<f32, BMG * TILE>;

@compute @workgroup_size(TILE, TILE)
fn gemm_rm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let z = wid.z;
    let a0 = u.a_off + z * u.a_z;
    let b0 = u.b_off + z * u.b_z;
    let c0 = u.c_off + z * u.c_z;
    let row0 = wid.y * BMG;
    let col0 = wid.x * BMG;
    // acc[i * RMAX + j]: output (row0 + lid.y + i*TILE, col0 + lid.x + j*TILE).
    var acc: array<f32, RMAX * RMAX>; // zero-initialised
    let tiles = (u.k + TILE - 1u) / TILE;
    for (var kt = 0u; kt < tiles; kt++) {
        let k0 = kt * TILE;
        for (var e = li; e < BMG * TILE; e += TILE * TILE) {
            // A: consecutive invocations read consecutive addresses in memory.
            var r = e / TILE;
            var kk = e % TILE;
            if a_t() {
                kk = e / BMG;
                r = e % BMG;
            }
            let row = row0 + r;
            let k = k0 + kk;
            var av = 0.0;
            if row < u.m && k < u.k {
                var ai = row * u.lda + k;
                if a_t() {
                    ai = k * u.lda + row;
                }
                av = ld(a_buf(), a0 + ai);
            }
            tile_ga[kk * BMG + r] = av;
            // B
            var c = e % BMG;
            var kb = e / BMG;
            if b_t() {
                c = e / TILE;
                kb = e % TILE;
            }
            let col = col0 + c;
            let kq = k0 + kb;
            var bv = 0.0;
            if kq < u.k && col < u.n {
                var bi = kq * u.ldb + col;
                if b_t() {
                    bi = col * u.ldb + kq;
                }
                bv = ld(b_buf(), b0 + bi);
            }
            tile_gb[kb * BMG + c] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            var a: array<f32, RMAX>;
            var b: array<f32, RMAX>;
            for (var i = 0u; i < RMG; i++) {
                a[i] = tile_ga[kk * BMG + lid.y + i * TILE];
                b[i] = tile_gb[kk * BMG + lid.x + i * TILE];
            }
            for (var i = 0u; i < RMG; i++) {
                for (var j = 0u; j < RMG; j++) {
                    acc[i * RMAX + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < RMG; i++) {
        let row = row0 + lid.y + i * TILE;
        for (var j = 0u; j < RMG; j++) {
            let col = col0 + lid.x + j * TILE;
            if row < u.m && col < u.n {
                store_c(z, c0 + row * u.ldc + col, col, acc[i * RMAX + j]);
            }
        }
    }
}

// The same product for small grids (weight gradients with small M x N and
// K = T*B): one output per invocation, TILE x TILE blocks, 16 times as many
// workgroups as `gemm` to keep the GPU busy.
@compute @workgroup_size(TILE, TILE)
fn gemm_small(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let splits = max(u.splits, 1u);
    let z = wid.z / splits;
    let split = wid.z % splits;
    var k_begin = 0u;
    var k_end = u.k;
    if splits > 1u {
        k_begin = split * u.k_chunk;
        k_end = min(u.k, k_begin + u.k_chunk);
    }
    let a0 = u.a_off + z * u.a_z;
    let b0 = u.b_off + z * u.b_z;
    let c0 = u.c_off + z * u.c_z;
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    var acc = 0.0;
    let tiles = (k_end - k_begin + TILE - 1u) / TILE;
    for (var kt = 0u; kt < tiles; kt++) {
        // A element (row, k_begin + kt*TILE + lid.x)
        let ak = k_begin + kt * TILE + lid.x;
        var av = 0.0;
        if row < u.m && ak < k_end {
            var ai = row * u.lda + ak;
            if a_t() {
                ai = ak * u.lda + row;
            }
            av = ld(a_buf(), a0 + ai);
        }
        tile_a[lid.y * TILE + lid.x] = av;
        // B element (kt*TILE + lid.y, col)
        let bk = k_begin + kt * TILE + lid.y;
        var bv = 0.0;
        if bk < k_end && col < u.n {
            var bi = bk * u.ldb + col;
            if b_t() {
                bi = col * u.ldb + bk;
            }
            bv = ld(b_buf(), b0 + bi);
        }
        tile_b[lid.y * TILE + lid.x] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc += tile_a[lid.y * TILE + kk] * tile_b[kk * TILE + lid.x];
        }
        workgroupBarrier();
    }
    if row < u.m && col < u.n && splits > 1u {
        work[u.part_off + ((z * splits + split) * u.m + row) * u.n + col] = acc;
        return;
    }
    if row < u.m && col < u.n {
        store_c(z, c0 + row * u.ldc + col, col, acc);
    }
}

// Second pass of split-K: C = beta*C + Σ_split partial (+ bias), the splits
// added in order (deterministic). One invocation per output.
@compute @workgroup_size(TILE, TILE)
fn gemm_split_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let z = wid.z;
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    if row >= u.m || col >= u.n {
        return;
    }
    var v = 0.0;
    for (var s = 0u; s < u.splits; s++) {
        v += work[u.part_off + ((z * u.splits + s) * u.m + row) * u.n + col];
    }
    store_c(z, u.c_off + z * u.c_z + row * u.ldc + col, col, v);
}

// C[0, j] += Σ_{row < m} A[row * lda + j] for j < n, A in work (bias
// gradients from dG or dout). A TILE x TILE workgroup owns TILE columns:
// invocation (x, y) sums rows y, y+TILE, ... of column x in order, then the
// TILE partial sums are added in a fixed tree (deterministic, no atomics).
@compute @workgroup_size(TILE, TILE)
fn column_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = wid.x * TILE + lid.x;
    let z = wid.z;
    let a0 = u.a_off + z * u.a_z;
    var acc = 0.0;
    if j < u.n {
        for (var r = lid.y; r < u.m; r += TILE) {
            acc += work[a0 + r * u.lda + j];
        }
    }
    tile_a[lid.y * TILE + lid.x] = acc;
    workgroupBarrier();
    for (var s = TILE / 2u; s > 0u; s = s / 2u) {
        if lid.y < s {
            tile_a[lid.y * TILE + lid.x] += tile_a[(lid.y + s) * TILE + lid.x];
        }
        workgroupBarrier();
    }
    if lid.y == 0u && j < u.n {
        let ci = u.c_off + z * u.c_z + j;
        st(c_buf(), ci, ld(c_buf(), ci) + tile_a[lid.x]);
    }
}

// gemm_wide: a (8·WT)² block of C per workgroup of WT x WT invocations
// (WT 16: 128 x 128; WT 8: 64 x 64), each computing 8 x 8 outputs: rows
// 4*ty + i and 4*WT + 4*ty + i, columns 4*tx + j and 4*WT + 4*tx + j
// (i, j < 4) of the block. K advances WK at a time through two workgroup
// buffers: while one step's operands are multiplied out of one buffer, the
// next step's are already loaded into registers, and go to the other buffer
// after, so a step costs one barrier and its global loads overlap the
// arithmetic. The workgroup tiles hold vec4s of 4 consecutive rows of op(A)
// (or columns of op(B)) at one k, so every inner-loop read from workgroup
// memory is a vec4 serving 32 of the 64 fused multiply-adds of its kk. Each
// output's sum runs over k in ascending order, as in `gemm`. Workgroup
// memory: 2 x 2 x WK x 8·WT x 4 bytes = 1 KiB x WT (the host's GemmConfig::Wide).
override WT: u32 = 16u;
const WK: u32 = 8u;
// vec4s across the block.
override WV: u32 = 2u * WT;
var<workgroup> wide_a: array<vec4<f32>, 2u * WK * WV>;
var<workgroup> wide_b: array<vec4<f32>, 2u * WK * WV>;
// vec4 groups of each operand per K step and invocation: WK·WV / WT² = 16 / WT.
const WIDE_LOADS_MAX: u32 = 2u;

// Elements i + q*s of buffer `buf` for q < cnt, the rest 0: four
// consecutive rows of op(A) (or columns of op(B)) at one k. The full case
// selects the buffer once for all four loads.
fn ld4(buf: u32, i: u32, s: u32, cnt: u32) -> vec4<f32> {
    if cnt >= 4u {
        switch buf {
            case 0u: {
                return vec4<f32>(params[i], params[i + s], params[i + 2u * s], params[i + 3u * s]);
            }
            case 1u: {
                return vec4<f32>(grads[i], grads[i + s], grads[i + 2u * s], grads[i + 3u * s]);
            }
            default: {
                return vec4<f32>(work[i], work[i + s], work[i + 2u * s], work[i + 3u * s]);
            }
        }
    }
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < cnt; q++) {
        v[q] = ld(buf, i + q * s);
    }
    return v;
}

// How many of the 4 rows (or columns) from `first` are inside `limit`, 0 when k is outside K.
fn in_range(first: u32, limit: u32, k: u32) -> u32 {
    if k >= u.k || first >= limit {
        return 0u;
    }
    return min(4u, limit - first);
}

// The operands of one K step an invocation stages, group q < 16 / WT:
// op(A) rows 4*ga..4*ga+3 at ka and op(B) columns 4*gb..4*gb+3 at kb
// (block-relative) for e = li + q*WT², see wide_map.
struct WideLoad {
    a: array<vec4<f32>, WIDE_LOADS_MAX>,
    b: array<vec4<f32>, WIDE_LOADS_MAX>,
}

// (ka, ga, kb, gb) of group e: the mapping follows each operand's layout so
// that neighbouring invocations read neighbouring addresses: along k where
// k is contiguous (A not transposed, B transposed), along rows or columns
// otherwise.
fn wide_map(e: u32) -> vec4<u32> {
    var m = vec4<u32>(e % WK, e / WK, e / WV, e % WV);
    if a_t() {
        m.x = e / WV;
        m.y = e % WV;
    }
    if b_t() {
        m.z = e % WK;
        m.w = e / WK;
    }
    return m;
}

fn wide_load(a0: u32, b0: u32, row0: u32, col0: u32, k0: u32, li: u32) -> WideLoad {
    var w: WideLoad;
    for (var q = 0u; q < 16u / WT; q++) {
        let m = wide_map(li + q * WT * WT);
        let ra = row0 + 4u * m.y;
        let k = k0 + m.x;
        var ai = a0 + ra * u.lda + k;
        var sa = u.lda;
        if a_t() {
            ai = a0 + k * u.lda + ra;
            sa = 1u;
        }
        let cb = col0 + 4u * m.w;
        let kq = k0 + m.z;
        var bi = b0 + kq * u.ldb + cb;
        var sb = 1u;
        if b_t() {
            bi = b0 + cb * u.ldb + kq;
            sb = u.ldb;
        }
        w.a[q] = ld4(a_buf(), ai, sa, in_range(ra, u.m, k));
        w.b[q] = ld4(b_buf(), bi, sb, in_range(cb, u.n, kq));
    }
    return w;
}

// Stores what wide_load read into buffer `half` (0 or 1) of the workgroup tiles.
fn wide_stage(w: WideLoad, half: u32, li: u32) {
    for (var q = 0u; q < 16u / WT; q++) {
        let m = wide_map(li + q * WT * WT);
        wide_a[half * WK * WV + m.x * WV + m.y] = w.a[q];
        wide_b[half * WK * WV + m.z * WV + m.w] = w.b[q];
    }
}

// C[row, col + j] (j < 4, inside m x n) from v[j] (store_c).
fn wide_out(z: u32, c0: u32, row: u32, col: u32, v: vec4<f32>) {
    if row >= u.m {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let cj = col + j;
        if cj < u.n {
            store_c(z, c0 + row * u.ldc + cj, cj, v[j]);
        }
    }
}

@compute @workgroup_size(WT, WT)
fn gemm_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let z = wid.z;
    let a0 = u.a_off + z * u.a_z;
    let b0 = u.b_off + z * u.b_z;
    let c0 = u.c_off + z * u.c_z;
    let row0 = wid.y * 8u * WT;
    let col0 = wid.x * 8u * WT;
    let tx = lid.x;
    let ty = lid.y;
    // acc[2*i + h]: row 4*ty + i (i < 4) or 4*WT + 4*ty + i - 4 (i >= 4),
    // columns 4*tx + (0..4) (h = 0) or 4*WT + 4*tx + (0..4) (h = 1).
    var acc: array<vec4<f32>, 16>; // zero-initialised
    let steps = (u.k + WK - 1u) / WK;
    wide_stage(wide_load(a0, b0, row0, col0, 0u, li), 0u, li);
    workgroupBarrier();
    for (var kt = 0u; kt < steps; kt++) {
        let cur = kt % 2u;
        let more = kt + 1u < steps;
        var next: WideLoad;
        if more {
            next = wide_load(a0, b0, row0, col0, (kt + 1u) * WK, li);
        }
        for (var kk = 0u; kk < WK; kk++) {
            let base = cur * WK * WV + kk * WV;
            let x0 = wide_a[base + ty];
            let x1 = wide_a[base + WT + ty];
            let y0 = wide_b[base + tx];
            let y1 = wide_b[base + WT + tx];
            acc[0] += x0.x * y0;
            acc[1] += x0.x * y1;
            acc[2] += x0.y * y0;
            acc[3] += x0.y * y1;
            acc[4] += x0.z * y0;
            acc[5] += x0.z * y1;
            acc[6] += x0.w * y0;
            acc[7] += x0.w * y1;
            acc[8] += x1.x * y0;
            acc[9] += x1.x * y1;
            acc[10] += x1.y * y0;
            acc[11] += x1.y * y1;
            acc[12] += x1.z * y0;
            acc[13] += x1.z * y1;
            acc[14] += x1.w * y0;
            acc[15] += x1.w * y1;
        }
        if more {
            // The other buffer was last read in step kt - 1, before the
            // barrier that ended it.
            wide_stage(next, 1u - cur, li);
        }
        workgroupBarrier();
    }
    let r_lo = row0 + 4u * ty;
    let r_hi = row0 + 4u * WT + 4u * ty;
    let c_lo = col0 + 4u * tx;
    let c_hi = col0 + 4u * WT + 4u * tx;
    // Written out with constant indices (as the inner loop), so that no
    // driver has a reason to keep acc anywhere but in registers.
    wide_out(z, c0, r_lo, c_lo, acc[0]);
    wide_out(z, c0, r_lo, c_hi, acc[1]);
    wide_out(z, c0, r_lo + 1u, c_lo, acc[2]);
    wide_out(z, c0, r_lo + 1u, c_hi, acc[3]);
    wide_out(z, c0, r_lo + 2u, c_lo, acc[4]);
    wide_out(z, c0, r_lo + 2u, c_hi, acc[5]);
    wide_out(z, c0, r_lo + 3u, c_lo, acc[6]);
    wide_out(z, c0, r_lo + 3u, c_hi, acc[7]);
    wide_out(z, c0, r_hi, c_lo, acc[8]);
    wide_out(z, c0, r_hi, c_hi, acc[9]);
    wide_out(z, c0, r_hi + 1u, c_lo, acc[10]);
    wide_out(z, c0, r_hi + 1u, c_hi, acc[11]);
    wide_out(z, c0, r_hi + 2u, c_lo, acc[12]);
    wide_out(z, c0, r_hi + 2u, c_hi, acc[13]);
    wide_out(z, c0, r_hi + 3u, c_lo, acc[14]);
    wide_out(z, c0, r_hi + 3u, c_hi, acc[15]);
}
