// Losses of the head output and their gradients, mirroring cpu/loss.rs.
// One workgroup of WG invocations walks the rows (so the reductions have a
// fixed order and no atomics are needed); rows are time-major positions
// p = t*B + b for output `sequence`, p = b for `last`.
//
//   out    [rows, O]  (work)  head output (logits for ce)
//   dout   [rows, O]  (work)  gradient of the mean loss w.r.t. out
//   ce:  classes [rows] (ints), -100 = ignore
//   mse: values  [rows, O] (work)
//   scalars[0] = loss, scalars[1] = counted positions (work)

@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read> ints: array<i32>;

struct Head {
    rows: u32,
    o: u32,
    b: u32,
    seq: u32,
    has_len: u32,
    len_off: u32,
    out_off: u32,
    dout_off: u32,
    target_off: u32,
    scalars_off: u32,
}
@group(0) @binding(5) var<uniform> u: Head;

// Invocations of the single loss workgroup (a power of two).
override WG: u32 = 256u;

var<workgroup> red: array<f32, WG>;

// Is position p inside its sequence?
fn in_length(p: u32) -> bool {
    if u.seq == 0u || u.has_len == 0u {
        return true;
    }
    let t = p / u.b;
    let b = p % u.b;
    return i32(t) < ints[u.len_off + b];
}

// Sum of red[0..WG] into red[0]; every invocation must call it.
fn reduce(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn ce_counted(p: u32) -> bool {
    return in_length(p) && ints[u.target_off + p] != -100;
}

@compute @workgroup_size(WG)
fn loss_ce(@builtin(local_invocation_index) lid: u32) {
    var n = 0.0;
    for (var p = lid; p < u.rows; p += WG) {
        if ce_counted(p) {
            n += 1.0;
        }
    }
    let count = reduce(lid, n);
    var scale = 0.0;
    if count > 0.0 {
        scale = 1.0 / count;
    }
    var total = 0.0;
    for (var p = lid; p < u.rows; p += WG) {
        let row = u.out_off + p * u.o;
        let drow = u.dout_off + p * u.o;
        if !ce_counted(p) {
            for (var j = 0u; j < u.o; j++) {
                work[drow + j] = 0.0;
            }
            continue;
        }
        var mx = work[row];
        for (var j = 1u; j < u.o; j++) {
            mx = max(mx, work[row + j]);
        }
        var sum = 0.0;
        for (var j = 0u; j < u.o; j++) {
            sum += exp(work[row + j] - mx);
        }
        let lse = mx + log(sum);
        let c = u32(ints[u.target_off + p]);
        total += lse - work[row + c];
        for (var j = 0u; j < u.o; j++) {
            var d = exp(work[row + j] - lse);
            if j == c {
                d -= 1.0;
            }
            work[drow + j] = d * scale;
        }
    }
    let loss = reduce(lid, total);
    if lid == 0u {
        work[u.scalars_off] = loss * scale;
        work[u.scalars_off + 1u] = count;
    }
}

@compute @workgroup_size(WG)
fn loss_mse(@builtin(local_invocation_index) lid: u32) {
    var n = 0.0;
    for (var p = lid; p < u.rows; p += WG) {
        if in_length(p) {
            n += 1.0;
        }
    }
    let count = reduce(lid, n) * f32(u.o);
    var scale = 0.0;
    if count > 0.0 {
        scale = 1.0 / count;
    }
    var total = 0.0;
    for (var p = lid; p < u.rows; p += WG) {
        let ok = in_length(p);
        for (var j = 0u; j < u.o; j++) {
            let i = p * u.o + j;
            var d = 0.0;
            if ok {
                let diff = work[u.out_off + i] - work[u.target_off + i];
                total += diff * diff;
                d = 2.0 * diff * scale;
            }
            work[u.dout_off + i] = d;
        }
    }
    let loss = reduce(lid, total);
    if lid == 0u {
        work[u.scalars_off] = loss * scale;
        work[u.scalars_off + 1u] = count;
    }
}
