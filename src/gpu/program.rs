//! [`Program`]: a plain recording — the list of dispatches of a training step
//! (or any run) and the uniform bytes they read, one 256-byte slot each.
//! Everything a dispatch needs is resolved before it is recorded (its
//! kernel, grid and override constants; the GEMM configuration of its shape
//! comes from [`Resolved`]); a program holds no device or context handle.
//! The launchers that append to it, one per kernel family, are in
//! `launch.rs`; running it is `encode.rs`'s.

use super::gemm_config::{GemmChoice, GemmDecisions};
use super::registry::{Kernel, SLOT_BYTES};
use super::step_tile::StepTile;
use super::tunables::Tunables;
use crate::error::{Error, Result};

/// One recorded dispatch: a kernel, its pipeline's override constants, its
/// uniform slot, its grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    pub kernel: Kernel,
    /// Override constants of its pipeline (WGSL names; see `step_tile.rs`
    /// and `gemm_config.rs` for what they mean).
    pub constants: Vec<(&'static str, f64)>,
    pub slot: u32,
    pub groups: [u32; 3],
    /// Role, for debug groups and errors (`"lstm.l0.step_forward"`).
    pub label: String,
    /// The tile of a step-kernel dispatch, as its grid was computed (`None`:
    /// not a step kernel).
    pub step: Option<StepTile>,
    /// Reads (or writes) the f16 copy of W_hh: runs with the bind group that
    /// holds it.
    pub f16: bool,
    /// A persistent grid's dispatch: runs the sync module (`gpu/grid.rs`)
    /// with the bind group that holds the sync buffer at binding 4.
    pub sync: bool,
}

/// What a recording takes as given: decided before it starts.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The adapter's tunables, with the step tile of this program.
    pub tunables: Tunables,
    /// Largest grid dimension allowed (`max_compute_workgroups_per_dimension`).
    pub max_groups: u32,
    /// Offset in `work` of the split-K partials (`SPLIT_PARTIALS` elements);
    /// `None`: GEMMs do not split.
    pub split_partials: Option<u32>,
    /// The GEMM configuration of each shape (from the tuner); a shape not in
    /// it takes the fixed choice.
    pub gemms: GemmDecisions,
    /// The step kernels read W_hh from its f16 copy (their `whh` offsets
    /// then count halves into it).
    pub whh_f16: bool,
    /// Bytes of workgroup memory a workgroup may declare
    /// (`max_compute_workgroup_storage_size`).
    pub workgroup_bytes: u32,
}

impl Resolved {
    /// Fixed choices for every GEMM, f32 W_hh.
    pub fn fixed(tunables: Tunables, limits: &wgpu::Limits) -> Resolved {
        Resolved {
            tunables,
            max_groups: limits.max_compute_workgroups_per_dimension,
            split_partials: None,
            gemms: GemmDecisions::new(),
            whh_f16: false,
            workgroup_bytes: limits.max_compute_workgroup_storage_size,
        }
    }
}

/// A list of dispatches and the uniform bytes they read. Built once per
/// shape and replayed every step: only the optimizer's slot changes between steps.
#[derive(Clone, Debug)]
pub struct Program {
    pub dispatches: Vec<Dispatch>,
    pub uniforms: Vec<u8>,
    /// Every GEMM recorded, in order, with the configuration it runs.
    pub gemms: Vec<GemmChoice>,
    pub resolved: Resolved,
    /// Words of the sync buffer its grid dispatches use (0: none).
    pub sync_words: u32,
}

impl Program {
    pub fn new(resolved: Resolved) -> Program {
        Program {
            dispatches: Vec::new(),
            uniforms: Vec::new(),
            gemms: Vec::new(),
            resolved,
            sync_words: 0,
        }
    }

    pub fn tunables(&self) -> &Tunables {
        &self.resolved.tunables
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

    /// The bytes of slot `idx`.
    pub fn slot_bytes(&self, idx: u32) -> &[u8] {
        let start = idx as usize * SLOT_BYTES as usize;
        &self.uniforms[start..start + SLOT_BYTES as usize]
    }

    /// Appends a dispatch of `kernel` over `groups` reading slot `slot` (an
    /// empty grid appends nothing; a grid over the adapter's limit is an error).
    pub fn push(
        &mut self,
        kernel: Kernel,
        constants: Vec<(&'static str, f64)>,
        slot: u32,
        groups: [u32; 3],
        label: &str,
    ) -> Result<()> {
        let max = self.resolved.max_groups;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Gpu(format!(
                "{label}: grid {groups:?} exceeds the adapter's {max} workgroups per dimension. HINT: lower the batch size or sequence length"
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        self.dispatches.push(Dispatch {
            kernel,
            constants,
            slot,
            groups,
            label: label.to_string(),
            step: None,
            f16: false,
            sync: false,
        });
        Ok(())
    }

    /// The words of the sync buffer for one more grid dispatch: its offset.
    pub fn sync_slot(&mut self) -> u32 {
        use super::grid_module::{HEADER_WORDS, WORDS_PER_DISPATCH};
        let off = self.sync_words.max(HEADER_WORDS);
        self.sync_words = off + WORDS_PER_DISPATCH;
        off
    }

    /// The dispatches pushed since index `from`.
    pub fn since(&mut self, from: usize) -> &mut [Dispatch] {
        &mut self.dispatches[from..]
    }
}
