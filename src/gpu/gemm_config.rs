//! How a GEMM runs: its problem ([`GemmShape`]), the ways to run it
//! ([`GemmConfig`]: kernel, tile, register block, split-K), the fixed choice
//! used with tuning off ([`fixed_config`]), the candidates the tuner measures
//! ([`gemm_candidates`], see [`super::gemm_tune`]), and the override constants
//! each becomes ([`gemm_constants`]).
//!
//! ## Candidates
//! - register-blocked: TILE x TILE invocations (TILE 8 or 16), each
//!   computing RM x RM outputs (RM 2, 4 or 8), so a workgroup owns a
//!   (TILE·RM)² block of C. RM = 4 runs `gemm`, its 4x4 block written out on
//!   vec4s, the fixed choice; RM 2 and 8 run `gemm_rm`, the same algorithm
//!   with RM an override and the block in loop-indexed arrays;
//! - `gemm_wide` ([`GemmConfig::Wide`]): 16x16 or 8x8 invocations of 8x8
//!   outputs (a 128x128 or 64x64 block of C) on vec4s, vec4 workgroup tiles,
//!   K double-buffered (one barrier per step of 8);
//! - `gemm_small`: TILE x TILE invocations with one output each (grids too
//!   small to fill the GPU), optionally split over K into `splits` partial
//!   products that `gemm_split_reduce` adds in order (deterministic).
//!
//! The first candidate is always the fixed choice (`gemm` 4x4 per invocation
//! at the adapter's tile, unless the grid has fewer than [`GEMM_MIN_BLOCKS`]
//! blocks, then `gemm_small`, split over K when K is long). The others
//! depend on the grid: for large grids `gemm_wide` and the other register
//! blocks; for small grids other split factors, the other tile and the
//! smaller register blocks. A candidate must fit the adapter: TILE²
//! invocations and TILE per dimension within the workgroup limits, its
//! workgroup storage, its grid within `max_compute_workgroups_per_dimension`,
//! and split partials within the workspace's [`SPLIT_PARTIALS`].

use super::args::GemmArgs;
use super::registry::{Kernel, Shader};
use super::tunables::Tunables;
use super::tune::{Decision, Tuned};

/// At most this many candidates are measured per shape.
pub const GEMM_MAX_CANDIDATES: usize = 8;

/// Below this many 64x64 output blocks (the fixed choice; the tuner
/// measures instead, see [`super::gemm_tune`]) the register-blocked GEMM leaves most
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
/// [`GEMM_MAX_CANDIDATES`], each valid for `limits` (if the fixed choice is not —
/// a grid over the limit — it is still first, alone, so that the plan reports
/// the error as without tuning).
pub fn gemm_candidates(
    s: &GemmShape,
    limits: &wgpu::Limits,
    tunables: &Tunables,
) -> Vec<GemmConfig> {
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
        if !out.contains(&c) && c.valid_for(s, limits) && out.len() < GEMM_MAX_CANDIDATES {
            out.push(c);
        }
    }
    if out.first() != Some(&fixed) {
        return vec![fixed];
    }
    out
}

/// The register-blocked GEMM entry point for `rm` x `rm` outputs per
/// invocation: `gemm` (the vec4 kernel measured on an H200, RM fixed at 4)
/// for 4, `gemm_rm` (generic loops) otherwise.
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
pub fn gemm_constants(k: Kernel, tile: u32, rm: u32) -> Vec<(&'static str, f64)> {
    debug_assert_eq!(k.shader(), Shader::Gemm, "{k:?} is not a gemm.wgsl kernel");
    match k {
        Kernel::Gemm => {
            debug_assert_eq!(rm, 4, "gemm computes 4x4 outputs per invocation");
            vec![("TILE", tile as f64)]
        }
        Kernel::GemmRm => vec![("TILE", tile as f64), ("RMG", rm as f64)],
        // WT x WT invocations of 8x8 outputs (the 8 is the shader's).
        Kernel::GemmWide => vec![("WT", tile as f64)],
        _ => vec![("TILE", tile as f64), ("BM", tile as f64)],
    }
}

/// The tuner's decision for one GEMM shape.
pub type TunedGemm = Tuned<GemmConfig>;

/// The decisions a recording takes its GEMM configurations from.
pub type GemmDecisions = std::collections::HashMap<GemmShape, TunedGemm>;

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
