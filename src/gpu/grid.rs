//! The persistent grid ([`StepTile::grid`] > 1, issue 20 item 4): cuDNN's
//! persistent recurrent algorithm across many workgroups — `P` workgroups a
//! direction run every step of a layer in one dispatch, each taking its unit
//! tiles, and meet at a barrier across the grid between steps
//! (`grid_barrier` in `step_common.wgsl`).
//!
//! What it needs beyond a persistent tile of one workgroup:
//! - **its module**: the step shaders with each line marked `// grid: TEXT`
//!   replaced by `TEXT` ([`super::grid_module::variant`]): the sync buffer at binding 4 (as
//!   atomics) instead of the f16 copy of W_hh, the atomics themselves, and
//!   `grads` at binding 1;
//! - **the sync buffer** ([`GridSync`]): word 0 the plan's give-up flag, then
//!   [`super::grid_module::WORDS_PER_DISPATCH`] words a grid dispatch (each direction's arrivals
//!   and workgroups done, the dispatch's flag; `Program::step` hands out the
//!   offsets, [`StepArgs::sync_off`]). Zero when created; the last workgroup
//!   of a direction to finish zeroes its counters again, so any recording of
//!   the program (a step, a profile, the stack op in an application's
//!   encoder) runs it without clearing anything first;
//! - **a probe** when a plan is built ([`GridSync::probe`]): the plan's own
//!   forward and backward once, then the flag read back. The `P` workgroups
//!   must all be running at once for the barrier to end; where they are
//!   not, each barrier waits `GRID_SPIN` rounds, gives up, sets the flag
//!   and leaves — so a plan whose probe sets it is rebuilt without the grid;
//! - **the flag with every step's statistics**: a barrier that gave up later
//!   also wrote a NaN into the gradients (the optimizer skips the step), and
//!   the statistics' reader reports it as [`GRID_GAVE_UP`].
//!
//! With one unit tile a workgroup (P = ⌈H / units⌉, staged, one slice of
//! K) the forward keeps the tile's W_hh rows in workgroup memory for the
//! whole sequence (`KEEP` in step_common.wgsl; the launcher checks they
//! fit), as cuDNN's persistent kernel holds them on chip; backward still
//! stages its chunks.
//!
//! The grid lays its workgroups along x with the directions interleaved
//! (workgroup p of direction d at x = p·dirs + d): llvmpipe hands each of
//! its threads a run of consecutive workgroups, so a direction's P
//! workgroups then run at once on P threads even for two directions.
//!
//! llvmpipe (lavapipe, and GL's llvmpipe) also ends every loop of an
//! invocation once its loops ran 65,535 iterations in all
//! (`LP_MAX_TGSI_LOOP_ITERATIONS`, one counter for the whole shader),
//! silently: a wait that polled in a plain loop came out of it early, and the
//! sequence with it. So the wait counts rounds of 32 polls in straight-line
//! code (`grid_poll`; each poll a read-modify-write, slower than a load on a
//! CPU), at most [`super::tunables::Tunables::grid_spin`] rounds a sequence,
//! which on a CPU adapter stays well under that count. The same count bounds
//! a persistent tile of one workgroup on llvmpipe: a sequence whose loops
//! over tiles and chunks run more than 65,535 iterations an invocation
//! would by the same count end early there (inferred from that count; not
//! seen at the tests' sizes).
//!
//! WGSL has no device-scope barrier: `storageBarrier` orders memory within
//! a workgroup and its atomics are relaxed. Whether the writes of one
//! workgroup are seen by the others after the barrier is the adapter's; the
//! bit-identity tests (`tests/gpu_step_tile.rs`) check it on lavapipe and
//! llvmpipe, and the mode is opt-in until a device run checks and times it.
//!
//! [`StepTile::grid`]: super::step_tile::StepTile::grid
//! [`StepArgs::sync_off`]: super::args::StepArgs::sync_off

use super::device::GpuDevice;
use crate::error::Result;

/// The start of an error that says a grid barrier gave up.
pub const GRID_GAVE_UP: &str = "the persistent grid's barrier gave up";

/// A plan's sync buffer and the bind group that holds it at binding 4.
pub struct GridSync {
    /// `[words]` u32 ("grid.sync").
    pub buffer: wgpu::Buffer,
    pub bind_group: wgpu::BindGroup,
}

impl GridSync {
    /// The sync buffer of a program with `words` words (`Program::sync_words`;
    /// `None` when it has no grid dispatch), and its bind group over
    /// `[params, grads, work, ints]` and the program's uniforms `ubuf`.
    pub fn new(
        gpu: &GpuDevice,
        label: &str,
        words: u32,
        ubuf: &wgpu::Buffer,
        [params, grads, work, ints]: [&wgpu::Buffer; 4],
    ) -> Option<GridSync> {
        if words == 0 {
            return None;
        }
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("grid.sync"),
            size: words as u64 * 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let bind_group = gpu.bind_group(
            &format!("{label}.grid"),
            ubuf,
            [params, grads, work, ints, &buffer],
        );
        Some(GridSync { buffer, bind_group })
    }

    /// Records the copy of the give-up flag (4 bytes) to byte `offset` of `dst`.
    pub fn encode_flag_copy(
        &self,
        enc: &mut wgpu::CommandEncoder,
        dst: &wgpu::Buffer,
        offset: u64,
    ) {
        enc.copy_buffer_to_buffer(&self.buffer, 0, dst, offset, 4);
    }

    /// Submits `enc` (a plan's forward and backward) and reads the flag
    /// back: true when every barrier ended with all the workgroups arriving.
    pub fn probe(&self, gpu: &GpuDevice, enc: wgpu::CommandEncoder) -> Result<bool> {
        gpu.queue.submit([enc.finish()]);
        let flag = gpu.read_bytes(&self.buffer, 4)?;
        Ok(bytemuck::pod_read_unaligned::<u32>(&flag) == 0)
    }
}
