//! States in and out of a [`GpuModel`]: a batch's initial states written into
//! the first state slot of every layer-direction, the final states read back
//! from the last, and the gradients of the initial states that backward
//! leaves in the carries (`record::Recorder::initial_state_grad`). Layouts as
//! `nn.LSTM`'s `(h0, c0)`: `[L*D, B, H]`, layer-major, then direction.

use super::model::GpuModel;
use super::workspace::Slot;
use crate::cpu::States;
use crate::data::{Dataset, InitialStates};
use crate::error::Result;
use crate::model::config::Cell;
use crate::tensor::Tensor;
use crate::Loss;

impl GpuModel {
    /// Every backward also completes the gradients of the initial states
    /// (one GEMM more per layer-direction), read with
    /// [`GpuModel::gradients_with_states`]. Off by default; the plans of
    /// every batch shape are rebuilt at their next use.
    pub fn set_state_gradient(&mut self, on: bool) {
        if on != self.state_grad {
            self.state_grad = on;
            self.clear_plans();
            self.states_written.clear();
        }
    }

    /// Writes `states` (checked with the batch) into the first state slots
    /// of plan `key`, or zeros there if an earlier batch left states.
    pub(crate) fn write_initial_states(
        &mut self,
        key: (usize, usize),
        states: Option<&InitialStates>,
    ) {
        if states.is_none() && !self.states_written.contains(&key) {
            return;
        }
        let cfg = self.config();
        let (b, t) = key;
        let (h, nd) = (cfg.hidden, cfg.directions());
        let lstm = cfg.cell == Cell::Lstm;
        let bh = b * h;
        let zeros = vec![0.0f32; bh];
        let plan = &self.plans[&key];
        let q = &self.ctx.queue;
        for (k, lw) in plan.ws.layers.iter().enumerate() {
            for dir in 0..nd {
                let idx = k * nd + dir;

                fn part<'a>(v: Option<&'a Tensor>, zeros: &'a [f32], idx: usize) -> &'a [f32] {
                    let n = zeros.len();
                    v.map_or(zeros, |v| &v.data[idx * n..(idx + 1) * n])
                }
                let h0 = part(states.map(|s| &s.h0), &zeros, idx);
                let at = lw.hs.state_slot(dir, nd, Slot::First, t, bh) as u64 * 4;
                q.write_buffer(&plan.work, at, bytemuck::cast_slice(h0));
                if lstm {
                    let c0 = part(states.and_then(|s| s.c0.as_ref()), &zeros, idx);
                    let at = lw.cs.state_slot(dir, nd, Slot::First, t, bh) as u64 * 4;
                    q.write_buffer(&plan.work, at, bytemuck::cast_slice(c0));
                }
            }
        }
        if states.is_some() {
            self.states_written.insert(key);
        } else {
            self.states_written.remove(&key);
        }
    }

    /// The final states of the last forward on plan `key` (blocking), `[L*D, B, H]`:
    /// each sequence's state after its own last step (masked steps pass it on).
    fn final_states(&self, key: (usize, usize)) -> Result<States> {
        let cfg = self.config();
        let (b, t) = key;
        let (h, nd) = (cfg.hidden, cfg.directions());
        let bh = b * h;
        let plan = &self.plans[&key];
        // Every h_n, then every c_n (LSTM), each [B, H].
        let lstm = cfg.cell == Cell::Lstm;
        let mut ranges = Vec::new();
        for cells in [false, true].into_iter().filter(|&c| !c || lstm) {
            for lw in &plan.ws.layers {
                let region = if cells { lw.cs } else { lw.hs };
                for dir in 0..nd {
                    let at = region.state_slot(dir, nd, Slot::Last, t, bh);
                    ranges.push((at as u64 * 4, bh as u64 * 4));
                }
            }
        }
        let parts = self.ctx.read_ranges(&plan.work, &ranges)?;
        let flat: Vec<f32> = parts
            .iter()
            .flat_map(|p| bytemuck::pod_collect_to_vec::<u8, f32>(p))
            .collect();
        let n = cfg.layers * nd * bh;
        Ok(States {
            h: Some(flat[..n].to_vec()),
            c: lstm.then(|| flat[n..].to_vec()),
        })
    }

    /// The gradients of the initial states after the last backward on plan
    /// `key` (blocking), `[L*D, B, H]`: per layer the carry `[B, D*H]` split
    /// by direction, and the cell states' `dc` (`[D][B, H]`).
    fn initial_state_gradients(&self, key: (usize, usize)) -> Result<States> {
        let cfg = self.config();
        let (b, _) = key;
        let (h, nd) = (cfg.hidden, cfg.directions());
        let plan = &self.plans[&key];
        let mut ranges = Vec::new();
        for lw in &plan.ws.layers {
            ranges.push((lw.carry.off as u64 * 4, lw.carry.len as u64 * 4));
            ranges.push((lw.dc.off as u64 * 4, lw.dc.len as u64 * 4));
        }
        let parts = self.ctx.read_ranges(&plan.work, &ranges)?;
        let mut dh0 = Vec::with_capacity(cfg.layers * nd * b * h);
        let mut dc0 = Vec::new();
        for pair in parts.chunks_exact(2) {
            let carry: Vec<f32> = bytemuck::pod_collect_to_vec(&pair[0]);
            for dir in 0..nd {
                for row in carry.chunks_exact(nd * h) {
                    dh0.extend_from_slice(&row[dir * h..(dir + 1) * h]);
                }
            }
            dc0.extend(bytemuck::pod_collect_to_vec::<u8, f32>(&pair[1]));
        }
        Ok(States {
            h: Some(dh0),
            c: (cfg.cell == Cell::Lstm).then_some(dc0),
        })
    }

    /// The output and the final states `h_n` (and `c_n`), as
    /// [`crate::Model::forward_states`]: each sequence starts from
    /// `data.states` (zeros without them).
    pub fn forward_states(&mut self, data: &Dataset) -> Result<(Tensor, States)> {
        let out = self.forward(data)?;
        let states = self.final_states((data.len(), data.steps()))?;
        Ok((out, states))
    }

    /// [`GpuModel::train_step`], and the final states of the step's own
    /// forward pass (before the update), read from its workspace after the
    /// step: what stateful training carries to the next batch. One wait for
    /// the step; no second forward.
    pub fn train_step_states(
        &mut self,
        data: &Dataset,
        opts: &crate::StepOptions,
        opt: &mut crate::Optimizer,
    ) -> Result<States> {
        self.train_step(data, opts, opt)?;
        self.final_states((data.len(), data.steps()))
    }

    /// Loss, the gradient of every parameter and the gradients of the
    /// initial states `h0`/`c0` (`[L*D, N, H]`), as
    /// [`crate::Model::gradients_with_states`] with the batch's own states.
    /// Turns [`GpuModel::set_state_gradient`] on.
    pub fn gradients_with_states(
        &mut self,
        data: &Dataset,
        loss: Loss,
    ) -> Result<(f32, Vec<f32>, States)> {
        self.set_state_gradient(true);
        let (l, g) = self.loss_and_gradients(data, loss)?;
        let ds = self.initial_state_gradients((data.len(), data.steps()))?;
        Ok((l, g, ds))
    }
}
