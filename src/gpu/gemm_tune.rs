//! GEMM configurations chosen per shape at first use: the first use of the
//! tuner ([`super::tune`]). While a plan is built, every GEMM shape of its
//! recording new to the context is measured: each valid candidate
//! ([`gemm_candidates`], the fixed choice first) runs on scratch operands of
//! that shape ([`GemmRig`]); the fastest is cached on the context for every
//! model there. [`GpuContext::tuned_gemms`](super::GpuContext::tuned_gemms)
//! lists the decisions; `recurrent bench --device gpu --show-tuning` prints
//! those of a model's step.
//!
//! ## Timing and its bounds
//! [`DeviceTimer`] allocates zero-filled operands of the shape once (skipped,
//! and the fixed choice kept, when they would exceed the storage binding
//! limit or [`SCRATCH_MAX_BYTES`] in total) and times the candidates as
//! [`tune::measure`] says. With `TIMESTAMP_QUERY` each round is one
//! submission, every run its own compute pass between two GPU timestamps;
//! without it every run is timed on the wall clock around a submit and a
//! wait (which adds the submission's round trip to every candidate alike).
//! A new shape costs at most [`GEMM_MAX_CANDIDATES`](super::gemm_config::GEMM_MAX_CANDIDATES) x (1 +
//! [`tune::TIMED_RUNS`]) runs of that GEMM plus one pipeline compilation per
//! configuration new to the context. The timing source is replaceable
//! ([`GpuContext::set_gemm_timer`](super::GpuContext::set_gemm_timer)),
//! which is how the tests check the choice.

use super::args::{Gemm, Matrix};
use super::device::GpuDevice;
use super::encode::{Binds, Compiled};
use super::gemm_config::{
    fixed_config, gemm_candidates, GemmConfig, GemmShape, TunedGemm, SPLIT_PARTIALS,
};
use super::program::{Program, Resolved};
use super::tune::{self, Decision, Tuned};
use crate::error::{Error, Result};
use std::ops::Range;
use std::time::Instant;

/// Largest scratch operands (A, B, C and split partials together) a shape is
/// measured with; larger shapes keep the fixed choice.
pub const SCRATCH_MAX_BYTES: u64 = 1 << 30;

/// Times GEMM candidates for the tuner. The default is [`DeviceTimer`];
/// tests inject their own with
/// [`GpuContext::set_gemm_timer`](super::GpuContext::set_gemm_timer).
pub trait GemmTimer: Send + Sync {
    /// Median µs per run of each of `configs` on `shape`, in order: `Ok(None)`
    /// when the shape cannot be measured at all (operands too large: the fixed
    /// choice is kept), `None` entries for candidates that failed to run.
    fn time(
        &self,
        gpu: &GpuDevice,
        shape: &GemmShape,
        configs: &[GemmConfig],
    ) -> Result<Option<Vec<Option<f64>>>>;
}

/// The decision for `s` on `gpu` (not cached here: the context's cache
/// calls this for shapes it has not seen): with tuning off the fixed choice,
/// else the fastest candidate as `timer` measures them.
pub fn decide(
    gpu: &GpuDevice,
    timer: &dyn GemmTimer,
    s: &GemmShape,
    enabled: bool,
) -> Result<TunedGemm> {
    if !enabled {
        return Ok(Tuned::unmeasured(
            fixed_config(s, &gpu.tunables),
            Decision::Off,
        ));
    }
    let cands = gemm_candidates(s, &gpu.limits, &gpu.tunables);
    if cands.len() == 1 {
        return Ok(Tuned::unmeasured(cands[0], Decision::Single));
    }
    match timer.time(gpu, s, &cands)? {
        None => Ok(Tuned::unmeasured(cands[0], Decision::TooLarge)),
        Some(times) => Tuned::fastest(&cands, &times).map_err(|e| {
            Error::Gpu(format!(
                "GEMM tuning of {s} (fixed choice {}): {e}",
                cands[0]
            ))
        }),
    }
}

/// The default timing source: the candidates on the context's device (see the module docs).
pub struct DeviceTimer;

impl GemmTimer for DeviceTimer {
    fn time(
        &self,
        gpu: &GpuDevice,
        shape: &GemmShape,
        configs: &[GemmConfig],
    ) -> Result<Option<Vec<Option<f64>>>> {
        let Some(rig) = GemmRig::new(gpu, shape, 0.0, configs, false)? else {
            return Ok(None);
        };
        let times = tune::measure(configs.len(), f64::INFINITY, |live| {
            if gpu.has_timestamps() {
                rig.timestamps(gpu, live)
            } else {
                Ok(live
                    .iter()
                    .map(|&i| {
                        let t0 = Instant::now();
                        rig.run(gpu, std::slice::from_ref(&rig.ranges[i]), 1)?;
                        Ok(t0.elapsed().as_secs_f64() * 1e6)
                    })
                    .collect())
            }
        })?;
        Ok(Some(times))
    }
}

/// Scratch operands of one shape and a program holding one GEMM per
/// configuration: `A` in `work` (followed by the split partials), `B` in
/// `params`, `C` in `grads`, packed (`lda` = row length), batch entries one
/// after another. Used by the tuner and by
/// [`GemmBench`](super::bench::GemmBench).
pub struct GemmRig {
    pub compiled: Compiled,
    /// Dispatches of each configuration in the program.
    pub ranges: Vec<Range<usize>>,
    pub bind_group: wgpu::BindGroup,
    pub params: wgpu::Buffer,
    pub grads: wgpu::Buffer,
    pub work: wgpu::Buffer,
    _buffers: Vec<wgpu::Buffer>,
    /// Elements of A, B and C.
    pub lens: (usize, usize, usize),
}

impl GemmRig {
    /// `Ok(None)` when the operands would exceed the limits and `allow_large`
    /// is false (the tuner's case); with `allow_large` that is an error instead.
    pub fn new(
        gpu: &GpuDevice,
        s: &GemmShape,
        beta: f32,
        configs: &[GemmConfig],
        allow_large: bool,
    ) -> Result<Option<GemmRig>> {
        let (m, n, k, z) = (s.m as usize, s.n as usize, s.k as usize, s.batch as usize);
        let (a_len, b_len, c_len) = (z * m * k, z * k * n, z * m * n);
        let work_len = a_len + SPLIT_PARTIALS;
        let max = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let too_large = [work_len, b_len, c_len]
            .iter()
            .any(|&l| (l * 4) as u64 > max || l >= u32::MAX as usize)
            || ((work_len + b_len + c_len) * 4) as u64 > SCRATCH_MAX_BYTES;
        if too_large {
            if !allow_large {
                return Ok(None);
            }
            for (what, len) in [("A", work_len), ("B", b_len), ("C", c_len)] {
                gpu.check_storage(&format!("GEMM operand {what}"), (len * 4) as u64)?;
                if len >= u32::MAX as usize {
                    return Err(Error::Argument(format!(
                        "GEMM operand {what} has {len} elements, more than 32-bit offsets address"
                    )));
                }
            }
        }
        let mut program = Program::new(Resolved {
            split_partials: Some(a_len as u32),
            ..Resolved::fixed(gpu.tunables, &gpu.limits)
        });
        let a = Matrix::work(0, if s.a_t { s.m } else { s.k }).z((m * k) as u32);
        let b = Matrix::params(0, if s.b_t { s.k } else { s.n }).z((k * n) as u32);
        let mut g = Gemm::new(s.m, s.n, s.k)
            .c(Matrix::grads(0, s.n).z((m * n) as u32))
            .batch(s.batch);
        g = if s.a_t { g.a_t(a) } else { g.a(a) };
        g = if s.b_t { g.b_t(b) } else { g.b(b) };
        g.beta = beta;
        let mut ranges = Vec::with_capacity(configs.len());
        for c in configs {
            let start = program.dispatches.len();
            program.gemm_with(&g, "autotune.gemm", *c)?;
            ranges.push(start..program.dispatches.len());
        }
        let dev = &gpu.device;
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
        let (uniforms, bind_group) = gpu.bind_program(
            "gemm",
            &program.uniforms,
            [&params, &grads, &work, &ints, &state],
        );
        Ok(Some(GemmRig {
            compiled: Compiled::new(gpu, program),
            ranges,
            bind_group,
            params,
            grads,
            work,
            _buffers: vec![ints, state, uniforms],
            lens: (a_len, b_len, c_len),
        }))
    }

    /// Runs the dispatches of `ranges`, `repeat` times over, in one pass and
    /// submission (no wait).
    pub fn submit(&self, gpu: &GpuDevice, ranges: &[Range<usize>], repeat: u64) -> Result<()> {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gemm.run"),
            });
        let binds = Binds::main(&self.bind_group);
        self.compiled
            .encode(&mut enc, binds, ranges, repeat, "gemm", None)?;
        gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// [`GemmRig::submit`], then waits for the GPU.
    pub fn run(&self, gpu: &GpuDevice, ranges: &[Range<usize>], repeat: u64) -> Result<()> {
        self.submit(gpu, ranges, repeat)?;
        gpu.wait()
    }

    /// Runs configuration `live[i]` in pass `i`, each pass between two GPU
    /// timestamps, all in one submission; returns each pass's µs (or, for a
    /// configuration whose pipelines failed to build, that failure).
    fn timestamps(&self, gpu: &GpuDevice, live: &[usize]) -> Result<Vec<Result<f64>>> {
        let ok: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| self.compiled.check(self.ranges[i].clone()).is_ok())
            .collect();
        if ok.is_empty() {
            // Nothing to time.
            return Ok(live.iter().map(|&i| Err(self.why(i))).collect());
        }
        let dev = &gpu.device;
        let count = 2 * ok.len() as u32;
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
        let binds = Binds::main(&self.bind_group);
        for (p, &i) in ok.iter().enumerate() {
            let r = std::slice::from_ref(&self.ranges[i]);
            self.compiled
                .encode(&mut enc, binds, r, 1, "gemm", Some((&qs, 2 * p as u32)))?;
        }
        enc.resolve_query_set(&qs, 0..count, &resolve, 0);
        gpu.queue.submit([enc.finish()]);
        let raw = gpu.read_bytes(&resolve, count as u64 * 8)?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
        let period = gpu.queue.get_timestamp_period() as f64;
        let mut us = ticks
            .chunks_exact(2)
            .map(|p| p[1].saturating_sub(p[0]) as f64 * period / 1e3);
        Ok(live
            .iter()
            .map(|&i| {
                if ok.contains(&i) {
                    Ok(us.next().expect("one time per pass"))
                } else {
                    Err(self.why(i))
                }
            })
            .collect())
    }

    /// Why configuration `i` cannot run.
    fn why(&self, i: usize) -> Error {
        self.compiled
            .check(self.ranges[i].clone())
            .err()
            .unwrap_or_else(|| Error::Gpu("not run".into()))
    }
}
