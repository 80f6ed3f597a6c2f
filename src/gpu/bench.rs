//! Timing support for `recurrent bench --device gpu`.

use super::context::GpuContext;
use super::gemm_config::{GemmConfig, GemmShape};
use super::gemm_tune::GemmRig;
use super::model::GpuModel;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::timing::median;
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
        // The masks on (a model with dropout), as in a training step.
        self.set_dropout_step(key, Some(1));
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
        Ok((
            median(&fwd).unwrap_or(f64::NAN),
            median(&train).unwrap_or(f64::NAN),
        ))
    }
}

/// One GEMM of the GPU path on its own, for `benches/kernels.rs` and the
/// tests: `C[m×n] = beta·C + op(A)·op(B)` with `A` in `work`, `B` in `params`
/// and `C` in `grads`, recorded through
/// [`Program::gemm_with`](super::program::Program::gemm_with) with the
/// configuration a training step would use for the shape (the context's
/// tuned one, measured now if the shape is new), or a given one
/// ([`GemmBench::with_config`]). Not a stable API.
#[doc(hidden)]
pub struct GemmBench {
    ctx: Arc<GpuContext>,
    shape: GemmShape,
    config: GemmConfig,
    rig: GemmRig,
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
        for (what, v) in [("m", m), ("n", n), ("k", k)] {
            if v >= u32::MAX as usize {
                return Err(Error::Argument(format!(
                    "GEMM bench: {what} = {v} is too large"
                )));
            }
        }
        let shape = GemmShape {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a_t,
            b_t,
            batch: 1,
        };
        let config = ctx.gemm_config(&shape)?;
        let bench = Self::with_config(ctx, shape, beta, config)?;
        let values =
            |len: usize| -> Vec<f32> { (0..len).map(|i| ((i % 13) as f32 - 6.0) / 16.0).collect() };
        let (a_len, b_len, _) = bench.rig.lens;
        bench.write_operands(&values(a_len), &values(b_len), None)?;
        // Compile the pipelines and finish the uploads before anything is timed.
        bench.run(1)?;
        Ok(bench)
    }

    /// The GEMM `shape` run with `config` (operands zero until
    /// [`GemmBench::write_operands`]; batch entries stored one after another).
    pub fn with_config(
        ctx: &Arc<GpuContext>,
        shape: GemmShape,
        beta: f32,
        config: GemmConfig,
    ) -> Result<GemmBench> {
        if !config.valid_for(&shape, &ctx.limits) {
            return Err(Error::Argument(format!(
                "GEMM bench: {config} cannot run {shape} on {}",
                ctx.describe()
            )));
        }
        let rig = GemmRig::new(ctx, &shape, beta, &[config], true)?
            .ok_or_else(|| Error::Gpu("GEMM bench operands do not fit".into()))?;
        Ok(GemmBench {
            ctx: ctx.clone(),
            shape,
            config,
            rig,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> GemmConfig {
        self.config
    }

    /// Uploads `A` (`batch·m·k` values), `B` (`batch·k·n`) and, if given, `C` (`batch·m·n`).
    pub fn write_operands(&self, a: &[f32], b: &[f32], c: Option<&[f32]>) -> Result<()> {
        let (a_len, b_len, c_len) = self.rig.lens;
        if a.len() != a_len || b.len() != b_len || c.is_some_and(|c| c.len() != c_len) {
            return Err(Error::Argument(format!(
                "GEMM bench {}: operands need {a_len}, {b_len} and {c_len} values",
                self.shape
            )));
        }
        let q = &self.ctx.queue;
        q.write_buffer(&self.rig.work, 0, bytemuck::cast_slice(a));
        q.write_buffer(&self.rig.params, 0, bytemuck::cast_slice(b));
        if let Some(c) = c {
            q.write_buffer(&self.rig.grads, 0, bytemuck::cast_slice(c));
        }
        Ok(())
    }

    /// Reads `C` back (`batch·m·n` values; waits for the GPU).
    pub fn read_c(&self) -> Result<Vec<f32>> {
        let c_len = self.rig.lens.2;
        let bytes = self.ctx.read_bytes(&self.rig.grads, (c_len * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The kernels (entry points) one run dispatches, e.g. `["gemm_small",
    /// "gemm_split_reduce"]` for a split-K GEMM.
    pub fn kernels(&self) -> Vec<&'static str> {
        self.rig
            .compiled
            .program
            .dispatches
            .iter()
            .map(|d| d.kernel.entry())
            .collect()
    }

    /// Runs the GEMM `iters` times back to back and waits for the GPU to
    /// finish: as a step runs its dispatches, in one compute pass (here of at
    /// most 1024 GEMMs, one pass and submission each).
    pub fn run(&self, iters: u64) -> Result<()> {
        let all = 0..self.rig.compiled.len();
        let mut left = iters;
        while left > 0 {
            let now = left.min(1024);
            self.rig
                .submit(&self.ctx, std::slice::from_ref(&all), now)?;
            left -= now;
        }
        self.ctx.wait()
    }
}

/// What launching costs on this device: the median microseconds per
/// dispatch of a trivial kernel (`copy_block` of one element, each dispatch
/// reading what the one before wrote) for `n` dispatches in one compute
/// pass, and for `n` passes of one dispatch each, over `reps` timings (after
/// a warm-up), each recorded, submitted and waited for. The first
/// suspect: if a dispatch costs several µs, every step kernel does.
pub fn dispatch_overhead(ctx: &Arc<GpuContext>, n: usize, reps: usize) -> Result<(f64, f64)> {
    use super::args::AttnArgs;
    use super::encode::{Binds, Compiled};
    use super::program::{Program, Resolved};
    use super::registry::Kernel;
    if n == 0 {
        return Err(Error::Argument("dispatch overhead: 0 dispatches".into()));
    }
    let mut pg = Program::new(Resolved::fixed(ctx.tunables, &ctx.limits));
    for i in 0..n as u32 {
        // Element 0 to 4 and back: a chain, each waits for the one before.
        let (src, dst) = if i % 2 == 0 { (0, 4) } else { (4, 0) };
        pg.attention(
            Kernel::CopyBlock,
            AttnArgs::block(1, 1, (src, 1), (dst, 1)),
            "overhead.copy",
        )?;
    }
    let compiled = Compiled::all(ctx, pg)?;
    let weights = super::weights::Weights::flat(ctx, 4, &[0.0; 4])?;
    let (work, ints) = super::plan::workspace_buffers(ctx, "the overhead bench", 8, 4)?;
    let bufs = weights.bindings(&work, &ints, false).expect("f32");
    let (_uniforms, bind_group) = ctx.bind_program("overhead", &compiled.program.uniforms, bufs);
    let binds = Binds::main(&bind_group);
    let time = |passes: bool| -> Result<f64> {
        let t0 = Instant::now();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        if passes {
            for i in 0..n {
                compiled.encode(&mut enc, binds, &[i..i + 1], 1, "overhead", None)?;
            }
        } else {
            compiled.encode(&mut enc, binds, &[0..n], 1, "overhead", None)?;
        }
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        Ok(t0.elapsed().as_secs_f64() * 1e6 / n as f64)
    };
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for rep in 0..=reps.max(1) {
        let (a, b) = (time(false)?, time(true)?);
        if rep > 0 {
            one.push(a);
            many.push(b);
        }
    }
    Ok((
        median(&one).unwrap_or(f64::NAN),
        median(&many).unwrap_or(f64::NAN),
    ))
}

/// TFLOP/s of the GEMM `(m, n, k)` (with its transposes) under `config`
/// (`None`: the one a training step would use), the median over `reps`
/// timings of `iters` runs back to back; and the configuration.
pub fn gemm_tflops(
    ctx: &Arc<GpuContext>,
    shape: GemmShape,
    config: Option<GemmConfig>,
    iters: u64,
    reps: usize,
) -> Result<(GemmConfig, f64)> {
    let config = match config {
        Some(c) => c,
        None => ctx.gemm_config(&shape)?,
    };
    let g = GemmBench::with_config(ctx, shape, 0.0, config)?;
    g.run(1)?;
    let flops = 2.0 * shape.m as f64 * shape.n as f64 * shape.k as f64 * shape.batch as f64;
    let mut t = Vec::new();
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        g.run(iters)?;
        t.push(flops * iters as f64 / t0.elapsed().as_secs_f64() / 1e12);
    }
    Ok((config, median(&t).unwrap_or(f64::NAN)))
}
