//! Register blocking over batch rows in the step kernels (`RB`, rows per
//! invocation; [`StepTile::rows_per_invocation`]): a training step run with
//! RB = 2, 4 or 8 gives exactly the bits of RB = 1 with the same tile
//! otherwise — outputs, loss, every gradient, and the weights after an Adam
//! step — since every row's sums run in the same order; and agrees with the
//! CPU path within the usual tolerances. Tiles are set per model
//! ([`GpuModel::set_step_tile`]), and each run checks that its step
//! dispatches really carry the tile (grid rows = ceil(B / (TB·RB)), `RB` among
//! the pipeline constants), so the comparison cannot pass vacuously.
//!
//! Without a GPU adapter each test prints `SKIPPED` and passes, unless
//! `RECURRENT_REQUIRE_GPU=1`.

mod common;

use common::tolerance::{assert_close, FORWARD, GRADIENTS, LOSS, TRAINED_WEIGHTS};
use common::{gpu, Case};
use recurrent::gpu::internals::round_to_f16;
use recurrent::gpu::internals::step_candidates;
use recurrent::gpu::internals::step_constants;
use recurrent::gpu::{Decision, Kernel, StepTile};
use recurrent::gpu::{DevicePreference, GpuContext, GpuModel};
use recurrent::{Cell, Dataset, Loss, Model, Optimizer, OutputMode, StepOptions};
use std::sync::Arc;

const CELLS: [Cell; 3] = [Cell::Lstm, Cell::Gru, Cell::Rnn];

fn tile(units: u32, rows: u32, chunk: u32, rb: u32) -> StepTile {
    StepTile::new(units, rows, chunk, rb)
}

/// Two bidirectional layers of H = 20 (a partial tile of 16 units) with
/// lengths, I = 5, B = 37 (partial row tiles), T = 4; sequence output where
/// `sequence`, else the last step's.
fn layered(cell: Cell, sequence: bool) -> Case {
    Case {
        layers: 2,
        bidirectional: true,
        lengths: true,
        hidden: 20,
        input: 5,
        batch: 37,
        steps: 4,
        output: if sequence {
            OutputMode::Sequence
        } else {
            OutputMode::Last
        },
        ..Case::new(cell)
    }
}

/// Everything a training step computes on the GPU.
struct Run {
    out: Vec<f32>,
    loss: f32,
    grads: Vec<f32>,
    /// Loss reported by one Adam step (clip 1) and the weights after it.
    step_loss: f32,
    weights: Vec<f32>,
}

const STEP_KERNELS: [Kernel; 6] = [
    Kernel::LstmStepForward,
    Kernel::LstmStepBackward,
    Kernel::GruStepForward,
    Kernel::GruStepBackward,
    Kernel::RnnStepForward,
    Kernel::RnnStepBackward,
];

/// The step dispatches of `g`'s training step for `case` run `tile`: one per
/// time step, layer and pass, each with `tile`, its grid and its constants.
fn check_dispatches(g: &mut GpuModel, case: &Case, tile: StepTile, f16: bool) {
    let ds = g.dispatches(case.batch, case.steps).unwrap();
    let steps: Vec<_> = ds
        .iter()
        .filter(|d| STEP_KERNELS.contains(&d.kernel))
        .collect();
    // Persistent: one dispatch per layer and pass runs every step.
    let per_pass = if tile.persistent { 1 } else { case.steps };
    assert_eq!(
        steps.len(),
        2 * case.layers * per_pass,
        "{tile}: step dispatches"
    );
    let dirs = if case.bidirectional { 2 } else { 1 };
    for d in steps {
        // Backward workgroups own units·ub units.
        let units = if d.kernel.is_step_backward() {
            tile.units * tile.back_units
        } else {
            tile.units
        };
        let want = if tile.on_grid() {
            [tile.grid * dirs, 1, 1]
        } else if tile.persistent {
            [1, 1, dirs]
        } else {
            [
                (case.hidden as u32).div_ceil(units),
                (case.batch as u32).div_ceil(tile.rows * tile.rows_per_invocation),
                dirs,
            ]
        };
        assert_eq!(d.step, Some(tile), "{}: tile", d.label);
        assert_eq!(d.groups, want, "{}: grid with tile {tile}", d.label);
        assert_eq!(d.f16, f16, "{}: f16 variant", d.label);
        assert_eq!(d.sync, tile.on_grid(), "{}: the sync module", d.label);
    }
    let c = step_constants(tile, f16);
    let rb = c.iter().find(|(n, _)| *n == "RB").map(|(_, v)| *v);
    if tile.rows_per_invocation == 1 {
        assert_eq!(rb, None, "RB = 1 keeps the default pipelines");
    } else {
        assert_eq!(rb, Some(tile.rows_per_invocation as f64), "{tile}: RB");
    }
    assert!(c.contains(&("KC", tile.chunk as f64)));
    assert_eq!(
        c.contains(&("PERSIST", 1.0)),
        tile.persistent,
        "{tile}: PERSIST"
    );
    assert_eq!(
        c.contains(&("GRID", tile.grid as f64)),
        tile.on_grid(),
        "{tile}: GRID"
    );
    if let Some(t) = g.step_tile_for(case.batch) {
        assert_eq!(t.choice, tile, "the plan runs {tile} (its probe passed)");
    }
}

fn run(
    ctx: &Arc<GpuContext>,
    model: &Model,
    case: &Case,
    data: &Dataset,
    loss: Loss,
    tile: StepTile,
    f16: bool,
) -> Run {
    let mut g = GpuModel::with_f16_weights(ctx.clone(), model, f16).unwrap();
    g.set_step_tile(tile).unwrap();
    assert_eq!(g.step_tile(), tile);
    check_dispatches(&mut g, case, tile, f16);
    let out = g.forward(data).unwrap().data;
    let (loss_v, grads) = g.loss_and_gradients(data, loss).unwrap();
    let mut opt = Optimizer::adam(1e-2);
    let opts = StepOptions {
        loss,
        clip: Some(1.0),
    };
    let step_loss = g.train_step_sync(data, &opts, &mut opt).unwrap().loss;
    let weights = g.download().unwrap();
    Run {
        out,
        loss: loss_v,
        grads,
        step_loss,
        weights,
    }
}

#[track_caller]
fn assert_same_bits(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    if let Some(i) = a
        .iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
    {
        let n = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        panic!(
            "{what}: {n} of {} values differ in their bits; first [{i}]: {:e} vs {:e}",
            a.len(),
            a[i],
            b[i]
        );
    }
}

fn assert_runs_identical(what: &str, a: &Run, b: &Run) {
    assert_same_bits(&format!("{what}: output"), &a.out, &b.out);
    assert_same_bits(&format!("{what}: loss"), &[a.loss], &[b.loss]);
    assert_same_bits(&format!("{what}: gradients"), &a.grads, &b.grads);
    assert_same_bits(
        &format!("{what}: step loss"),
        &[a.step_loss],
        &[b.step_loss],
    );
    assert_same_bits(
        &format!("{what}: weights after a step"),
        &a.weights,
        &b.weights,
    );
}

/// `r` against the CPU path on `model`: forward, loss and gradients (and,
/// with `trained`, the step's loss and the weights after it).
fn assert_matches_cpu(
    what: &str,
    r: &Run,
    model: &Model,
    data: &Dataset,
    loss: Loss,
    trained: bool,
) {
    let out = model.forward(data).unwrap();
    assert_close(&format!("{what}: output"), &r.out, &out.data, FORWARD);
    let (l, grads) = model.loss_and_gradients(data, loss).unwrap();
    assert_close(&format!("{what}: loss"), &[r.loss], &[l], LOSS);
    for e in &model.layout().entries {
        assert_close(
            &format!("{what}: grad {}", e.name),
            &r.grads[e.range()],
            &grads[e.range()],
            GRADIENTS,
        );
    }
    if trained {
        let mut m = model.clone();
        let mut opt = Optimizer::adam(1e-2);
        let opts = StepOptions {
            loss,
            clip: Some(1.0),
        };
        let s = m.train_step(data, &opts, &mut opt).unwrap();
        assert_close(
            &format!("{what}: step loss"),
            &[r.step_loss],
            &[s.loss],
            LOSS,
        );
        assert_close(
            &format!("{what}: weights after a step"),
            &r.weights,
            m.params(),
            TRAINED_WEIGHTS,
        );
    }
}

/// Runs `case` with each `(reference, blocked)` pair of tiles (the same but
/// for RB); the blocked runs must equal their reference bit for bit.
fn check_case(case: &Case, loss: Loss, seed: u64, pairs: &[(StepTile, StepTile)]) {
    let Some(ctx) = gpu("step tile") else { return };
    let model = case.model(seed);
    let data = case.data(loss, seed + 100);
    for &(reference, blocked) in pairs {
        assert_eq!(
            (reference.rows_per_invocation, reference.back_units),
            (1, 1)
        );
        assert!(blocked.rows_per_invocation > 1 || blocked.back_units > 1);
        let what = format!("{} tile {blocked} vs {reference}", case.label(loss));
        let r1 = run(&ctx, &model, case, &data, loss, reference, false);
        let rb = run(&ctx, &model, case, &data, loss, blocked, false);
        assert_runs_identical(&what, &rb, &r1);
        assert_matches_cpu(&what, &rb, &model, &data, loss, true);
        eprintln!("{what}: same bits, within the CPU tolerances");
    }
}

/// TB = 4, KC = 8 (several chunks, the last partial, for H = 20 forward and
/// G·H backward), RB 2 and 4 against RB 1; and RB 8 (the largest) with TB 2;
/// UB (units per invocation backward) 2 and 4 against 1.
fn pairs() -> Vec<(StepTile, StepTile)> {
    vec![
        (tile(16, 4, 8, 1), tile(16, 4, 8, 2)),
        (tile(16, 4, 8, 1), tile(16, 4, 8, 4)),
        (tile(8, 2, 16, 1), tile(8, 2, 16, 8)),
        // Units per invocation backward: 2 x 8 units (one tile for H = 20,
        // partly empty) and 4 x 4 with 2 rows per invocation.
        (tile(8, 4, 8, 1), tile(8, 4, 8, 1).with_back_units(2)),
        (tile(4, 4, 8, 1), tile(4, 4, 8, 2).with_back_units(4)),
    ]
}

/// B = 7: less than one row tile of TB·RB = 8 or 16 rows, and not a multiple of them.
#[test]
fn blocked_rows_give_the_same_bits_for_a_partial_row_tile() {
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = Case {
            input: 6,
            batch: 7,
            steps: 5,
            relu: cell == Cell::Rnn,
            ..layered(cell, i == 0)
        };
        let loss = if i % 2 == 0 { Loss::Ce } else { Loss::Mse };
        check_case(&case, loss, 300 + i as u64, &pairs());
    }
}

/// B = 37: several row tiles (5 of 8 rows, 3 of 16), the last one partial.
#[test]
fn blocked_rows_give_the_same_bits_over_several_row_tiles() {
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = layered(cell, i == 1);
        let loss = if i % 2 == 0 { Loss::Mse } else { Loss::Ce };
        check_case(&case, loss, 310 + i as u64, &pairs());
    }
}

/// With the f16 copy of W_hh: RB 4 equals RB 1 bit for bit, and both agree
/// with the CPU path on the model with W_hh rounded to f16.
#[test]
fn blocked_rows_give_the_same_bits_with_f16_weights() {
    let Some(ctx) = gpu("step tile f16") else {
        return;
    };
    let case = layered(Cell::Lstm, false);
    let loss = Loss::Ce;
    let model = case.model(320);
    let data = case.data(loss, 420);
    let (reference, blocked) = (tile(16, 4, 8, 1), tile(16, 4, 8, 4));
    let r1 = run(&ctx, &model, &case, &data, loss, reference, true);
    let rb = run(&ctx, &model, &case, &data, loss, blocked, true);
    let what = format!("{} f16 tile {blocked} vs {reference}", case.label(loss));
    assert_runs_identical(&what, &rb, &r1);
    let mut rounded = model.clone();
    let mut p = rounded.params().to_vec();
    for l in &model.layout().layers {
        for v in &mut p[l.w_hh.clone()] {
            *v = round_to_f16(*v);
        }
    }
    rounded.params_mut().copy_from_slice(&p);
    // The GPU's master weights stay unrounded: no comparison after the step.
    assert_matches_cpu(&what, &rb, &rounded, &data, loss, false);
    eprintln!("{what}: same bits, within the CPU tolerances of the rounded model");
}

/// Tiles outside the adapter's limits or RB_MAX are refused with the reason.
#[test]
fn invalid_step_tiles_are_refused() {
    let Some(ctx) = gpu("step tile limits") else {
        return;
    };
    let model = Case::new(Cell::Gru).model(1);
    let mut g = GpuModel::new(ctx.ctx.clone(), &model).unwrap();
    let before = g.step_tile();
    for (t, why) in [
        (tile(16, 4, 32, 0), "at least 1"),
        (tile(16, 4, 32, 9), "at most 8 rows per invocation"),
        (tile(4096, 4096, 32, 1), "invocations per workgroup"),
        (tile(16, 4, 1 << 20, 1), "bytes of workgroup memory"),
    ] {
        let e = g.set_step_tile(t).unwrap_err().to_string();
        assert!(e.contains(why), "{t}: {e}");
        assert_eq!(g.step_tile(), before, "a refused tile changes nothing");
    }
}

/// Step tile tuning (`recurrent::gpu::internals`, on with the GEMM tuner):
/// a model's first plan of a new shape measures every candidate, runs the
/// fastest (its step dispatches carry it), caches the decision on the context
/// so that a second model of that shape does not measure again, and agrees
/// with the CPU path — bit for bit with the default tile unless the winner
/// splits K (this small grid has such candidates). A pinned tile
/// (`set_step_tile`) and tuning off are not measured.
#[test]
fn the_step_tile_is_tuned_once_per_model_shape_and_agrees_with_the_default() {
    let Some(_turn) = gpu("step tile tuning") else {
        return;
    };
    // A context of its own: empty caches, tuning on.
    let ctx = GpuContext::new(DevicePreference::Auto).expect("gpu() found an adapter");
    ctx.set_autotune(true);
    let case = layered(Cell::Lstm, false);
    let loss = Loss::Ce;
    let model = case.model(330);
    let data = case.data(loss, 430);

    let mut a = GpuModel::new(ctx.clone(), &model).unwrap();
    assert!(a.step_tile_for(case.batch).is_none(), "nothing decided yet");
    let cands = step_candidates(a.step_tile(), &a.step_key(case.batch), &ctx.limits);
    assert!(cands.iter().any(|t| t.splits > 1), "{cands:?}");
    let (loss_a, grads_a) = a.loss_and_gradients(&data, loss).unwrap();
    let d = a.step_tile_for(case.batch).expect("decided with the plan");
    assert_eq!(d.decision, Decision::Measured);
    let measured: Vec<StepTile> = d.candidates.iter().map(|c| c.0).collect();
    assert_eq!(measured, cands, "every candidate measured, in order");
    // Every candidate ran here (none is refused by lavapipe or llvmpipe),
    // and the decision is the fastest of them, the first on a tie.
    let times: Vec<f64> = d
        .candidates
        .iter()
        .map(|c| c.1.expect("every candidate ran"))
        .collect();
    let best = (0..times.len()).fold(0, |b, i| if times[i] < times[b] { i } else { b });
    assert_eq!((d.choice, d.us), (cands[best], Some(times[best])));
    check_dispatches(&mut a, &case, d.choice, false);
    assert_eq!(ctx.tuned_step_tiles().len(), 1);

    // Same shape, another model: the cached decision, times and all.
    let mut b = GpuModel::new(ctx.clone(), &model).unwrap();
    let (loss_b, grads_b) = b.loss_and_gradients(&data, loss).unwrap();
    assert_eq!(b.step_tile_for(case.batch), Some(d.clone()));
    assert_same_bits("cached tile: loss", &[loss_b], &[loss_a]);
    assert_same_bits("cached tile: gradients", &grads_b, &grads_a);

    // The default tile, pinned: not measured, the same bits.
    let mut c = GpuModel::new(ctx.clone(), &model).unwrap();
    c.set_step_tile(c.step_tile()).unwrap();
    let (loss_c, grads_c) = c.loss_and_gradients(&data, loss).unwrap();
    let dc = c.step_tile_for(case.batch).unwrap();
    assert_eq!((dc.choice, dc.decision), (c.step_tile(), Decision::Pinned));
    if d.choice.splits == 1 {
        assert_same_bits(
            &format!("tuned {} vs default {}: loss", d.choice, dc.choice),
            &[loss_a],
            &[loss_c],
        );
        assert_same_bits("tuned vs default: gradients", &grads_a, &grads_c);
    }
    assert_matches_cpu(
        "tuned tile",
        &Run {
            out: a.forward(&data).unwrap().data,
            loss: loss_a,
            grads: grads_a,
            step_loss: 0.0,
            weights: Vec::new(),
        },
        &model,
        &data,
        loss,
        false,
    );

    // Tuning off: the default, unmeasured; the cache keeps its one shape.
    ctx.set_autotune(false);
    let small = Case { batch: 5, ..case };
    let mut e = GpuModel::new(ctx.clone(), &model).unwrap();
    e.loss_and_gradients(&small.data(loss, 431), loss).unwrap();
    let de = e.step_tile_for(5).unwrap();
    assert_eq!((de.choice, de.decision), (e.step_tile(), Decision::Off));
    assert_eq!(ctx.tuned_step_tiles().len(), 1);
    eprintln!(
        "step tile tuning on {}: {} of {} candidates ({})",
        ctx.describe(),
        d.choice,
        d.candidates.len(),
        d.candidates
            .iter()
            .map(|(t, us)| format!("{t} {:.2} ms", us.unwrap_or(f64::NAN) / 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// K split over slices of the workgroup (`splits`, `SK`): within the CPU
/// tolerances for every cell (outputs, loss, gradients, an Adam step), with
/// chunks past the end of K in the last round (H = 20 and G·H in chunks of
/// 8 or 16 over 2 to 4 slices), partial row tiles and register blocking;
/// the same bits when run again, and the dispatches carry `SK`.
#[test]
fn k_split_tiles_match_the_cpu_and_repeat_their_bits() {
    let Some(ctx) = gpu("step tile k split") else {
        return;
    };
    let split = |units, rows, chunk, rb, sk| StepTile {
        splits: sk,
        ..tile(units, rows, chunk, rb)
    };
    let tiles = [
        split(16, 4, 8, 1, 2),
        split(8, 4, 8, 2, 3),
        split(16, 2, 16, 1, 4),
    ];
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = layered(cell, i == 2);
        let loss = if i % 2 == 0 { Loss::Ce } else { Loss::Mse };
        let model = case.model(340 + i as u64);
        let data = case.data(loss, 440 + i as u64);
        for t in tiles {
            let c = step_constants(t, false);
            assert!(c.contains(&("SK", t.splits as f64)), "{t}");
            let what = format!("{} tile {t}", case.label(loss));
            let r = run(&ctx, &model, &case, &data, loss, t, false);
            assert_matches_cpu(&what, &r, &model, &data, loss, true);
            let again = run(&ctx, &model, &case, &data, loss, t, false);
            assert_runs_identical(&format!("{what}, run again"), &again, &r);
            eprintln!("{what}: within the CPU tolerances, the same bits again");
        }
    }
}

/// Direct tiles (`StepTile::direct`: no staging in workgroup memory, K
/// interleaved over the slices, a tree adding their sums): within the CPU
/// tolerances for every cell (outputs, loss, gradients, an Adam step) with
/// one slice, 2 and 8 slices, register blocks and partial unit and row tiles
/// (H = 20, B = 37), with f32 and f16 W_hh; the same bits when run again.
#[test]
fn direct_tiles_match_the_cpu_and_repeat_their_bits() {
    let Some(ctx) = gpu("step tile direct") else {
        return;
    };
    let tiles = [
        StepTile::direct(16, 1, 7, 8, 4),
        StepTile::direct(8, 2, 7, 4, 8),
        StepTile::direct(32, 1, 3, 4, 2),
        StepTile::direct(4, 4, 3, 1, 1),
    ];
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = Case {
            relu: cell == Cell::Rnn,
            ..layered(cell, i == 1)
        };
        let loss = if i % 2 == 0 { Loss::Mse } else { Loss::Ce };
        let model = case.model(350 + i as u64);
        let data = case.data(loss, 450 + i as u64);
        for t in tiles {
            assert!(step_constants(t, false).contains(&("DIRECT", 1.0)));
            let what = format!("{} tile {t}", case.label(loss));
            let r = run(&ctx, &model, &case, &data, loss, t, false);
            assert_matches_cpu(&what, &r, &model, &data, loss, true);
            let again = run(&ctx, &model, &case, &data, loss, t, false);
            assert_runs_identical(&format!("{what}, run again"), &again, &r);
        }
        // f16 W_hh: against the CPU on the rounded model (no step: the GPU's
        // master weights stay unrounded).
        let t = tiles[0];
        let r = run(&ctx, &model, &case, &data, loss, t, true);
        let mut rounded = model.clone();
        let mut p = rounded.params().to_vec();
        for l in &model.layout().layers {
            for v in &mut p[l.w_hh.clone()] {
                *v = round_to_f16(*v);
            }
        }
        rounded.params_mut().copy_from_slice(&p);
        assert_matches_cpu(
            &format!("{} f16 tile {t}", case.label(loss)),
            &r,
            &rounded,
            &data,
            loss,
            false,
        );
        eprintln!(
            "{}: direct tiles within the CPU tolerances",
            case.label(loss)
        );
    }
}

/// Persistent tiles (`StepTile::persist`: one workgroup per direction runs
/// every step in one dispatch, looping over the step's tiles): the bits of
/// the same tile dispatched per step, for every cell, with several unit and
/// row tiles per step (H = 20, B = 37, partial ones last) or one tile of
/// 1024 invocations, register blocks,
/// units per invocation backward, K split over slices, a direct tile and f16
/// W_hh; and within the CPU tolerances.
#[test]
fn persistent_tiles_give_the_bits_of_the_same_tile_per_step() {
    let Some(ctx) = gpu("persistent step tile") else {
        return;
    };
    let tiles = [
        tile(8, 4, 8, 1),
        tile(16, 4, 8, 4).with_back_units(2),
        StepTile {
            splits: 2,
            ..tile(8, 4, 16, 2)
        },
        StepTile::direct(8, 2, 7, 4, 4),
        // 1024 invocations (lavapipe and llvmpipe allow them): all 20 units
        // in one tile, the rows in two.
        tile(128, 8, 8, 4),
    ];
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = Case {
            relu: cell == Cell::Rnn,
            ..layered(cell, i != 1)
        };
        let loss = if i % 2 == 0 { Loss::Ce } else { Loss::Mse };
        let model = case.model(360 + i as u64);
        let data = case.data(loss, 460 + i as u64);
        for t in tiles {
            let what = format!("{} tile {}", case.label(loss), t.persist());
            let per_step = run(&ctx, &model, &case, &data, loss, t, false);
            let persistent = run(&ctx, &model, &case, &data, loss, t.persist(), false);
            assert_runs_identical(&what, &persistent, &per_step);
            assert_matches_cpu(&what, &persistent, &model, &data, loss, true);
            eprintln!("{what}: the bits of {t} per step, within the CPU tolerances");
        }
        if cell == Cell::Lstm {
            let t = tiles[1];
            let per_step = run(&ctx, &model, &case, &data, loss, t, true);
            let persistent = run(&ctx, &model, &case, &data, loss, t.persist(), true);
            assert_runs_identical(
                &format!("{} f16 tile {}", case.label(loss), t.persist()),
                &persistent,
                &per_step,
            );
        }
    }
}

/// Persistent tiles across a grid of workgroups (`StepTile::persist_on`,
/// cuDNN's persistent algorithm: `P` workgroups a direction, unit tiles
/// p, p + P, ..., a barrier across the grid between steps): the bits of the
/// same tile per step, for every cell, with more unit tiles than
/// workgroups (H = 20 in tiles of 8: workgroup 0 takes two, 1 one), with
/// register blocks and units per invocation backward, a split K, a direct
/// tile, and more workgroups than unit tiles (one tile of 128 units: the
/// second workgroup only meets the barriers). The plans' probe must pass
/// (`check_dispatches` checks that the grid really ran): P = 2 needs two
/// workgroups running at once, which lavapipe and llvmpipe give with two
/// threads or more (`LP_NUM_THREADS`, by default the cores).
#[test]
fn grid_tiles_give_the_bits_of_the_same_tile_per_step() {
    let Some(ctx) = gpu("persistent grid step tile") else {
        return;
    };
    let tiles = [
        tile(8, 4, 8, 1),
        tile(8, 4, 8, 4).with_back_units(2),
        StepTile {
            splits: 2,
            ..tile(8, 4, 16, 2)
        },
        StepTile::direct(8, 2, 7, 4, 4),
        tile(128, 8, 8, 4),
        // One unit tile a workgroup (20 units in two of 16): the forward keeps
        // its W_hh rows in workgroup memory (KEEP), chunks of 8 and of 16.
        tile(16, 4, 8, 1),
        tile(16, 4, 16, 2),
    ];
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = Case {
            relu: cell == Cell::Rnn,
            ..layered(cell, i != 0)
        };
        let loss = if i % 2 == 0 { Loss::Mse } else { Loss::Ce };
        let model = case.model(380 + i as u64);
        let data = case.data(loss, 480 + i as u64);
        for t in tiles {
            let g = t.persist_on(2);
            let what = format!("{} tile {g}", case.label(loss));
            let per_step = run(&ctx, &model, &case, &data, loss, t, false);
            let grid = run(&ctx, &model, &case, &data, loss, g, false);
            // KEEP: the forward's W_hh rows held across the sequence, exactly
            // when each workgroup has one unit tile (staged, one slice of K).
            let mut m = GpuModel::new(ctx.clone(), &model).unwrap();
            m.set_step_tile(g).unwrap();
            let keeps = m
                .dispatches(case.batch, case.steps)
                .unwrap()
                .iter()
                .filter(|d| d.constants.contains(&("KEEP", 1.0)))
                .count();
            let one_tile_each =
                (case.hidden as u32).div_ceil(t.units) == 2 && !t.direct && t.splits == 1;
            assert_eq!(
                keeps,
                if one_tile_each { case.layers } else { 0 },
                "{what}: KEEP dispatches"
            );
            assert_runs_identical(&what, &grid, &per_step);
            assert_matches_cpu(&what, &grid, &model, &data, loss, true);
            eprintln!("{what}: the bits of {t} per step, within the CPU tolerances");
        }
    }
}

/// A grid whose workgroups cannot all run at once (65,535, the most a grid
/// dimension holds: more than lavapipe's threads, or a GPU's resident
/// workgroups of 32 invocations): the plan's probe sees its barriers give up and
/// the plan runs the tile per step (decision `grid-fallback`), with the
/// per-step bits. Without the probe, the barriers give up in the step
/// itself: the forward is refused, the training step is skipped (the
/// weights unchanged) and reported, and the model falls back too, so the
/// next step trains.
#[test]
fn a_grid_that_cannot_run_at_once_falls_back_to_the_per_step_kernels() {
    let Some(ctx) = gpu("persistent grid fallback") else {
        return;
    };
    let case = Case {
        layers: 1,
        bidirectional: false,
        steps: 3,
        ..layered(Cell::Lstm, false)
    };
    let model = case.model(390);
    let data = case.data(Loss::Ce, 490);
    let t = tile(8, 4, 8, 1);
    let wide = t.persist_on(65_535);
    let opts = StepOptions {
        loss: Loss::Ce,
        clip: Some(1.0),
    };

    // The probe: the plan falls back before anything runs.
    let per_step = run(&ctx, &model, &case, &data, Loss::Ce, t, false);
    let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
    g.set_step_tile(wide).unwrap();
    let out = g.forward(&data).unwrap().data;
    let d = g.step_tile_for(case.batch).unwrap();
    assert_eq!(d.choice, t, "the plan runs the tile per step");
    assert_eq!(d.decision, Decision::Fallback);
    assert_eq!(d.decision.name(), "grid-fallback");
    assert!(g
        .dispatches(case.batch, case.steps)
        .unwrap()
        .iter()
        .all(|d| !d.sync && d.step.is_none_or(|s| s == t)));
    assert_same_bits("fallen back: output", &out, &per_step.out);

    // No probe: the first forward gives up, and says so.
    let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
    g.set_step_tile(wide).unwrap();
    g.set_grid_probe(false);
    let e = g.forward(&data).unwrap_err().to_string();
    assert!(e.contains("the persistent grid's barrier gave up"), "{e}");
    assert!(e.contains("run it again"), "{e}");
    // Fallen back: the same forward again gives the per-step bits.
    assert_same_bits(
        "after giving up: output",
        &g.forward(&data).unwrap().data,
        &per_step.out,
    );

    // A training step that gives up is skipped and reported; the next trains.
    let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
    g.set_step_tile(wide).unwrap();
    g.set_grid_probe(false);
    let before = g.download().unwrap();
    let mut opt = Optimizer::adam(1e-2);
    let e = g
        .train_step_sync(&data, &opts, &mut opt)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the persistent grid's barrier gave up at optimizer step 1"),
        "{e}"
    );
    assert!(e.contains("the step was skipped"), "{e}");
    assert_same_bits("a skipped step: weights", &g.download().unwrap(), &before);
    let mut opt = Optimizer::adam(1e-2);
    let s = g.train_step_sync(&data, &opts, &mut opt).unwrap();
    assert_same_bits("the next step: loss", &[s.loss], &[per_step.step_loss]);
    assert_same_bits(
        "the next step: weights",
        &g.download().unwrap(),
        &per_step.weights,
    );
}
