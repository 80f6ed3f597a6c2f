//! Kernel registry: every `.wgsl` file is `include_str!`'d once and named by
//! [`Shader`]; every entry point is a [`Kernel`]. Compiled pipelines are
//! cached by (kernel, override constants). All kernels share one bind-group
//! layout (see [`Kernels::new`]), so one bind group per workspace serves a
//! whole training step, and every dispatch finds its arguments in its own
//! 256-byte slot of one uniform buffer (a dynamic offset).
//!
//! ## Design
//! Bindings (identical in every shader that uses them):
//! `0 params`, `1 grads`, `2 work` (read-write f32 storage), `3 ints` (read-only
//! i32 storage: lengths, token ids, class targets), `4 state` (optimizer
//! moments), `5` the dispatch's uniform. The dispatches that read the opt-in
//! f16 copy of W_hh ([`Dispatch::f16`]: the step kernels with `WHH16 = 1` and
//! the conversion kernel `whh_to_f16`) get a second bind group with the copy
//! at binding 4 instead of the optimizer state, which they never use; so the
//! kernels keep needing 5 storage bindings, on every adapter. Offsets into the buffers travel in
//! the uniform as element indices, never as binding offsets (storage binding
//! offsets must be 256-byte aligned; element offsets need not be).

use super::autotune::{fixed_config, Decision, GemmChoice, GemmConfig, GemmShape};
use super::context::GpuContext;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One WGSL source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Gemm,
    Lstm,
    Gru,
    Rnn,
    Head,
    Optim,
    Embed,
    /// `whh_f16.wgsl`: the f16 copy of W_hh.
    WhhF16,
}

const HALF: &str = include_str!("../../shaders/half.wgsl");
const WHH_F16: &str = include_str!("../../shaders/whh_f16.wgsl");
const STEP_COMMON: &str = include_str!("../../shaders/step_common.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm.wgsl");
const LSTM: &str = include_str!("../../shaders/lstm.wgsl");
const GRU: &str = include_str!("../../shaders/gru.wgsl");
const RNN: &str = include_str!("../../shaders/rnn.wgsl");
const HEAD: &str = include_str!("../../shaders/head.wgsl");
const OPTIM: &str = include_str!("../../shaders/optim.wgsl");
const EMBED: &str = include_str!("../../shaders/embed.wgsl");

impl Shader {
    pub const ALL: [Shader; 8] = [
        Shader::Gemm,
        Shader::Lstm,
        Shader::Gru,
        Shader::Rnn,
        Shader::Head,
        Shader::Optim,
        Shader::Embed,
        Shader::WhhF16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shader::Gemm => "gemm.wgsl",
            Shader::Lstm => "lstm.wgsl",
            Shader::Gru => "gru.wgsl",
            Shader::Rnn => "rnn.wgsl",
            Shader::Head => "head.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Embed => "embed.wgsl",
            Shader::WhhF16 => "whh_f16.wgsl",
        }
    }

    /// The complete WGSL module (the cell files get `half.wgsl` and
    /// `step_common.wgsl` in front, `whh_f16.wgsl` gets `half.wgsl`).
    pub fn source(self) -> String {
        match self {
            Shader::Gemm => GEMM.to_string(),
            Shader::Lstm => format!("{HALF}\n{STEP_COMMON}\n{LSTM}"),
            Shader::Gru => format!("{HALF}\n{STEP_COMMON}\n{GRU}"),
            Shader::Rnn => format!("{HALF}\n{STEP_COMMON}\n{RNN}"),
            Shader::Head => HEAD.to_string(),
            Shader::Optim => OPTIM.to_string(),
            Shader::Embed => EMBED.to_string(),
            Shader::WhhF16 => format!("{HALF}\n{WHH_F16}"),
        }
    }

    /// Entry points of this file.
    pub fn kernels(self) -> Vec<Kernel> {
        Kernel::ALL
            .iter()
            .copied()
            .filter(|k| k.shader() == self)
            .collect()
    }
}

/// One entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Register-blocked GEMM, 4x4 outputs per invocation (vec4s, constant
    /// indices): the kernel measured on real GPUs and the fixed choice.
    Gemm,
    /// The same with 2x2 or 8x8 outputs per invocation (an override, loops
    /// over arrays): only for the autotuner's candidates with RM != 4.
    GemmRm,
    /// 8x8 outputs per invocation on 128x128 or 64x64 blocks, vec4 workgroup
    /// tiles, double-buffered over K: only for the autotuner's `Wide` candidates.
    GemmWide,
    GemmSmall,
    GemmSplitReduce,
    ColumnSums,
    LstmStepForward,
    LstmStepBackward,
    GruStepForward,
    GruStepBackward,
    RnnStepForward,
    RnnStepBackward,
    LossCe,
    LossMse,
    GradNormPartial,
    GradNormFinish,
    OptimizerStep,
    EmbedForward,
    EmbedBackward,
    /// W_hh of a layer (both directions) to its f16 copy.
    WhhToF16,
}

impl Kernel {
    pub const ALL: [Kernel; 20] = [
        Kernel::Gemm,
        Kernel::GemmRm,
        Kernel::GemmWide,
        Kernel::GemmSmall,
        Kernel::GemmSplitReduce,
        Kernel::ColumnSums,
        Kernel::LstmStepForward,
        Kernel::LstmStepBackward,
        Kernel::GruStepForward,
        Kernel::GruStepBackward,
        Kernel::RnnStepForward,
        Kernel::RnnStepBackward,
        Kernel::LossCe,
        Kernel::LossMse,
        Kernel::GradNormPartial,
        Kernel::GradNormFinish,
        Kernel::OptimizerStep,
        Kernel::EmbedForward,
        Kernel::EmbedBackward,
        Kernel::WhhToF16,
    ];

    pub fn shader(self) -> Shader {
        use Kernel::*;
        match self {
            Gemm | GemmRm | GemmWide | GemmSmall | GemmSplitReduce | ColumnSums => Shader::Gemm,
            LstmStepForward | LstmStepBackward => Shader::Lstm,
            GruStepForward | GruStepBackward => Shader::Gru,
            RnnStepForward | RnnStepBackward => Shader::Rnn,
            LossCe | LossMse => Shader::Head,
            GradNormPartial | GradNormFinish | OptimizerStep => Shader::Optim,
            EmbedForward | EmbedBackward => Shader::Embed,
            WhhToF16 => Shader::WhhF16,
        }
    }

    /// A cell's backward step kernel?
    pub fn is_step_backward(self) -> bool {
        matches!(
            self,
            Kernel::LstmStepBackward | Kernel::GruStepBackward | Kernel::RnnStepBackward
        )
    }

    pub fn entry(self) -> &'static str {
        use Kernel::*;
        match self {
            Gemm => "gemm",
            GemmRm => "gemm_rm",
            GemmWide => "gemm_wide",
            GemmSmall => "gemm_small",
            GemmSplitReduce => "gemm_split_reduce",
            ColumnSums => "column_sums",
            LstmStepForward => "lstm_step_forward",
            LstmStepBackward => "lstm_step_backward",
            GruStepForward => "gru_step_forward",
            GruStepBackward => "gru_step_backward",
            RnnStepForward => "rnn_step_forward",
            RnnStepBackward => "rnn_step_backward",
            LossCe => "loss_ce",
            LossMse => "loss_mse",
            GradNormPartial => "grad_norm_partial",
            GradNormFinish => "grad_norm_finish",
            OptimizerStep => "optimizer_step",
            EmbedForward => "embed_forward",
            EmbedBackward => "embed_backward",
            WhhToF16 => "whh_to_f16",
        }
    }
}

/// Bytes of one dispatch's uniform slot (a multiple of every adapter's
/// `min_uniform_buffer_offset_alignment`, which is at most 256).
pub const SLOT_BYTES: u64 = 256;
/// Buffer ids used by [`GemmArgs`] operands.
pub const BUF_PARAMS: u32 = 0;
pub const BUF_GRADS: u32 = 1;
pub const BUF_WORK: u32 = 2;

/// Below this many 64x64 output blocks (the fixed choice; the autotuner
/// measures instead, see [`super::autotune`]) the register-blocked GEMM leaves most
/// of a large GPU idle (e.g. dW_ih = dGᵀ·X with M = 4H, N = I, K = T*B) and
/// the one-output-per-invocation variant, with 16x the workgroups, is faster
/// (measured on an H200: 157 vs 765 us for M=512, N=28, K=1792).
pub const GEMM_MIN_BLOCKS: u32 = 128;
/// Split-K for small grids: aim for this many workgroups in total...
pub const SPLIT_TARGET_BLOCKS: u32 = 512;
/// ...with at least this much K per split (shorter splits cost more in partial traffic)...
pub const SPLIT_MIN_K: u32 = 128;
/// ...and at most this many splits.
pub const SPLIT_MAX: u32 = 32;
/// f32 elements of the split-K partials region of every workspace: enough for
/// SPLIT_TARGET_BLOCKS blocks of 16x16 outputs (a split GEMM that would need
/// more uses fewer splits).
pub const SPLIT_PARTIALS: usize = (SPLIT_TARGET_BLOCKS * 256) as usize;

/// Tunables derived from the adapter's limits (passed as WGSL `override`s).
#[derive(Clone, Copy, Debug)]
pub struct Tunables {
    /// GEMM workgroup edge of the fixed choice: 16x16 = 256 invocations where
    /// allowed (WebGPU's default limit), else 8x8 (GL ES 3.1 guarantees only
    /// 128); each invocation computes 4x4 outputs, so a workgroup owns a 64x64
    /// (32x32) block. The autotuner may pick another per shape.
    pub tile: u32,
    /// Invocations per workgroup of the embedding kernels.
    pub wg_small: u32,
    /// Invocations of the reduction kernels (loss, norm, optimizer): a power
    /// of two, 256 where allowed.
    pub wg_reduce: u32,
    /// Workgroups of the first gradient-norm pass (fixed, so the sum order is too).
    pub norm_groups: u32,
    /// The step kernels' default tile ([`StepTile`]): 16 units x 16 rows
    /// (4 rows where a workgroup has fewer than 256 invocations), chunks of
    /// 32 inputs (4*TJ*(KC+1) + TB*RB*KC floats of workgroup memory: 10.5 KiB
    /// at 16,16,32,1), one row per invocation (the tile measured on real
    /// GPUs; every rb gives the same bits), one slice of K, staged, one unit
    /// per invocation backward.
    pub step: StepTile,
    /// The step tile was set by `RECURRENT_STEP_TILE`: models keep it, the
    /// step tuner ([`super::steptune`]) does not measure others.
    pub step_tile_pinned: bool,
}

impl Tunables {
    /// The step kernels' tile.
    pub fn step_tile(&self) -> StepTile {
        self.step
    }

    /// These tunables with the step kernels' tile `tile`.
    pub fn with_step_tile(mut self, tile: StepTile) -> Tunables {
        self.step = tile;
        self
    }
}

/// The tile of the per-step kernels (`lstm.wgsl`, `gru.wgsl`, `rnn.wgsl`): a
/// workgroup of `units` x `rows` invocations (`TJ` x `TB`) owns `units`
/// hidden units (all their gates) for `rows * rows_per_invocation` batch
/// rows, each invocation one unit for `rows_per_invocation` rows (`RB`),
/// staging `chunk` inputs (or gate rows) per round trip (`KC`), the loop over
/// K split over `splits` slices of the workgroup (`SK`). Every tile with one
/// slice sums each row in the same order, so `rows_per_invocation`, `units`,
/// `rows` and `chunk` do not change the results' bits; `splits` > 1 adds the
/// slices' partial sums (in a fixed order), which changes them by rounding.
/// A direct tile ([`StepTile::direct`]) stages nothing; `back_units` widens
/// the backward's workgroups. Set with
/// `RECURRENT_STEP_TILE=units,rows,chunk[,rb[,sk[,direct]]][,ub=N][,persist]` or per
/// model with [`GpuModel::set_step_tile`](super::GpuModel::set_step_tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepTile {
    pub units: u32,
    pub rows: u32,
    pub chunk: u32,
    pub rows_per_invocation: u32,
    /// Slices of the workgroup that split the loop over K (inputs forward,
    /// gate rows backward): a workgroup of units x rows x splits invocations,
    /// slice s staging and multiplying every splits-th chunk from s, slice 0
    /// adding the partial sums in slice order and running the epilogue. For
    /// grids too small to fill the GPU (small batches). 1: no split.
    pub splits: u32,
    /// The products read W_hh and the states straight from memory (`DIRECT`
    /// in step_common.wgsl): no chunks staged in workgroup memory, no barrier
    /// in the loop over K, the slices interleaving K (slice s takes every
    /// `splits`-th input from s) and a tree adding their sums; `chunk` then
    /// only sizes the workgroup array the tree uses (rows·rb <= chunk + 1).
    /// `splits` must be a power of two. For small batches.
    pub direct: bool,
    /// Backward only: hidden units per invocation (`UB`, 1 to 4): a backward
    /// workgroup owns `units * back_units` units, and each gate gradient
    /// read from workgroup memory serves that many (the forward gets that
    /// reuse from its gates). Only with one slice of K, not direct. Every
    /// value gives the same bits.
    pub back_units: u32,
    /// One workgroup per direction runs every step of the sequence in one
    /// dispatch (`PERSIST` in step_common.wgsl): a loop over the steps inside
    /// the kernel and, within a step, over this tile's tiles, with a storage
    /// barrier between steps. One dispatch per layer and pass instead of one
    /// per step, for sizes where launching a step costs more than computing
    /// it (small H). Computes exactly what the same tile computes per step:
    /// the same bits.
    pub persistent: bool,
}

impl StepTile {
    /// The tile `units,rows,chunk,rb` with one slice of K.
    pub fn new(units: u32, rows: u32, chunk: u32, rows_per_invocation: u32) -> StepTile {
        StepTile {
            units,
            rows,
            chunk,
            rows_per_invocation,
            splits: 1,
            direct: false,
            back_units: 1,
            persistent: false,
        }
    }

    /// This tile, run persistently (see [`StepTile::persistent`]).
    pub fn persist(self) -> StepTile {
        StepTile {
            persistent: true,
            ..self
        }
    }

    /// Largest [`StepTile::back_units`] (`UB_MAX` in step_common.wgsl).
    pub const MAX_BACK_UNITS: u32 = 4;

    /// This tile with `back_units` units per invocation backward.
    pub fn with_back_units(self, back_units: u32) -> StepTile {
        StepTile { back_units, ..self }
    }

    /// Hidden units one workgroup of `kernel` covers: `units`, times
    /// `back_units` for the backward step kernels.
    pub fn units_of(&self, kernel: Kernel) -> u32 {
        if kernel.is_step_backward() {
            self.units * self.back_units
        } else {
            self.units
        }
    }

    /// The tile `units,rows,chunk,rb,splits,direct` (see [`StepTile::direct`]).
    pub fn direct(
        units: u32,
        rows: u32,
        chunk: u32,
        rows_per_invocation: u32,
        splits: u32,
    ) -> StepTile {
        StepTile {
            splits,
            direct: true,
            ..StepTile::new(units, rows, chunk, rows_per_invocation)
        }
    }

    /// Largest `rows_per_invocation` (`RB_MAX` in step_common.wgsl: the size
    /// of the per-invocation accumulator arrays).
    pub const MAX_ROWS_PER_INVOCATION: u32 = 8;

    /// Bytes of workgroup memory the step kernels declare for this tile:
    /// `sh_w` (4*TJ*(KC+1) floats) and `sh_h` (TB*RB*KC floats), per slice.
    pub fn workgroup_bytes(&self) -> u64 {
        let (tj, tb, kc, rb) = (
            self.units as u64,
            self.rows as u64,
            self.chunk as u64,
            self.rows_per_invocation as u64,
        );
        4 * (4 * tj * (kc + 1) + tb * rb * kc) * self.splits as u64
    }

    /// Batch rows one workgroup covers (`TB * RB`).
    pub fn batch_rows(&self) -> u32 {
        self.rows * self.rows_per_invocation
    }

    /// Is this tile valid on an adapter with `limits`? Every value at least
    /// 1, `rows_per_invocation` at most [`StepTile::MAX_ROWS_PER_INVOCATION`],
    /// `units` x `rows` invocations within the workgroup size limits, and
    /// [`StepTile::workgroup_bytes`] within the workgroup storage limit.
    pub fn check(&self, limits: &wgpu::Limits) -> Result<()> {
        match self.problem(limits) {
            Some(why) => Err(Error::Argument(format!("step tile {self}: {why}"))),
            None => Ok(()),
        }
    }

    /// What makes this tile invalid on `limits`, if anything.
    fn problem(&self, limits: &wgpu::Limits) -> Option<String> {
        if self.units == 0
            || self.rows == 0
            || self.chunk == 0
            || self.rows_per_invocation == 0
            || self.splits == 0
        {
            return Some("every value must be at least 1".into());
        }
        if self.back_units == 0 || self.back_units > Self::MAX_BACK_UNITS {
            return Some(format!(
                "1 to {} units per invocation backward (ub)",
                Self::MAX_BACK_UNITS
            ));
        }
        if self.back_units > 1 && (self.splits > 1 || self.direct) {
            return Some("ub > 1 only with one slice of K and not direct".into());
        }
        if self.direct {
            if !self.splits.is_power_of_two() {
                return Some(format!(
                    "a direct tile's slices must be a power of two, not {}",
                    self.splits
                ));
            }
            // The tree holds every slice's sums in sh_w.
            if self.rows as u64 * self.rows_per_invocation as u64 > self.chunk as u64 + 1 {
                return Some(format!(
                    "a direct tile needs rows*rb at most chunk+1 = {}",
                    self.chunk as u64 + 1
                ));
            }
        }
        // Slice 0 adds the others' partial sums through sh_w, one slice at a time.
        if !self.direct
            && self.splits > 1
            && self.rows as u64 * self.rows_per_invocation as u64
                > (self.chunk as u64 + 1) * self.splits as u64
        {
            return Some(format!(
                "with {} slices of K, rows*rb must be at most (chunk+1)*slices = {}",
                self.splits,
                (self.chunk as u64 + 1) * self.splits as u64
            ));
        }
        if self.rows_per_invocation > Self::MAX_ROWS_PER_INVOCATION {
            return Some(format!(
                "at most {} rows per invocation",
                Self::MAX_ROWS_PER_INVOCATION
            ));
        }
        let inv = self.units as u64 * self.rows as u64 * self.splits as u64;
        if inv > limits.max_compute_invocations_per_workgroup as u64
            || self.units > limits.max_compute_workgroup_size_x
            || self.rows > limits.max_compute_workgroup_size_y
            || self.splits > limits.max_compute_workgroup_size_z
        {
            return Some(format!(
                "{} x {} x {} invocations per workgroup; the adapter allows {} in all, at most {} x {} x {}",
                self.units,
                self.rows,
                self.splits,
                limits.max_compute_invocations_per_workgroup,
                limits.max_compute_workgroup_size_x,
                limits.max_compute_workgroup_size_y,
                limits.max_compute_workgroup_size_z
            ));
        }
        if self.workgroup_bytes() > limits.max_compute_workgroup_storage_size as u64 {
            return Some(format!(
                "needs {} bytes of workgroup memory (4*(4*units*(chunk+1) + rows*rb*chunk)*slices); the adapter allows {}",
                self.workgroup_bytes(),
                limits.max_compute_workgroup_storage_size
            ));
        }
        None
    }

    /// Parses `units,rows,chunk[,rb[,sk[,direct]]][,ub=N][,persist]` (`rb`, rows per
    /// invocation, and `sk`, slices of K, default to 1; the word `direct`:
    /// [`StepTile::direct`]; `ub=N`: [`StepTile::back_units`], default 1;
    /// the word `persist`: [`StepTile::persistent`]) and
    /// checks it against `limits` ([`StepTile::check`]), as
    /// `RECURRENT_STEP_TILE` is read.
    pub fn parse(v: &str, limits: &wgpu::Limits) -> Result<StepTile> {
        let mut fields: Vec<&str> = v.split(',').map(str::trim).collect();
        let persistent = fields.last() == Some(&"persist");
        if persistent {
            fields.pop();
        }
        let mut back_units = 1;
        if let Some(n) = fields.last().and_then(|f| f.strip_prefix("ub=")) {
            back_units = n.parse().map_err(|_| {
                Error::Argument(format!(
                    "step tile '{v}': ub={n} is not an unsigned integer"
                ))
            })?;
            fields.pop();
        }
        let direct = fields.last() == Some(&"direct");
        if direct {
            fields.pop();
        }
        let p: Vec<Option<u32>> = fields.iter().map(|x| x.parse().ok()).collect();
        let tile = match p[..] {
            [Some(units), Some(rows), Some(chunk), Some(rb), Some(sk)] if direct => {
                StepTile::direct(units, rows, chunk, rb, sk)
            }
            _ if direct => {
                return Err(Error::Argument(format!(
                    "step tile '{v}': expected units,rows,chunk,rb,sk,direct (e.g. 32,1,7,8,8,direct), unsigned integers"
                )))
            }
            [Some(units), Some(rows), Some(chunk)] => StepTile::new(units, rows, chunk, 1),
            [Some(units), Some(rows), Some(chunk), Some(rb)] => {
                StepTile::new(units, rows, chunk, rb)
            }
            [Some(units), Some(rows), Some(chunk), Some(rb), Some(sk)] => StepTile {
                splits: sk,
                ..StepTile::new(units, rows, chunk, rb)
            },
            _ => {
                return Err(Error::Argument(format!(
                    "step tile '{v}': expected units,rows,chunk[,rb[,sk[,direct]]] (e.g. 16,4,32 or 16,4,32,4 or 8,4,16,1,4 or 32,1,7,8,8,direct), unsigned integers"
                )))
            }
        };
        let tile = StepTile {
            persistent,
            ..tile.with_back_units(back_units)
        };
        match tile.problem(limits) {
            Some(why) => Err(Error::Argument(format!(
                "step tile '{v}' (units,rows,chunk,rb = {tile}): {why}"
            ))),
            None => Ok(tile),
        }
    }
}

impl std::fmt::Display for StepTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.units, self.rows, self.chunk, self.rows_per_invocation
        )?;
        if self.splits != 1 || self.direct {
            write!(f, ",{}", self.splits)?;
        }
        if self.direct {
            write!(f, ",direct")?;
        }
        if self.back_units != 1 {
            write!(f, ",ub={}", self.back_units)?;
        }
        if self.persistent {
            write!(f, ",persist")?;
        }
        Ok(())
    }
}

/// The override constants of a step kernel (`lstm.wgsl`, `gru.wgsl`,
/// `rnn.wgsl`) with tile `tile`, as the runtime passes them: `TJ`, `TB`,
/// `KC`, then `RB` and `SK` only when they are not 1, `DIRECT = 1` only for a
/// direct tile, and `WHH16 = 1` only for the
/// variant reading the f16 copy of W_hh (absent otherwise, so the default
/// pipelines are those of a build without these options).
pub fn step_constants(tile: StepTile, f16: bool) -> Vec<(String, f64)> {
    let mut c = vec![
        ("TJ".into(), tile.units as f64),
        ("TB".into(), tile.rows as f64),
        ("KC".into(), tile.chunk as f64),
    ];
    if tile.rows_per_invocation != 1 {
        c.push(("RB".into(), tile.rows_per_invocation as f64));
    }
    if tile.splits != 1 {
        c.push(("SK".into(), tile.splits as f64));
    }
    if tile.direct {
        c.push(("DIRECT".into(), 1.0));
    }
    if tile.back_units != 1 {
        c.push(("UB".into(), tile.back_units as f64));
    }
    if tile.persistent {
        c.push(("PERSIST".into(), 1.0));
    }
    if f16 {
        c.push(("WHH16".into(), 1.0));
    }
    c
}

/// Override constants of a dispatch of `gemm.wgsl`: the workgroup edge
/// (`TILE`) and the outputs per invocation along each dimension (`RM`: 4 for
/// `gemm`, 2 or 8 for `gemm_rm`, 1 for the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    pub tile: u32,
    pub rm: u32,
}

/// The register-blocked GEMM entry point for `rm` x `rm` outputs per
/// invocation: `gemm` (the vec4 kernel measured on an H200, RM fixed at 4)
/// for 4, `gemm_rm` (generic loops, unmeasured on real GPUs) otherwise.
pub fn blocked_gemm_kernel(rm: u32) -> Kernel {
    if rm == 4 {
        Kernel::Gemm
    } else {
        Kernel::GemmRm
    }
}

/// The override constants of `gemm.wgsl` kernel `k` at workgroup edge `tile`
/// with `rm` x `rm` outputs per invocation, as the runtime passes them:
/// - `gemm`: `TILE` only (its RM is the shader's constant 4, `BM` = 4·TILE by
///   default; `rm` must be 4);
/// - `gemm_rm`: `TILE` and `RMG` = `rm` (its own staging arrays, TILE·RMG·TILE each);
/// - `gemm_wide`: `WT` = `tile` (16 or 8; its 8x8 outputs per invocation
///   are the shader's, `rm` is ignored);
/// - `gemm_small`, `gemm_split_reduce`, `column_sums`: `TILE` and `BM` = TILE
///   (they stage TILE x TILE of each workgroup array; `rm` is ignored).
pub fn gemm_constants(k: Kernel, tile: u32, rm: u32) -> Vec<(String, f64)> {
    debug_assert_eq!(k.shader(), Shader::Gemm, "{k:?} is not a gemm.wgsl kernel");
    match k {
        Kernel::Gemm => {
            debug_assert_eq!(rm, 4, "gemm computes 4x4 outputs per invocation");
            vec![("TILE".into(), tile as f64)]
        }
        Kernel::GemmRm => vec![("TILE".into(), tile as f64), ("RMG".into(), rm as f64)],
        // WT x WT invocations of 8x8 outputs (the 8 is the shader's).
        Kernel::GemmWide => vec![("WT".into(), tile as f64)],
        _ => vec![("TILE".into(), tile as f64), ("BM".into(), tile as f64)],
    }
}

/// A kernel and its override constants (name, value bits).
type PipelineKey = (Kernel, Vec<(String, u64)>);

/// Shared bind-group layout, pipeline layout, and the pipeline cache.
pub struct Kernels {
    pub bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    pub tunables: Tunables,
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Kernels {
    pub fn new(device: &wgpu::Device, limits: &wgpu::Limits) -> Result<Kernels> {
        if limits.max_storage_buffers_per_shader_stage < 5 {
            return Err(Error::Gpu(format!(
                "the adapter allows {} storage buffers per shader stage; the kernels need 5. HINT: try another backend (RECURRENT_BACKEND=vulkan)",
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        if limits.min_uniform_buffer_offset_alignment as u64 > SLOT_BYTES {
            return Err(Error::Gpu(format!(
                "uniform offset alignment {} is above {SLOT_BYTES} bytes",
                limits.min_uniform_buffer_offset_alignment
            )));
        }
        let inv = limits.max_compute_invocations_per_workgroup;
        let tile = if inv >= 256
            && limits.max_compute_workgroup_size_x >= 16
            && limits.max_compute_workgroup_size_y >= 16
        {
            16
        } else {
            8
        };
        let wg_reduce = if inv >= 256 && limits.max_compute_workgroup_size_x >= 256 {
            256
        } else {
            128
        };
        if limits.max_compute_workgroup_storage_size < 2 * 4 * tile * tile * 4
            || limits.max_compute_workgroup_storage_size < wg_reduce * 4
        {
            return Err(Error::Gpu(format!(
                "workgroup storage limit {} bytes is too small for the kernels",
                limits.max_compute_workgroup_storage_size
            )));
        }
        let mut tunables = Tunables {
            tile,
            wg_small: 64,
            wg_reduce,
            norm_groups: 64,
            // Measured on an H200 (ms per training step, TJ,TB,KC): 16,16,32 was
            // fastest of 16,4,64 / 8,8,64 / 16,8,64 / 8,4,64 / 32,8,32 / 32,4,64
            // for LSTM H128 B64 T28 (7.2 vs 9.2), H512 B64 T25 (11.9 vs 15.8),
            // H1024 B64 T25 (33.5 vs 57.0) and GRU H256 B32 T50 (17.1 vs 25.7).
            // (The chunk was not passed to the shaders then: every one of those
            // ran KC = 32, the shader's default; it is passed since.)
            // Rows per invocation unmeasured on real GPUs: 1 until a sweep says otherwise.
            step: StepTile::new(16, if inv >= 256 { 16 } else { 4 }, 32, 1),
            step_tile_pinned: false,
        };
        // Tuning knob: RECURRENT_STEP_TILE="units,rows,chunk[,rb[,sk[,direct]]][,ub=N][,persist]" overrides the
        // step kernels' tile (see StepTile; checked against the adapter's limits).
        if let Ok(v) = std::env::var("RECURRENT_STEP_TILE") {
            let tile = StepTile::parse(&v, limits).map_err(|e| match e {
                Error::Argument(m) => Error::Argument(format!("RECURRENT_STEP_TILE: {m}")),
                e => e,
            })?;
            tunables = tunables.with_step_tile(tile);
            tunables.step_tile_pinned = true;
        }
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("recurrent.bind_group_layout"),
            entries: &[
                storage(0, false),
                storage(1, false),
                storage(2, false),
                storage(3, true),
                storage(4, false),
                wgpu::BindGroupLayoutEntry {
                    binding: 5,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: std::num::NonZeroU64::new(SLOT_BYTES),
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("recurrent.pipeline_layout"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        Ok(Kernels {
            bind_group_layout,
            pipeline_layout,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            tunables,
        })
    }

    /// Override constants for a kernel, from the tunables (and, for the GEMM
    /// shader and the step kernels, from the dispatch's own tile where it has
    /// one). `f16`: a step kernel reads W_hh from its f16 copy (`WHH16 = 1`;
    /// absent when off, so the f32 pipelines are exactly those of a build
    /// without the option).
    fn constants(
        &self,
        k: Kernel,
        gemm: Option<GemmTile>,
        step: Option<StepTile>,
        f16: bool,
    ) -> Vec<(String, f64)> {
        let t = &self.tunables;
        match k.shader() {
            Shader::Gemm => {
                let g = gemm.unwrap_or(GemmTile {
                    tile: t.tile,
                    rm: if matches!(k, Kernel::Gemm | Kernel::GemmRm) {
                        4
                    } else {
                        1
                    },
                });
                gemm_constants(k, g.tile, g.rm)
            }
            Shader::Head | Shader::Optim => vec![("WG".into(), t.wg_reduce as f64)],
            Shader::Lstm | Shader::Gru | Shader::Rnn => {
                step_constants(step.unwrap_or(t.step_tile()), f16)
            }
            Shader::Embed | Shader::WhhF16 => vec![("WG".into(), t.wg_small as f64)],
        }
    }

    /// The override constants a recorded dispatch's pipeline is built with.
    pub(crate) fn constants_of(&self, d: &Dispatch) -> Vec<(String, f64)> {
        self.constants(d.kernel, d.gemm, d.step, d.f16)
    }

    /// The compiled pipeline of `k` with the tunables' constants (compiled on first use, then cached).
    pub fn pipeline(&self, device: &wgpu::Device, k: Kernel) -> Result<wgpu::ComputePipeline> {
        self.pipeline_with(device, k, None)
    }

    /// The pipeline a recorded dispatch runs (its kernel, GEMM or step tile and f16 variant).
    pub fn pipeline_for(
        &self,
        device: &wgpu::Device,
        d: &Dispatch,
    ) -> Result<wgpu::ComputePipeline> {
        let consts = self.constants(d.kernel, d.gemm, d.step, d.f16);
        self.pipeline_consts(device, d.kernel, consts)
    }

    /// The pipeline of `k` with GEMM tile `gemm` (`None`: the tunables' default).
    pub fn pipeline_with(
        &self,
        device: &wgpu::Device,
        k: Kernel,
        gemm: Option<GemmTile>,
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_variant(device, k, gemm, false)
    }

    /// [`Kernels::pipeline_with`]; `f16`: the step kernels' variant that reads
    /// W_hh from its f16 copy.
    pub fn pipeline_variant(
        &self,
        device: &wgpu::Device,
        k: Kernel,
        gemm: Option<GemmTile>,
        f16: bool,
    ) -> Result<wgpu::ComputePipeline> {
        let consts = self.constants(k, gemm, None, f16);
        self.pipeline_consts(device, k, consts)
    }

    /// The pipeline of `k` with override constants `consts` (compiled on first use, then cached).
    fn pipeline_consts(
        &self,
        device: &wgpu::Device,
        k: Kernel,
        consts: Vec<(String, f64)>,
    ) -> Result<wgpu::ComputePipeline> {
        let key = (
            k,
            consts
                .iter()
                .map(|(n, v)| (n.clone(), v.to_bits()))
                .collect::<Vec<_>>(),
        );
        if let Some(p) = self.pipelines.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = self.modules.lock().map_err(|_| poisoned())?;
            match modules.get(&k.shader()) {
                Some(m) => m.clone(),
                None => {
                    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
                    let src = k.shader().source();
                    let m = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(k.shader().name()),
                        source: wgpu::ShaderSource::Wgsl(src.into()),
                    });
                    if let Some(e) = pollster::block_on(scope.pop()) {
                        return Err(Error::Gpu(format!(
                            "shader {} does not compile: {e}",
                            k.shader().name()
                        )));
                    }
                    modules.insert(k.shader(), m.clone());
                    m
                }
            }
        };
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let c: Vec<(&str, f64)> = consts.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.entry()),
            layout: Some(&self.pipeline_layout),
            module: &module,
            entry_point: Some(k.entry()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &c,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "kernel {} ({}) does not build: {e}",
                k.entry(),
                k.shader().name()
            )));
        }
        self.pipelines
            .lock()
            .map_err(|_| poisoned())?
            .insert(key, p.clone());
        Ok(p)
    }
}

fn poisoned() -> Error {
    Error::Gpu("the pipeline cache lock was poisoned by a panic in another thread".into())
}

/// Arguments of `gemm` and `column_sums` (layout of `struct Gemm` in gemm.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmArgs {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub beta: f32,
    pub a_buf: u32,
    pub a_off: u32,
    pub lda: u32,
    pub a_t: u32,
    pub b_buf: u32,
    pub b_off: u32,
    pub ldb: u32,
    pub b_t: u32,
    pub c_buf: u32,
    pub c_off: u32,
    pub ldc: u32,
    pub bias_buf: u32,
    pub bias_off: u32,
    pub has_bias: u32,
    pub a_z: u32,
    pub b_z: u32,
    pub c_z: u32,
    pub bias_z: u32,
    pub splits: u32,
    pub k_chunk: u32,
    pub part_off: u32,
}

/// Arguments of the cell step kernels (`struct Step` in step_common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepArgs {
    pub t_len: u32,
    pub b: u32,
    pub h: u32,
    pub s: u32,
    pub ld: u32,
    pub act: u32,
    pub has_dy: u32,
    pub has_len: u32,
    pub len_off: u32,
    pub y_off: u32,
    pub dy_off: u32,
    pub carry_off: u32,
    /// W_hh per direction: offsets into params, or with the f16 copy
    /// ([`Program::whh_f16`]) offsets in halves into the copy.
    pub whh: [u32; 2],
    pub bhh: [u32; 2],
    pub gx: [u32; 2],
    pub hs: [u32; 2],
    pub cs: [u32; 2],
    pub sv: [u32; 2],
    pub dg: [u32; 2],
    pub dgh: [u32; 2],
    pub dc: [u32; 2],
}

/// Arguments of the loss kernels (`struct Head` in head.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HeadArgs {
    pub rows: u32,
    pub o: u32,
    pub b: u32,
    pub seq: u32,
    pub has_len: u32,
    pub len_off: u32,
    pub out_off: u32,
    pub dout_off: u32,
    pub target_off: u32,
    pub scalars_off: u32,
}

/// Arguments of the norm and optimizer kernels (`struct Opt` in optim.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptArgs {
    pub n: u32,
    pub kind: u32,
    pub scalars_off: u32,
    pub partials_off: u32,
    pub partials: u32,
    pub has_clip: u32,
    pub max_norm: f32,
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub nesterov: u32,
    pub first: u32,
    pub w1: f32,
    pub beta2: f32,
    pub w2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
}

/// Arguments of the embedding kernels (`struct Embed` in embed.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EmbedArgs {
    pub b: u32,
    pub t_len: u32,
    pub width: u32,
    pub vocab: u32,
    pub ids_off: u32,
    pub table_off: u32,
    pub x_off: u32,
    pub dx_off: u32,
}

/// Arguments of `whh_to_f16` (`struct Convert` in whh_f16.wgsl): `len`
/// elements of W_hh per direction from params at `src` to the copy at word `dst`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvertArgs {
    pub len: u32,
    pub src: [u32; 2],
    pub dst: [u32; 2],
}

/// One recorded dispatch: a kernel, its uniform slot, its grid.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub kernel: Kernel,
    pub slot: u32,
    pub groups: [u32; 3],
    /// Role, for debug groups and errors (`"lstm.l0.step_forward"`).
    pub label: String,
    /// Override constants of a GEMM-shader dispatch chosen per shape (`None`: the tunables').
    pub gemm: Option<GemmTile>,
    /// The tile of a step-kernel dispatch, as its grid was computed (`None`:
    /// not a step kernel).
    pub step: Option<StepTile>,
    /// Reads (or writes) the f16 copy of W_hh: runs the `WHH16 = 1` variant of
    /// a step kernel, with [`Binds::f16`].
    pub f16: bool,
}

/// The bind groups a program's dispatches run with: `main` (`[params, grads,
/// work, ints, state]` and the uniforms), and for the dispatches marked
/// [`Dispatch::f16`] the same with the f16 copy of W_hh at binding 4.
#[derive(Clone, Copy)]
pub struct Binds<'a> {
    pub main: &'a wgpu::BindGroup,
    pub f16: Option<&'a wgpu::BindGroup>,
}

impl<'a> Binds<'a> {
    /// Only `main` (a program without f16 dispatches).
    pub fn main(main: &'a wgpu::BindGroup) -> Binds<'a> {
        Binds { main, f16: None }
    }

    fn of(&self, d: &Dispatch) -> Result<&'a wgpu::BindGroup> {
        if !d.f16 {
            return Ok(self.main);
        }
        self.f16.ok_or_else(|| {
            Error::Gpu(format!(
                "{}: reads the f16 copy of W_hh, but no bind group holds it",
                d.label
            ))
        })
    }
}

/// A list of dispatches and the uniform bytes they read. Built once per shape
/// and replayed every step: only the optimizer's slot changes between steps.
#[derive(Default)]
pub struct Program {
    pub dispatches: Vec<Dispatch>,
    pub uniforms: Vec<u8>,
    /// Largest grid dimension allowed (`max_compute_workgroups_per_dimension`).
    pub max_groups: u32,
    pub tunables: Option<Tunables>,
    /// Offset in `work` of the split-K partials (`SPLIT_PARTIALS` elements), if any.
    pub split_partials: Option<u32>,
    /// Where [`Program::gemm`] gets each shape's configuration: the context's
    /// autotuner; `None`: the fixed choice.
    pub tuner: Option<Arc<GpuContext>>,
    /// Every GEMM recorded, in order, with the configuration it runs.
    pub gemms: Vec<GemmChoice>,
    /// The step kernels read W_hh from its f16 copy ([`StepArgs::whh`] then
    /// points into it).
    pub whh_f16: bool,
}

fn ceil_div(a: u32, b: u32) -> u32 {
    a.div_ceil(b)
}

impl Program {
    pub fn new(limits: &wgpu::Limits, tunables: Tunables) -> Program {
        Program {
            dispatches: Vec::new(),
            uniforms: Vec::new(),
            max_groups: limits.max_compute_workgroups_per_dimension,
            tunables: Some(tunables),
            split_partials: None,
            tuner: None,
            gemms: Vec::new(),
            whh_f16: false,
        }
    }

    fn t(&self) -> Tunables {
        self.tunables.expect("Program::new sets the tunables")
    }

    /// Appends a uniform slot holding `args`; returns its index.
    pub fn slot<T: bytemuck::Pod>(&mut self, args: &T) -> u32 {
        let idx = (self.uniforms.len() as u64 / SLOT_BYTES) as u32;
        let bytes = bytemuck::bytes_of(args);
        debug_assert!(bytes.len() as u64 <= SLOT_BYTES);
        self.uniforms.extend_from_slice(bytes);
        self.uniforms
            .resize(((idx + 1) as u64 * SLOT_BYTES) as usize, 0);
        idx
    }

    /// Rewrites slot `idx` (e.g. the optimizer's, every step).
    pub fn set_slot<T: bytemuck::Pod>(&mut self, idx: u32, args: &T) {
        let start = idx as usize * SLOT_BYTES as usize;
        let bytes = bytemuck::bytes_of(args);
        self.uniforms[start..start + bytes.len()].copy_from_slice(bytes);
    }

    fn push(&mut self, kernel: Kernel, slot: u32, groups: [u32; 3], label: &str) -> Result<()> {
        self.push_tile(kernel, slot, groups, label, None)
    }

    /// Marks the dispatches pushed since index `from` (empty grids push none) as using the f16 copy.
    fn mark_f16(&mut self, from: usize) {
        for d in &mut self.dispatches[from..] {
            d.f16 = true;
        }
    }

    fn push_tile(
        &mut self,
        kernel: Kernel,
        slot: u32,
        groups: [u32; 3],
        label: &str,
        gemm: Option<GemmTile>,
    ) -> Result<()> {
        if groups.iter().any(|&g| g > self.max_groups) {
            return Err(Error::Gpu(format!(
                "{label}: grid {groups:?} exceeds the adapter's {} workgroups per dimension. HINT: lower the batch size or sequence length",
                self.max_groups
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        self.dispatches.push(Dispatch {
            kernel,
            slot,
            groups,
            label: label.to_string(),
            gemm,
            step: None,
            f16: false,
        });
        Ok(())
    }

    /// `C = beta*C + op(A)·op(B) (+ bias)`, `batch` entries along z, with the
    /// configuration of its shape: the tuner's (measured at the shape's first
    /// use on the context) when the program has one, else the fixed choice.
    pub fn gemm(&mut self, a: GemmArgs, batch: u32, label: &str) -> Result<()> {
        let shape = GemmShape::of(&a, batch);
        let (config, us, decision) = match self.tuner.clone() {
            Some(ctx) => {
                let t = ctx.tuner.config(&ctx, &shape)?;
                (t.config, t.us, t.decision)
            }
            None => (fixed_config(&shape, &self.t()), None, Decision::Off),
        };
        self.gemm_with(a, batch, label, config)?;
        if let Some(g) = self.gemms.last_mut() {
            g.us = us;
            g.decision = decision;
        }
        Ok(())
    }

    /// [`Program::gemm`] with a given configuration. A `gemm` (RM = 4) or
    /// `gemm_rm` (RM 2 or 8) workgroup owns a (TILE·RM)² block of C; a
    /// `gemm_small` workgroup TILE x TILE outputs, optionally split over K
    /// (partials in `split_partials`, then `gemm_split_reduce`; without a
    /// partials region it does not split).
    pub fn gemm_with(
        &mut self,
        a: GemmArgs,
        batch: u32,
        label: &str,
        config: GemmConfig,
    ) -> Result<()> {
        let shape = GemmShape::of(&a, batch);
        self.gemms.push(GemmChoice {
            label: label.to_string(),
            shape,
            config,
            us: None,
            decision: Decision::Off,
        });
        let tile = config.tile();
        let gt = Some(GemmTile {
            tile,
            rm: config.rm(),
        });
        let grid = config.grid(&shape);
        match config {
            GemmConfig::Blocked { rm, .. } => {
                // RM = 4 (the fixed choice among them): the measured vec4 `gemm`;
                // 2 or 8: the generic `gemm_rm`.
                let s = self.slot(&a);
                self.push_tile(blocked_gemm_kernel(rm), s, grid, label, gt)
            }
            GemmConfig::Wide { .. } => {
                let s = self.slot(&a);
                self.push_tile(Kernel::GemmWide, s, grid, label, gt)
            }
            GemmConfig::Small { .. } => {
                let small = [grid[0], grid[1], batch];
                match self.split_partials {
                    Some(part_off) if config.effective_splits(&shape) > 1 => {
                        let k_chunk = a.k.div_ceil(config.splits()).div_ceil(tile) * tile;
                        let splits = a.k.div_ceil(k_chunk);
                        debug_assert_eq!(splits, config.effective_splits(&shape));
                        let sa = GemmArgs {
                            splits,
                            k_chunk,
                            part_off,
                            ..a
                        };
                        let s = self.slot(&sa);
                        self.push_tile(
                            Kernel::GemmSmall,
                            s,
                            [small[0], small[1], batch * splits],
                            label,
                            gt,
                        )?;
                        self.push_tile(Kernel::GemmSplitReduce, s, small, label, gt)
                    }
                    _ => {
                        let s = self.slot(&a);
                        self.push_tile(Kernel::GemmSmall, s, small, label, gt)
                    }
                }
            }
        }
    }

    /// `C[0, j] += Σ_row A[row, j]` (a.m rows, a.n columns, A in work), `batch` entries along z.
    pub fn column_sums(&mut self, a: GemmArgs, batch: u32, label: &str) -> Result<()> {
        debug_assert_eq!(a.a_buf, BUF_WORK);
        let tile = self.t().tile;
        let s = self.slot(&a);
        self.push(
            Kernel::ColumnSums,
            s,
            [ceil_div(a.n, tile), 1, batch],
            label,
        )
    }

    /// One step of every direction of a layer (`dirs` along z).
    pub fn step(&mut self, kernel: Kernel, a: StepArgs, dirs: u32, label: &str) -> Result<()> {
        let tile = self.t().step_tile();
        let s = self.slot(&a);
        // (unit tiles, row tiles, directions): a workgroup owns TJ units
        // (TJ*UB backward) and TB*RB rows; persistent: one workgroup a
        // direction loops over them, and over the steps.
        let groups = if tile.persistent {
            [1, 1, dirs]
        } else {
            [
                ceil_div(a.h, tile.units_of(kernel)),
                ceil_div(a.b, tile.batch_rows()),
                dirs,
            ]
        };
        let from = self.dispatches.len();
        self.push(kernel, s, groups, label)?;
        for d in &mut self.dispatches[from..] {
            d.step = Some(tile);
        }
        if self.whh_f16 {
            self.mark_f16(from);
        }
        Ok(())
    }

    /// W_hh of one layer (`dirs` directions along z) to its f16 copy.
    pub fn whh_to_f16(&mut self, a: ConvertArgs, dirs: u32, label: &str) -> Result<()> {
        let wg = self.t().wg_small;
        let s = self.slot(&a);
        let groups = ceil_div(a.len.div_ceil(2), wg)
            .min(self.max_groups)
            .min(65535);
        let from = self.dispatches.len();
        self.push(Kernel::WhhToF16, s, [groups, 1, dirs], label)?;
        self.mark_f16(from);
        Ok(())
    }

    /// Loss and its gradient (one workgroup).
    pub fn loss(&mut self, kernel: Kernel, a: HeadArgs, label: &str) -> Result<()> {
        let s = self.slot(&a);
        self.push(kernel, s, [1, 1, 1], label)
    }

    /// Gradient norm (two passes) and clip coefficient.
    /// Returns its uniform slot.
    pub fn grad_norm(&mut self, a: OptArgs, label: &str) -> Result<u32> {
        let groups = self.t().norm_groups;
        let s = self.slot(&a);
        self.push(Kernel::GradNormPartial, s, [groups, 1, 1], label)?;
        self.push(Kernel::GradNormFinish, s, [1, 1, 1], label)?;
        Ok(s)
    }

    /// The optimizer step over all parameters; returns its uniform slot.
    pub fn optimizer(&mut self, a: OptArgs, label: &str) -> Result<u32> {
        let wg = self.t().wg_reduce;
        let s = self.slot(&a);
        let groups = ceil_div(a.n, wg).min(self.max_groups).min(4096);
        self.push(Kernel::OptimizerStep, s, [groups, 1, 1], label)?;
        Ok(s)
    }

    /// Embedding gather (forward) or scatter-add (backward).
    pub fn embed(&mut self, kernel: Kernel, a: EmbedArgs, label: &str) -> Result<()> {
        let wg = self.t().wg_small;
        let total = match kernel {
            Kernel::EmbedForward => a.t_len * a.b * a.width,
            _ => a.vocab * a.width,
        };
        let s = self.slot(&a);
        let groups = ceil_div(total, wg).min(self.max_groups).min(65535);
        self.push(kernel, s, [groups, 1, 1], label)
    }

    /// Records the dispatches `range`, each in its own compute pass with GPU
    /// timestamps before and after it (queries `2i`, `2i+1` of `queries`, from `first`).
    #[allow(clippy::too_many_arguments)]
    pub fn encode_timed(
        &self,
        kernels: &Kernels,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        binds: Binds<'_>,
        range: std::ops::Range<usize>,
        queries: &wgpu::QuerySet,
        first: u32,
    ) -> Result<()> {
        for (i, d) in self.dispatches[range].iter().enumerate() {
            let p = kernels.pipeline_for(device, d)?;
            let q = first + 2 * i as u32;
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&d.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: queries,
                    beginning_of_pass_write_index: Some(q),
                    end_of_pass_write_index: Some(q + 1),
                }),
            });
            pass.set_pipeline(&p);
            pass.set_bind_group(0, binds.of(d)?, &[(d.slot as u64 * SLOT_BYTES) as u32]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
        Ok(())
    }

    /// Records the dispatches `range` into one compute pass.
    pub fn encode(
        &self,
        kernels: &Kernels,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        binds: Binds<'_>,
        range: std::ops::Range<usize>,
        label: &str,
    ) -> Result<()> {
        let mut pipelines = Vec::with_capacity(range.len());
        for d in &self.dispatches[range.clone()] {
            pipelines.push((kernels.pipeline_for(device, d)?, binds.of(d)?));
        }
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: None,
        });
        for (d, (p, bg)) in self.dispatches[range].iter().zip(&pipelines) {
            pass.set_pipeline(p);
            pass.set_bind_group(0, *bg, &[(d.slot as u64 * SLOT_BYTES) as u32]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(v: &str, limits: &wgpu::Limits) -> String {
        StepTile::parse(v, limits).unwrap_err().to_string()
    }

    #[test]
    fn step_tiles_parse_with_an_optional_rows_per_invocation() {
        let l = wgpu::Limits::default(); // 256 invocations, 16 KiB workgroup memory
        let t = StepTile::parse("16,4,32", &l).unwrap();
        assert_eq!(t.rows_per_invocation, 1);
        assert_eq!((t.units, t.rows, t.chunk), (16, 4, 32));
        let t = StepTile::parse(" 16, 4 ,32,4", &l).unwrap();
        assert_eq!(t.rows_per_invocation, 4);
        assert_eq!(t.batch_rows(), 16);
        assert_eq!(t.to_string(), "16,4,32,4");
        // 16,16,32: 4*(4*16*33 + 16*32) = 10,496 bytes; rb 4 adds 3*16*32*4.
        assert_eq!(
            StepTile::parse("16,16,32", &l).unwrap().workgroup_bytes(),
            10_496
        );
        // 16,16,32,4: 16,640 bytes, over WebGPU's default 16 KiB (NVIDIA allows 48 KiB).
        let t4 = StepTile {
            rows_per_invocation: 4,
            ..StepTile::parse("16,16,32", &l).unwrap()
        };
        assert_eq!(t4.workgroup_bytes(), 10_496 + 3 * 16 * 32 * 4);
        assert!(err("16,16,32,4", &l).contains("needs 16640 bytes of workgroup memory"));
        for bad in [
            "",
            "16,4",
            "16,4,32,4,1,1",
            "16,x,32",
            "16,4,-32",
            "16,4,32,",
        ] {
            assert!(
                err(bad, &l).contains("expected units,rows,chunk[,rb[,sk[,direct]]]"),
                "{bad}"
            );
        }
        // Slices of K: the workgroup and its memory grow with them.
        let s4 = StepTile::parse("8,4,16,1,4", &l).unwrap();
        assert_eq!(s4.splits, 4);
        assert_eq!(s4.to_string(), "8,4,16,1,4");
        assert_eq!(s4.workgroup_bytes(), 4 * (4 * 8 * 17 + 4 * 16) * 4);
        assert_eq!(
            StepTile::parse("16,4,32,1,1", &l).unwrap().to_string(),
            "16,4,32,1"
        );
        assert!(err("16,16,32,1,2", &l).contains("invocations per workgroup"));
        assert!(err("16,4,32,1,0", &l).contains("at least 1"));
        assert!(err("8,8,4,8,2", &l).contains("rows*rb must be at most (chunk+1)*slices"));
        // Direct tiles: the word last, slices a power of two, rows*rb <= chunk + 1.
        let d = StepTile::parse("16,1,7,8,4,direct", &l).unwrap();
        assert_eq!(d, StepTile::direct(16, 1, 7, 8, 4));
        assert_eq!(d.to_string(), "16,1,7,8,4,direct");
        assert_eq!(
            StepTile::direct(16, 1, 7, 8, 1).to_string(),
            "16,1,7,8,1,direct"
        );
        assert!(err("16,1,7,8,3,direct", &l).contains("power of two"));
        assert!(err("16,2,7,8,4,direct", &l).contains("rows*rb at most chunk+1"));
        assert!(err("16,1,7,8,direct", &l).contains("expected units,rows,chunk,rb,sk,direct"));
        // Units per invocation backward: a suffix, 1 to 4, one slice of K, not direct.
        let u = StepTile::parse("16,16,32,2,ub=4", &l).unwrap();
        assert_eq!(u, StepTile::new(16, 16, 32, 2).with_back_units(4));
        assert_eq!(u.to_string(), "16,16,32,2,ub=4");
        assert_eq!(u.units_of(Kernel::LstmStepBackward), 64);
        assert_eq!(u.units_of(Kernel::LstmStepForward), 16);
        assert!(err("16,16,32,1,ub=5", &l).contains("1 to 4 units per invocation backward"));
        assert!(err("16,4,32,1,2,ub=2", &l).contains("ub > 1 only with one slice of K"));
        // Persistent: the word last of all; printed back the same way.
        for v in [
            "16,4,32,1,persist",
            "16,16,32,2,ub=2,persist",
            "16,1,7,8,4,direct,persist",
        ] {
            let p = StepTile::parse(v, &l).unwrap();
            assert!(p.persistent, "{v}");
            assert_eq!(p.to_string(), v);
            assert_eq!(
                StepTile {
                    persistent: false,
                    ..p
                }
                .persist(),
                p
            );
        }
        assert!(!StepTile::parse("16,4,32,1", &l).unwrap().persistent);
        assert!(err("16,4,32,persist,1", &l).contains("expected units,rows,chunk"));
        assert!(err("16,4,32,ub=x", &l).contains("ub=x is not an unsigned integer"));
        // 32 units x 8 slices: 34,560 bytes, over 16 KiB.
        assert!(err("32,1,7,8,8,direct", &l).contains("bytes of workgroup memory"));
        assert!(err("32,1,7,8,8,fast", &l).contains("expected units,rows,chunk[,rb[,sk[,direct]]]"));
        assert!(err("16,4,32,0", &l).contains("at least 1"));
        assert!(err("0,4,32", &l).contains("at least 1"));
        assert!(err("16,4,32,9", &l).contains("at most 8 rows per invocation"));
        assert!(err("32,16,32", &l).contains("invocations per workgroup"));
        // 16,16,32,8: 4*(2112 + 4096) = 24,832 bytes > 16,384.
        assert!(err("16,16,32,8", &l).contains("bytes of workgroup memory"));
        assert!(StepTile::parse("16,4,32,8", &l).is_ok());
    }

    #[test]
    fn step_constants_name_rb_only_when_blocked() {
        let t = StepTile {
            units: 16,
            rows: 4,
            chunk: 32,
            rows_per_invocation: 1,
            splits: 1,
            direct: false,
            back_units: 1,
            persistent: false,
        };
        let names = |c: Vec<(String, f64)>| c.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(step_constants(t, false)), ["TJ", "TB", "KC"]);
        let t4 = StepTile {
            rows_per_invocation: 4,
            ..t
        };
        assert_eq!(
            step_constants(t4, true),
            vec![
                ("TJ".to_string(), 16.0),
                ("TB".to_string(), 4.0),
                ("KC".to_string(), 32.0),
                ("RB".to_string(), 4.0),
                ("WHH16".to_string(), 1.0)
            ]
        );
        let s2 = StepTile { splits: 2, ..t };
        assert_eq!(names(step_constants(s2, false)), ["TJ", "TB", "KC", "SK"]);
        let d = StepTile::direct(32, 1, 7, 8, 8);
        assert_eq!(
            names(step_constants(d, false)),
            ["TJ", "TB", "KC", "RB", "SK", "DIRECT"]
        );
        assert_eq!(
            names(step_constants(t.with_back_units(2), false)),
            ["TJ", "TB", "KC", "UB"]
        );
        assert_eq!(
            names(step_constants(t.persist(), true)),
            ["TJ", "TB", "KC", "PERSIST", "WHH16"]
        );
    }
}
