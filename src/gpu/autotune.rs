//! GEMM tile shapes chosen per problem at first use, measured and cached
//! (DESIGN 4.7).
//!
//! Every GEMM of a plan ([`Program::gemm`]) asks its context for the
//! configuration of its shape ([`GemmShape`]: m, n, k, transposes, batch).
//! The first time a context sees a shape — while a plan is built, before any
//! step is recorded, so a training step stays one submission — it runs every
//! valid candidate ([`candidates`]) on scratch operands of that shape, keeps
//! the fastest and caches it, shared by every model on the context.
//! [`GpuContext::tuned_gemms`] lists the decisions; `recurrent bench --device
//! gpu --show-tuning` prints those of a model's step.
//!
//! ## Candidates
//! A [`GemmConfig`] is one of
//! - register-blocked: TILE x TILE invocations (TILE 8 or 16), each
//!   computing RM x RM outputs (RM 2, 4 or 8), so a workgroup owns a
//!   (TILE·RM)² block of C. RM = 4 runs `gemm`, the kernel with its 4x4
//!   block written out on vec4s that was measured on an H200 (BENCHMARKS.md)
//!   and is the fixed choice; RM 2 and 8 run `gemm_rm`, the same algorithm
//!   with RM an override and the block in loop-indexed arrays. `gemm_rm` is
//!   unmeasured on real GPUs (such arrays may end up in local memory where a
//!   driver does not unroll the loops), so it only runs where it won its
//!   measurement, and the default configuration never depends on it;
//! - `gemm_wide` ([`GemmConfig::Wide`]): 16x16 or 8x8 invocations of 8x8 outputs
//!   (a 128x128 or 64x64 block of C) written out on vec4s, with vec4 workgroup tiles
//!   and K double-buffered (the next step's operands are loaded while the
//!   current step is multiplied: one barrier per step of 8). The layout of
//!   fast FP32 GEMMs on GPUs; unmeasured on real GPUs so far, so it too only
//!   runs where it won its measurement;
//! - `gemm_small`: TILE x TILE invocations with one output each (grids too
//!   small to fill the GPU), optionally split over K into `splits` partial
//!   products that `gemm_split_reduce` adds in order (deterministic).
//!
//! The first candidate is always the fixed choice (what runs with tuning off:
//! `gemm` 4x4 per invocation at the adapter's tile, unless the grid has fewer
//! than [`GEMM_MIN_BLOCKS`] blocks, then `gemm_small`, split over K when K is
//! long). The others depend on the grid: for large grids `gemm_wide` and the
//! other register blocks; for small grids other split factors, the other tile and the
//! smaller register blocks. A candidate must fit the adapter: TILE² invocations
//! and TILE per dimension within the workgroup limits, `2·TILE²·RM·4` bytes of
//! workgroup storage, its grid within `max_compute_workgroups_per_dimension`,
//! and split partials within the workspace's [`SPLIT_PARTIALS`].
//!
//! ## Timing and its bounds
//! [`DeviceTimer`] allocates zero-filled operands of the shape once (skipped,
//! and the fixed choice kept, when they would exceed the storage binding limit
//! or [`SCRATCH_MAX_BYTES`] in total), runs every candidate once (compiling
//! its pipelines), then [`TIMED_RUNS`] times each, interleaved, and keeps each
//! candidate's median. With `TIMESTAMP_QUERY` every run is its own compute pass
//! between two GPU timestamps, all in one submission; without it every run is
//! timed on the wall clock around a submit and a wait (which adds the
//! submission's round trip to every candidate alike). So a new shape costs at
//! most [`MAX_CANDIDATES`] x (1 + [`TIMED_RUNS`]) = 32 runs of that GEMM,
//! plus one pipeline compilation per configuration never used before on the
//! context. Ties keep the earlier candidate (the fixed choice first).
//!
//! Tuning is opt-in: `RECURRENT_AUTOTUNE=1` (or `on`, `true`, `yes`) when the
//! context is created turns it on; otherwise every GEMM takes the fixed choice and
//! nothing is measured. Off by default because it is unmeasured on real GPUs so
//! far, and because a choice made by timing can differ from run to run (and with
//! it a split-K sum's order), where the fixed choice keeps results bit-identical. [`GpuContext::set_autotune`] does the same at run time for plans
//! built afterwards. The timing source is replaceable
//! ([`GpuContext::set_gemm_timer`]), which is how the tests check the choice.

use super::context::GpuContext;
use super::kernels::{
    blocked_gemm_kernel, GemmArgs, Kernel, Program, Tunables, BUF_GRADS, BUF_PARAMS, BUF_WORK,
    GEMM_MIN_BLOCKS, SLOT_BYTES, SPLIT_MAX, SPLIT_MIN_K, SPLIT_PARTIALS, SPLIT_TARGET_BLOCKS,
};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most this many candidates are measured per shape.
pub const MAX_CANDIDATES: usize = 8;
/// Timed runs per candidate (after one untimed run); the median is kept.
pub const TIMED_RUNS: usize = 3;
/// Largest scratch operands (A, B, C and split partials together) a shape is
/// measured with; larger shapes keep the fixed choice.
pub const SCRATCH_MAX_BYTES: u64 = 1 << 30;

/// The problem a GEMM solves, as far as its speed goes: `C[m×n] (+)= op(A)·op(B)`
/// with `op(A)` `[m×k]`, `batch` entries along z.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct GemmShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// `A` is stored `[k×m]`.
    pub a_t: bool,
    /// `B` is stored `[n×k]`.
    pub b_t: bool,
    pub batch: u32,
}

impl GemmShape {
    /// The shape of a GEMM with arguments `a` over `batch` entries.
    pub fn of(a: &GemmArgs, batch: u32) -> GemmShape {
        GemmShape {
            m: a.m,
            n: a.n,
            k: a.k,
            a_t: a.a_t != 0,
            b_t: a.b_t != 0,
            batch,
        }
    }
}

impl std::fmt::Display for GemmShape {
    /// `m x n x k op x batch`, e.g. `896x128x28 NT x1` (`T`: that operand transposed).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}x{} {}{} x{}",
            self.m,
            self.n,
            self.k,
            if self.a_t { 'T' } else { 'N' },
            if self.b_t { 'T' } else { 'N' },
            self.batch
        )
    }
}

/// One way to run a GEMM (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmConfig {
    /// `gemm` (RM = 4) or `gemm_rm` (RM 2 or 8): TILE x TILE invocations,
    /// RM x RM outputs each.
    Blocked { tile: u32, rm: u32 },
    /// `gemm_wide`: TILE x TILE invocations (16 or 8) of 8x8 outputs (a
    /// 128x128 or 64x64 block of C), vec4 workgroup tiles, double-buffered over K.
    Wide { tile: u32 },
    /// `gemm_small`: TILE x TILE invocations, one output each; `splits` > 1
    /// splits K (then `gemm_split_reduce` adds the partial products).
    Small { tile: u32, splits: u32 },
}

impl GemmConfig {
    /// The workgroup edge (TILE).
    pub fn tile(&self) -> u32 {
        match *self {
            GemmConfig::Blocked { tile, .. } | GemmConfig::Small { tile, .. } => tile,
            GemmConfig::Wide { tile } => tile,
        }
    }

    /// Outputs per invocation along each dimension (1 for `gemm_small`).
    pub fn rm(&self) -> u32 {
        match *self {
            GemmConfig::Blocked { rm, .. } => rm,
            GemmConfig::Wide { .. } => 8,
            GemmConfig::Small { .. } => 1,
        }
    }

    /// Split-K factor as requested (1: no split).
    pub fn splits(&self) -> u32 {
        match *self {
            GemmConfig::Blocked { .. } | GemmConfig::Wide { .. } => 1,
            GemmConfig::Small { splits, .. } => splits.max(1),
        }
    }

    /// The kernel of the main dispatch: `gemm` for RM = 4, `gemm_rm` for
    /// the other register blocks, `gemm_small`.
    pub fn main_kernel(&self) -> Kernel {
        match *self {
            GemmConfig::Blocked { rm, .. } => blocked_gemm_kernel(rm),
            GemmConfig::Wide { .. } => Kernel::GemmWide,
            GemmConfig::Small { .. } => Kernel::GemmSmall,
        }
    }

    /// The entry point of the main dispatch.
    pub fn kernel(&self) -> &'static str {
        self.main_kernel().entry()
    }

    /// Bytes of workgroup storage the main kernel declares (`gemm_wide`:
    /// two buffers of 8 x 8·TILE for each operand, 1 KiB x TILE).
    pub fn workgroup_bytes(&self) -> u32 {
        match *self {
            GemmConfig::Wide { tile } => 2 * 2 * 8 * 8 * tile * 4,
            _ => 2 * self.tile() * self.tile() * self.rm() * 4,
        }
    }

    /// Does the workgroup fit the adapter's limits?
    pub fn fits(&self, limits: &wgpu::Limits) -> bool {
        let t = self.tile();
        t * t <= limits.max_compute_invocations_per_workgroup
            && t <= limits.max_compute_workgroup_size_x
            && t <= limits.max_compute_workgroup_size_y
            && self.workgroup_bytes() <= limits.max_compute_workgroup_storage_size
    }

    /// The split factor this configuration really runs for `s` (after
    /// rounding K chunks to whole tiles), or 1 when it does not split.
    pub fn effective_splits(&self, s: &GemmShape) -> u32 {
        let splits = self.splits();
        if splits <= 1 {
            return 1;
        }
        let tile = self.tile();
        let k_chunk = s.k.div_ceil(splits).div_ceil(tile) * tile;
        let real = s.k.div_ceil(k_chunk.max(1));
        let partials = real as u64 * s.m as u64 * s.n as u64 * s.batch as u64;
        if real <= 1 || partials > SPLIT_PARTIALS as u64 {
            1
        } else {
            real
        }
    }

    /// Workgroups along x, y and z of the main dispatch for `s`.
    pub fn grid(&self, s: &GemmShape) -> [u32; 3] {
        let block = self.tile() * self.rm();
        [
            s.n.div_ceil(block),
            s.m.div_ceil(block),
            s.batch * self.effective_splits(s),
        ]
    }

    /// Dispatches one run takes for `s` (2 for a split-K GEMM: product and reduction).
    pub fn dispatches(&self, s: &GemmShape) -> usize {
        if self.effective_splits(s) > 1 {
            2
        } else {
            1
        }
    }

    /// Can this configuration run `s` on an adapter with `limits`?
    pub fn valid_for(&self, s: &GemmShape, limits: &wgpu::Limits) -> bool {
        let rm_ok = match self {
            GemmConfig::Blocked { rm, .. } => matches!(rm, 2 | 4 | 8),
            GemmConfig::Wide { .. } => true,
            GemmConfig::Small { splits, .. } => (1..=SPLIT_MAX).contains(splits),
        };
        let tile_ok = matches!(self.tile(), 8 | 16);
        // A split must really split (and fit the partials region).
        let split_ok = self.splits() == 1 || self.effective_splits(s) > 1;
        rm_ok
            && tile_ok
            && split_ok
            && self.fits(limits)
            && self
                .grid(s)
                .iter()
                .all(|&g| g <= limits.max_compute_workgroups_per_dimension)
    }
}

impl std::fmt::Display for GemmConfig {
    /// `gemm 16x16 rm4`, `gemm_rm 16x16 rm8`, `gemm_wide 16x16 rm8`, `gemm_small 16x16`,
    /// `gemm_small 16x16 split-k 4` (the entry point first).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            GemmConfig::Blocked { tile, rm } => {
                write!(f, "{} {tile}x{tile} rm{rm}", self.kernel())
            }
            GemmConfig::Wide { tile } => write!(f, "gemm_wide {tile}x{tile} rm8"),
            GemmConfig::Small { tile, splits } if splits > 1 => {
                write!(f, "gemm_small {tile}x{tile} split-k {splits}")
            }
            GemmConfig::Small { tile, .. } => write!(f, "gemm_small {tile}x{tile}"),
        }
    }
}

/// Split-K factor of the fixed choice: aim for [`SPLIT_TARGET_BLOCKS`]
/// workgroups with at least [`SPLIT_MIN_K`] of K each, at most [`SPLIT_MAX`],
/// within [`SPLIT_PARTIALS`].
fn heuristic_splits(s: &GemmShape, tile: u32) -> u32 {
    let blocks = (s.n.div_ceil(tile) * s.m.div_ceil(tile) * s.batch).max(1);
    let mut splits = SPLIT_TARGET_BLOCKS
        .div_ceil(blocks)
        .min(SPLIT_MAX)
        .min(s.k / SPLIT_MIN_K);
    while splits > 1
        && splits as u64 * s.m as u64 * s.n as u64 * s.batch as u64 > SPLIT_PARTIALS as u64
    {
        splits -= 1;
    }
    splits.max(1)
}

/// The fixed choice (tuning off): `gemm` with 4x4 outputs per invocation at
/// the adapter's tile when its grid has at least [`GEMM_MIN_BLOCKS`] blocks,
/// else `gemm_small`, split over K when K is long.
pub fn fixed_config(s: &GemmShape, tunables: &Tunables) -> GemmConfig {
    let tile = tunables.tile;
    let block = 4 * tile;
    if s.n.div_ceil(block) * s.m.div_ceil(block) * s.batch >= GEMM_MIN_BLOCKS {
        GemmConfig::Blocked { tile, rm: 4 }
    } else {
        GemmConfig::Small {
            tile,
            splits: heuristic_splits(s, tile),
        }
    }
}

/// The configurations measured for `s`, the fixed choice first, at most
/// [`MAX_CANDIDATES`], each valid for `limits` (if the fixed choice is not —
/// a grid over the limit — it is still first, alone, so that the plan reports
/// the error as without tuning).
pub fn candidates(s: &GemmShape, limits: &wgpu::Limits, tunables: &Tunables) -> Vec<GemmConfig> {
    use GemmConfig::{Blocked, Small, Wide};
    let fixed = fixed_config(s, tunables);
    let t = tunables.tile;
    let other = if t == 16 { 8 } else { 16 };
    let mut pool = vec![fixed];
    match fixed {
        Blocked { .. } | Wide { .. } => {
            // A grid that fills the GPU: other register blocks and tiles.
            pool.extend([
                Wide { tile: 16 },
                Wide { tile: 8 },
                Blocked { tile: 16, rm: 8 },
                Blocked { tile: 8, rm: 8 },
                Blocked { tile: 16, rm: 4 },
                Blocked { tile: 16, rm: 2 },
                Blocked { tile: 8, rm: 4 },
                Blocked { tile: 8, rm: 2 },
                Small {
                    tile: t,
                    splits: heuristic_splits(s, t),
                },
            ]);
        }
        Small { splits, .. } => {
            // A small grid: other split factors, the other tile, small register blocks.
            let mut split_options = vec![1, splits * 2, splits / 2];
            if splits <= 1 {
                split_options.extend([2, 4]);
            }
            for sp in split_options {
                pool.push(Small {
                    tile: t,
                    splits: sp.clamp(1, SPLIT_MAX),
                });
            }
            pool.push(Small {
                tile: other,
                splits: heuristic_splits(s, other),
            });
            pool.extend([
                Blocked { tile: t, rm: 2 },
                Blocked { tile: other, rm: 2 },
                Blocked { tile: t, rm: 4 },
            ]);
        }
    }
    let mut out: Vec<GemmConfig> = Vec::new();
    for c in pool {
        // Configurations that run the same dispatches count once.
        let c = match c {
            Small { tile, splits } if splits > 1 && c.effective_splits(s) <= 1 => {
                Small { tile, splits: 1 }
            }
            c => c,
        };
        if !out.contains(&c) && c.valid_for(s, limits) && out.len() < MAX_CANDIDATES {
            out.push(c);
        }
    }
    if out.first() != Some(&fixed) {
        return vec![fixed];
    }
    out
}

/// How a shape's configuration was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every candidate was timed; the fastest won.
    Measured,
    /// Only one candidate is valid for this shape and adapter: nothing to measure.
    Single,
    /// The scratch operands would not fit ([`SCRATCH_MAX_BYTES`], the binding
    /// limit): the fixed choice, unmeasured.
    TooLarge,
    /// Tuning is off (the default; `RECURRENT_AUTOTUNE=1` turns it on): the fixed choice.
    Off,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Measured => "measured",
            Decision::Single => "single",
            Decision::TooLarge => "too-large",
            Decision::Off => "fixed",
        }
    }
}

/// The decision for one shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TunedGemm {
    /// The configuration every plan on the context uses for this shape.
    pub config: GemmConfig,
    /// Its measured time per run in microseconds (median), when measured.
    pub us: Option<f64>,
    pub decision: Decision,
    /// Every candidate measured with its time (µs), in candidate order
    /// (the fixed choice first); `None` where a candidate failed to run.
    pub candidates: Vec<(GemmConfig, Option<f64>)>,
}

/// One GEMM of a plan and the configuration it runs with (see
/// [`GpuModel::gemm_choices`](super::GpuModel::gemm_choices)).
#[derive(Clone, Debug, PartialEq)]
pub struct GemmChoice {
    /// Its role in the step, e.g. `"lstm.l0.input_projection"`.
    pub label: String,
    pub shape: GemmShape,
    pub config: GemmConfig,
    /// Measured time of the chosen configuration (µs), if it was measured.
    pub us: Option<f64>,
    pub decision: Decision,
}

/// Times GEMM candidates for the tuner. The default is [`DeviceTimer`];
/// tests inject their own with [`GpuContext::set_gemm_timer`].
pub trait GemmTimer: Send + Sync {
    /// Time per run (µs) of each of `configs` on `shape`, in order: `Ok(None)`
    /// when the shape cannot be measured at all (operands too large: the fixed
    /// choice is kept), `Some(None)` entries for candidates that failed to run.
    fn time(
        &self,
        ctx: &GpuContext,
        shape: &GemmShape,
        configs: &[GemmConfig],
    ) -> Result<Option<Vec<Option<f64>>>>;
}

/// The tuner's state in a [`GpuContext`].
pub(crate) struct Tuner {
    enabled: AtomicBool,
    cache: Mutex<HashMap<GemmShape, TunedGemm>>,
    timer: Mutex<Arc<dyn GemmTimer>>,
}

/// `RECURRENT_AUTOTUNE`: on for `1`, `on`, `true`, `yes`; off otherwise (and when
/// unset). Off by default: tuning is unmeasured on real GPUs so far, and a choice
/// made by timing can differ between runs, and with it the order of a split-K sum —
/// results bit-identical from run to run (docs/RELIABILITY.md) need the fixed choice.
pub fn autotune_from_env() -> bool {
    super::context::env_flag("RECURRENT_AUTOTUNE")
}

impl Tuner {
    pub(crate) fn new(enabled: bool) -> Tuner {
        Tuner {
            enabled: AtomicBool::new(enabled),
            cache: Mutex::new(HashMap::new()),
            timer: Mutex::new(Arc::new(DeviceTimer)),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, on: bool) -> bool {
        self.enabled.swap(on, Ordering::Relaxed)
    }

    pub(crate) fn set_timer(&self, timer: Arc<dyn GemmTimer>) {
        *self.timer.lock().unwrap_or_else(|p| p.into_inner()) = timer;
    }

    pub(crate) fn lookup(&self, s: &GemmShape) -> Option<TunedGemm> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(s)
            .cloned()
    }

    pub(crate) fn all(&self) -> Vec<(GemmShape, TunedGemm)> {
        let mut v: Vec<_> = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(s, t)| (*s, t.clone()))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }

    /// The configuration of `s`: cached, else measured now (holding the cache
    /// lock, so a shape is measured once even with several threads).
    pub(crate) fn config(&self, ctx: &GpuContext, s: &GemmShape) -> Result<TunedGemm> {
        let tun = &ctx.kernels.tunables;
        if !self.enabled() {
            return Ok(TunedGemm {
                config: fixed_config(s, tun),
                us: None,
                decision: Decision::Off,
                candidates: Vec::new(),
            });
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.get(s) {
            return Ok(t.clone());
        }
        let cands = candidates(s, &ctx.limits, tun);
        let tuned = if cands.len() == 1 {
            TunedGemm {
                config: cands[0],
                us: None,
                decision: Decision::Single,
                candidates: Vec::new(),
            }
        } else {
            let timer = self.timer.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match timer.time(ctx, s, &cands)? {
                None => TunedGemm {
                    config: cands[0],
                    us: None,
                    decision: Decision::TooLarge,
                    candidates: Vec::new(),
                },
                Some(times) => {
                    if times.len() != cands.len() {
                        return Err(Error::Gpu(format!(
                            "GEMM autotuning: {} times for {} candidates",
                            times.len(),
                            cands.len()
                        )));
                    }
                    if times[0].is_none() {
                        return Err(Error::Gpu(format!(
                            "GEMM autotuning: the fixed choice {} for {s} did not run",
                            cands[0]
                        )));
                    }
                    // The fastest; ties keep the earlier candidate (the fixed choice first).
                    let mut best = 0;
                    for (i, t) in times.iter().enumerate() {
                        if let (Some(t), Some(b)) = (t, times[best]) {
                            if *t < b {
                                best = i;
                            }
                        }
                    }
                    TunedGemm {
                        config: cands[best],
                        us: times[best],
                        decision: Decision::Measured,
                        candidates: cands.iter().copied().zip(times.iter().copied()).collect(),
                    }
                }
            }
        };
        cache.insert(*s, tuned.clone());
        Ok(tuned)
    }
}

/// The default timing source: the candidates on the context's device (see the module docs).
pub struct DeviceTimer;

impl GemmTimer for DeviceTimer {
    fn time(
        &self,
        ctx: &GpuContext,
        shape: &GemmShape,
        configs: &[GemmConfig],
    ) -> Result<Option<Vec<Option<f64>>>> {
        let Some(rig) = GemmRig::new(ctx, shape, 0.0, configs, false)? else {
            return Ok(None);
        };
        let n = configs.len();
        // One untimed run of each: compiles the pipelines, warms caches and clocks.
        let mut ok = vec![true; n];
        for (i, r) in rig.ranges.iter().enumerate() {
            if rig.prepare(ctx, r.clone()).is_err() {
                ok[i] = false;
            }
        }
        if !ok[0] {
            // The fixed choice must build; report why.
            rig.prepare(ctx, rig.ranges[0].clone())?;
        }
        let live: Vec<usize> = (0..n).filter(|&i| ok[i]).collect();
        rig.run_ranges(
            ctx,
            &live
                .iter()
                .map(|&i| rig.ranges[i].clone())
                .collect::<Vec<_>>(),
        )?;
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
        if ctx.has_timestamps() {
            let mut order = Vec::new();
            for _ in 0..TIMED_RUNS {
                order.extend(live.iter().copied());
            }
            let times = rig.timestamps(ctx, &order)?;
            for (i, us) in order.into_iter().zip(times) {
                samples[i].push(us);
            }
        } else {
            for _ in 0..TIMED_RUNS {
                for &i in &live {
                    let t0 = Instant::now();
                    rig.run_ranges(ctx, std::slice::from_ref(&rig.ranges[i]))?;
                    samples[i].push(t0.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
        Ok(Some(
            samples
                .into_iter()
                .map(|v| crate::timing::median(&v))
                .collect(),
        ))
    }
}

/// Scratch operands of one shape and a program holding one GEMM per
/// configuration: `A` in `work` (followed by the split partials), `B` in
/// `params`, `C` in `grads`, packed (`lda` = row length), batch entries one
/// after another. Used by the tuner and by [`GemmBench`](super::bench::GemmBench).
pub(crate) struct GemmRig {
    pub(crate) program: Program,
    /// Dispatches of each configuration in `program`.
    pub(crate) ranges: Vec<Range<usize>>,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) params: wgpu::Buffer,
    pub(crate) grads: wgpu::Buffer,
    pub(crate) work: wgpu::Buffer,
    _buffers: Vec<wgpu::Buffer>,
    pub(crate) lens: (usize, usize, usize),
}

impl GemmRig {
    /// `Ok(None)` when the operands would exceed the limits and `allow_large`
    /// is false (the tuner's case); with `allow_large` that is an error instead.
    pub(crate) fn new(
        ctx: &GpuContext,
        s: &GemmShape,
        beta: f32,
        configs: &[GemmConfig],
        allow_large: bool,
    ) -> Result<Option<GemmRig>> {
        let (m, n, k, z) = (s.m as usize, s.n as usize, s.k as usize, s.batch as usize);
        let (a_len, b_len, c_len) = (z * m * k, z * k * n, z * m * n);
        let work_len = a_len + SPLIT_PARTIALS;
        let max = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size);
        let too_large = [work_len, b_len, c_len]
            .iter()
            .any(|&l| (l * 4) as u64 > max || l >= u32::MAX as usize)
            || ((work_len + b_len + c_len) * 4) as u64 > SCRATCH_MAX_BYTES;
        if too_large {
            if !allow_large {
                return Ok(None);
            }
            for (what, len) in [("A", work_len), ("B", b_len), ("C", c_len)] {
                ctx.check_storage(&format!("GEMM operand {what}"), (len * 4) as u64)?;
                if len >= u32::MAX as usize {
                    return Err(Error::Argument(format!(
                        "GEMM operand {what} has {len} elements, more than 32-bit offsets address"
                    )));
                }
            }
        }
        let mut program = Program::new(&ctx.limits, ctx.kernels.tunables);
        program.split_partials = Some(a_len as u32);
        let args = GemmArgs {
            m: s.m,
            n: s.n,
            k: s.k,
            beta,
            a_buf: BUF_WORK,
            lda: if s.a_t { s.m } else { s.k },
            a_t: s.a_t as u32,
            b_buf: BUF_PARAMS,
            ldb: if s.b_t { s.k } else { s.n },
            b_t: s.b_t as u32,
            c_buf: BUF_GRADS,
            ldc: s.n,
            a_z: (m * k) as u32,
            b_z: (k * n) as u32,
            c_z: (m * n) as u32,
            ..GemmArgs::default()
        };
        let mut ranges = Vec::with_capacity(configs.len());
        for c in configs {
            let start = program.dispatches.len();
            program.gemm_with(args, s.batch, "autotune.gemm", *c)?;
            ranges.push(start..program.dispatches.len());
        }
        let dev = &ctx.device;
        let storage = |label: &str, len: usize| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (len.max(4) * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let params = storage("gemm.params", b_len);
        let grads = storage("gemm.grads", c_len);
        let work = storage("gemm.work", work_len);
        let ints = storage("gemm.ints", 4);
        let state = storage("gemm.state", 4);
        let (uniforms, bind_group) = ctx.bind_program(
            "gemm",
            &program.uniforms,
            [&params, &grads, &work, &ints, &state],
        );
        Ok(Some(GemmRig {
            program,
            ranges,
            bind_group,
            params,
            grads,
            work,
            _buffers: vec![ints, state, uniforms],
            lens: (a_len, b_len, c_len),
        }))
    }

    /// Compiles the pipelines of the dispatches `r`.
    pub(crate) fn prepare(
        &self,
        ctx: &GpuContext,
        r: Range<usize>,
    ) -> Result<Vec<wgpu::ComputePipeline>> {
        self.program.dispatches[r]
            .iter()
            .map(|d| ctx.kernels.pipeline_for(&ctx.device, d))
            .collect()
    }

    /// Records the dispatches of `ranges` into one compute pass.
    pub(crate) fn encode_pass(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        ranges: &[Range<usize>],
        repeat: u64,
        timestamps: Option<(&wgpu::QuerySet, u32)>,
    ) -> Result<()> {
        let mut work = Vec::new();
        for r in ranges {
            for (d, p) in self.program.dispatches[r.clone()]
                .iter()
                .zip(self.prepare(ctx, r.clone())?)
            {
                work.push((d.clone(), p));
            }
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("gemm"),
            timestamp_writes: timestamps.map(|(qs, q)| wgpu::ComputePassTimestampWrites {
                query_set: qs,
                beginning_of_pass_write_index: Some(q),
                end_of_pass_write_index: Some(q + 1),
            }),
        });
        for _ in 0..repeat {
            for (d, p) in &work {
                pass.set_pipeline(p);
                pass.set_bind_group(0, &self.bind_group, &[(d.slot as u64 * SLOT_BYTES) as u32]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            }
        }
        Ok(())
    }

    /// Runs the dispatches of `ranges` once, in one pass and submission, and waits.
    pub(crate) fn run_ranges(&self, ctx: &GpuContext, ranges: &[Range<usize>]) -> Result<()> {
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gemm.run"),
            });
        self.encode_pass(ctx, &mut enc, ranges, 1, None)?;
        ctx.queue.submit([enc.finish()]);
        ctx.wait()
    }

    /// Runs configuration `order[i]` in pass `i`, each pass between two GPU
    /// timestamps, all in one submission; returns each pass's µs.
    fn timestamps(&self, ctx: &GpuContext, order: &[usize]) -> Result<Vec<f64>> {
        let dev = &ctx.device;
        let count = 2 * order.len() as u32;
        let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("autotune.timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("autotune.resolve"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("autotune"),
        });
        for (p, &i) in order.iter().enumerate() {
            self.encode_pass(
                ctx,
                &mut enc,
                std::slice::from_ref(&self.ranges[i]),
                1,
                Some((&qs, 2 * p as u32)),
            )?;
        }
        enc.resolve_query_set(&qs, 0..count, &resolve, 0);
        ctx.queue.submit([enc.finish()]);
        let raw = ctx.read_bytes(&resolve, count as u64 * 8)?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
        let period = ctx.queue.get_timestamp_period() as f64;
        Ok(ticks
            .chunks_exact(2)
            .map(|p| p[1].saturating_sub(p[0]) as f64 * period / 1e3)
            .collect())
    }
}
