// part: the step tiles of lstm.wgsl, gru.wgsl and rnn.wgsl
// requires: half.wgsl mask.wgsl
// Bindings, the per-step uniform and the step/slot helpers (mirrors cpu/layer.rs).

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read> ints: array<i32>;
// The opt-in f16 copy of W_hh (half.wgsl layout, two halves per u32), bound
// here in place of the optimizer state by the pipelines with WHH16 = 1; the
// f32 pipelines (WHH16 = 0, the default) never read it.
@group(0) @binding(4) var<storage, read_write> whh16: array<u32>; // grid: @group(0) @binding(4) var<storage, read_write> sync: array<atomic<u32>>;
// The sync module (the persistent grid, GRID > 1: each line marked grid
// replaced by its mark's text, src/gpu/grid.rs) declares the plan's sync
// buffer at binding 4 instead, and grads at binding 1, where a barrier that
// gave up writes its NaN.
// grid: @group(0) @binding(1) var<storage, read_write> grads: array<f32>;

// One step of one layer, both directions (workgroup_id.z = direction).
// Offsets are elements: p_* into params, the rest into work. Per direction d:
//   gx_d    [T, B, G*H]   input projection X·W_ihᵀ + b_ih
//   hs_d    [T+1, B, H]   hidden states (slots: see cpu/layer.rs)
//   cs_d    [T+1, B, H]   cell states (LSTM)
//   sv_d    [T, B, 4*H]   saved activations for backward (LSTM i,f,g,o; GRU r,z,n,gh_n)
//   dg_d    [T, B, G*H]   gate gradients (of gx)
//   dgh_d   [T, B, G*H]   gate gradients of gh (GRU only)
//   dc_d    [B, H]        cell-state gradient carried between steps (LSTM)
// shared by both directions (column offset d*H, row stride ld = dirs*H):
//   y       [T, B, ld]    layer output (0 at masked steps)
//   dy      [T, B, ld]    gradient of the layer output
//   carry   [B, ld]       gradient of h carried between steps, without the W_hh part
// whh_d is W_hh [G*H, H] in params, or with WHH16 = 1 its f16 copy in whh16
// (the offset then counts halves).
struct Step {
    t_len: u32,
    b: u32,
    h: u32,
    s: u32,
    ld: u32,
    act: u32,
    has_dy: u32,
    has_len: u32,
    len_off: u32,
    y_off: u32,
    dy_off: u32,
    carry_off: u32,
    whh0: u32,
    whh1: u32,
    bhh0: u32,
    bhh1: u32,
    gx0: u32,
    gx1: u32,
    hs0: u32,
    hs1: u32,
    cs0: u32,
    cs1: u32,
    sv0: u32,
    sv1: u32,
    dg0: u32,
    dg1: u32,
    dgh0: u32,
    dgh1: u32,
    dc0: u32,
    dc1: u32,
    rd_key: u32,
    rd_site: u32,
    rd_threshold: u32,
    rd_scale: f32,
    // GRID > 1: this dispatch's words in the sync buffer (see grid_barrier).
    sync_off: u32,
}
@group(0) @binding(5) var<uniform> u: Step;

// Step kernels: a workgroup of TJ x TB invocations owns TJ hidden units (all
// their gates) for TB*RB batch rows, and computes h_prev·W_hhᵀ for them in
// chunks of KC inputs staged in workgroup memory (W_hh rows are read
// coalesced along k); backward likewise computes dG·W_hh for its tile in
// chunks of KC gate rows. Invocation (lid.x, lid.y) computes unit
// j = j0 + lid.x for the RB rows b = b0 + lid.y + r*TB (r < RB; strided by TB
// so neighbouring invocations touch neighbouring rows), with b0 = wid.y*TB*RB.
override TJ: u32 = 16u;
override TB: u32 = 4u;
// Inputs (forward) or gate rows (backward) per chunk: fewer chunks mean fewer
// round trips to memory and barriers per step, the step kernels' real cost.
override KC: u32 = 32u;
// Row stride of the forward W_hh tile: KC + 1 keeps the TJ lanes reading
// sh_w[(g*TJ + lane)*KS + kk] on distinct banks.
override KS: u32 = KC + 1u;
// Batch rows per invocation (register blocking): each W_hh value read from
// workgroup memory serves RB rows. 1 ≤ RB ≤ RB_MAX. Every row's sum runs in
// the same order whatever RB (chunks ascending, kk ascending), so the
// results are the same bits for every RB.
override RB: u32 = 1u;
// Size of the per-invocation accumulator arrays (private arrays need a
// constant size); the host checks RB against it.
const RB_MAX: u32 = 8u;
// Split over K (the workgroup is TJ x TB x SK): slice lid.z stages and
// multiplies the chunks c ≡ lid.z (mod SK), in its own part of sh_h and
// sh_w, and slice 0 adds the slices' partial sums in slice order (then runs
// the epilogue alone). More invocations per output for the long serial
// loop over K that small batches leave to few workgroups. SK = 1 (the
// default): one slice, every sum over k in order; SK > 1 sums in another
// (fixed) order, so its bits differ from SK = 1 by rounding. The host
// checks TB*RB <= (KC + 1)*SK, so that one slice's partial sums fit sh_w.
override SK: u32 = 1u;
// 1: the products read W_hh and the states straight from memory, staging
// nothing in workgroup memory and with no barrier in the loop over K (see
// recurrent_direct): the SK slices split K by interleaving (slice z takes
// k = z, z + SK, ...) and a tree over the slices in workgroup memory adds
// the partial sums (SK a power of two; the host checks TB*RB <= KC + 1, so
// that sh_w holds every partial sum). For small batches, where the staged
// tiles leave few workgroups and a long serial chain of chunks and barriers.
override DIRECT: u32 = 0u;
// Backward only: hidden units per invocation (units j0 + lid.x + u*TJ for
// u < UB, j0 = wid.x*TJ*UB), so that each dG value read from workgroup
// memory serves UB units (the forward's four gates give it that reuse).
// 1 ≤ UB ≤ UB_MAX; the host allows UB > 1 only with SK = 1 and DIRECT = 0.
// Every unit's sum runs in the same order whatever UB, so the bits do not change.
override UB: u32 = 1u;
const UB_MAX: u32 = 4u;
// Size of the backward's per-invocation accumulators: acc[u * RB + r].
const RBU_MAX: u32 = RB_MAX * UB_MAX;

// 1: one workgroup per direction (GRID of them: see below) runs the whole sequence in one dispatch:
// the entry point loops over the steps, and within a step over the tiles
// (each as one workgroup of the per-step dispatch would compute it, so the
// results are the same bits as PERSIST = 0 with the same tile), with a
// storage barrier between steps. One dispatch per layer and pass instead of
// one per step, for sizes where launching a step costs more than computing
// it (small H: a persistent single-workgroup kernel).
override PERSIST: u32 = 0u;

// PERSIST with GRID > 1 (cuDNN's persistent algorithm across the GPU,
// Diamos et al. 2016): GRID workgroups a direction (wid.x) run the sequence
// together, workgroup p taking the unit tiles p, p + GRID, ... of every row
// tile, each computed as the per-step dispatch computes it (the same bits),
// and meeting at grid_barrier between steps. They must all run at once: the
// host probes that they do, and a workgroup that waited GRID_SPIN rounds
// (grid_poll) at the barriers of a sequence gives up.
override GRID: u32 = 1u;
// 1 (forward, GRID > 1, each workgroup one unit tile, one slice of K, staged;
// the host checks it fits): the workgroup's W_hh rows (its TJ units' gates)
// stay in workgroup memory for the whole sequence (sh_keep, staged once,
// rows KH apart: H rounded up to whole chunks, zeros past H, plus one for
// the banks) instead of being staged chunk by chunk at every step, as
// cuDNN's persistent kernel holds them on chip. The same values in the same
// order: the same bits.
override KEEP: u32 = 0u;
override KH: u32 = 1u;
override KEEP_LEN: u32 = 1u;
var<workgroup> sh_keep: array<f32, KEEP_LEN>;
override GRID_SPIN: u32 = 32768u;

// The sync module's atomics on the sync buffer (src/gpu/grid.rs): from
// word u.sync_off, direction dir's arrivals at the barriers (+ dir), its
// workgroups done (+ 2 + dir), the dispatch's give-up flag (+ 4); word 0
// the plan's flag (copied out with the step's statistics). No-ops in the
// other modules, which never run GRID > 1.
fn grid_add(w: u32) -> u32 { return 0u; } // grid: fn grid_add(w: u32) -> u32 { return atomicAdd(&sync[w], 1u); }
fn grid_load(w: u32) -> u32 { return 0u; } // grid: fn grid_load(w: u32) -> u32 { return atomicLoad(&sync[w]); }
// A read by a read-modify-write (adding 0): what the wait polls with, each
// one slower than a load on a CPU adapter, so that the rounds it may spend
// (see grid_barrier) last long enough for a thread the OS set aside.
fn grid_peek(w: u32) -> u32 { return 0u; } // grid: fn grid_peek(w: u32) -> u32 { return atomicAdd(&sync[w], 0u); }
fn grid_zero(w: u32) {} // grid: fn grid_zero(w: u32) { atomicStore(&sync[w], 0u); }
fn grid_give_up(w: u32) {} // grid: fn grid_give_up(w: u32) { atomicStore(&sync[w], 1u); atomicStore(&sync[0], 1u); }
// A NaN in the gradients: the step's norm is NaN, so the optimizer skips it.
fn grid_poison() {} // grid: fn grid_poison() { grads[0] = bitcast<f32>(0x7fc00000u | u.sync_off); }

var<workgroup> grid_ok: u32;

// The barrier across the grid after step s of direction dir: every
// workgroup's writes of step s come before any reads of step s + 1. True
// when all GRID workgroups arrived; false when one gave up waiting (the
// flag), and then every workgroup leaves the sequence unfinished.
// (WGSL's storageBarrier orders memory within a workgroup and its atomics
// are relaxed: that one workgroup's writes are seen by the others after it
// is the adapter's. The bit-identity tests check it where they run, on
// lavapipe and llvmpipe; a device run has yet to; hence opt-in.)
fn grid_barrier(dir: u32, s: u32, li: u32, spent: ptr<function, u32>) -> bool {
    storageBarrier();
    if li == 0u {
        let count = u.sync_off + dir;
        let flag = u.sync_off + 4u;
        _ = grid_add(count);
        let want = (s + 1u) * GRID;
        var ok = 1u;
        // llvmpipe (lavapipe) ends every loop of an invocation once its loops
        // ran 65535 iterations in all (LP_MAX_TGSI_LOOP_ITERATIONS, one
        // counter for the whole shader), so the wait goes in rounds of polls
        // without a loop (grid_poll), and GRID_SPIN bounds the rounds of the
        // whole sequence, below that count on a CPU adapter.
        while ok == 1u && grid_load(count) < want {
            if grid_poll(count, want) {
                break;
            }
            *spent += 1u;
            if grid_load(flag) != 0u || *spent >= GRID_SPIN {
                grid_give_up(flag);
                ok = 0u;
            }
        }
        if ok == 0u {
            grid_poison();
        }
        grid_ok = ok;
    }
    let ok = workgroupUniformLoad(&grid_ok) != 0u;
    storageBarrier();
    return ok;
}

// One round of the wait: 32 reads of word w in straight-line code (no loop:
// see grid_barrier); true once one of them reached `want`.
fn grid_poll(w: u32, want: u32) -> bool {
    var c = grid_peek(w);
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    c = max(c, grid_peek(w));
    return c >= want;
}

// After the last step of a grid's workgroup: the last of a direction's
// GRID workgroups to finish (all of them past their barriers) zeroes the
// direction's counters for the dispatch's next run. (After a give-up the
// counters stay as they are: the host drops the plan.)
fn grid_done(dir: u32, li: u32) {
    if GRID > 1u && li == 0u {
        if grid_add(u.sync_off + 2u + dir) == GRID - 1u {
            grid_zero(u.sync_off + dir);
            grid_zero(u.sync_off + 2u + dir);
        }
    }
}

// Between steps of a persistent tile: this step's writes, seen by every
// invocation of every workgroup in the next; false: leave the sequence.
fn persist_barrier(dir: u32, s: u32, li: u32, spent: ptr<function, u32>) -> bool {
    if GRID == 1u {
        storageBarrier();
        return true;
    }
    return grid_barrier(dir, s, li, spent);
}

// 1: recurrent dropout (Gal and Ghahramani 2016; training only, while the
// step's on flag ints[u.rd_key + 1] is set). The products h_prev·W_hhᵀ read
// the state with its mask, the same at every step (`Site::Recurrent(k·D + d)`,
// element b·H + k, as src/dropout.rs draws it: mask.wgsl), as the staged or
// direct loads bring it in; backward masks the product's share of dh_prev
// (dh_w) likewise in the epilogue. The cell epilogues read the states
// unmasked (the GRU's z·h_prev, the LSTM's cell). 0 (the default): nothing
// is read or masked.
override RDROP: u32 = 0u;

// Recurrent dropout's mask of one direction in one step: its key, and whether it applies.
struct RMask {
    key: u32,
    on: bool,
}
fn rmask(dir: u32) -> RMask {
    if RDROP == 0u {
        return RMask(0u, false);
    }
    return RMask(site_key(bitcast<u32>(ints[u.rd_key]), u.rd_site + dir), ints[u.rd_key + 1u] != 0);
}

// v (state or gradient of row b, unit k) times the mask there, if it applies.
fn rmasked(m: RMask, v: f32, b: u32, k: u32) -> f32 {
    if RDROP != 0u && m.on {
        return v * mask_at(m.key, b * u.h + k, u.rd_threshold, u.rd_scale);
    }
    return v;
}

// Each cell shader (lstm.wgsl, gru.wgsl, rnn.wgsl) defines, under these
// names, what the step tiles below need of it:
//   const GATES: u32                 gates per unit (4, 3, 1)
//   fn forward_row(dir, t, b, j, gates: vec4<f32>)
//                                    the forward epilogue of row b, unit j,
//                                    given h_prev·W_hhᵀ for its gates (the
//                                    first GATES lanes)
//   fn backward_row(dir, t, b, j, dh_w: f32)
//                                    the backward epilogue, given
//                                    dh_w = (dG[t']·W_hh)[b, j]
//   fn recurrent_dg(dir) -> u32      the gate gradients [T, B, GATES*H] that
//                                    W_hh multiplies backward (GRU: of gh)

// Tile (wx, wy) of step s (the s-th processed) of direction dir: what one
// workgroup of the per-step dispatch computes.
fn forward_tile(dir: u32, s: u32, wx: u32, wy: u32, lid: vec3<u32>, li: u32) {
    let t = fwd_step(s, dir);
    let hp_slot = pick(u.hs0, u.hs1, dir) + prev_slot(t, dir) * u.b * u.h;
    let b0 = wy * TB * RB;
    let j = wx * TJ + lid.x;
    var gh = recurrent_tile(GATES, pick(u.whh0, u.whh1, dir), hp_slot, rmask(dir), b0, wx * TJ, lid, li);
    // Slice 0 alone (see SK) runs the epilogue.
    if j < u.h && lid.z == 0u {
        for (var r = 0u; r < RB; r++) {
            let b = tile_row(b0, lid, r);
            if b < u.b {
                forward_row(dir, t, b, j, gh[r]);
            }
        }
    }
}

// Tile (wx, wy) of step s (the s-th processed backward) of direction dir:
// what one workgroup of the per-step dispatch computes.
fn backward_tile(dir: u32, s: u32, wx: u32, wy: u32, lid: vec3<u32>, li: u32) {
    let GH = GATES * u.h;
    let b0 = wy * TB * RB;
    let j0 = wx * TJ * UB;
    let t = bwd_step(s, dir);
    let m = rmask(dir);
    var dh_w: array<f32, RBU_MAX>; // zero at the first step processed
    if s > 0u {
        let dgp = recurrent_dg(dir) + bwd_prev_step(t, dir) * u.b * GH;
        dh_w = recurrent_tile_t(GH, pick(u.whh0, u.whh1, dir), dgp, b0, j0, lid, li);
    }
    // Slice 0 alone (see SK) runs the epilogue, for units j0 + lid.x + v*TJ (see UB).
    if lid.z == 0u {
        for (var v = 0u; v < UB; v++) {
            let j = j0 + lid.x + v * TJ;
            if j < u.h {
                for (var r = 0u; r < RB; r++) {
                    let b = tile_row(b0, lid, r);
                    if b < u.b {
                        backward_row(dir, t, b, j, rmasked(m, dh_w[v * RB + r], b, j));
                    }
                }
            }
        }
    }
}

// The body of the step entry points (`{cell}_step_forward`): tile wid.xy
// of step u.s, or with PERSIST every step and tile.
fn run_forward(wid: vec3<u32>, lid: vec3<u32>, li: u32) {
    if PERSIST == 0u {
        forward_tile(wid.z, u.s, wid.x, wid.y, lid, li);
        return;
    }
    let g = grid_place(wid);
    if KEEP != 0u {
        keep_whh(g, li);
    }
    // Rounds of waiting at the grid's barriers so far (see grid_barrier).
    var spent = 0u;
    for (var s = 0u; s < u.t_len; s++) {
        for (var ty = 0u; ty < row_tiles(); ty++) {
            for (var tx = g.x; tx < unit_tiles(TJ); tx += GRID) {
                // The previous tile's last reads of sh_h / sh_w come first.
                workgroupBarrier();
                forward_tile(g.y, s, tx, ty, lid, li);
            }
        }
        // This step's states, seen by every invocation in the next.
        if s + 1u < u.t_len && !persist_barrier(g.y, s, li, &spent) {
            return;
        }
    }
    grid_done(g.y, li);
}

// As run_forward, backward (workgroups own TJ*UB units).
fn run_backward(wid: vec3<u32>, lid: vec3<u32>, li: u32) {
    if PERSIST == 0u {
        backward_tile(wid.z, u.s, wid.x, wid.y, lid, li);
        return;
    }
    let g = grid_place(wid);
    var spent = 0u;
    for (var s = 0u; s < u.t_len; s++) {
        for (var ty = 0u; ty < row_tiles(); ty++) {
            for (var tx = g.x; tx < unit_tiles(TJ * UB); tx += GRID) {
                workgroupBarrier();
                backward_tile(g.y, s, tx, ty, lid, li);
            }
        }
        // This step's gate gradients, seen by every invocation in the next.
        if s + 1u < u.t_len && !persist_barrier(g.y, s, li, &spent) {
            return;
        }
    }
    grid_done(g.y, li);
}

// KEEP: W_hh rows g*H + j (gate g < GATES, j = its tile's units) of its
// direction into sh_keep[(g*TJ + jj)*KH + k], zeros past H.
fn keep_whh(g: vec2<u32>, li: u32) {
    let whh = pick(u.whh0, u.whh1, g.y);
    let j0 = g.x * TJ;
    for (var e = li; e < GATES * TJ * KH; e += TJ * TB) {
        sh_keep[e] = tile_whh(whh, j0, e / KH, e % KH);
    }
    workgroupBarrier();
}

// A persistent workgroup's place: (its index among its direction's, the
// direction). One workgroup a direction: (0, wid.z). A grid (GRID > 1) lays
// its workgroups along x with the directions interleaved, workgroup p of
// direction d at x = p*dirs + d, so that a CPU adapter that hands each
// thread a run of consecutive workgroups (llvmpipe) runs a direction's
// GRID workgroups at once with GRID threads.
fn grid_place(wid: vec3<u32>) -> vec2<u32> {
    if GRID == 1u {
        return vec2<u32>(0u, wid.z);
    }
    let dirs = u.ld / u.h;
    return vec2<u32>(wid.x / dirs, wid.x % dirs);
}

// Tiles of one step: along the units (`units` a workgroup) and the rows.
fn unit_tiles(units: u32) -> u32 {
    return (u.h + units - 1u) / units;
}
fn row_tiles() -> u32 {
    return (u.b + TB * RB - 1u) / (TB * RB);
}

// 1: the step kernels read W_hh from its f16 copy whh16 (f32 accumulation
// as ever); 0: from params in f32.
override WHH16: u32 = 0u;

// Element e of the W_hh block at whh (see WHH16).
fn whh_at(whh: u32, e: u32) -> f32 {
    if WHH16 != 0u {
        let i = whh + e;
        return f16_value((whh16[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu); // grid: return 0.0;
    }
    return params[whh + e];
}

// Forward: h_prev chunk [TB*RB, KC]; backward: dG chunk [TB*RB, KC]. Row
// lid.y + r*TB of the chunk belongs to invocation row r.
// Slice z's part starts at z * TB * RB * KC.
var<workgroup> sh_h: array<f32, TB * RB * KC * SK>;
// Forward: W_hh rows of the tile's gates [G, TJ, KC]; backward: W_hh chunk
// [KC, TJ]. Slice z's part starts at z * 4 * TJ * KS.
var<workgroup> sh_w: array<f32, 4u * TJ * KS * SK>;

// Batch row of invocation row r of a workgroup whose first row is b0.
fn tile_row(b0: u32, lid: vec3<u32>, r: u32) -> u32 {
    return b0 + lid.y + r * TB;
}

// gh[r][g] = Σ_k h_prev[b, k] · W_hh[g*H + j, k] for g < G and r < RB, where
// b = tile_row(b0, lid, r) and j = j0 + lid.x (zero outside B, H), with
// h_prev under recurrent dropout's mask `m` (see RDROP). Every invocation
// of the workgroup must call it (it has barriers). `hp` is the start of the
// previous state slot [B, H].
fn recurrent_tile(G: u32, whh: u32, hp: u32, m: RMask, b0: u32, j0: u32, lid: vec3<u32>, li: u32) -> array<vec4<f32>, RB_MAX> {
    if DIRECT != 0u {
        return recurrent_direct(G, whh, hp, m, b0, j0, lid, li);
    }
    let H = u.h;
    let B = u.b;
    // One accumulator per register-blocked row (RB of them), as named
    // variables: the hot loop below has no private array indexed by a loop
    // counter (which a driver that does not unroll it keeps in memory); the
    // blocks past RB fold away with the override.
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var a4 = vec4<f32>();
    var a5 = vec4<f32>();
    var a6 = vec4<f32>();
    var a7 = vec4<f32>();
    let chunks = (H + KC - 1u) / KC;
    // This slice's invocation index and parts of the staging arrays.
    let ls = li % (TJ * TB);
    let hz = lid.z * TB * RB * KC;
    let wz = lid.z * 4u * TJ * KS;
    let rounds = (chunks + SK - 1u) / SK;
    for (var rc = 0u; rc < rounds; rc++) {
        // Past the last chunk (SK > 1 only) every value staged is 0.
        let k0 = (rc * SK + lid.z) * KC;
        for (var e = ls; e < TB * RB * KC; e += TJ * TB) {
            let b = b0 + e / KC;
            let k = k0 + e % KC;
            var v = 0.0;
            if b < B && k < H {
                v = rmasked(m, work[hp + b * H + k], b, k);
            }
            sh_h[hz + e] = v;
        }
        if KEEP == 0u {
            for (var e = ls; e < G * TJ * KC; e += TJ * TB) {
                let r = e / KC;
                sh_w[wz + r * KS + e % KC] = tile_whh(whh, j0, r, k0 + e % KC);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KC; kk++) {
            // Each W_hh value once from workgroup memory, for all RB rows.
            var w = vec4<f32>(w_at(wz, 0u, k0, kk, lid), 0.0, 0.0, 0.0);
            if G > 1u {
                w.y = w_at(wz, 1u, k0, kk, lid);
                w.z = w_at(wz, 2u, k0, kk, lid);
            }
            if G > 3u {
                w.w = w_at(wz, 3u, k0, kk, lid);
            }
            // Row r of the block reads sh_h at (lid.y + r*TB)*KC + kk.
            let h0 = hz + lid.y * KC + kk;
            let hr = TB * KC;
            a0 = gate_sums(a0, sh_h[h0], w, G);
            if RB > 1u {
                a1 = gate_sums(a1, sh_h[h0 + hr], w, G);
            }
            if RB > 2u {
                a2 = gate_sums(a2, sh_h[h0 + 2u * hr], w, G);
            }
            if RB > 3u {
                a3 = gate_sums(a3, sh_h[h0 + 3u * hr], w, G);
            }
            if RB > 4u {
                a4 = gate_sums(a4, sh_h[h0 + 4u * hr], w, G);
            }
            if RB > 5u {
                a5 = gate_sums(a5, sh_h[h0 + 5u * hr], w, G);
            }
            if RB > 6u {
                a6 = gate_sums(a6, sh_h[h0 + 6u * hr], w, G);
            }
            if RB > 7u {
                a7 = gate_sums(a7, sh_h[h0 + 7u * hr], w, G);
            }
        }
        workgroupBarrier();
    }
    var acc = array<vec4<f32>, RB_MAX>(a0, a1, a2, a3, a4, a5, a6, a7);
    if SK == 1u {
        return acc;
    }
    // Slice 0 adds slices 1, 2, ... in order, one at a time through sh_w.
    let slot = (lid.y * TJ + lid.x) * RB;
    for (var s = 1u; s < SK; s++) {
        if lid.z == s {
            for (var r = 0u; r < RB; r++) {
                let o = (slot + r) * 4u;
                sh_w[o] = acc[r].x;
                sh_w[o + 1u] = acc[r].y;
                sh_w[o + 2u] = acc[r].z;
                sh_w[o + 3u] = acc[r].w;
            }
        }
        workgroupBarrier();
        if lid.z == 0u {
            for (var r = 0u; r < RB; r++) {
                let o = (slot + r) * 4u;
                acc[r] += vec4<f32>(sh_w[o], sh_w[o + 1u], sh_w[o + 2u], sh_w[o + 3u]);
            }
        }
        workgroupBarrier();
    }
    return acc;
}

// W_hh of row r of a tile whose first unit is j0 (gate r / TJ, unit
// j0 + r % TJ) at input k: zero past H.
fn tile_whh(whh: u32, j0: u32, r: u32, k: u32) -> f32 {
    let H = u.h;
    let j = j0 + r % TJ;
    if j < H && k < H {
        return whh_at(whh, ((r / TJ) * H + j) * H + k);
    }
    return 0.0;
}

// W_hh of gate g, this invocation's unit, input k0 + kk: from the chunk
// staged in sh_w, or with KEEP from the rows kept in sh_keep.
fn w_at(wz: u32, g: u32, k0: u32, kk: u32, lid: vec3<u32>) -> f32 {
    if KEEP != 0u {
        return sh_keep[(g * TJ + lid.x) * KH + k0 + kk];
    }
    return sh_w[wz + (g * TJ + lid.x) * KS + kk];
}

// a plus hv times the W_hh values w of the first G gates, lane by lane
// (the lanes past G as they were).
fn gate_sums(a: vec4<f32>, hv: f32, w: vec4<f32>, G: u32) -> vec4<f32> {
    var o = a;
    o.x += hv * w.x;
    if G > 1u {
        o.y += hv * w.y;
        o.z += hv * w.z;
    }
    if G > 3u {
        o.w += hv * w.w;
    }
    return o;
}

fn pick(a: u32, b: u32, dir: u32) -> u32 {
    return select(a, b, dir == 1u);
}

// Is step t of row b inside its sequence?
fn valid(b: u32, t: u32) -> bool {
    if u.has_len == 0u {
        return true;
    }
    return i32(t) < ints[u.len_off + b];
}

// Step processed s-th: forward runs t = s, reverse t = T-1-s.
fn fwd_step(s: u32, dir: u32) -> u32 {
    return select(s, u.t_len - 1u - s, dir == 1u);
}

// Backward visits steps in the opposite order.
fn bwd_step(s: u32, dir: u32) -> u32 {
    return select(u.t_len - 1u - s, s, dir == 1u);
}

// State slot read by step t (before it) and written by it.
fn prev_slot(t: u32, dir: u32) -> u32 {
    return select(t, t + 1u, dir == 1u);
}
fn out_slot(t: u32, dir: u32) -> u32 {
    return select(t + 1u, t, dir == 1u);
}

// The step processed just before t in backward order (its dG feeds dh of t).
fn bwd_prev_step(t: u32, dir: u32) -> u32 {
    return select(t + 1u, t - 1u, dir == 1u);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh clamped where it is ±1 in f32 anyway: some drivers compute tanh as
// a ratio of exponentials that overflows to NaN for large |x|.
fn tanh_s(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// Σ_q dG[b, q] · W_hh[q*H + j] over q < G*H (the W_hh part of dh_prev) in
// acc[v*RB + r] for r < RB and v < UB, where b = tile_row(b0, lid, r) and
// j = j0 + lid.x + v*TJ (j0 = wid.x*TJ*UB); `dgp` is the start of the dG
// rows [B, G*H] of the step processed before. Every invocation must call it
// (barriers).
fn recurrent_tile_t(GH: u32, whh: u32, dgp: u32, b0: u32, j0: u32, lid: vec3<u32>, li: u32) -> array<f32, RBU_MAX> {
    if DIRECT != 0u {
        return recurrent_direct_t(GH, whh, dgp, b0, j0, lid);
    }
    let H = u.h;
    let B = u.b;
    var acc: array<f32, RBU_MAX>; // zero-initialised
    // UB = 1: the rows' accumulators (see the loop below).
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    var a4 = 0.0;
    var a5 = 0.0;
    var a6 = 0.0;
    var a7 = 0.0;
    let chunks = (GH + KC - 1u) / KC;
    // Units staged per chunk.
    let UW = TJ * UB;
    // This slice's invocation index and parts of the staging arrays.
    let ls = li % (TJ * TB);
    let hz = lid.z * TB * RB * KC;
    let wz = lid.z * 4u * TJ * KS;
    let rounds = (chunks + SK - 1u) / SK;
    for (var rc = 0u; rc < rounds; rc++) {
        // Past the last chunk (SK > 1 only) every value staged is 0.
        let r0 = (rc * SK + lid.z) * KC;
        for (var e = ls; e < TB * RB * KC; e += TJ * TB) {
            let b = b0 + e / KC;
            let r = r0 + e % KC;
            var v = 0.0;
            if b < B && r < GH {
                v = work[dgp + b * GH + r];
            }
            sh_h[hz + e] = v;
        }
        for (var e = ls; e < KC * UW; e += TJ * TB) {
            let r = r0 + e / UW;
            let j = j0 + e % UW;
            var v = 0.0;
            if r < GH && j < H {
                v = whh_at(whh, r * H + j);
            }
            sh_w[wz + e] = v;
        }
        workgroupBarrier();
        if UB == 1u {
            // One unit an invocation (the default): a named accumulator per
            // register-blocked row, as in recurrent_tile (no private array
            // indexed by a loop counter in the hot loop).
            for (var kk = 0u; kk < KC; kk++) {
                let w = sh_w[wz + kk * UW + lid.x];
                let g0 = hz + lid.y * KC + kk;
                let gr = TB * KC;
                a0 += sh_h[g0] * w;
                if RB > 1u {
                    a1 += sh_h[g0 + gr] * w;
                }
                if RB > 2u {
                    a2 += sh_h[g0 + 2u * gr] * w;
                }
                if RB > 3u {
                    a3 += sh_h[g0 + 3u * gr] * w;
                }
                if RB > 4u {
                    a4 += sh_h[g0 + 4u * gr] * w;
                }
                if RB > 5u {
                    a5 += sh_h[g0 + 5u * gr] * w;
                }
                if RB > 6u {
                    a6 += sh_h[g0 + 6u * gr] * w;
                }
                if RB > 7u {
                    a7 += sh_h[g0 + 7u * gr] * w;
                }
            }
        } else {
            for (var kk = 0u; kk < KC; kk++) {
                // Each dG value once from workgroup memory, for all UB units.
                var w: array<f32, UB_MAX>;
                for (var v = 0u; v < UB; v++) {
                    w[v] = sh_w[wz + kk * UW + lid.x + v * TJ];
                }
                for (var r = 0u; r < RB; r++) {
                    let g = sh_h[hz + (lid.y + r * TB) * KC + kk];
                    for (var v = 0u; v < UB; v++) {
                        acc[v * RB + r] += g * w[v];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if UB == 1u {
        acc[0] = a0;
        acc[1] = a1;
        acc[2] = a2;
        acc[3] = a3;
        acc[4] = a4;
        acc[5] = a5;
        acc[6] = a6;
        acc[7] = a7;
    }
    if SK == 1u {
        return acc;
    }
    // Slice 0 adds slices 1, 2, ... in order, one at a time through sh_w.
    let slot = (lid.y * TJ + lid.x) * RB;
    for (var s = 1u; s < SK; s++) {
        if lid.z == s {
            for (var r = 0u; r < RB; r++) {
                sh_w[slot + r] = acc[r];
            }
        }
        workgroupBarrier();
        if lid.z == 0u {
            for (var r = 0u; r < RB; r++) {
                acc[r] += sh_w[slot + r];
            }
        }
        workgroupBarrier();
    }
    return acc;
}

// recurrent_tile with DIRECT = 1. Here the slice is the fastest-varying index
// of the invocation (zs = li % SK, then the unit, then the row), so that
// neighbouring invocations read neighbouring k of one W_hh row and of one
// state row. Each invocation sums k = zs, zs + SK, ... for its unit and RB
// rows; the tree adds the slices' sums (in a fixed order), and every
// invocation gets the sums of its own (lid.x, lid.y), which slice 0 uses.
fn recurrent_direct(G: u32, whh: u32, hp: u32, m: RMask, b0: u32, j0: u32, lid: vec3<u32>, li: u32) -> array<vec4<f32>, RB_MAX> {
    let H = u.h;
    let B = u.b;
    let zs = li % SK;
    let xs = (li / SK) % TJ;
    let ys = li / (SK * TJ);
    let j = j0 + xs;
    var acc: array<vec4<f32>, RB_MAX>; // zero-initialised
    if j < H {
        for (var k = zs; k < H; k += SK) {
            let w0 = whh_at(whh, j * H + k);
            var w1 = 0.0;
            var w2 = 0.0;
            var w3 = 0.0;
            if G > 1u {
                w1 = whh_at(whh, (H + j) * H + k);
                w2 = whh_at(whh, (2u * H + j) * H + k);
            }
            if G > 3u {
                w3 = whh_at(whh, (3u * H + j) * H + k);
            }
            for (var r = 0u; r < RB; r++) {
                let b = b0 + ys + r * TB;
                if b < B {
                    let hv = rmasked(m, work[hp + b * H + k], b, k);
                    acc[r].x += hv * w0;
                    acc[r].y += hv * w1;
                    acc[r].z += hv * w2;
                    acc[r].w += hv * w3;
                }
            }
        }
    }
    // Partial sum (unit xs, row ys, r, slice zs) at sh_w[(((ys*TJ + xs)*RB + r)*SK + zs)*4 ..].
    let base = (ys * TJ + xs) * RB;
    for (var r = 0u; r < RB; r++) {
        let o = ((base + r) * SK + zs) * 4u;
        sh_w[o] = acc[r].x;
        sh_w[o + 1u] = acc[r].y;
        sh_w[o + 2u] = acc[r].z;
        sh_w[o + 3u] = acc[r].w;
    }
    workgroupBarrier();
    for (var s = SK / 2u; s > 0u; s = s / 2u) {
        if zs < s {
            for (var r = 0u; r < RB; r++) {
                let o = ((base + r) * SK + zs) * 4u;
                let p = o + s * 4u;
                sh_w[o] += sh_w[p];
                sh_w[o + 1u] += sh_w[p + 1u];
                sh_w[o + 2u] += sh_w[p + 2u];
                sh_w[o + 3u] += sh_w[p + 3u];
            }
        }
        workgroupBarrier();
    }
    var sums: array<vec4<f32>, RB_MAX>;
    let own = (lid.y * TJ + lid.x) * RB;
    for (var r = 0u; r < RB; r++) {
        let o = (own + r) * SK * 4u;
        sums[r] = vec4<f32>(sh_w[o], sh_w[o + 1u], sh_w[o + 2u], sh_w[o + 3u]);
    }
    return sums;
}

// recurrent_tile_t with DIRECT = 1: the unit is the fastest-varying index
// (lid.x), so that neighbouring invocations read neighbouring units of one
// W_hh row; slice lid.z sums gate rows q = lid.z, lid.z + SK, ...; the tree
// adds the slices' sums.
fn recurrent_direct_t(GH: u32, whh: u32, dgp: u32, b0: u32, j0: u32, lid: vec3<u32>) -> array<f32, RBU_MAX> {
    let H = u.h;
    let B = u.b;
    let j = j0 + lid.x;
    var acc: array<f32, RB_MAX>; // zero-initialised
    if j < H {
        for (var q = lid.z; q < GH; q += SK) {
            let w = whh_at(whh, q * H + j);
            for (var r = 0u; r < RB; r++) {
                let b = b0 + lid.y + r * TB;
                if b < B {
                    acc[r] += work[dgp + b * GH + q] * w;
                }
            }
        }
    }
    let base = (lid.y * TJ + lid.x) * RB;
    for (var r = 0u; r < RB; r++) {
        sh_w[(base + r) * SK + lid.z] = acc[r];
    }
    workgroupBarrier();
    for (var s = SK / 2u; s > 0u; s = s / 2u) {
        if lid.z < s {
            for (var r = 0u; r < RB; r++) {
                let o = (base + r) * SK + lid.z;
                sh_w[o] += sh_w[o + s];
            }
        }
        workgroupBarrier();
    }
    var sums: array<f32, RBU_MAX>; // UB = 1 here: sums[r]
    for (var r = 0u; r < RB; r++) {
        sums[r] = sh_w[(base + r) * SK];
    }
    return sums;
}
