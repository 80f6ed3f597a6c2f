//! Timing support for `recurrent bench --device gpu`.

use super::context::GpuContext;
use super::kernels::{
    GemmArgs, Program, BUF_GRADS, BUF_PARAMS, BUF_WORK, SLOT_BYTES, SPLIT_PARTIALS,
};
use super::model::GpuModel;
use crate::bench::median;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::Loss;
use std::sync::Arc;
use std::time::Instant;

impl GpuModel {
    /// Median wall-clock milliseconds of (forward) and of (forward, loss,
    /// backward through time, weight gradients: no optimizer) on `data`, over
    /// `reps` runs after one warm-up. Each timing records, submits and waits
    /// for the GPU to finish; the batch is uploaded once, before timing.
    pub fn time_forward_backward(
        &mut self,
        data: &Dataset,
        loss: Loss,
        reps: usize,
    ) -> Result<(f64, f64)> {
        let key = self.upload_batch(data, Some(loss))?;
        let (mut fwd, mut train) = (Vec::new(), Vec::new());
        for rep in 0..=reps.max(1) {
            for backward in [false, true] {
                let t0 = Instant::now();
                let enc = self.encode(key, backward.then_some(loss), backward, None)?;
                self.context().queue.submit([enc.finish()]);
                self.context().wait()?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                if rep > 0 {
                    if backward { &mut train } else { &mut fwd }.push(ms);
                }
            }
        }
        Ok((median(fwd), median(train)))
    }
}

/// One GEMM of the GPU path on its own, for `benches/kernels.rs`:
/// `C[m×n] = beta·C + op(A)·op(B)` with `A` in `work`, `B` in `params` and `C` in
/// `grads`, recorded through [`Program::gemm`] as a training step records
/// its GEMMs (same kernel choice, same split-K), so a run costs what that
/// GEMM costs inside a step. Not a stable API.
#[doc(hidden)]
pub struct GemmBench {
    ctx: Arc<GpuContext>,
    program: Program,
    bind_group: wgpu::BindGroup,
    _buffers: Vec<wgpu::Buffer>,
}

impl GemmBench {
    /// `op(A)` is `[m, k]` (`A` stored `[k, m]` when `a_t`), `op(B)` is
    /// `[k, n]` (`B` stored `[n, k]` when `b_t`); both filled with small values.
    /// `beta = 1` accumulates into `C`, as the weight-gradient GEMMs do.
    pub fn new(
        ctx: &Arc<GpuContext>,
        (m, n, k): (usize, usize, usize),
        a_t: bool,
        b_t: bool,
        beta: f32,
    ) -> Result<GemmBench> {
        let (a_len, b_len, c_len) = (m * k, k * n, m * n);
        let work_len = a_len + SPLIT_PARTIALS;
        for (what, len) in [("A", work_len), ("B", b_len), ("C", c_len)] {
            ctx.check_storage(&format!("GEMM bench operand {what}"), (len * 4) as u64)?;
            if len >= u32::MAX as usize {
                return Err(Error::Argument(format!(
                    "GEMM bench operand {what} has {len} elements, more than 32-bit offsets address"
                )));
            }
        }
        let mut program = Program::new(&ctx.limits, ctx.kernels.tunables);
        program.split_partials = Some(a_len as u32);
        let (m, n, k) = (m as u32, n as u32, k as u32);
        program.gemm(
            GemmArgs {
                m,
                n,
                k,
                beta,
                a_buf: BUF_WORK,
                lda: if a_t { m } else { k },
                a_t: a_t as u32,
                b_buf: BUF_PARAMS,
                ldb: if b_t { k } else { n },
                b_t: b_t as u32,
                c_buf: BUF_GRADS,
                ldc: n,
                ..GemmArgs::default()
            },
            1,
            "bench.gemm",
        )?;
        let dev = &ctx.device;
        let storage = |label: &str, len: usize| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (len.max(4) * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let values =
            |len: usize| -> Vec<f32> { (0..len).map(|i| ((i % 13) as f32 - 6.0) / 16.0).collect() };
        let params = storage("bench.params", b_len);
        let grads = storage("bench.grads", c_len);
        let work = storage("bench.work", work_len);
        let ints = storage("bench.ints", 4);
        let state = storage("bench.state", 4);
        ctx.queue
            .write_buffer(&params, 0, bytemuck::cast_slice(&values(b_len)));
        ctx.queue
            .write_buffer(&work, 0, bytemuck::cast_slice(&values(a_len)));
        let uniforms = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench.uniforms"),
            size: program.uniforms.len().max(SLOT_BYTES as usize) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&uniforms, 0, &program.uniforms);
        fn whole(buf: &wgpu::Buffer, binding: u32) -> wgpu::BindGroupEntry<'_> {
            wgpu::BindGroupEntry {
                binding,
                resource: buf.as_entire_binding(),
            }
        }
        let bind_group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("bench.bind_group"),
            layout: &ctx.kernels.bind_group_layout,
            entries: &[
                whole(&params, 0),
                whole(&grads, 1),
                whole(&work, 2),
                whole(&ints, 3),
                whole(&state, 4),
                wgpu::BindGroupEntry {
                    binding: 5,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: 0,
                        size: std::num::NonZeroU64::new(SLOT_BYTES),
                    }),
                },
            ],
        });
        let bench = GemmBench {
            ctx: ctx.clone(),
            program,
            bind_group,
            _buffers: vec![params, grads, work, ints, state, uniforms],
        };
        // Compile the pipelines and finish the uploads before anything is timed.
        bench.run(1)?;
        Ok(bench)
    }

    /// The kernels (entry points) one run dispatches, e.g. `["gemm_small",
    /// "gemm_split_reduce"]` for a split-K GEMM.
    pub fn kernels(&self) -> Vec<&'static str> {
        self.program
            .dispatches
            .iter()
            .map(|d| d.kernel.entry())
            .collect()
    }

    /// Runs the GEMM `iters` times back to back and waits for the GPU to
    /// finish: as a step runs its dispatches, in one compute pass (here of at
    /// most 1024 GEMMs, one pass and submission each).
    pub fn run(&self, iters: u64) -> Result<()> {
        let dev = &self.ctx.device;
        let mut pipelines = Vec::new();
        for d in &self.program.dispatches {
            pipelines.push(self.ctx.kernels.pipeline(dev, d.kernel)?);
        }
        let mut left = iters;
        while left > 0 {
            let now = left.min(1024);
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("bench.gemm"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("bench.gemm"),
                    timestamp_writes: None,
                });
                for _ in 0..now {
                    for (d, p) in self.program.dispatches.iter().zip(&pipelines) {
                        pass.set_pipeline(p);
                        pass.set_bind_group(
                            0,
                            &self.bind_group,
                            &[(d.slot as u64 * SLOT_BYTES) as u32],
                        );
                        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                    }
                }
            }
            self.ctx.queue.submit([enc.finish()]);
            left -= now;
        }
        self.ctx.wait()
    }
}
