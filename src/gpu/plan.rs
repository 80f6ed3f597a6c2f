//! [`Plan`]: everything a batch shape `(B, T)` runs with, built once and
//! reused by every step of that shape — in one direction: decide, record,
//! compile, bind.
//!
//! 1. **Decide** ([`build`]): the workspace layout ([`Workspace`]); each
//!    GEMM shape's configuration (the context's tuner, [`super::gemm_tune`]);
//!    the step tile (pinned, the default, the context's earlier decision, or
//!    measured now: [`super::step_tune`]).
//! 2. **Record** ([`super::record::training_step`]) with those decisions.
//! 3. **Compile**: every dispatch's pipeline, once ([`Compiled`]).
//! 4. **Bind**: the `work`/`ints` buffers, the uniform buffer with one slot
//!    per dispatch, one bind group (two with the f16 copy of W_hh).

use super::context::GpuContext;
use super::encode::{Binds, Compiled};
use super::gemm_config::GemmDecisions;
use super::grid::GridSync;
use super::program::Resolved;
use super::record::{self, Phases, StepModel};
use super::step_tile::StepTile;
use super::step_tune::{step_candidates, StepKey, TunedStep, PRUNE_FACTOR};
use super::tune::{self, Decision, Tuned};
use super::weights::Weights;
use super::workspace::Workspace;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::params::Layout;
use crate::optim::Optimizer;
use crate::Loss;
use std::time::Instant;

/// What a plan is built from: the model and its settings on the device.
pub struct PlanInputs<'a> {
    pub ctx: &'a GpuContext,
    pub config: &'a ModelConfig,
    pub layout: &'a Layout,
    pub weights: &'a Weights,
    /// The model's default step tile, and whether it is pinned (not tuned).
    pub step_tile: StepTile,
    pub step_tile_pinned: bool,
    /// Every backward also computes the gradient of layer 0's input.
    pub input_grad: bool,
    /// Every backward also completes the gradients of the initial states.
    pub state_grad: bool,
    /// Record the recurrent stack alone ([`record::stack_step`]) rather
    /// than a training step.
    pub stack_only: bool,
    /// Probe a persistent grid tile's plan (see `gpu/grid.rs`); off only
    /// for the tests of what happens when a barrier gives up later.
    pub grid_probe: bool,
}

/// Everything for one batch shape.
pub struct Plan {
    pub ws: Workspace,
    /// `[work_len]` f32 activations and their gradients ("work").
    pub work: wgpu::Buffer,
    /// `[ints_len]` i32 lengths, token ids, class targets ("ints").
    pub ints: wgpu::Buffer,
    /// `[slots, 64]` u32: one 256-byte argument slot per dispatch ("plan.uniforms").
    pub uniforms: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    /// `bind_group` with the f16 copy of W_hh at binding 4 (only with the copy).
    bind_group_f16: Option<wgpu::BindGroup>,
    /// The sync buffer of a persistent grid's dispatches (only with a grid tile).
    pub grid: Option<GridSync>,
    /// The recorded training step and its pipelines.
    pub step: Compiled,
    pub phases: Phases,
    pub norm_slot: u32,
    pub opt_slot: u32,
}

/// The plan of `(b, t)` and the step tile it runs: decided as the module
/// docs say (`known`: the decision this model already took for batches of
/// `b` rows).
pub fn build(
    inp: &PlanInputs,
    b: usize,
    t: usize,
    known: Option<TunedStep>,
) -> Result<(Plan, TunedStep)> {
    let ctx = inp.ctx;
    let ws = Workspace::new(
        inp.config,
        b,
        t,
        ctx.tunables.norm_groups as usize,
        inp.input_grad,
    );
    let what = format!("the workspace for batch {b} x {t} steps");
    let (work, ints) = workspace_buffers(ctx, &what, ws.work_len, ws.ints_len)?;
    // GEMM shapes do not depend on the step tile: the recording with the
    // fixed choices lists them.
    let gemms = if ctx.autotune() {
        let shapes = inp.record(&ws, inp.step_tile, Default::default())?;
        ctx.gemm_decisions(shapes.program.gemms.iter().map(|g| g.shape))?
    } else {
        Default::default()
    };
    let key = StepKey::of(inp.config, b, inp.weights.whh16.is_some());
    let decided = known.or_else(|| {
        if inp.step_tile_pinned {
            Some(Tuned::unmeasured(inp.step_tile, Decision::Pinned))
        } else if !ctx.autotune() {
            Some(Tuned::unmeasured(inp.step_tile, Decision::Off))
        } else {
            ctx.step_tile_decision(&key)
        }
    });
    if let Some(d) = decided {
        let plan = Plan::on(inp, ws, work, ints, d.choice, &gemms)?;
        // A grid tile whose probe failed runs per step.
        let d = if plan.tile() == d.choice {
            d
        } else {
            Tuned::unmeasured(plan.tile(), Decision::Fallback)
        };
        return Ok((plan, d));
    }
    let cands = step_candidates(inp.step_tile, &key, &ctx.limits);
    let first = Plan::on(inp, ws, work, ints, cands[0], &gemms)?;
    let (decision, plan) = if cands.len() == 1 {
        (Tuned::unmeasured(cands[0], Decision::Single), first)
    } else {
        measure_step_tiles(inp, &cands, first, t, &gemms)?
    };
    ctx.set_step_tile_decision(key, decision.clone());
    Ok((plan, decision))
}

/// The `work` and `ints` buffers of a workspace (`work_len` f32, `ints_len`
/// i32; `what` names it in errors).
pub(super) fn workspace_buffers(
    ctx: &GpuContext,
    what: &str,
    work_len: usize,
    ints_len: usize,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    ctx.check_storage(what, (work_len * 4) as u64)?;
    if work_len >= u32::MAX as usize {
        return Err(Error::Gpu(format!(
            "{what} has {work_len} elements, more than 32-bit offsets address. HINT: lower the batch size"
        )));
    }
    let work = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("work"),
        size: (work_len * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let ints = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("ints"),
        size: (ints_len * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    Ok((work, ints))
}

impl PlanInputs<'_> {
    /// The training step recorded over `ws` with step tile `tile` and the
    /// GEMM decisions `gemms`.
    fn record(
        &self,
        ws: &Workspace,
        tile: StepTile,
        gemms: GemmDecisions,
    ) -> Result<record::Recording> {
        let whh = self.weights.whh_offsets(self.layout);
        let model = StepModel {
            config: self.config,
            layout: self.layout,
            whh: &whh,
            state_grad: self.state_grad,
        };
        let resolved = Resolved {
            gemms,
            whh_f16: self.weights.whh16.is_some(),
            ..Resolved::fixed(self.ctx.tunables.with_step_tile(tile), &self.ctx.limits)
        };
        if self.stack_only {
            record::stack_step(&model, ws, resolved)
        } else {
            record::training_step(&model, ws, resolved)
        }
    }
}

impl Plan {
    /// The plan of workspace `ws` on buffers `work` and `ints` (laid out by
    /// `ws`) with step tile `tile`: recorded, compiled, bound.
    fn on(
        inp: &PlanInputs,
        ws: Workspace,
        work: wgpu::Buffer,
        ints: wgpu::Buffer,
        tile: StepTile,
        gemms: &GemmDecisions,
    ) -> Result<Plan> {
        let ctx = inp.ctx;
        let rec = inp.record(&ws, tile, gemms.clone())?;
        let step = Compiled::all(ctx, rec.program)?;
        let w = inp.weights;
        let main = w.bindings(&work, &ints, false).expect("always bound");
        let (uniforms, bind_group) = ctx.bind_program("plan", &step.program.uniforms, main);
        let bind_group_f16 = w
            .bindings(&work, &ints, true)
            .map(|b| ctx.bind_group("plan.f16", &uniforms, b));
        let grid = GridSync::new(
            ctx,
            "plan",
            step.program.sync_words,
            &uniforms,
            [&w.params, &w.grads, &work, &ints],
        );
        let plan = Plan {
            ws,
            work,
            ints,
            uniforms,
            bind_group,
            bind_group_f16,
            grid,
            step,
            phases: rec.phases,
            norm_slot: rec.norm_slot,
            opt_slot: rec.opt_slot,
        };
        // A grid's workgroups must all run at once: its forward and backward
        // once (on whatever the workspace holds), and the flag read back.
        if let Some(g) = plan.grid.as_ref().filter(|_| inp.grid_probe) {
            let enc = plan.encode(ctx, w, None, true, None)?;
            if !g.probe(ctx, enc)? {
                let Plan { ws, work, ints, .. } = plan;
                return Plan::on(inp, ws, work, ints, tile.without_grid(), gemms);
            }
        }
        Ok(plan)
    }

    /// The step tile this plan's step kernels run.
    pub fn tile(&self) -> StepTile {
        self.step.program.resolved.tunables.step
    }

    /// The bind groups of the step's dispatches.
    pub fn binds(&self) -> Binds<'_> {
        Binds {
            main: &self.bind_group,
            f16: self.bind_group_f16.as_ref(),
            sync: self.grid.as_ref().map(|g| &g.bind_group),
        }
    }

    /// Records into one encoder the clears a backward needs and the
    /// dispatches of the phases asked for: forward, the loss of `loss`,
    /// backward with `backward`, and with `optim` the optimizer (clearing its
    /// state first when this is its first step) and the refresh of the f16
    /// copy of W_hh.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        weights: &Weights,
        loss: Option<Loss>,
        backward: bool,
        optim: Option<&Optimizer>,
    ) -> Result<wgpu::CommandEncoder> {
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        if optim.is_some_and(|o| o.step == 1) {
            // A fresh optimizer: moments start at zero, as on the CPU.
            enc.clear_buffer(&weights.state, 0, None);
        }
        if backward {
            self.clear_for_backward(&mut enc, weights);
        }
        let ph = self.phases;
        let bg = self.binds();
        let s = &self.step;
        s.encode(&mut enc, bg, &[0..ph.forward], 1, "forward", None)?;
        match loss {
            Some(Loss::Ce) => s.encode(&mut enc, bg, &[ph.forward..ph.loss_ce], 1, "loss", None)?,
            Some(Loss::Mse) => {
                s.encode(&mut enc, bg, &[ph.loss_ce..ph.loss_mse], 1, "loss", None)?
            }
            None => {}
        }
        if backward {
            s.encode(
                &mut enc,
                bg,
                &[ph.loss_mse..ph.backward],
                1,
                "backward",
                None,
            )?;
        }
        if optim.is_some() {
            s.encode(&mut enc, bg, &[ph.backward..ph.optim], 1, "optimizer", None)?;
            // The next step's kernels read the updated W_hh.
            weights.encode_refresh(&mut enc)?;
        }
        Ok(enc)
    }

    /// Zeroes the gradients and the carries that must start at zero.
    pub fn clear_for_backward(&self, enc: &mut wgpu::CommandEncoder, weights: &Weights) {
        enc.clear_buffer(&weights.grads, 0, None);
        let z = self.ws.zeroed;
        if z.len > 0 {
            enc.clear_buffer(
                &self.work,
                z.off as u64 * 4,
                Some(z.len.div_ceil(4) as u64 * 16),
            );
        }
    }
}

/// Times one forward+backward of each candidate's plan (all on the
/// workspace of `first`, the plan of `cands[0]`, with every sequence `t`
/// steps long) and returns the decision with the winner's plan. A candidate
/// that fails to build or run (a driver refusing its pipeline) is left out;
/// the default (first) must run.
fn measure_step_tiles(
    inp: &PlanInputs,
    cands: &[StepTile],
    first: Plan,
    t: usize,
    gemms: &GemmDecisions,
) -> Result<(TunedStep, Plan)> {
    let ctx = inp.ctx;
    let b = first.ws.b;
    ctx.queue.write_buffer(
        &first.ints,
        first.ws.lengths.off as u64 * 4,
        bytemuck::cast_slice(&vec![t as i32; b]),
    );
    let others: Vec<Result<Plan>> = cands[1..]
        .iter()
        .map(|&c| {
            Plan::on(
                inp,
                first.ws.clone(),
                first.work.clone(),
                first.ints.clone(),
                c,
                gemms,
            )
        })
        .collect();
    let mut plans: Vec<Result<Plan>> = std::iter::once(Ok(first)).chain(others).collect();
    let run = |plan: &Plan| -> Result<f64> {
        let cmd = plan.encode(ctx, inp.weights, None, true, None)?.finish();
        let t0 = Instant::now();
        ctx.queue.submit([cmd]);
        ctx.wait()?;
        Ok(t0.elapsed().as_secs_f64() * 1e6)
    };
    let times = tune::measure(cands.len(), PRUNE_FACTOR, |live| {
        Ok(live
            .iter()
            .map(|&i| match &plans[i] {
                Ok(p) => run(p),
                Err(e) => Err(Error::Gpu(e.to_string())),
            })
            .collect())
    })?;
    let decision = Tuned::fastest(cands, &times)?;
    let best = cands
        .iter()
        .position(|&c| c == decision.choice)
        .expect("the winner is a candidate");
    let plan = plans.swap_remove(best)?;
    Ok((decision, plan))
}
