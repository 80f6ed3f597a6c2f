//! The per-step kernels' tile chosen per model shape at first use: the
//! second use of the tuner ([`super::tune`]).
//!
//! The step kernels run once per time step and layer; their tile
//! ([`StepTile`]) decides how often each W_hh value is read from memory per
//! step, how much each value read from workgroup memory is reused, and how
//! many workgroups there are to fill the GPU — trade-offs whose best point
//! depends on the GPU, the hidden size and the batch. Every tile with one
//! slice of K sums each row in the same order, so among those the choice
//! never changes results (nor does running a tile persistently)
//! (`tests/gpu_step_tile.rs`); tiles that split K over slices of the
//! workgroup (candidates only where the default grid is small, see
//! [`SMALL_GRID`]) add partial sums, which changes the bits by rounding.
//!
//! When a model builds the plan of a batch shape whose [`StepKey`] is new on
//! its context (and its tile is not pinned), `plan.rs` records the plan once
//! per candidate ([`step_candidates`]: the default first, at most
//! [`STEP_MAX_CANDIDATES`]), all on one workspace, and times each
//! candidate's forward and backward (no loss, no optimizer: parameters,
//! gradients and optimizer state are left as they were) on the wall clock
//! around a submit and a wait, as [`tune::measure`](super::tune::measure)
//! says, pruning at [`PRUNE_FACTOR`]. The decision is cached on the context
//! for every model of the same key.

use super::step_tile::StepTile;
use super::tune::Tuned;
use crate::model::config::{Cell, ModelConfig};

/// After the first timed round, candidates slower than this times the
/// fastest are not run again (they cannot win; large shapes take seconds).
pub const PRUNE_FACTOR: f64 = 1.5;
/// At most this many step tiles are measured per key.
pub const STEP_MAX_CANDIDATES: usize = 10;
/// Below this many workgroups per step dispatch with the default tile (about
/// 4 per multiprocessor of a large GPU) the candidates include tiles that
/// split K over slices of the workgroup, staged or direct
/// ([`StepTile::direct`]): more invocations for the serial loop over K when
/// the batch is small.
pub const SMALL_GRID: u32 = 512;

/// At most this many multiply-adds per gate and step (`B·H²`) for the
/// persistent candidates ([`StepTile::persistent`]: one workgroup per
/// direction runs every step, so it does a step's whole product alone). They
/// can win only where a step's work is about the cost of launching it: the
/// MNIST layer (H = 128, B = 32: 2^19), H = 256 at B = 16 (2^20).
pub const PERSIST_MAX_MACS: u64 = 1 << 20;

/// What the step kernels' speed depends on: the cell, hidden size, layers,
/// directions, batch rows and whether W_hh is read from its f16 copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepKey {
    pub cell: Cell,
    pub hidden: u32,
    pub layers: u32,
    pub directions: u32,
    pub batch: u32,
    pub f16: bool,
}

impl StepKey {
    /// The key of batches of `batch` rows of a model of `config`.
    pub fn of(config: &ModelConfig, batch: usize, f16: bool) -> StepKey {
        StepKey {
            cell: config.cell,
            hidden: config.hidden as u32,
            layers: config.layers as u32,
            directions: config.directions() as u32,
            batch: batch as u32,
            f16,
        }
    }
}

/// The tuner's decision for one [`StepKey`].
pub type TunedStep = Tuned<StepTile>;

/// The tiles measured for `key`, `default` first; where a step is small
/// (`B·H²` at most [`PERSIST_MAX_MACS`]) the default and three wider tiles run
/// persistently ([`StepTile::persistent`]: one dispatch per layer and pass);
/// then (where valid for
/// `limits`, and covering at most twice the batch rows per workgroup, so that
/// most of each workgroup has rows to work on) register blocks of 2 to 8 rows
/// per invocation on 16 units, a small workgroup for small batches and a
/// 32-unit tile; where the default grid has fewer than [`SMALL_GRID`]
/// workgroups, interleaved with tiles splitting K over 2 or 4 slices and
/// direct tiles (4 or 8 rows, 4 to 32 slices, 8 to 32 units), else with tiles of 2
/// or 4 units per invocation backward ([`StepTile::back_units`]). Tiles
/// of 64 rows stage 32 inputs per chunk where the workgroup memory allows
/// (16.25 KiB), else 16 (the twin with 16 is tried only when the one with 32
/// does not fit, e.g. on WebGPU's default 16 KiB). At most [`STEP_MAX_CANDIDATES`].
pub fn step_candidates(default: StepTile, key: &StepKey, limits: &wgpu::Limits) -> Vec<StepTile> {
    let t = StepTile::new;
    let split = |units, rows, chunk, sk| StepTile {
        splits: sk,
        ..t(units, rows, chunk, 1)
    };
    let batch = key.batch;
    let grid = key.hidden.div_ceil(default.units)
        * batch.max(1).div_ceil(default.batch_rows())
        * key.directions;
    let small = grid < SMALL_GRID;
    let mut pool = Vec::new();
    if batch.max(1) as u64 * (key.hidden as u64).pow(2) <= PERSIST_MAX_MACS {
        // One dispatch per layer and pass: the default tile, and wider tiles
        // (fewer tiles to loop over in a step; 128 x 8 x rb 4, where the
        // adapter allows 1024 invocations, covers the MNIST layer's step
        // in one).
        pool.extend([
            default.persist(),
            t(128, 8, 8, 4).persist(),
            t(32, 8, 16, 4).persist(),
            t(64, 4, 8, 2).persist(),
        ]);
    }
    pool.push(t(16, 16, 32, 2));
    if small {
        pool.extend([
            StepTile::direct(32, 1, 7, 8, 8),
            split(8, 8, 16, 4),
            StepTile::direct(8, 1, 7, 8, 32),
            // 4 rows: 16.8 KiB, for adapters with 32 KiB (the two above need 34-40).
            StepTile::direct(32, 1, 3, 4, 8),
        ]);
    }
    pool.extend([t(16, 16, 32, 4), t(16, 16, 16, 4)]);
    if small {
        pool.extend([StepTile::direct(16, 1, 7, 8, 4), split(16, 8, 32, 2)]);
    } else {
        // Units per invocation backward with the register blocks.
        pool.extend([
            t(16, 16, 32, 4).with_back_units(2),
            t(16, 16, 16, 4).with_back_units(2),
        ]);
    }
    pool.extend([t(16, 8, 32, 8), t(16, 8, 16, 8)]);
    if small {
        pool.push(split(8, 4, 16, 4));
    } else {
        pool.push(t(16, 16, 32, 2).with_back_units(4));
    }
    pool.extend([t(16, 16, 32, 8), t(16, 4, 32, 4), t(32, 8, 32, 2)]);
    let mut out = vec![default];
    for c in pool {
        if out.len() >= STEP_MAX_CANDIDATES {
            break;
        }
        let twin_in = c.chunk == 16 && out.contains(&StepTile { chunk: 32, ..c });
        if !twin_in
            && !out.contains(&c)
            && c.check(limits).is_ok()
            && c.batch_rows() <= 2 * batch.max(1)
        {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(units: u32, rows: u32, chunk: u32, rb: u32) -> StepTile {
        StepTile::new(units, rows, chunk, rb)
    }

    fn key(hidden: u32, batch: u32) -> StepKey {
        StepKey {
            cell: Cell::Lstm,
            hidden,
            layers: 1,
            directions: 1,
            batch,
            f16: false,
        }
    }

    /// Without the tiles that split K (a large grid).
    fn step_candidates_of(d: StepTile, batch: u32, limits: &wgpu::Limits) -> Vec<StepTile> {
        let c = step_candidates(d, &key(8192, batch), limits);
        assert!(c.iter().all(|x| x.splits == 1 && !x.direct), "{c:?}");
        c
    }

    #[test]
    fn candidates_start_with_the_default_fit_the_limits_and_the_batch() {
        let limits = wgpu::Limits::default(); // 256 invocations, 16 KiB
        let d = tile(16, 16, 32, 1);
        for batch in [1, 8, 32, 64, 128, 1000] {
            let c = step_candidates_of(d, batch, &limits);
            assert_eq!(c[0], d);
            assert!(c.len() <= STEP_MAX_CANDIDATES);
            for (i, x) in c.iter().enumerate() {
                assert!(x.check(&limits).is_ok(), "{x}");
                assert!(!c[..i].contains(x), "{x} twice");
                if i > 0 {
                    assert!(x.batch_rows() <= 2 * batch, "batch {batch}: {x}");
                }
            }
        }
        // A batch of 8: only tiles of at most 16 rows besides the default.
        assert_eq!(
            step_candidates_of(d, 8, &limits),
            vec![d, tile(16, 4, 32, 4)],
            "32 units x 8 rows needs more than 16 KiB"
        );
        // Large grids get units per invocation backward.
        assert!(big_has_ub(d, &limits), "ub candidates");
        // Large batches get the register blocks: with 16 KiB of workgroup
        // memory those of 64 rows stage 16 inputs a chunk, with 48 KiB 32
        // (and 128 rows fit).
        let big = step_candidates_of(d, 128, &limits);
        assert!(big.contains(&tile(16, 16, 16, 4)) && big.contains(&tile(16, 8, 16, 8)));
        assert!(!big.contains(&tile(16, 16, 32, 4)), "16.25 KiB");
        let roomy = wgpu::Limits {
            max_compute_workgroup_storage_size: 48 << 10,
            ..wgpu::Limits::default()
        };
        let big = step_candidates_of(d, 128, &roomy);
        for x in [tile(16, 16, 32, 4), tile(16, 8, 32, 8), tile(16, 16, 32, 8)] {
            assert!(big.contains(&x), "{x} in {big:?}");
        }
        assert!(
            !big.contains(&tile(16, 16, 16, 4)),
            "its twin with 32 is in"
        );
        // A 128-invocation adapter keeps only tiles of at most 128 invocations.
        let small = wgpu::Limits {
            max_compute_invocations_per_workgroup: 128,
            ..wgpu::Limits::default()
        };
        let d = tile(16, 4, 32, 1);
        for x in step_candidates(d, &key(512, 64), &small) {
            assert!(x.units * x.rows * x.splits <= 128, "{x}");
        }
    }

    fn big_has_ub(d: StepTile, limits: &wgpu::Limits) -> bool {
        step_candidates_of(d, 128, limits)
            .iter()
            .any(|x| x.back_units > 1)
    }

    /// Small grids (few units, few rows) also try slices of K; large ones do not.
    #[test]
    fn small_grids_add_tiles_that_split_k() {
        let limits = wgpu::Limits::default();
        let d = tile(16, 16, 32, 1);
        // H = 512, B = 16: 32 workgroups.
        let c = step_candidates(d, &key(512, 16), &limits);
        assert_eq!(c[0], d);
        assert!(c.len() <= STEP_MAX_CANDIDATES);
        let splits: Vec<_> = c.iter().filter(|x| x.splits > 1).collect();
        assert!(!splits.is_empty(), "{c:?}");
        for x in &c {
            assert!(x.check(&limits).is_ok(), "{x}");
        }
        // 16 KiB: the small direct tile; 48 KiB: the wide ones too.
        assert!(c.contains(&StepTile::direct(16, 1, 7, 8, 4)), "{c:?}");
        let roomy = wgpu::Limits {
            max_compute_workgroup_storage_size: 48 << 10,
            ..wgpu::Limits::default()
        };
        let c = step_candidates(d, &key(512, 16), &roomy);
        assert!(c.contains(&StepTile::direct(32, 1, 7, 8, 8)), "{c:?}");
        assert!(c.contains(&StepTile::direct(8, 1, 7, 8, 32)), "{c:?}");
        assert!(c.len() <= STEP_MAX_CANDIDATES);
        for x in &c {
            assert!(x.check(&roomy).is_ok(), "{x}");
        }
        // H = 8192, B = 16, two directions: 1024 workgroups.
        let big = StepKey {
            directions: 2,
            ..key(8192, 16)
        };
        assert!(step_candidates(d, &big, &limits)
            .iter()
            .all(|x| x.splits == 1 && !x.direct));
    }

    #[test]
    fn small_steps_add_persistent_tiles() {
        let limits = wgpu::Limits::default();
        let d = tile(16, 16, 32, 1);
        // The MNIST layer: H = 128, B = 32.
        let c = step_candidates(d, &key(128, 32), &limits);
        assert_eq!(c[0], d);
        assert_eq!(
            &c[1..4],
            &[
                d.persist(),
                tile(32, 8, 16, 4).persist(),
                tile(64, 4, 8, 2).persist()
            ]
        );
        assert!(c.len() <= STEP_MAX_CANDIDATES);
        // With 1024 invocations a workgroup (and 19 KiB of workgroup
        // memory), the step in one tile too.
        let wide = wgpu::Limits {
            max_compute_invocations_per_workgroup: 1024,
            max_compute_workgroup_size_x: 1024,
            max_compute_workgroup_storage_size: 32 << 10,
            ..wgpu::Limits::default()
        };
        let c = step_candidates(d, &key(128, 32), &wide);
        assert_eq!(c[2], tile(128, 8, 8, 4).persist(), "{c:?}");
        // H = 1024, B = 64: a step is far more work than its launch.
        assert!(step_candidates(d, &key(1024, 64), &limits)
            .iter()
            .all(|x| !x.persistent));
        // H = 256, B = 16 is the largest kind.
        assert!(step_candidates(d, &key(256, 16), &limits).contains(&d.persist()));
        assert!(!step_candidates(d, &key(256, 17), &limits).contains(&d.persist()));
    }
}
