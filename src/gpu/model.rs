//! [`GpuModel`]: a model's parameters resident on the GPU, and what runs
//! there — forward, loss, backward through time and the optimizer — as
//! `Model::forward` / `Model::loss_and_gradients` / `Model::train_step` do
//! on the CPU path.
//!
//! ## Design
//! - [`Weights`]: `params [P]`, `grads [P]` (same [`Layout`] as the host
//!   model) and the optimizer `state [2P]` are three flat storage buffers, so
//!   the optimizer is one dispatch and checkpoints are one copy.
//! - Per batch shape `(B, T)` a [`Plan`] (`plan.rs`) holds the workspace
//!   buffers, the recorded step and its bind groups, built once and reused.
//! - A training step is one command buffer and one submission: clears, every
//!   layer forward, head, loss, backward, weight-gradient GEMMs, norm/clip,
//!   optimizer, and a copy of the loss scalars into the stats ring
//!   (`stats.rs`). Nothing waits for the GPU inside a step;
//!   [`GpuModel::poll_stats`] collects finished steps' losses without
//!   blocking, [`GpuModel::finish`] waits.

use super::args::OptArgs;
use super::context::GpuContext;
use super::gemm_config::GemmChoice;
use super::grid::GRID_GAVE_UP;
use super::plan::{self, Plan, PlanInputs};
use super::program::Dispatch;
use super::registry::SLOT_BYTES;
use super::stats::StatsRing;
use super::step_tile::StepTile;
use super::step_tune::{StepKey, TunedStep};
use super::weights::Weights;
use crate::data::{Dataset, Inputs, Targets};
use crate::error::{Error, Result};
use crate::model::config::{ModelConfig, OutputMode};
use crate::model::params::Layout;
use crate::model::{Model, StepOptions, StepStats};
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use crate::Loss;
use std::collections::HashMap;
use std::sync::Arc;

/// A model on the GPU.
pub struct GpuModel {
    pub(crate) ctx: Arc<GpuContext>,
    config: ModelConfig,
    layout: Layout,
    pub(crate) weights: Weights,
    pub(crate) plans: HashMap<(usize, usize), Plan>,
    pub(crate) stats: StatsRing,
    /// The step kernels' default tile for this model's plans (the context's
    /// unless [`GpuModel::set_step_tile`] changed it).
    step_tile: StepTile,
    /// `step_tile` was set by `RECURRENT_STEP_TILE` or [`GpuModel::set_step_tile`]:
    /// every plan uses it, none is tuned.
    step_tile_pinned: bool,
    /// The step tile of the plans of each batch size, and how it was chosen
    /// ([`super::step_tune`]): filled as plans are built.
    step_tiles: HashMap<usize, TunedStep>,
    /// Every backward also computes the gradient of the bottom layer's
    /// input ([`GpuModel::set_input_gradient`]).
    input_grad: bool,
    /// Every backward also completes the gradients of the initial states
    /// ([`GpuModel::set_state_gradient`]).
    pub(crate) state_grad: bool,
    /// The plans record the recurrent stack alone (the op [`super::GpuStack`]).
    pub(crate) stack_only: bool,
    /// Plans whose initial-state slots hold a batch's given states (not
    /// zeros): the next batch without states zeroes them.
    pub(crate) states_written: std::collections::HashSet<(usize, usize)>,
    /// Submissions made (for the tests that count them).
    pub submissions: u64,
    /// A training set kept on the device ([`GpuModel::keep_dataset`]).
    pub(crate) resident: Option<super::resident::Resident>,
    /// Sets kept so far (for the tests that check a fit kept its set).
    #[doc(hidden)]
    pub kept_sets: u64,
    /// A persistent grid's barrier gave up on this device: plans run the
    /// model's tile per step ([`StepTile::without_grid`]).
    grid_gave_up: bool,
    /// Plans with a persistent grid tile are probed when built (see `gpu/grid.rs`).
    grid_probe: bool,
}

fn f32_bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

impl GpuModel {
    /// Uploads `model`'s parameters to the GPU of `ctx`. The step kernels
    /// read W_hh in f16 if the context says so ([`GpuContext::f16_weights`]).
    pub fn new(ctx: Arc<GpuContext>, model: &Model) -> Result<GpuModel> {
        let f16 = ctx.f16_weights();
        Self::with_f16_weights(ctx, model, f16)
    }

    /// [`GpuModel::new`] with the f16 copy of W_hh on or off whatever the
    /// context's default (see [`super::weights`]).
    pub fn with_f16_weights(ctx: Arc<GpuContext>, model: &Model, f16: bool) -> Result<GpuModel> {
        let config = model.config().clone();
        let layout = model.layout().clone();
        let weights = Weights::new(&ctx, &config, &layout, model.params(), f16)?;
        let mut g = GpuModel {
            step_tile: ctx.tunables.step,
            step_tile_pinned: ctx.tunables.step_tile_pinned,
            stats: StatsRing::new(&ctx),
            ctx,
            config,
            layout,
            weights,
            plans: HashMap::new(),
            step_tiles: HashMap::new(),
            input_grad: false,
            state_grad: false,
            stack_only: false,
            states_written: Default::default(),
            resident: None,
            kept_sets: 0,
            submissions: 0,
            grid_gave_up: false,
            grid_probe: true,
        };
        g.refresh_whh16()?;
        Ok(g)
    }

    /// Refreshes the f16 copy of W_hh from params (own submission), if the model has one.
    fn refresh_whh16(&mut self) -> Result<()> {
        if self.weights.whh16.is_none() {
            return Ok(());
        }
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("whh.f16"),
            });
        self.weights.encode_refresh(&mut enc)?;
        self.ctx.queue.submit([enc.finish()]);
        self.submissions += 1;
        Ok(())
    }

    /// Do the step kernels read W_hh from an f16 copy?
    pub fn f16_weights(&self) -> bool {
        self.weights.whh16.is_some()
    }

    /// The f16 copy of each layer-direction's W_hh as the GPU holds it
    /// (binary16 bits, [`Layout::layers`] order, each `[G*H, H]` row-major),
    /// or `None` without the copy. Waits for queued steps. For tests and inspection.
    pub fn whh_f16_bits(&self) -> Result<Option<Vec<Vec<u16>>>> {
        let Some(w) = &self.weights.whh16 else {
            return Ok(None);
        };
        let bytes = self.ctx.read_bytes(&w.buffer, w.buffer.size())?;
        // Little-endian words: the low half (even element) comes first.
        let halves: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        Ok(Some(
            w.offsets
                .iter()
                .map(|&o| halves[o as usize..o as usize + w.len].to_vec())
                .collect(),
        ))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Number of parameters P.
    pub fn num_params(&self) -> usize {
        self.layout.total
    }

    // ---------------------------------------------------------------- settings

    /// The tile the per-step kernels run with by default ([`StepTile`]):
    /// the context's, or what [`GpuModel::set_step_tile`] set. With tuning
    /// on, a batch size's plans may run another ([`GpuModel::step_tile_for`]).
    pub fn step_tile(&self) -> StepTile {
        self.step_tile
    }

    /// The step tile of the plans for batches of `b` rows and how it was
    /// chosen, once such a plan was built ([`super::step_tune`]).
    pub fn step_tile_for(&self, b: usize) -> Option<TunedStep> {
        self.step_tiles.get(&b).cloned()
    }

    /// Runs the per-step kernels with `tile` instead of the context's
    /// (`RECURRENT_STEP_TILE` or the default), e.g. to compare tiles on one
    /// context; the step tuner leaves it alone. Checked against the
    /// adapter's limits ([`StepTile::check`]). The plans of every batch
    /// shape are rebuilt at their next use (steps already queued finish
    /// with the old ones). Tiles with one slice of K compute the same sums
    /// in the same order, so among them results do not change; a tile that
    /// splits K ([`StepTile::splits`] > 1) rounds differently.
    pub fn set_step_tile(&mut self, tile: StepTile) -> Result<()> {
        tile.check(&self.ctx.limits)?;
        if tile != self.step_tile || !self.step_tile_pinned {
            self.clear_plans();
            self.step_tiles.clear();
            self.step_tile = tile;
            self.step_tile_pinned = true;
        }
        Ok(())
    }

    /// With `on`, every backward also computes the gradient of the bottom
    /// layer's input features (one GEMM more per direction, `dX = dG·W_ih`),
    /// read with [`GpuModel::input_gradient`]. Training never needs it (off
    /// by default); `recurrent bench` turns it on so that its GPU timings
    /// cover what PyTorch's (`x.grad`) and the CPU path's do. The plans of
    /// every batch shape are rebuilt at their next use.
    pub fn set_input_gradient(&mut self, on: bool) {
        debug_assert!(on || !self.stack_only, "the stack op always needs dx");
        if on != self.input_grad {
            self.input_grad = on;
            self.clear_plans();
        }
    }

    /// Builds the plans of a persistent grid tile without probing that its
    /// workgroups all run at once (`gpu/grid.rs`): for the tests of a
    /// barrier that gives up during a step. Rebuilds the plans.
    #[doc(hidden)]
    pub fn set_grid_probe(&mut self, on: bool) {
        self.grid_probe = on;
        self.clear_plans();
    }

    /// What the step tuner caches the tile of batches of `b` rows under.
    pub fn step_key(&self, b: usize) -> StepKey {
        StepKey::of(&self.config, b, self.weights.whh16.is_some())
    }

    // ---------------------------------------------------------------- plans

    /// Drops every plan (rebuilt at their next use, with new settings), and
    /// a kept set's gather programs, whose bind groups hold the plans' buffers.
    pub(crate) fn clear_plans(&mut self) {
        self.plans.clear();
        if let Some(r) = &mut self.resident {
            r.clear_gathers();
        }
    }

    /// The plan of batch shape `(b, t)`, built on first use (deciding its
    /// step tile, measuring it when the model's shape is new and tuning is on).
    pub(crate) fn plan(&mut self, b: usize, t: usize) -> Result<&Plan> {
        if !self.plans.contains_key(&(b, t)) {
            let inputs = PlanInputs {
                ctx: &self.ctx,
                config: &self.config,
                layout: &self.layout,
                weights: &self.weights,
                // The stack op (GpuStack) records into the application's
                // encoder, where no give-up would be reported: per step.
                step_tile: if self.grid_gave_up || self.stack_only {
                    self.step_tile.without_grid()
                } else {
                    self.step_tile
                },
                step_tile_pinned: self.step_tile_pinned,
                input_grad: self.input_grad,
                state_grad: self.state_grad,
                stack_only: self.stack_only,
                grid_probe: self.grid_probe,
            };
            let (plan, decision) = plan::build(&inputs, b, t, self.step_tiles.get(&b).cloned())?;
            self.step_tiles.insert(b, decision);
            self.plans.insert((b, t), plan);
        }
        Ok(&self.plans[&(b, t)])
    }

    /// Every dispatch one training step records for batch shape `(b, t)`,
    /// in program order: kernel, grid, label and tile (builds the plan if
    /// needed). Without the refresh of the f16 copy of W_hh. For tests and inspection.
    pub fn dispatches(&mut self, b: usize, t: usize) -> Result<Vec<Dispatch>> {
        Ok(self.plan(b, t)?.step.program.dispatches.clone())
    }

    /// Number of dispatches one training step records for batch shape `(b, t)`
    /// (with the f16 copy of W_hh, its refresh after the optimizer too: one per layer).
    pub fn dispatches_per_step(&mut self, b: usize, t: usize) -> Result<usize> {
        let refresh = self.weights.whh16.as_ref().map_or(0, |w| w.refresh.len());
        Ok(self.plan(b, t)?.phases.optim - 1 + refresh)
    }

    /// Every GEMM of a training step for batch shape `(b, t)`, in program
    /// order, with the configuration it runs (builds the plan if needed, which
    /// tunes shapes new to the context).
    pub fn gemm_choices(&mut self, b: usize, t: usize) -> Result<Vec<GemmChoice>> {
        Ok(self.plan(b, t)?.step.program.gemms.clone())
    }

    /// The recorded training step of batch shape `(b, t)` as text, one line
    /// per dispatch in program order (kernel, grid, override constants, f16
    /// binding, label, uniform slot and its bytes), then the refresh of the
    /// f16 copy of W_hh if the model has one. Builds the plan if needed. For
    /// the dispatch-trace test (`tests/dispatch_trace.rs`), which keeps the
    /// recording byte-identical across refactors.
    #[doc(hidden)]
    pub fn dispatch_trace(&mut self, b: usize, t: usize) -> Result<String> {
        self.plan(b, t)?;
        let tun = self.ctx.tunables;
        let mut out = format!(
            "tunables tile={} wg_small={} wg_reduce={} norm_groups={} step={}\n",
            tun.tile, tun.wg_small, tun.wg_reduce, tun.norm_groups, tun.step
        );
        let trace = |out: &mut String, pg: &super::program::Program| {
            for (i, d) in pg.dispatches.iter().enumerate() {
                let consts: Vec<String> = d
                    .constants
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                let mut bytes = pg.slot_bytes(d.slot);
                while let [rest @ .., 0] = bytes {
                    bytes = rest;
                }
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                out.push_str(&format!(
                    "{i} {} groups={},{},{} consts={} f16={} label={} slot={} args={hex}\n",
                    d.kernel.entry(),
                    d.groups[0],
                    d.groups[1],
                    d.groups[2],
                    consts.join(","),
                    d.f16 as u8,
                    d.label,
                    d.slot
                ));
            }
        };
        let plan = &self.plans[&(b, t)];
        let ph = plan.phases;
        out.push_str(&format!(
            "step b={b} t={t} forward={} loss_ce={} loss_mse={} backward={} optim={} norm_slot={} opt_slot={}\n",
            ph.forward, ph.loss_ce, ph.loss_mse, ph.backward, ph.optim, plan.norm_slot, plan.opt_slot
        ));
        trace(&mut out, &plan.step.program);
        if let Some(w) = &self.weights.whh16 {
            out.push_str("whh.f16 refresh\n");
            trace(&mut out, &w.refresh.program);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- weights

    /// Replaces the parameters (flat, [`Layout`] order). The optimizer state
    /// is reset by the first step of a fresh [`Optimizer`] (`step == 0`).
    pub fn upload(&mut self, params: &[f32]) -> Result<()> {
        if params.len() != self.layout.total {
            return Err(Error::shape(
                "parameters",
                format!("[{}]", self.layout.total),
                &[params.len()],
            ));
        }
        self.ctx
            .queue
            .write_buffer(&self.weights.params, 0, f32_bytes(params));
        self.refresh_whh16()
    }

    /// The optimizer state buffer `[2P]` (waits for queued steps).
    pub(crate) fn read_state(&self) -> Result<Vec<f32>> {
        self.read(&self.weights.state, 0, 2 * self.layout.total)
    }

    /// Replaces the optimizer state buffer `[2P]`.
    pub(crate) fn write_state(&mut self, s: &[f32]) -> Result<()> {
        if s.len() != 2 * self.layout.total {
            return Err(Error::shape(
                "optimizer state",
                format!("[{}]", 2 * self.layout.total),
                &[s.len()],
            ));
        }
        self.ctx
            .queue
            .write_buffer(&self.weights.state, 0, f32_bytes(s));
        Ok(())
    }

    /// The parameters, flat in [`Layout`] order (waits for queued steps).
    pub fn download(&self) -> Result<Vec<f32>> {
        self.read(&self.weights.params, 0, self.layout.total)
    }

    /// Copies the parameters back into `model` (same configuration).
    pub fn download_into(&self, model: &mut Model) -> Result<()> {
        if model.config() != &self.config {
            return Err(Error::Argument(
                "download_into: the model's configuration differs from the GPU model's".into(),
            ));
        }
        let p = self.download()?;
        model.params_mut().copy_from_slice(&p);
        Ok(())
    }

    /// Reads `len` f32 from `buf` at element `off` (blocking).
    pub(crate) fn read(&self, buf: &wgpu::Buffer, off: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = self
            .ctx
            .read_bytes_at(buf, (off * 4) as u64, (len * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    // ---------------------------------------------------------------- running

    /// Uploads a batch's inputs, lengths, initial states and (if `loss`)
    /// targets into the plan of its shape.
    pub(crate) fn upload_batch(
        &mut self,
        data: &Dataset,
        loss: Option<Loss>,
    ) -> Result<(usize, usize)> {
        data.check_inputs(&self.config)?;
        let y = match loss {
            Some(l) => Some(data.check_targets(&self.config, l)?),
            None => None,
        };
        let (b, t) = (data.len(), data.steps());
        let o = self.config.out_features;
        let seq = self.config.output == OutputMode::Sequence;
        self.plan(b, t)?;
        let plan = &self.plans[&(b, t)];
        let q = &self.ctx.queue;
        let ws = &plan.ws;
        match &data.x {
            Inputs::Features { data: x, f, .. } => {
                let xt = crate::cpu::transpose_bt(x, b, t, *f);
                q.write_buffer(&plan.work, ws.x0.off as u64 * 4, f32_bytes(&xt));
            }
            Inputs::Tokens { ids, .. } => {
                let ids: Vec<i32> = ids.iter().map(|&v| v as i32).collect();
                let vocab = self.config.vocab.unwrap_or(0);
                super::tokens::write_tokens(q, &plan.ints, ws, &ids, vocab, true);
            }
        }
        let lengths: Vec<i32> = match &data.lengths {
            Some(l) => l.iter().map(|&v| v as i32).collect(),
            None => vec![t as i32; b],
        };
        q.write_buffer(
            &plan.ints,
            ws.lengths.off as u64 * 4,
            bytemuck::cast_slice(&lengths),
        );
        match y {
            Some(Targets::Classes { data: c, .. }) => {
                let c: Vec<i32> = if seq {
                    let mut v = vec![0i32; t * b];
                    for bi in 0..b {
                        for ti in 0..t {
                            v[ti * b + bi] = c[bi * t + ti] as i32;
                        }
                    }
                    v
                } else {
                    c.iter().map(|&v| v as i32).collect()
                };
                q.write_buffer(
                    &plan.ints,
                    ws.classes.off as u64 * 4,
                    bytemuck::cast_slice(&c),
                );
            }
            Some(Targets::Values { data: v, .. }) => {
                let v = if seq {
                    crate::cpu::transpose_bt(v, b, t, o)
                } else {
                    v.clone()
                };
                q.write_buffer(&plan.work, ws.values.off as u64 * 4, f32_bytes(&v));
            }
            None => {}
        }
        self.write_initial_states((b, t), data.states.as_ref());
        // Off until a training step turns it on.
        self.set_dropout_step((b, t), None);
        Ok((b, t))
    }

    /// Turns the dropout of the batch uploaded into plan `key` on, with the
    /// masks of training step `step` (the optimizer's count after it, from
    /// 1: [`crate::dropout::StepKey`]), or off (`None`); nothing for a model
    /// without dropout.
    pub(super) fn set_dropout_step(&self, key: (usize, usize), step: Option<u64>) {
        let plan = &self.plans[&key];
        let region = plan.ws.dropout;
        if region.len == 0 {
            return;
        }
        let seed = self.config.dropout.seed;
        let flag = match step {
            Some(s) => [crate::dropout::StepKey::new(seed, s).0 as i32, 1],
            None => [0, 0],
        };
        self.ctx.queue.write_buffer(
            &plan.ints,
            region.off as u64 * 4,
            bytemuck::cast_slice(&flag),
        );
    }

    /// Records the dispatches of the given phases (and the clears backward
    /// needs) of the plan of `key` into one encoder ([`Plan::encode`]).
    pub(crate) fn encode(
        &self,
        key: (usize, usize),
        loss: Option<Loss>,
        backward: bool,
        optim: Option<&Optimizer>,
    ) -> Result<wgpu::CommandEncoder> {
        self.plans[&key].encode(&self.ctx, &self.weights, loss, backward, optim)
    }

    /// Raw output of `data.x` (same semantics as [`Model::forward`]): `[N, out]` or `[N, T, out]`.
    pub fn forward(&mut self, data: &Dataset) -> Result<Tensor> {
        let key = self.upload_batch(data, None)?;
        self.forward_uploaded(key, None, |_, _| {})
    }

    /// The forward of the batch uploaded into plan `key`, after the commands
    /// `before` (if any) and followed by what `after` records, in one
    /// submission; returns the output read back.
    pub(crate) fn forward_uploaded(
        &mut self,
        key: (usize, usize),
        before: Option<wgpu::CommandBuffer>,
        after: impl FnOnce(&Plan, &mut wgpu::CommandEncoder),
    ) -> Result<Tensor> {
        let mut enc = self.encode(key, None, false, None)?;
        let plan = &self.plans[&key];
        after(plan, &mut enc);
        self.ctx
            .queue
            .submit(before.into_iter().chain([enc.finish()]));
        self.submissions += 1;
        let out = self.read(
            &plan.work,
            plan.ws.out.off as usize,
            plan.ws.out.len as usize,
        )?;
        self.check_grid(key)?;
        let (b, t) = key;
        let o = self.config.out_features;
        Ok(match self.config.output {
            OutputMode::Last => Tensor::new(vec![b, o], out),
            OutputMode::Sequence => {
                Tensor::new(vec![b, t, o], crate::cpu::transpose_bt(&out, t, b, o))
            }
        })
    }

    /// Loss and the gradient of every parameter (flat, [`Layout`] order), as
    /// [`Model::loss_and_gradients`]. Blocks until both are read back.
    pub fn loss_and_gradients(&mut self, data: &Dataset, loss: Loss) -> Result<(f32, Vec<f32>)> {
        self.gradients_at(data, loss, None)
    }

    /// The loss and gradients of `data`, under the dropout masks of training
    /// step `step` if given (else without dropout).
    fn gradients_at(
        &mut self,
        data: &Dataset,
        loss: Loss,
        step: Option<u64>,
    ) -> Result<(f32, Vec<f32>)> {
        if step.is_some() {}
        let key = self.upload_batch(data, Some(loss))?;
        if step.is_some() {
            self.set_dropout_step(key, step);
        }
        let enc = self.encode(key, Some(loss), true, None)?;
        self.ctx.queue.submit([enc.finish()]);
        self.submissions += 1;
        let plan = &self.plans[&key];
        let l = self.read(&plan.work, plan.ws.scalars.off as usize, 1)?[0];
        let g = self.read(&self.weights.grads, 0, self.layout.total)?;
        self.check_grid(key)?;
        Ok((l, g))
    }

    /// [`GpuModel::loss_and_gradients`] under the dropout masks of training
    /// step `step`, as [`Model::gradients_with_dropout`]: what
    /// [`GpuModel::train_step`] computes at that step.
    pub fn gradients_with_dropout(
        &mut self,
        data: &Dataset,
        loss: Loss,
        step: u64,
    ) -> Result<(f32, Vec<f32>)> {
        self.gradients_at(data, loss, Some(step))
    }

    /// The gradient of the loss with respect to the input features of the
    /// last backward run on batch shape `(n, t)` (after
    /// [`GpuModel::loss_and_gradients`], say), `[n, t, I]`. Needs
    /// [`GpuModel::set_input_gradient`] on before that backward, and a model
    /// fed features (token ids have no gradient).
    pub fn input_gradient(&self, n: usize, t: usize) -> Result<Tensor> {
        if self.config.vocab.is_some() {
            return Err(Error::Argument(
                "input_gradient: this model's inputs are token ids, which have no gradient".into(),
            ));
        }
        if !self.input_grad {
            return Err(Error::Argument(
                "input_gradient: call set_input_gradient(true) before the backward".into(),
            ));
        }
        let plan = self.plans.get(&(n, t)).ok_or_else(|| {
            Error::Argument(format!(
                "input_gradient: no backward has run on a batch of {n} x {t} steps since set_input_gradient"
            ))
        })?;
        let dx = plan.ws.layers[0].dx;
        let i = self.config.input;
        let v = self.read(&plan.work, dx.off as usize, dx.len as usize)?;
        Ok(Tensor::new(
            vec![n, t, i],
            crate::cpu::transpose_bt(&v, t, n, i),
        ))
    }

    /// Writes this step's optimizer arguments (clip, learning rate, bias corrections).
    pub(crate) fn set_optimizer_args(
        &mut self,
        key: (usize, usize),
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) {
        opt.step += 1;
        let plan = self.plans.get_mut(&key).expect("plan exists");
        let a = OptArgs {
            n: self.layout.total as u32,
            scalars_off: plan.ws.scalars.off,
            partials_off: plan.ws.partials.off,
            partials: self.ctx.tunables.norm_groups,
            ..Default::default()
        }
        .for_step(opts.clip, opt);
        let program = &mut plan.step.program;
        program.set_slot(plan.norm_slot, &a);
        program.set_slot(plan.opt_slot, &a);
        let start = plan.norm_slot.min(plan.opt_slot) as usize * SLOT_BYTES as usize;
        let end = (plan.norm_slot.max(plan.opt_slot) as usize + 1) * SLOT_BYTES as usize;
        self.ctx
            .queue
            .write_buffer(&plan.uniforms, start as u64, &program.uniforms[start..end]);
    }

    /// One training step (forward, loss, BPTT, clipping, optimizer) recorded
    /// into one command buffer and submitted without waiting. `opt` supplies
    /// the hyper-parameters and counts the step; its moments live on the GPU.
    /// Statistics arrive through [`GpuModel::poll_stats`] / [`GpuModel::finish`].
    pub fn train_step(
        &mut self,
        data: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<()> {
        opt.validate()?;
        let slot = self.stats.free_slot(&self.ctx)?;
        let key = self.upload_batch(data, Some(opts.loss))?;
        self.submit_step(key, slot, None, opts, opt)
    }

    /// The training step of the batch in plan `key` (its data written, or
    /// gathered by the commands `before`, submitted first), its statistics
    /// into ring slot `slot`.
    pub(crate) fn submit_step(
        &mut self,
        key: (usize, usize),
        slot: usize,
        before: Option<wgpu::CommandBuffer>,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<()> {
        self.set_dropout_step(key, Some(opt.step + 1));
        self.set_optimizer_args(key, opts, opt);
        let mut enc = self.encode(key, Some(opts.loss), true, Some(opt))?;
        let plan = &self.plans[&key];
        self.stats
            .copy_into(&mut enc, &plan.work, plan.ws.scalars.off as u64 * 4, slot);
        self.stats
            .copy_grid_flag_into(&mut enc, plan.grid.as_ref(), slot);
        self.ctx
            .queue
            .submit(before.into_iter().chain([enc.finish()]));
        self.submissions += 1;
        self.stats.submitted(slot, opt.step);
        Ok(())
    }

    /// Statistics of the steps that have finished, oldest first, without blocking.
    pub fn poll_stats(&mut self) -> Result<Vec<StepStats>> {
        let r = self.stats.poll(&self.ctx);
        self.after_grid_error(r)
    }

    /// Waits for every submitted step; returns the statistics not collected yet.
    pub fn finish(&mut self) -> Result<Vec<StepStats>> {
        let r = self.stats.finish(&self.ctx);
        self.after_grid_error(r)
    }

    /// `r`, after falling back to the per-step kernels if it says a
    /// persistent grid's barrier gave up (see `gpu/grid.rs`).
    fn after_grid_error<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(Error::Gpu(m)) = &r {
            if m.starts_with(GRID_GAVE_UP) {
                self.grid_gave_up = true;
                self.clear_plans();
                self.step_tiles.clear();
            }
        }
        r
    }

    /// Fails (and falls back to the per-step kernels) if a barrier of the
    /// persistent grid in plan `key` gave up since it was built: what the
    /// last run computed is wrong.
    fn check_grid(&mut self, key: (usize, usize)) -> Result<()> {
        let Some(g) = &self.plans[&key].grid else {
            return Ok(());
        };
        let flag = self.ctx.read_bytes(&g.buffer, 4)?;
        let r = match bytemuck::pod_read_unaligned::<u32>(&flag) {
            0 => Ok(()),
            _ => Err(Error::Gpu(format!(
                "{GRID_GAVE_UP}: its workgroups were not all running at once, so this result is wrong. HINT: the model now runs the per-step kernels; run it again"
            ))),
        };
        self.after_grid_error(r)
    }

    /// [`GpuModel::train_step`] followed by [`GpuModel::finish`]: the step's statistics.
    pub fn train_step_sync(
        &mut self,
        data: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> Result<StepStats> {
        self.train_step(data, opts, opt)?;
        self.finish()?
            .pop()
            .ok_or_else(|| Error::Gpu("no statistics came back".into()))
    }
}
