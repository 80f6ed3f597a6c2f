//! Per-kernel profiles of a training step: every dispatch in its own compute
//! pass between two GPU timestamps (needs `TIMESTAMP_QUERY`).

use super::encode::{Binds, Compiled};
use super::model::GpuModel;
use super::registry::Kernel;
use crate::data::Dataset;
use crate::error::Result;
use crate::model::StepOptions;
use crate::optim::Optimizer;
use crate::Loss;
use std::ops::Range;

/// One timed dispatch of [`GpuModel::profile_dispatches`].
#[derive(Clone, Debug, PartialEq)]
pub struct DispatchTime {
    /// The kernel (its entry point is [`Kernel::entry`]).
    pub kernel: Kernel,
    /// The dispatch's role in the step, e.g. `"lstm.l0.step_forward"`.
    pub label: String,
    /// GPU time between the timestamps before and after it, in microseconds.
    pub us: f64,
}

impl GpuModel {
    /// Runs one full training step (it updates the weights) with a GPU
    /// timestamp around every dispatch, and returns per kernel label the
    /// number of dispatches and their total GPU time in microseconds, in
    /// program order. A label names a role (`"lstm.l0.weight_ih_grad"`) and
    /// may cover more than one kernel (a split-K GEMM and its reduction);
    /// [`GpuModel::profile_dispatches`] keeps them apart. Needs the adapter
    /// feature `TIMESTAMP_QUERY`, else [`Error::MissingFeature`].
    pub fn profile_train_step(
        &mut self,
        data: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<Vec<(String, usize, f64)>> {
        let mut out: Vec<(String, usize, f64)> = Vec::new();
        for d in self.profile_dispatches(data, opts, opt)? {
            match out.iter_mut().find(|e| e.0 == d.label) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += d.us;
                }
                None => out.push((d.label, 1, d.us)),
            }
        }
        Ok(out)
    }

    /// As [`GpuModel::profile_train_step`], one entry per dispatch of the
    /// step in program order: its kernel, its label and its GPU time.
    pub fn profile_dispatches(
        &mut self,
        data: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<Vec<DispatchTime>> {
        self.ctx.require_timestamps("a per-kernel profile")?;
        opt.validate()?;
        self.finish()?;
        let key = self.upload_batch(data, Some(opts.loss))?;
        self.set_optimizer_args(key, opts, opt);
        let plan = &self.plans[&key];
        let ph = plan.phases;
        let (loss_range, rest) = match opts.loss {
            Loss::Ce => (ph.forward..ph.loss_ce, ph.loss_mse..ph.optim),
            Loss::Mse => (ph.loss_ce..ph.loss_mse, ph.loss_mse..ph.optim),
        };
        let mut ranges: Vec<(&Compiled, Binds<'_>, Range<usize>)> = vec![
            (&plan.step, plan.binds(), 0..ph.forward),
            (&plan.step, plan.binds(), loss_range),
            (&plan.step, plan.binds(), rest),
        ];
        // With the f16 copy, its refresh after the optimizer belongs to the step.
        if let Some(w) = &self.weights.whh16 {
            ranges.push((&w.refresh, w.binds(), 0..w.refresh.len()));
        }
        // At most QUERY_SET_MAX_QUERIES / 2 dispatches per query set.
        let per_set = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;
        let mut chunks = Vec::new();
        for (c, bg, r) in ranges {
            let mut s = r.start;
            while s < r.end {
                let e = (s + per_set).min(r.end);
                chunks.push((c, bg, s..e));
                s = e;
            }
        }
        let dev = &self.ctx.device;
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("profile"),
        });
        if opt.step == 1 {
            enc.clear_buffer(&self.weights.state, 0, None);
        }
        plan.clear_for_backward(&mut enc, &self.weights);
        let mut recorded: Vec<(Kernel, String)> = Vec::new();
        let mut sets = Vec::new();
        for (c, bg, r) in &chunks {
            let count = 2 * r.len() as u32;
            let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile.timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            c.encode_timed(&mut enc, *bg, r.clone(), &qs, 0)?;
            let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile.resolve"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            enc.resolve_query_set(&qs, 0..count, &resolve, 0);
            recorded.extend(
                c.program.dispatches[r.clone()]
                    .iter()
                    .map(|d| (d.kernel, d.label.clone())),
            );
            sets.push((qs, resolve, count));
        }
        self.ctx.queue.submit([enc.finish()]);
        self.submissions += 1;
        let period = self.ctx.queue.get_timestamp_period() as f64;
        let mut times = Vec::with_capacity(recorded.len());
        for (_, resolve, count) in &sets {
            let raw = self.ctx.read_bytes(resolve, *count as u64 * 8)?;
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
            for pair in ticks.chunks_exact(2) {
                times.push(pair[1].saturating_sub(pair[0]) as f64 * period / 1e3);
            }
        }
        Ok(recorded
            .into_iter()
            .zip(times)
            .map(|((kernel, label), us)| DispatchTime { kernel, label, us })
            .collect())
    }
}
