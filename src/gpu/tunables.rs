//! [`Tunables`]: the sizes the kernels run with that follow from the
//! adapter's limits (GEMM tile, reduction widths, the default step tile),
//! passed to the shaders as WGSL `override` constants.

use super::registry::SLOT_BYTES;
use super::step_tile::StepTile;
use crate::error::{Error, Result};

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
    /// step tuner ([`super::step_tune`]) does not measure others.
    pub step_tile_pinned: bool,
    /// Rounds of 32 polls a persistent grid's workgroup may wait at the
    /// barriers of one sequence before it gives up (`GRID_SPIN`,
    /// `gpu/grid.rs`): a few seconds at most on a GPU. A CPU adapter
    /// (llvmpipe) gets fewer, under the 65,535 loop iterations in all it
    /// lets an invocation run (`GpuDevice::new`).
    pub grid_spin: u32,
}

impl Tunables {
    /// These tunables with the step kernels' tile `tile`.
    pub fn with_step_tile(mut self, tile: StepTile) -> Tunables {
        self.step = tile;
        self
    }

    /// The tunables of an adapter with `limits`; `pinned`: a step tile that
    /// replaces the default ([`super::GpuOptions::step_tile`]). Fails when
    /// the adapter cannot run the kernels at all.
    pub fn new(limits: &wgpu::Limits, pinned: Option<StepTile>) -> Result<Tunables> {
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
            // Rows per invocation: 1 until a measurement says otherwise (BENCHMARKS.md).
            step: StepTile::new(16, if inv >= 256 { 16 } else { 4 }, 32, 1),
            step_tile_pinned: false,
            grid_spin: 1 << 15,
        };
        // A pinned tile (GpuOptions::step_tile, RECURRENT_STEP_TILE) replaces
        // the default, checked against the adapter's limits.
        if let Some(tile) = pinned {
            tile.check(limits).map_err(|e| match e {
                Error::Argument(m) => Error::Argument(format!(
                    "the pinned step tile {tile} (GpuOptions::step_tile: from RECURRENT_STEP_TILE or the program): {m}"
                )),
                e => e,
            })?;
            tunables = tunables.with_step_tile(tile);
            tunables.step_tile_pinned = true;
        }
        Ok(tunables)
    }
}
