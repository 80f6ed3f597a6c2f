//! [`GpuModel`]: a model's parameters resident on the GPU, and the recorded
//! programs that run forward, loss, backward through time and the optimizer
//! there, mirroring `cpu::forward` / `cpu::backward` / `Model::train_step`.
//!
//! ## Design
//! - `params [P]`, `grads [P]` (same [`Layout`] as the host model) and the
//!   optimizer `state [2P]` are three flat storage buffers, so the optimizer is
//!   one dispatch and checkpoints are one copy.
//! - Per batch shape `(B, T)` a `Plan` holds the `work`/`ints` buffers laid
//!   out by [`Workspace`], a uniform buffer with one slot per dispatch, one bind
//!   group, and the [`Program`] (the list of dispatches), all built once and
//!   reused by every step of that shape.
//! - A training step is one command buffer and one submission: clears, every
//!   layer forward, head, loss, backward, weight-gradient GEMMs, norm/clip,
//!   optimizer, and a copy of the loss scalars into a ring of staging buffers.
//!   Nothing waits for the GPU inside a step; [`GpuModel::poll_stats`] collects
//!   finished steps' losses without blocking, [`GpuModel::finish`] waits.
//!
//! ## f16 recurrent weights (opt-in)
//! With [`GpuModel::with_f16_weights`] (or the context's default,
//! `RECURRENT_GPU_F16=1`), the model keeps a half-precision copy of every
//! layer-direction's W_hh in its own buffer (`"whh.f16"`: binary16, two per
//! `u32`, rounded to nearest even exactly as [`super::half::round_to_f16`]),
//! and the per-step kernels read W_hh from it — the weight they re-read every
//! time step, half the bytes — while accumulating in f32. Everything else
//! stays f32: the master weights, the input projection and weight-gradient
//! GEMMs, the head, the gradients and the optimizer. The copy is refreshed by
//! `whh_to_f16` after every [`GpuModel::upload`] (and creation) and after
//! every optimizer step, inside that step's command buffer, so the next
//! step's forward and backward read the updated weights. Results then equal
//! the f32 path's on a model whose W_hh was rounded to f16 (to the usual
//! GPU-vs-CPU tolerances; `tests/gpu_f16.rs`) and differ from the unrounded
//! model's by the rounding (f16 keeps 11 significant bits: a relative error
//! of at most 2^-11 per weight). Off by default, and then nothing changes: the
//! same kernels, dispatches and bits as without the option. Its speed is
//! unmeasured on real GPUs so far.

use super::autotune::{GemmChoice, TIMED_RUNS};
use super::context::GpuContext;
use super::kernels::*;
use super::steptune::{step_candidates, StepDecision, StepKey, TunedStep, PRUNE_FACTOR};
use super::workspace::{Region, Workspace};
use crate::data::{Dataset, Inputs, Targets};
use crate::error::{Error, Result};
use crate::model::config::{Cell, ModelConfig, Nonlinearity, OutputMode};
use crate::model::params::Layout;
use crate::model::{Model, StepOptions, StepStats};
use crate::optim::{AdamStep, Optimizer, OptimizerKind};
use crate::tensor::Tensor;
use crate::Loss;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Staging buffers for step statistics: up to this many steps may be in
/// flight before `train_step` waits for the oldest (bounds the CPU run-ahead).
pub const STATS_RING: usize = 4;

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

/// Dispatch index ranges of a plan's program.
#[derive(Clone, Copy, Debug, Default)]
struct Phases {
    /// `0..forward`: embedding, layers, head.
    forward: usize,
    /// `forward..loss`: the loss kernel (ce or mse: both recorded, one used).
    loss_ce: usize,
    loss_mse: usize,
    /// `..backward`: head backward, BPTT, weight gradients, embedding backward.
    backward: usize,
    /// `..optim`: gradient norm, clip and optimizer.
    optim: usize,
}

/// Everything for one batch shape.
struct Plan {
    ws: Workspace,
    /// `[work_len]` f32 activations and their gradients ("work").
    work: wgpu::Buffer,
    /// `[ints_len]` i32 lengths, token ids, class targets ("ints").
    ints: wgpu::Buffer,
    /// `[slots, 64]` u32: one 256-byte argument slot per dispatch ("uniforms").
    uniforms: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    /// `bind_group` with the f16 copy of W_hh at binding 4 (only with the copy).
    bind_group_f16: Option<wgpu::BindGroup>,
    program: Program,
    phases: Phases,
    norm_slot: u32,
    opt_slot: u32,
}

/// One staging buffer of the stats ring and its state.
struct StatsSlot {
    /// `[4]` f32: loss, count, norm, coef ("staging.stats.N").
    buffer: wgpu::Buffer,
    /// 0 idle, 1 mapping, 2 mapped, 3 failed.
    state: Arc<AtomicU8>,
    step: u64,
}

/// The f16 copy of W_hh and the program that refreshes it from params.
struct WhhF16 {
    /// `[words]` u32: binary16 pairs, one block per layer-direction ("whh.f16").
    buffer: wgpu::Buffer,
    /// Offset in halves of each layer-direction's block (even), [`Layout::layers`] order.
    offsets: Vec<u32>,
    /// Elements of each block (G·H·H).
    len: usize,
    /// One `whh_to_f16` per layer (both directions).
    program: Program,
    /// Its uniforms; `bind_group` is `[params, grads, state, (placeholder), whh.f16]`.
    _uniforms: wgpu::Buffer,
    _placeholder: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl WhhF16 {
    fn new(
        ctx: &GpuContext,
        config: &ModelConfig,
        layout: &Layout,
        buffers: [&wgpu::Buffer; 3],
    ) -> Result<WhhF16> {
        let [params, grads, state] = buffers;
        let len = config.cell.gates() * config.hidden * config.hidden;
        let mut offsets = Vec::with_capacity(layout.layers.len());
        let mut words = 0usize;
        for _ in &layout.layers {
            offsets.push(2 * words);
            words += len.div_ceil(2);
        }
        ctx.check_storage("the f16 copy of W_hh", (words.max(1) * 4) as u64)?;
        if 2 * words >= u32::MAX as usize {
            return Err(Error::Gpu(format!(
                "the f16 copy of W_hh has {} elements, more than 32-bit offsets address. HINT: use a smaller model",
                2 * words
            )));
        }
        let offsets: Vec<u32> = offsets.into_iter().map(|o| o as u32).collect();
        let dev = &ctx.device;
        let buffer = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("whh.f16"),
            size: (words.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        // Binding 3 (read-only ints) must hold some buffer other than the writable ones.
        let placeholder = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("whh.f16.placeholder"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mut program = Program::new(&ctx.limits, ctx.kernels.tunables);
        let nd = config.directions();
        for k in 0..config.layers {
            let (i0, i1) = (k * nd, k * nd + nd - 1);
            program.whh_to_f16(
                ConvertArgs {
                    len: len as u32,
                    src: [
                        layout.layers[i0].w_hh.start as u32,
                        layout.layers[i1].w_hh.start as u32,
                    ],
                    dst: [offsets[i0] / 2, offsets[i1] / 2],
                },
                nd as u32,
                &format!("{}.l{k}.whh_to_f16", config.cell.name()),
            )?;
        }
        let (uniforms, bind_group) = ctx.bind_program(
            "whh.f16",
            &program.uniforms,
            [params, grads, state, &placeholder, &buffer],
        );
        Ok(WhhF16 {
            buffer,
            offsets,
            len,
            program,
            _uniforms: uniforms,
            _placeholder: placeholder,
            bind_group,
        })
    }

    fn binds(&self) -> Binds<'_> {
        Binds {
            main: &self.bind_group,
            f16: Some(&self.bind_group),
        }
    }

    /// Records the refresh of the copy from params.
    fn encode(&self, ctx: &GpuContext, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let n = self.program.dispatches.len();
        self.program.encode(
            &ctx.kernels,
            &ctx.device,
            enc,
            self.binds(),
            0..n,
            "whh.f16",
        )
    }
}

/// A model on the GPU.
pub struct GpuModel {
    ctx: Arc<GpuContext>,
    config: ModelConfig,
    layout: Layout,
    /// `[P]` parameters in [`Layout`] order ("params").
    params: wgpu::Buffer,
    /// `[P]` gradients in [`Layout`] order ("grads").
    grads: wgpu::Buffer,
    /// `[2P]` optimizer state: SGD momentum / Adam exp_avg, then exp_avg_sq ("optim.state").
    state: wgpu::Buffer,
    plans: HashMap<(usize, usize), Plan>,
    ring: Vec<StatsSlot>,
    /// Ring slots in submission order whose stats are not collected yet.
    in_flight: VecDeque<usize>,
    /// Statistics read back but not handed out yet, oldest first.
    ready: Vec<StepStats>,
    /// The f16 copy of W_hh the step kernels read, when on.
    whh16: Option<WhhF16>,
    /// The step kernels' default tile for this model's plans (the context's
    /// unless [`GpuModel::set_step_tile`] changed it).
    step_tile: StepTile,
    /// `step_tile` was set by `RECURRENT_STEP_TILE` or [`GpuModel::set_step_tile`]:
    /// every plan uses it, none is tuned.
    step_tile_pinned: bool,
    /// The step tile of the plans of each batch size, and how it was chosen
    /// ([`super::steptune`]): filled as plans are built.
    step_tiles: HashMap<usize, TunedStep>,
    /// Every backward also computes the gradient of the bottom layer's
    /// input ([`GpuModel::set_input_gradient`]).
    input_grad: bool,
    /// Submissions made (for the report below).
    pub submissions: u64,
}

fn f32_bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

fn gemm_args() -> GemmArgs {
    GemmArgs::default()
}

impl GpuModel {
    /// Uploads `model`'s parameters to the GPU of `ctx`. The step kernels
    /// read W_hh in f16 if the context says so ([`GpuContext::f16_weights`]).
    pub fn new(ctx: Arc<GpuContext>, model: &Model) -> Result<GpuModel> {
        let f16 = ctx.f16_weights();
        Self::with_f16_weights(ctx, model, f16)
    }

    /// [`GpuModel::new`] with the f16 copy of W_hh on or off whatever the
    /// context's default (see the module docs).
    pub fn with_f16_weights(ctx: Arc<GpuContext>, model: &Model, f16: bool) -> Result<GpuModel> {
        let config = model.config().clone();
        let layout = model.layout().clone();
        let ctx_step_tile = ctx.kernels.tunables.step_tile();
        let step_tile_pinned = ctx.kernels.tunables.step_tile_pinned;
        let p = layout.total.max(1);
        ctx.check_storage("the parameters", (p * 4) as u64)?;
        ctx.check_storage("the optimizer state", (2 * p * 4) as u64)?;
        let dev = &ctx.device;
        let mk = |label: &str, len: usize| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (len * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let params = mk("params", p);
        let grads = mk("grads", p);
        let state = mk("optim.state", 2 * p);
        ctx.queue
            .write_buffer(&params, 0, f32_bytes(model.params()));
        let whh16 = if f16 {
            Some(WhhF16::new(
                &ctx,
                &config,
                &layout,
                [&params, &grads, &state],
            )?)
        } else {
            None
        };
        let ring = (0..STATS_RING)
            .map(|i| StatsSlot {
                buffer: dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("staging.stats.{i}")),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                state: Arc::new(AtomicU8::new(0)),
                step: 0,
            })
            .collect();
        let mut g = GpuModel {
            ctx,
            config,
            layout,
            params,
            grads,
            state,
            plans: HashMap::new(),
            ring,
            in_flight: VecDeque::new(),
            ready: Vec::new(),
            whh16,
            step_tile: ctx_step_tile,
            step_tile_pinned,
            step_tiles: HashMap::new(),
            input_grad: false,
            submissions: 0,
        };
        g.refresh_whh16()?;
        Ok(g)
    }

    /// Refreshes the f16 copy of W_hh from params (own submission), if the model has one.
    fn refresh_whh16(&mut self) -> Result<()> {
        let Some(w) = &self.whh16 else {
            return Ok(());
        };
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("whh.f16"),
            });
        w.encode(&self.ctx, &mut enc)?;
        self.ctx.queue.submit([enc.finish()]);
        self.submissions += 1;
        Ok(())
    }

    /// Do the step kernels read W_hh from an f16 copy?
    pub fn f16_weights(&self) -> bool {
        self.whh16.is_some()
    }

    /// The f16 copy of each layer-direction's W_hh as the GPU holds it
    /// (binary16 bits, [`Layout::layers`] order, each `[G*H, H]` row-major),
    /// or `None` without the copy. Waits for queued steps. For tests and inspection.
    pub fn whh_f16_bits(&self) -> Result<Option<Vec<Vec<u16>>>> {
        let Some(w) = &self.whh16 else {
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

    /// The tile the per-step kernels run with by default ([`StepTile`]):
    /// the context's, or what [`GpuModel::set_step_tile`] set. With tuning
    /// on, a batch size's plans may run another ([`GpuModel::step_tile_for`]).
    pub fn step_tile(&self) -> StepTile {
        self.step_tile
    }

    /// The step tile of the plans for batches of `b` rows and how it was
    /// chosen, once such a plan was built ([`super::steptune`]).
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
            self.plans.clear();
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
        if on != self.input_grad {
            self.input_grad = on;
            self.plans.clear();
        }
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

    /// Every dispatch one training step records for batch shape `(b, t)`,
    /// in program order: kernel, grid, label and tile (builds the plan if
    /// needed). Without the refresh of the f16 copy of W_hh. For tests and inspection.
    pub fn dispatches(&mut self, b: usize, t: usize) -> Result<Vec<Dispatch>> {
        Ok(self.plan(b, t)?.program.dispatches.clone())
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
        let ctx = self.ctx.clone();
        let kernels = &ctx.kernels;
        let tun = kernels.tunables;
        let mut out = format!(
            "tunables tile={} wg_small={} wg_reduce={} norm_groups={} step={}\n",
            tun.tile, tun.wg_small, tun.wg_reduce, tun.norm_groups, tun.step
        );
        let trace = |out: &mut String, pg: &Program| {
            for (i, d) in pg.dispatches.iter().enumerate() {
                let consts: Vec<String> = kernels
                    .constants_of(d)
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                let start = d.slot as usize * SLOT_BYTES as usize;
                let mut bytes = &pg.uniforms[start..start + SLOT_BYTES as usize];
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
        trace(&mut out, &plan.program);
        if let Some(w) = &self.whh16 {
            out.push_str("whh.f16 refresh\n");
            trace(&mut out, &w.program);
        }
        Ok(out)
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

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
            .write_buffer(&self.params, 0, f32_bytes(params));
        self.refresh_whh16()
    }

    /// Number of parameters P.
    pub fn num_params(&self) -> usize {
        self.layout.total
    }

    /// The optimizer state buffer `[2P]` (waits for queued steps).
    pub(crate) fn read_state(&self) -> Result<Vec<f32>> {
        self.read(&self.state, 0, 2 * self.layout.total)
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
        self.ctx.queue.write_buffer(&self.state, 0, f32_bytes(s));
        Ok(())
    }

    /// The parameters, flat in [`Layout`] order (waits for queued steps).
    pub fn download(&self) -> Result<Vec<f32>> {
        self.read(&self.params, 0, self.layout.total)
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

    /// Number of dispatches one training step records for batch shape `(b, t)`
    /// (with the f16 copy of W_hh, its refresh after the optimizer too: one per layer).
    pub fn dispatches_per_step(&mut self, b: usize, t: usize) -> Result<usize> {
        let refresh = self
            .whh16
            .as_ref()
            .map_or(0, |w| w.program.dispatches.len());
        Ok(self.plan(b, t)?.phases.optim - 1 + refresh)
    }

    /// Every GEMM of a training step for batch shape `(b, t)`, in program
    /// order, with the configuration it runs (builds the plan if needed, which
    /// tunes shapes new to the context).
    pub fn gemm_choices(&mut self, b: usize, t: usize) -> Result<Vec<GemmChoice>> {
        Ok(self.plan(b, t)?.program.gemms.clone())
    }

    /// Reads `len` f32 from `buf` at element `off` (blocking).
    fn read(&self, buf: &wgpu::Buffer, off: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = self
            .ctx
            .read_bytes_at(buf, (off * 4) as u64, (len * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The plan of batch shape `(b, t)`, built on first use (measuring the
    /// step tile first when the model's shape is new and tuning is on).
    fn plan(&mut self, b: usize, t: usize) -> Result<&Plan> {
        if !self.plans.contains_key(&(b, t)) {
            let plan = self.tuned_plan(b, t)?;
            self.plans.insert((b, t), plan);
        }
        Ok(&self.plans[&(b, t)])
    }

    /// What the step tuner ([`super::steptune`]) caches the tile of batches
    /// of `b` rows under.
    pub fn step_key(&self, b: usize) -> StepKey {
        StepKey {
            cell: self.config.cell,
            hidden: self.config.hidden as u32,
            layers: self.config.layers as u32,
            directions: self.config.directions() as u32,
            batch: b as u32,
            f16: self.whh16.is_some(),
        }
    }

    /// The plan of `(b, t)` with the step tile of batches of `b` rows:
    /// pinned, off or already decided (by this model or on the context),
    /// else measured now ([`super::steptune`]).
    fn tuned_plan(&mut self, b: usize, t: usize) -> Result<Plan> {
        if let Some(d) = self.step_tiles.get(&b) {
            return self.build_plan(b, t, d.tile);
        }
        let decided = if self.step_tile_pinned {
            Some(TunedStep::unmeasured(self.step_tile, StepDecision::Pinned))
        } else if !self.ctx.autotune() {
            Some(TunedStep::unmeasured(self.step_tile, StepDecision::Off))
        } else {
            self.ctx.step_tuner.lookup(&self.step_key(b))
        };
        if let Some(d) = decided {
            let tile = d.tile;
            self.step_tiles.insert(b, d);
            return self.build_plan(b, t, tile);
        }
        let cands = step_candidates(self.step_tile, &self.step_key(b), &self.ctx.limits);
        let first = self.build_plan(b, t, cands[0])?;
        let decision = if cands.len() == 1 {
            (TunedStep::unmeasured(cands[0], StepDecision::Single), first)
        } else {
            self.measure_step_tiles(&cands, first, t)?
        };
        self.ctx
            .step_tuner
            .insert(self.step_key(b), decision.0.clone());
        self.step_tiles.insert(b, decision.0);
        Ok(decision.1)
    }

    /// Times one forward+backward of each candidate's plan (all on the
    /// workspace of `first`, the plan of `cands[0]`, with every sequence
    /// `t` steps long) and returns the decision with the winner's plan.
    fn measure_step_tiles(
        &self,
        cands: &[StepTile],
        first: Plan,
        t: usize,
    ) -> Result<(TunedStep, Plan)> {
        let b = first.ws.b;
        self.ctx.queue.write_buffer(
            &first.ints,
            first.ws.lengths.off as u64 * 4,
            bytemuck::cast_slice(&vec![t as i32; b]),
        );
        // A candidate that fails to build or run (a driver refusing its
        // pipeline) is left out; the default (first) must run.
        let others: Vec<Option<Plan>> = cands[1..]
            .iter()
            .map(|&c| self.plan_on(&first, c).ok())
            .collect();
        let mut plans: Vec<Option<Plan>> = std::iter::once(Some(first)).chain(others).collect();
        let run = |plan: &Plan| -> Result<f64> {
            let enc = self.encode_plan(plan, None, true, None)?;
            let cmd = enc.finish();
            let t0 = Instant::now();
            self.ctx.queue.submit([cmd]);
            self.ctx.wait()?;
            Ok(t0.elapsed().as_secs_f64() * 1e3)
        };
        // Runs candidate i (if still in) and returns its time; a failure
        // drops it, or is the error for the default.
        let attempt = |plans: &mut Vec<Option<Plan>>, i: usize| -> Result<Option<f64>> {
            let Some(p) = &plans[i] else { return Ok(None) };
            match run(p) {
                Ok(ms) => Ok(Some(ms)),
                Err(e) if i == 0 => Err(e),
                Err(_) => {
                    plans[i] = None;
                    Ok(None)
                }
            }
        };
        // Compile every pipeline and warm up, then interleaved timed runs;
        // after the first round only candidates within PRUNE_FACTOR of the
        // fastest run again (the others keep their one time).
        for i in 0..plans.len() {
            attempt(&mut plans, i)?;
        }
        let mut times = vec![Vec::with_capacity(TIMED_RUNS); plans.len()];
        for round in 0..TIMED_RUNS {
            let best = times
                .iter()
                .filter_map(|t: &Vec<f64>| t.first().copied())
                .fold(f64::INFINITY, f64::min);
            for (i, ti) in times.iter_mut().enumerate() {
                if round == 0 || ti.first().is_some_and(|&t0| t0 <= PRUNE_FACTOR * best) {
                    if let Some(ms) = attempt(&mut plans, i)? {
                        ti.push(ms);
                    }
                }
            }
        }
        let medians: Vec<Option<f64>> = times
            .into_iter()
            .zip(&plans)
            .map(|(t, p)| p.as_ref().and_then(|_| crate::timing::median(&t)))
            .collect();
        let decision = TunedStep::fastest(cands, &medians);
        let best = cands
            .iter()
            .position(|&c| c == decision.tile)
            .expect("the winner is a candidate");
        let plan = plans.swap_remove(best).expect("the winner ran");
        Ok((decision, plan))
    }

    /// A plan with step tile `tile` for the workspace of `base` (its work
    /// and ints buffers shared, its own program, uniforms and bind groups).
    fn plan_on(&self, base: &Plan, tile: StepTile) -> Result<Plan> {
        self.plan_with_buffers(base.ws.clone(), base.work.clone(), base.ints.clone(), tile)
    }

    fn build_plan(&self, b: usize, t: usize, tile: StepTile) -> Result<Plan> {
        let ctx = &self.ctx;
        let tun = ctx.kernels.tunables;
        let ws = Workspace::new(
            &self.config,
            b,
            t,
            tun.norm_groups as usize,
            self.input_grad,
        );
        ctx.check_storage(
            &format!("the workspace for batch {b} x {t} steps"),
            (ws.work_len * 4) as u64,
        )?;
        if ws.work_len >= u32::MAX as usize {
            return Err(Error::Gpu(format!(
                "the workspace for batch {b} x {t} steps has {} elements, more than 32-bit offsets address. HINT: lower the batch size",
                ws.work_len
            )));
        }
        let dev = &ctx.device;
        let work = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("work"),
            size: (ws.work_len * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let ints = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ints"),
            size: (ws.ints_len * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.plan_with_buffers(ws, work, ints, tile)
    }

    /// The plan of workspace `ws` on buffers `work` and `ints` (laid out by
    /// `ws`) with step tile `tile`: its program recorded, uniforms and bind groups made.
    fn plan_with_buffers(
        &self,
        ws: Workspace,
        work: wgpu::Buffer,
        ints: wgpu::Buffer,
        tile: StepTile,
    ) -> Result<Plan> {
        let ctx = &self.ctx;
        let (program, phases, norm_slot, opt_slot) = self.record(&ws, tile)?;
        let (uniforms, bind_group) = ctx.bind_program(
            "plan",
            &program.uniforms,
            [&self.params, &self.grads, &work, &ints, &self.state],
        );
        let bind_group_f16 = self.whh16.as_ref().map(|w| {
            ctx.bind_group(
                "plan.f16",
                &uniforms,
                [&self.params, &self.grads, &work, &ints, &w.buffer],
            )
        });
        Ok(Plan {
            ws,
            work,
            ints,
            uniforms,
            bind_group,
            bind_group_f16,
            program,
            phases,
            norm_slot,
            opt_slot,
        })
    }

    /// Records every dispatch of a training step for workspace `ws`, the
    /// step kernels with tile `tile`.
    fn record(&self, ws: &Workspace, tile: StepTile) -> Result<(Program, Phases, u32, u32)> {
        let cfg = &self.config;
        let lay = &self.layout;
        let ctx = &self.ctx;
        let mut pg = Program::new(&ctx.limits, ctx.kernels.tunables.with_step_tile(tile));
        pg.split_partials = Some(ws.split.off);
        // Each GEMM shape's configuration comes from the context's tuner: new
        // shapes are measured here, while the plan is built, never inside a step.
        pg.tuner = Some(ctx.clone());
        // With the f16 copy, the step kernels read W_hh from it (offsets in halves).
        pg.whh_f16 = self.whh16.is_some();
        let whh_at = |i: usize| -> u32 {
            match &self.whh16 {
                Some(w) => w.offsets[i],
                None => lay.layers[i].w_hh.start as u32,
            }
        };
        let (b, t) = (ws.b as u32, ws.t as u32);
        let (h, dirs, d) = (
            cfg.hidden as u32,
            cfg.directions() as u32,
            cfg.top_width() as u32,
        );
        let gh = cfg.cell.gates() as u32 * h;
        let o = cfg.out_features as u32;
        let tb = t * b;
        let bh = b * h;
        let nd = dirs as usize;
        // Param offset step between the two directions of a layer (same for every tensor).
        let pdir = |k: usize| -> u32 {
            if nd == 2 {
                (lay.layers[k * 2 + 1].w_ih.start - lay.layers[k * 2].w_ih.start) as u32
            } else {
                0
            }
        };
        let name = cfg.cell.name();
        let (fwd_kernel, bwd_kernel) = match cfg.cell {
            Cell::Lstm => (Kernel::LstmStepForward, Kernel::LstmStepBackward),
            Cell::Gru => (Kernel::GruStepForward, Kernel::GruStepBackward),
            Cell::Rnn => (Kernel::RnnStepForward, Kernel::RnnStepBackward),
        };
        let act = match cfg.nonlinearity {
            Nonlinearity::Tanh => 0,
            Nonlinearity::Relu => 1,
        };
        let embed_args = |table: u32| EmbedArgs {
            b,
            t_len: t,
            width: cfg.input as u32,
            vocab: cfg.vocab.unwrap_or(0) as u32,
            ids_off: ws.ids.off,
            table_off: table,
            x_off: ws.x0.off,
            dx_off: ws.layers[0].dx.off,
        };
        let step_args = |k: usize, s: u32| -> StepArgs {
            let lw = &ws.layers[k];
            let two = |r: Region| [r.dir(0, nd), r.dir(nd - 1, nd)];
            let sl0 = &lay.layers[k * nd];
            let sl1 = &lay.layers[k * nd + nd - 1];
            StepArgs {
                t_len: t,
                b,
                h,
                s,
                ld: d,
                act,
                has_dy: 0,
                has_len: 0,
                len_off: ws.lengths.off,
                y_off: lw.y.off,
                dy_off: 0,
                carry_off: lw.carry.off,
                whh: [whh_at(k * nd), whh_at(k * nd + nd - 1)],
                bhh: [sl0.b_hh.start as u32, sl1.b_hh.start as u32],
                gx: two(lw.gx),
                hs: two(lw.hs),
                cs: two(lw.cs),
                sv: two(lw.sv),
                dg: two(lw.dg),
                dgh: two(lw.dgh),
                dc: two(lw.dc),
            }
        };
        // ---------------------------------------------------------- forward
        if let Some(e) = &lay.embed {
            pg.embed(
                Kernel::EmbedForward,
                embed_args(e.start as u32),
                "embed.forward",
            )?;
        }
        for k in 0..cfg.layers {
            let lw = &ws.layers[k];
            let i_k = cfg.layer_input(k) as u32;
            let x = if k == 0 {
                ws.x0.off
            } else {
                ws.layers[k - 1].y.off
            };
            let sl = &lay.layers[k * nd];
            // Gx = X·W_ihᵀ + b_ih for all steps, both directions (z).
            pg.gemm(
                GemmArgs {
                    m: tb,
                    n: gh,
                    k: i_k,
                    a_buf: BUF_WORK,
                    a_off: x,
                    lda: i_k,
                    b_buf: BUF_PARAMS,
                    b_off: sl.w_ih.start as u32,
                    ldb: i_k,
                    b_t: 1,
                    c_buf: BUF_WORK,
                    c_off: lw.gx.off,
                    ldc: gh,
                    bias_buf: BUF_PARAMS,
                    bias_off: sl.b_ih.start as u32,
                    has_bias: 1,
                    b_z: pdir(k),
                    c_z: lw.gx.len / dirs,
                    bias_z: pdir(k),
                    ..gemm_args()
                },
                dirs,
                &format!("{name}.l{k}.input_projection"),
            )?;
            // A persistent tile's one dispatch runs every step.
            for s in 0..if tile.persistent { 1 } else { t } {
                let mut a = step_args(k, s);
                a.has_len = 1;
                pg.step(fwd_kernel, a, dirs, &format!("{name}.l{k}.step_forward"))?;
            }
        }
        let top = &ws.layers[cfg.layers - 1];
        let hw = lay.head_w.start as u32;
        match cfg.output {
            OutputMode::Last => {
                // out = Σ_dir h_n(dir)·W[:, dir*H..]ᵀ + bias
                for dir in 0..nd {
                    let last_slot = if dir == 1 { 0 } else { t };
                    pg.gemm(
                        GemmArgs {
                            m: b,
                            n: o,
                            k: h,
                            beta: if dir == 0 { 0.0 } else { 1.0 },
                            a_buf: BUF_WORK,
                            a_off: top.hs.dir(dir, nd) + last_slot * bh,
                            lda: h,
                            b_buf: BUF_PARAMS,
                            b_off: hw + dir as u32 * h,
                            ldb: d,
                            b_t: 1,
                            c_buf: BUF_WORK,
                            c_off: ws.out.off,
                            ldc: o,
                            bias_buf: BUF_PARAMS,
                            bias_off: lay.head_b.start as u32,
                            has_bias: (dir == 0) as u32,
                            ..gemm_args()
                        },
                        1,
                        "head.forward",
                    )?;
                }
            }
            OutputMode::Sequence => {
                pg.gemm(
                    GemmArgs {
                        m: tb,
                        n: o,
                        k: d,
                        a_buf: BUF_WORK,
                        a_off: top.y.off,
                        lda: d,
                        b_buf: BUF_PARAMS,
                        b_off: hw,
                        ldb: d,
                        b_t: 1,
                        c_buf: BUF_WORK,
                        c_off: ws.out.off,
                        ldc: o,
                        bias_buf: BUF_PARAMS,
                        bias_off: lay.head_b.start as u32,
                        has_bias: 1,
                        ..gemm_args()
                    },
                    1,
                    "head.forward",
                )?;
            }
        }
        let forward = pg.dispatches.len();
        // ---------------------------------------------------------- loss
        let head = HeadArgs {
            rows: ws.rows as u32,
            o,
            b,
            seq: (cfg.output == OutputMode::Sequence) as u32,
            has_len: 1,
            len_off: ws.lengths.off,
            out_off: ws.out.off,
            dout_off: ws.dout.off,
            target_off: ws.classes.off,
            scalars_off: ws.scalars.off,
        };
        pg.loss(Kernel::LossCe, head, "loss.ce")?;
        let loss_ce = pg.dispatches.len();
        pg.loss(
            Kernel::LossMse,
            HeadArgs {
                target_off: ws.values.off,
                ..head
            },
            "loss.mse",
        )?;
        let loss_mse = pg.dispatches.len();
        // ---------------------------------------------------------- backward
        match cfg.output {
            OutputMode::Last => {
                for dir in 0..nd {
                    let last_slot = if dir == 1 { 0 } else { t };
                    // dW_head[:, dir*H..] += doutᵀ·h_n(dir)
                    pg.gemm(
                        GemmArgs {
                            m: o,
                            n: h,
                            k: b,
                            beta: 1.0,
                            a_buf: BUF_WORK,
                            a_off: ws.dout.off,
                            lda: o,
                            a_t: 1,
                            b_buf: BUF_WORK,
                            b_off: top.hs.dir(dir, nd) + last_slot * bh,
                            ldb: h,
                            c_buf: BUF_GRADS,
                            c_off: hw + dir as u32 * h,
                            ldc: d,
                            ..gemm_args()
                        },
                        1,
                        "head.backward.weight",
                    )?;
                }
                // carry of the top layer = dout·W_head  [B, D]
                pg.gemm(
                    GemmArgs {
                        m: b,
                        n: d,
                        k: o,
                        a_buf: BUF_WORK,
                        a_off: ws.dout.off,
                        lda: o,
                        b_buf: BUF_PARAMS,
                        b_off: hw,
                        ldb: d,
                        c_buf: BUF_WORK,
                        c_off: top.carry.off,
                        ldc: d,
                        ..gemm_args()
                    },
                    1,
                    "head.backward.input",
                )?;
            }
            OutputMode::Sequence => {
                pg.gemm(
                    GemmArgs {
                        m: o,
                        n: d,
                        k: tb,
                        beta: 1.0,
                        a_buf: BUF_WORK,
                        a_off: ws.dout.off,
                        lda: o,
                        a_t: 1,
                        b_buf: BUF_WORK,
                        b_off: top.y.off,
                        ldb: d,
                        c_buf: BUF_GRADS,
                        c_off: hw,
                        ldc: d,
                        ..gemm_args()
                    },
                    1,
                    "head.backward.weight",
                )?;
                pg.gemm(
                    GemmArgs {
                        m: tb,
                        n: d,
                        k: o,
                        a_buf: BUF_WORK,
                        a_off: ws.dout.off,
                        lda: o,
                        b_buf: BUF_PARAMS,
                        b_off: hw,
                        ldb: d,
                        c_buf: BUF_WORK,
                        c_off: ws.dy_top.off,
                        ldc: d,
                        ..gemm_args()
                    },
                    1,
                    "head.backward.input",
                )?;
            }
        }
        pg.column_sums(
            GemmArgs {
                m: ws.rows as u32,
                n: o,
                a_buf: BUF_WORK,
                a_off: ws.dout.off,
                lda: o,
                c_buf: BUF_GRADS,
                c_off: lay.head_b.start as u32,
                ..gemm_args()
            },
            1,
            "head.backward.bias",
        )?;
        for k in (0..cfg.layers).rev() {
            let lw = &ws.layers[k];
            let i_k = cfg.layer_input(k) as u32;
            let x = if k == 0 {
                ws.x0.off
            } else {
                ws.layers[k - 1].y.off
            };
            let (has_dy, dy_off) = if k + 1 < cfg.layers {
                (1, ws.layers[k + 1].dx.off)
            } else if cfg.output == OutputMode::Sequence {
                (1, ws.dy_top.off)
            } else {
                (0, 0)
            };
            for s in 0..if tile.persistent { 1 } else { t } {
                let mut a = step_args(k, s);
                a.has_len = 1;
                a.has_dy = has_dy;
                a.dy_off = dy_off;
                pg.step(bwd_kernel, a, dirs, &format!("{name}.l{k}.step_backward"))?;
            }
            let sl = &lay.layers[k * nd];
            let dg = lw.dg;
            let dgh = if cfg.cell == Cell::Gru { lw.dgh } else { lw.dg };
            let gsize = dg.len / dirs;
            // dW_ih += dGᵀ·X
            pg.gemm(
                GemmArgs {
                    m: gh,
                    n: i_k,
                    k: tb,
                    beta: 1.0,
                    a_buf: BUF_WORK,
                    a_off: dg.off,
                    lda: gh,
                    a_t: 1,
                    b_buf: BUF_WORK,
                    b_off: x,
                    ldb: i_k,
                    c_buf: BUF_GRADS,
                    c_off: sl.w_ih.start as u32,
                    ldc: i_k,
                    a_z: gsize,
                    c_z: pdir(k),
                    ..gemm_args()
                },
                dirs,
                &format!("{name}.l{k}.weight_ih_grad"),
            )?;
            pg.column_sums(
                GemmArgs {
                    m: tb,
                    n: gh,
                    a_buf: BUF_WORK,
                    a_off: dg.off,
                    lda: gh,
                    c_buf: BUF_GRADS,
                    c_off: sl.b_ih.start as u32,
                    a_z: gsize,
                    c_z: pdir(k),
                    ..gemm_args()
                },
                dirs,
                &format!("{name}.l{k}.bias_ih_grad"),
            )?;
            // dW_hh += dGhᵀ·H_prev; prev(t) for all t is slots 0..T (forward) or 1..T+1 (reverse).
            let hs_size = lw.hs.len / dirs;
            pg.gemm(
                GemmArgs {
                    m: gh,
                    n: h,
                    k: tb,
                    beta: 1.0,
                    a_buf: BUF_WORK,
                    a_off: dgh.off,
                    lda: gh,
                    a_t: 1,
                    b_buf: BUF_WORK,
                    b_off: lw.hs.off,
                    ldb: h,
                    c_buf: BUF_GRADS,
                    c_off: sl.w_hh.start as u32,
                    ldc: h,
                    a_z: gsize,
                    b_z: hs_size + bh,
                    c_z: pdir(k),
                    ..gemm_args()
                },
                dirs,
                &format!("{name}.l{k}.weight_hh_grad"),
            )?;
            pg.column_sums(
                GemmArgs {
                    m: tb,
                    n: gh,
                    a_buf: BUF_WORK,
                    a_off: dgh.off,
                    lda: gh,
                    c_buf: BUF_GRADS,
                    c_off: sl.b_hh.start as u32,
                    a_z: gsize,
                    c_z: pdir(k),
                    ..gemm_args()
                },
                dirs,
                &format!("{name}.l{k}.bias_hh_grad"),
            )?;
            // dX = Σ_dir dG(dir)·W_ih(dir)
            if lw.dx.len > 0 {
                for dir in 0..nd {
                    pg.gemm(
                        GemmArgs {
                            m: tb,
                            n: i_k,
                            k: gh,
                            beta: if dir == 0 { 0.0 } else { 1.0 },
                            a_buf: BUF_WORK,
                            a_off: dg.dir(dir, nd),
                            lda: gh,
                            b_buf: BUF_PARAMS,
                            b_off: lay.layers[k * nd + dir].w_ih.start as u32,
                            ldb: i_k,
                            c_buf: BUF_WORK,
                            c_off: lw.dx.off,
                            ldc: i_k,
                            ..gemm_args()
                        },
                        1,
                        &format!("{name}.l{k}.input_grad"),
                    )?;
                }
            }
        }
        if let Some(e) = &lay.embed {
            pg.embed(
                Kernel::EmbedBackward,
                embed_args(e.start as u32),
                "embed.backward",
            )?;
        }
        let backward = pg.dispatches.len();
        // ---------------------------------------------------------- optimizer
        let oa = OptArgs {
            n: lay.total as u32,
            scalars_off: ws.scalars.off,
            partials_off: ws.partials.off,
            partials: ctx.kernels.tunables.norm_groups,
            ..Default::default()
        };
        let norm_slot = pg.grad_norm(oa, "optim.grad_norm")?;
        let opt_slot = pg.optimizer(oa, "optim.step")?;
        let optim = pg.dispatches.len();
        Ok((
            pg,
            Phases {
                forward,
                loss_ce,
                loss_mse,
                backward,
                optim,
            },
            norm_slot,
            opt_slot,
        ))
    }

    /// Uploads a batch's inputs, lengths and (if `loss`) targets into the plan of its shape.
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
                q.write_buffer(
                    &plan.ints,
                    ws.ids.off as u64 * 4,
                    bytemuck::cast_slice(&ids),
                );
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
        Ok((b, t))
    }

    /// Records the dispatches of the given phases (and the clears backward needs) into one encoder.
    /// `optim` also clears the optimizer state first when this is the optimizer's first step.
    pub(crate) fn encode(
        &self,
        key: (usize, usize),
        loss: Option<Loss>,
        backward: bool,
        optim: Option<&Optimizer>,
    ) -> Result<wgpu::CommandEncoder> {
        self.encode_plan(&self.plans[&key], loss, backward, optim)
    }

    /// [`GpuModel::encode`] for `plan`.
    fn encode_plan(
        &self,
        plan: &Plan,
        loss: Option<Loss>,
        backward: bool,
        optim: Option<&Optimizer>,
    ) -> Result<wgpu::CommandEncoder> {
        let dev = &self.ctx.device;
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("step"),
        });
        if optim.is_some_and(|o| o.step == 1) {
            // A fresh optimizer: moments start at zero, as on the CPU.
            enc.clear_buffer(&self.state, 0, None);
        }
        if backward {
            enc.clear_buffer(&self.grads, 0, None);
            if plan.ws.zeroed.len > 0 {
                enc.clear_buffer(
                    &plan.work,
                    plan.ws.zeroed.off as u64 * 4,
                    Some(plan.ws.zeroed.len.div_ceil(4) as u64 * 16),
                );
            }
        }
        let ph = plan.phases;
        let k = &self.ctx.kernels;
        let pg = &plan.program;
        let bg = Binds {
            main: &plan.bind_group,
            f16: plan.bind_group_f16.as_ref(),
        };
        pg.encode(k, dev, &mut enc, bg, 0..ph.forward, "forward")?;
        match loss {
            Some(Loss::Ce) => pg.encode(k, dev, &mut enc, bg, ph.forward..ph.loss_ce, "loss")?,
            Some(Loss::Mse) => pg.encode(k, dev, &mut enc, bg, ph.loss_ce..ph.loss_mse, "loss")?,
            None => {}
        }
        if backward {
            pg.encode(k, dev, &mut enc, bg, ph.loss_mse..ph.backward, "backward")?;
        }
        if optim.is_some() {
            pg.encode(k, dev, &mut enc, bg, ph.backward..ph.optim, "optimizer")?;
            // The next step's kernels read the updated W_hh.
            if let Some(w) = &self.whh16 {
                w.encode(&self.ctx, &mut enc)?;
            }
        }
        Ok(enc)
    }

    /// Raw output of `data.x` (same semantics as [`Model::forward`]): `[N, out]` or `[N, T, out]`.
    pub fn forward(&mut self, data: &Dataset) -> Result<Tensor> {
        let key = self.upload_batch(data, None)?;
        let enc = self.encode(key, None, false, None)?;
        self.ctx.queue.submit([enc.finish()]);
        self.submissions += 1;
        let plan = &self.plans[&key];
        let out = self.read(
            &plan.work,
            plan.ws.out.off as usize,
            plan.ws.out.len as usize,
        )?;
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
        let key = self.upload_batch(data, Some(loss))?;
        let enc = self.encode(key, Some(loss), true, None)?;
        self.ctx.queue.submit([enc.finish()]);
        self.submissions += 1;
        let plan = &self.plans[&key];
        let l = self.read(&plan.work, plan.ws.scalars.off as usize, 1)?[0];
        let g = self.read(&self.grads, 0, self.layout.total)?;
        Ok((l, g))
    }

    /// Writes this step's optimizer arguments (clip, learning rate, bias corrections).
    fn set_optimizer_args(&mut self, key: (usize, usize), opts: &StepOptions, opt: &mut Optimizer) {
        opt.step += 1;
        let plan = self.plans.get_mut(&key).expect("plan exists");
        let mut a = OptArgs {
            n: self.layout.total as u32,
            scalars_off: plan.ws.scalars.off,
            partials_off: plan.ws.partials.off,
            partials: self.ctx.kernels.tunables.norm_groups,
            has_clip: opts.clip.is_some() as u32,
            max_norm: opts.clip.unwrap_or(0.0),
            ..Default::default()
        };
        match opt.kind {
            OptimizerKind::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => {
                a.kind = 0;
                a.lr = lr;
                a.momentum = momentum;
                a.weight_decay = weight_decay;
                a.nesterov = nesterov as u32;
                a.first = (opt.step == 1) as u32;
            }
            OptimizerKind::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let c = AdamStep::at(lr, beta1, beta2, opt.step);
                a.kind = 1;
                a.lr = lr;
                a.weight_decay = weight_decay;
                a.step_size = c.step_size;
                a.bc2_sqrt = c.bc2_sqrt;
                a.w1 = c.w1;
                a.beta2 = beta2;
                a.w2 = c.w2;
                a.eps = eps;
            }
        }
        plan.program.set_slot(plan.norm_slot, &a);
        plan.program.set_slot(plan.opt_slot, &a);
        let start = plan.norm_slot.min(plan.opt_slot) as usize * SLOT_BYTES as usize;
        let end = (plan.norm_slot.max(plan.opt_slot) as usize + 1) * SLOT_BYTES as usize;
        self.ctx.queue.write_buffer(
            &plan.uniforms,
            start as u64,
            &plan.program.uniforms[start..end],
        );
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
        // A free ring slot (waits only when STATS_RING steps are in flight).
        let slot = match (0..STATS_RING).find(|i| !self.in_flight.contains(i)) {
            Some(s) => s,
            None => {
                self.wait_oldest()?;
                (0..STATS_RING)
                    .find(|i| !self.in_flight.contains(i))
                    .expect("a slot was freed")
            }
        };
        let key = self.upload_batch(data, Some(opts.loss))?;
        self.set_optimizer_args(key, opts, opt);
        let mut enc = self.encode(key, Some(opts.loss), true, Some(opt))?;
        let plan = &self.plans[&key];
        let rs = &mut self.ring[slot];
        enc.copy_buffer_to_buffer(
            &plan.work,
            plan.ws.scalars.off as u64 * 4,
            &rs.buffer,
            0,
            16,
        );
        self.ctx.queue.submit([enc.finish()]);
        self.submissions += 1;
        rs.step = opt.step;
        rs.state.store(1, Ordering::SeqCst);
        let st = rs.state.clone();
        rs.buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            st.store(if r.is_ok() { 2 } else { 3 }, Ordering::SeqCst);
        });
        self.in_flight.push_back(slot);
        Ok(())
    }

    fn take(&mut self, slot: usize) -> Result<StepStats> {
        let rs = &self.ring[slot];
        let state = rs.state.load(Ordering::SeqCst);
        rs.state.store(0, Ordering::SeqCst);
        if state != 2 {
            return Err(Error::Gpu(
                "reading the step statistics failed (device lost?)".into(),
            ));
        }
        let v: Vec<f32> = {
            let view = rs
                .buffer
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("reading the step statistics failed: {e:?}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        rs.buffer.unmap();
        let (loss, norm) = (v[0], v[2]);
        if !loss.is_finite() || !norm.is_finite() {
            return Err(Error::Diverged {
                step: rs.step as usize,
                loss: if loss.is_finite() { norm } else { loss },
            });
        }
        Ok(StepStats {
            loss,
            grad_norm: norm,
        })
    }

    /// Waits for the oldest step in flight and queues its statistics.
    fn wait_oldest(&mut self) -> Result<()> {
        let slot = *self.in_flight.front().expect("a step in flight");
        while self.ring[slot].state.load(Ordering::SeqCst) == 1 {
            self.ctx.wait()?;
        }
        self.in_flight.pop_front();
        let s = self.take(slot)?;
        self.ready.push(s);
        Ok(())
    }

    /// Statistics of the steps that have finished, oldest first, without blocking.
    pub fn poll_stats(&mut self) -> Result<Vec<StepStats>> {
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        while let Some(&slot) = self.in_flight.front() {
            if self.ring[slot].state.load(Ordering::SeqCst) == 1 {
                break;
            }
            self.in_flight.pop_front();
            let s = self.take(slot)?;
            self.ready.push(s);
        }
        Ok(std::mem::take(&mut self.ready))
    }

    /// Waits for every submitted step; returns the statistics not collected yet.
    pub fn finish(&mut self) -> Result<Vec<StepStats>> {
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        Ok(std::mem::take(&mut self.ready))
    }

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
        let binds = Binds {
            main: &plan.bind_group,
            f16: plan.bind_group_f16.as_ref(),
        };
        let mut ranges = vec![
            (&plan.program, binds, 0..ph.forward),
            (&plan.program, binds, loss_range),
            (&plan.program, binds, rest),
        ];
        // With the f16 copy, its refresh after the optimizer belongs to the step.
        if let Some(w) = &self.whh16 {
            ranges.push((&w.program, w.binds(), 0..w.program.dispatches.len()));
        }
        let n: usize = ranges.iter().map(|r| r.2.len()).sum();
        let dev = &self.ctx.device;
        let mut recorded: Vec<(Kernel, String)> = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        // At most QUERY_SET_MAX_QUERIES / 2 dispatches per query set.
        let per_set = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;
        let mut chunks: Vec<(&Program, Binds<'_>, std::ops::Range<usize>)> = Vec::new();
        for (pg, bg, r) in ranges {
            let mut s = r.start;
            while s < r.end {
                let e = (s + per_set).min(r.end);
                chunks.push((pg, bg, s..e));
                s = e;
            }
        }
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("profile"),
        });
        if opt.step == 1 {
            enc.clear_buffer(&self.state, 0, None);
        }
        enc.clear_buffer(&self.grads, 0, None);
        if plan.ws.zeroed.len > 0 {
            enc.clear_buffer(
                &plan.work,
                plan.ws.zeroed.off as u64 * 4,
                Some(plan.ws.zeroed.len.div_ceil(4) as u64 * 16),
            );
        }
        let mut sets = Vec::new();
        for (pg, bg, c) in &chunks {
            let count = 2 * c.len() as u32;
            let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile.timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            pg.encode_timed(&self.ctx.kernels, dev, &mut enc, *bg, c.clone(), &qs, 0)?;
            let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile.resolve"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            enc.resolve_query_set(&qs, 0..count, &resolve, 0);
            recorded.extend(
                pg.dispatches[c.clone()]
                    .iter()
                    .map(|d| (d.kernel, d.label.clone())),
            );
            sets.push((qs, resolve, count));
        }
        self.ctx.queue.submit([enc.finish()]);
        self.submissions += 1;
        let period = self.ctx.queue.get_timestamp_period() as f64;
        for (_, resolve, count) in &sets {
            let raw = self.read_u64(resolve, *count as usize)?;
            for pair in raw.chunks_exact(2) {
                times.push(pair[1].saturating_sub(pair[0]) as f64 * period / 1e3);
            }
        }
        Ok(recorded
            .into_iter()
            .zip(times)
            .map(|((kernel, label), us)| DispatchTime { kernel, label, us })
            .collect())
    }

    fn read_u64(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<u64>> {
        let f = self.read(buf, 0, 2 * len)?;
        Ok(bytemuck::pod_collect_to_vec::<f32, u64>(&f))
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
