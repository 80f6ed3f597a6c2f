//! Recording a training step: every dispatch of forward, loss, backward
//! through time and the optimizer, layer by layer, into a [`Program`], in the
//! order and under the names of the CPU path (`cpu::forward_stack`,
//! `cpu::forward`'s head, `cpu::loss`, `cpu::backward`'s head,
//! `cpu::backward_stack`, the optimizer), so the two read side by side:
//!
//! | CPU path | here |
//! | --- | --- |
//! | `cpu::forward_stack` (embedding, `layer::forward` per layer) | [`Recorder::forward_stack`], [`Recorder::forward_layer`] |
//! | `cpu::forward` (head) | [`Recorder::head_forward`] |
//! | `cpu::loss::loss_and_grad` | [`Recorder::loss`] |
//! | `cpu::backward` (head) | [`Recorder::head_backward`] |
//! | `cpu::backward_stack` (`layer::backward` per layer, embedding) | [`Recorder::backward_stack`], [`Recorder::backward_layer`] |
//! | `Optimizer::update`, `clip_grad_norm` | [`Recorder::optimizer`] |
//!
//! Nothing here decides anything: the step tile, the GEMM configurations
//! and the f16 copy come in [`Resolved`]; where everything lives comes from
//! the [`Workspace`]. The recording needs no device.

use super::args::{DropArgs, EmbedArgs, Gemm, HeadArgs, Matrix, OptArgs, StepArgs};
use super::program::{Program, Resolved};
use super::registry::Kernel;
use super::workspace::{Region, Slot, Workspace};
use crate::dropout::{Rate, Site};
use crate::error::Result;
use crate::model::config::{Cell, ModelConfig, Nonlinearity, OutputMode};
use crate::model::params::Layout;

/// Dispatch index ranges of a recorded training step.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// `0..forward`: embedding, layers, head.
    pub forward: usize,
    /// `forward..loss_ce`: the ce loss; `loss_ce..loss_mse`: the mse loss
    /// (both recorded, one used).
    pub loss_ce: usize,
    pub loss_mse: usize,
    /// `loss_mse..backward`: head backward, BPTT, weight gradients, embedding backward.
    pub backward: usize,
    /// `backward..optim`: gradient norm, clip and optimizer.
    pub optim: usize,
}

/// A recorded training step.
pub struct Recording {
    pub program: Program,
    pub phases: Phases,
    /// Uniform slots of the gradient norm and the optimizer (rewritten every step).
    pub norm_slot: u32,
    pub opt_slot: u32,
}

/// What the recording reads of the model.
pub struct StepModel<'a> {
    pub config: &'a ModelConfig,
    pub layout: &'a Layout,
    /// The start of each layer-direction's W_hh as the step kernels read it
    /// (in params, or in halves into the f16 copy).
    pub whh: &'a [u32],
    /// Backward also completes the gradients of the initial states
    /// ([`Recorder::initial_state_grad`]).
    pub state_grad: bool,
}

/// Records the training step of `model` over workspace `ws`.
pub fn training_step(model: &StepModel, ws: &Workspace, resolved: Resolved) -> Result<Recording> {
    let mut r = Recorder::new(model, ws, resolved);
    r.forward_stack()?;
    r.head_forward()?;
    let forward = r.pg.dispatches.len();
    r.loss(Kernel::LossCe)?;
    let loss_ce = r.pg.dispatches.len();
    r.loss(Kernel::LossMse)?;
    let loss_mse = r.pg.dispatches.len();
    r.head_backward()?;
    r.backward_stack()?;
    let backward = r.pg.dispatches.len();
    let (norm_slot, opt_slot) = r.optimizer()?;
    let optim = r.pg.dispatches.len();
    Ok(Recording {
        program: r.pg,
        phases: Phases {
            forward,
            loss_ce,
            loss_mse,
            backward,
            optim,
        },
        norm_slot,
        opt_slot,
    })
}

/// Records the recurrent stack alone, as the op [`super::GpuStack`] runs it:
/// `forward_stack`, then `backward_stack` (its gradient comes in `dy_top`
/// and the carries, from the application), no head, loss or optimizer.
/// The loss and optimizer phases are empty.
pub fn stack_step(model: &StepModel, ws: &Workspace, resolved: Resolved) -> Result<Recording> {
    let mut r = Recorder::new(model, ws, resolved);
    r.forward_stack()?;
    let forward = r.pg.dispatches.len();
    r.backward_stack()?;
    let backward = r.pg.dispatches.len();
    Ok(Recording {
        program: r.pg,
        phases: Phases {
            forward,
            loss_ce: forward,
            loss_mse: forward,
            backward,
            optim: backward,
        },
        norm_slot: 0,
        opt_slot: 0,
    })
}

/// The recording in progress and the sizes every part of it uses.
pub struct Recorder<'a> {
    cfg: &'a ModelConfig,
    lay: &'a Layout,
    ws: &'a Workspace,
    whh: &'a [u32],
    state_grad: bool,
    pg: Program,
    /// Batch rows, steps.
    b: u32,
    t: u32,
    /// Hidden units, directions, the top layer's output width (dirs·H).
    h: u32,
    dirs: u32,
    d: u32,
    /// Gate rows per direction (G·H), output features.
    gh: u32,
    o: u32,
    /// The cell's step kernels.
    step_forward: Kernel,
    step_backward: Kernel,
}

impl<'a> Recorder<'a> {
    fn new(model: &StepModel<'a>, ws: &'a Workspace, resolved: Resolved) -> Recorder<'a> {
        Self::on(model, ws, Program::new(resolved))
    }

    /// A recorder that appends to `pg` (with its split-K partials in `ws`):
    /// one of several stacks recorded into one program (sequence to
    /// sequence); [`Recorder::finish`] gives the program back.
    pub fn on(model: &StepModel<'a>, ws: &'a Workspace, mut pg: Program) -> Recorder<'a> {
        pg.resolved.split_partials = Some(ws.split.off);
        let cfg = model.config;
        let (step_forward, step_backward) = match cfg.cell {
            Cell::Lstm => (Kernel::LstmStepForward, Kernel::LstmStepBackward),
            Cell::Gru => (Kernel::GruStepForward, Kernel::GruStepBackward),
            Cell::Rnn => (Kernel::RnnStepForward, Kernel::RnnStepBackward),
        };
        let h = cfg.hidden as u32;
        Recorder {
            cfg,
            lay: model.layout,
            ws,
            whh: model.whh,
            state_grad: model.state_grad,
            pg,
            b: ws.b as u32,
            t: ws.t as u32,
            h,
            dirs: cfg.directions() as u32,
            d: cfg.top_width() as u32,
            gh: cfg.cell.gates() as u32 * h,
            o: cfg.out_features as u32,
            step_forward,
            step_backward,
        }
    }

    /// The program recorded so far.
    pub fn finish(self) -> Program {
        self.pg
    }

    fn nd(&self) -> usize {
        self.dirs as usize
    }

    /// Label of layer `k`'s role: `lstm.l0.input_projection`.
    fn label(&self, k: usize, role: &str) -> String {
        format!("{}.l{k}.{role}", self.cfg.cell.name())
    }

    /// Param offset between the two directions of layer `k` (the same for
    /// every tensor of the layer; 0 with one direction).
    fn dir_stride(&self, k: usize) -> u32 {
        if self.nd() == 2 {
            (self.lay.layers[k * 2 + 1].w_ih.start - self.lay.layers[k * 2].w_ih.start) as u32
        } else {
            0
        }
    }

    /// Layer `k`'s input `[T, B, I_k]` in work: the model's input (layer 0)
    /// or the output of the layer below.
    fn layer_input(&self, k: usize) -> u32 {
        if k == 0 {
            self.ws.x0.off
        } else {
            self.ws.layers[k - 1].y.off
        }
    }

    /// The step kernels' arguments of layer `k` at step `s` (both directions).
    fn step_args(&self, k: usize, s: u32) -> StepArgs {
        let nd = self.nd();
        let lw = &self.ws.layers[k];
        let two = |r: Region| [r.dir(0, nd), r.dir(nd - 1, nd)];
        let first = &self.lay.layers[k * nd];
        let last = &self.lay.layers[k * nd + nd - 1];
        StepArgs {
            t_len: self.t,
            b: self.b,
            h: self.h,
            s,
            ld: self.d,
            act: match self.cfg.nonlinearity {
                Nonlinearity::Tanh => 0,
                Nonlinearity::Relu => 1,
            },
            has_dy: 0,
            has_len: 1,
            len_off: self.ws.lengths.off,
            y_off: lw.y.off,
            dy_off: 0,
            carry_off: lw.carry.off,
            whh: [self.whh[k * nd], self.whh[k * nd + nd - 1]],
            bhh: [first.b_hh.start as u32, last.b_hh.start as u32],
            gx: two(lw.gx),
            hs: two(lw.hs),
            cs: two(lw.cs),
            sv: two(lw.sv),
            dg: two(lw.dg),
            dgh: two(lw.dgh),
            dc: two(lw.dc),
            ..self.recurrent_dropout_args(k)
        }
    }

    /// Recurrent dropout's fields of layer `k`'s step arguments (zeros
    /// without it): the masks of `Site::Recurrent(k·D + d)`.
    fn recurrent_dropout_args(&self, k: usize) -> StepArgs {
        let p = self.cfg.dropout.recurrent;
        if p == 0.0 {
            return StepArgs::default();
        }
        let rate = Rate::new(p);
        StepArgs {
            rd_key: self.ws.dropout.off,
            rd_site: Site::Recurrent(k * self.nd()).code(),
            rd_threshold: rate.threshold,
            rd_scale: rate.scale,
            ..Default::default()
        }
    }

    /// Steps one dispatch of the step kernels covers: one, or with a
    /// persistent tile all of them.
    fn step_dispatches(&self) -> u32 {
        if self.pg.tunables().step.persistent {
            1
        } else {
            self.t
        }
    }

    fn embed_args(&self) -> Option<EmbedArgs> {
        let e = self.lay.embed.as_ref()?;
        Some(EmbedArgs {
            b: self.b,
            t_len: self.t,
            width: self.cfg.input as u32,
            vocab: self.cfg.vocab.unwrap_or(0) as u32,
            ids_off: self.ws.ids.off,
            table_off: e.start as u32,
            x_off: self.ws.x0.off,
            dx_off: self.ws.layers[0].dx.off,
            offsets_off: self.ws.embed_offsets.off,
            rows_off: self.ws.embed_rows.off,
        })
    }

    // ---------------------------------------------------------------- forward

    /// The embedding's gather, then every layer bottom-up.
    pub fn forward_stack(&mut self) -> Result<()> {
        if let Some(a) = self.embed_args() {
            self.pg.embed(Kernel::EmbedForward, a, "embed.forward")?;
        }
        let (tb, i) = (self.t * self.b, self.cfg.input as u32);
        self.dropout_in_place(Site::Input, self.ws.x0.off, tb, i, "dropout.input")?;
        for k in 0..self.cfg.layers {
            self.forward_layer(k)?;
            if k + 1 < self.cfg.layers {
                let y = self.ws.layers[k].y.off;
                let label = self.label(k, "output_dropout");
                self.dropout_in_place(Site::Between(k + 1), y, tb, self.d, &label)?;
            }
        }
        Ok(())
    }

    /// Dropout's mask of `site` on the block `[rows, cols]` at `dst` (row
    /// stride `cols`, the mask's element index), in place; nothing when the
    /// model's probability there is 0.
    fn dropout_in_place(
        &mut self,
        site: Site,
        dst: u32,
        rows: u32,
        cols: u32,
        label: &str,
    ) -> Result<()> {
        let a = DropArgs {
            rows,
            cols,
            src_off: dst,
            src_ld: cols,
            dst_off: dst,
            dst_ld: cols,
            mask_base: 0,
            mask_ld: cols,
            mask_rows: rows,
            ..Default::default()
        };
        self.dropout(site, a, label)
    }

    /// Dropout's mask of `site` on the block `a` describes (its site, rate
    /// and key filled in here); nothing when the model's probability there is 0.
    fn dropout(&mut self, site: Site, a: DropArgs, label: &str) -> Result<()> {
        let p = self.cfg.dropout.p(site);
        if p == 0.0 {
            return Ok(());
        }
        let rate = Rate::new(p);
        let a = DropArgs {
            site: site.code(),
            threshold: rate.threshold,
            scale: rate.scale,
            key_off: self.ws.dropout.off,
            ..a
        };
        self.pg.dropout(a, label)
    }

    /// Layer `k`, both directions: `Gx = X·W_ihᵀ + b_ih` for all steps in one
    /// GEMM, then the steps.
    pub fn forward_layer(&mut self, k: usize) -> Result<()> {
        let (gh, dirs, i_k) = (self.gh, self.dirs, self.cfg.layer_input(k) as u32);
        let lw = &self.ws.layers[k];
        let w = &self.lay.layers[k * self.nd()];
        let stride = self.dir_stride(k);
        let projection = Gemm::new(self.t * self.b, gh, i_k)
            .a(Matrix::work(self.layer_input(k), i_k))
            .b_t(Matrix::params(w.w_ih.start as u32, i_k).z(stride))
            .c(Matrix::work(lw.gx.off, gh).z(lw.gx.len / dirs))
            .bias(Matrix::params(w.b_ih.start as u32, 0).z(stride), true)
            .batch(dirs);
        self.pg
            .gemm(&projection, &self.label(k, "input_projection"))?;
        let label = self.label(k, "step_forward");
        for s in 0..self.step_dispatches() {
            let a = self.step_args(k, s);
            self.pg.step(self.step_forward, a, dirs, &label)?;
        }
        Ok(())
    }

    /// The head on the top layer's final states (`last`; both directions'
    /// parts summed) or on its output at every step (`sequence`).
    pub fn head_forward(&mut self) -> Result<()> {
        let (b, h, d, o) = (self.b, self.h, self.d, self.o);
        let top = &self.ws.layers[self.cfg.layers - 1];
        let (hw, hb) = (self.lay.head_w.start as u32, self.lay.head_b.start as u32);
        match self.cfg.output {
            OutputMode::Last => {
                // Under output dropout the head reads the final states with
                // their mask, [B, D] in feat (the mask's index b·D + dir·H + j).
                if self.ws.feat.len > 0 {
                    for dir in 0..self.nd() as u32 {
                        let a = DropArgs {
                            rows: b,
                            cols: h,
                            src_off: self.final_state(dir as usize),
                            src_ld: h,
                            dst_off: self.ws.feat.off + dir * h,
                            dst_ld: d,
                            mask_base: dir * h,
                            mask_ld: d,
                            mask_rows: b,
                            ..Default::default()
                        };
                        self.dropout(Site::Output, a, "head.dropout")?;
                    }
                }
                // out = Σ_dir h_n(dir)·W[:, dir*H..]ᵀ + bias
                for dir in 0..self.nd() {
                    let g = Gemm::new(b, o, h)
                        .accumulate(dir > 0)
                        .a(self.head_input(dir))
                        .b_t(Matrix::params(hw + dir as u32 * h, d))
                        .c(Matrix::work(self.ws.out.off, o))
                        .bias(Matrix::params(hb, 0), dir == 0);
                    self.pg.gemm(&g, "head.forward")?;
                }
            }
            OutputMode::Sequence => {
                let y = top.y.off;
                self.dropout_in_place(Site::Output, y, self.t * b, d, "head.dropout")?;
                let g = Gemm::new(self.t * b, o, d)
                    .a(Matrix::work(y, d))
                    .b_t(Matrix::params(hw, d))
                    .c(Matrix::work(self.ws.out.off, o))
                    .bias(Matrix::params(hb, 0), true);
                self.pg.gemm(&g, "head.forward")?;
            }
        }
        Ok(())
    }

    /// The head's input of direction `dir` (`last`): the top layer's final
    /// hidden state, or its copy with output dropout's mask.
    fn head_input(&self, dir: usize) -> Matrix {
        if self.ws.feat.len > 0 {
            Matrix::work(self.ws.feat.off + dir as u32 * self.h, self.d)
        } else {
            Matrix::work(self.final_state(dir), self.h)
        }
    }

    /// Where the top layer's final hidden state of direction `dir` is: the
    /// last slot forward, the first slot reverse.
    fn final_state(&self, dir: usize) -> u32 {
        let top = &self.ws.layers[self.cfg.layers - 1];
        let bh = (self.b * self.h) as usize;
        top.hs
            .state_slot(dir, self.nd(), Slot::Last, self.t as usize, bh)
    }

    // ---------------------------------------------------------------- loss

    /// The loss and its gradient `dout` (`kernel`: ce or mse).
    pub fn loss(&mut self, kernel: Kernel) -> Result<()> {
        let ws = self.ws;
        let (target_off, label) = match kernel {
            Kernel::LossCe => (ws.classes.off, "loss.ce"),
            _ => (ws.values.off, "loss.mse"),
        };
        let a = HeadArgs {
            rows: ws.rows as u32,
            o: self.o,
            b: self.b,
            seq: (self.cfg.output == OutputMode::Sequence) as u32,
            has_len: 1,
            len_off: ws.lengths.off,
            out_off: ws.out.off,
            dout_off: ws.dout.off,
            target_off,
            scalars_off: ws.scalars.off,
        };
        self.pg.loss(kernel, a, label)
    }

    // ---------------------------------------------------------------- backward

    /// The head's weight and bias gradients, and the gradient it sends down:
    /// into the top layer's carry (`last`) or `dy` (`sequence`).
    pub fn head_backward(&mut self) -> Result<()> {
        let (b, h, d, o) = (self.b, self.h, self.d, self.o);
        let ws = self.ws;
        let top = &ws.layers[self.cfg.layers - 1];
        let (hw, hb) = (self.lay.head_w.start as u32, self.lay.head_b.start as u32);
        let dout = Matrix::work(ws.dout.off, o);
        match self.cfg.output {
            OutputMode::Last => {
                for dir in 0..self.nd() {
                    // dW_head[:, dir*H..] += doutᵀ·h_n(dir)
                    let g = Gemm::new(o, h, b)
                        .accumulate(true)
                        .a_t(dout)
                        .b(self.head_input(dir))
                        .c(Matrix::grads(hw + dir as u32 * h, d));
                    self.pg.gemm(&g, "head.backward.weight")?;
                }
                // carry of the top layer = dout·W_head  [B, D]
                let g = Gemm::new(b, d, o)
                    .a(dout)
                    .b(Matrix::params(hw, d))
                    .c(Matrix::work(top.carry.off, d));
                self.pg.gemm(&g, "head.backward.input")?;
                let carry = top.carry.off;
                self.dropout_in_place(Site::Output, carry, b, d, "head.backward.dropout")?;
            }
            OutputMode::Sequence => {
                let tb = self.t * b;
                let g = Gemm::new(o, d, tb)
                    .accumulate(true)
                    .a_t(dout)
                    .b(Matrix::work(top.y.off, d))
                    .c(Matrix::grads(hw, d));
                self.pg.gemm(&g, "head.backward.weight")?;
                let g = Gemm::new(tb, d, o)
                    .a(dout)
                    .b(Matrix::params(hw, d))
                    .c(Matrix::work(ws.dy_top.off, d));
                self.pg.gemm(&g, "head.backward.input")?;
                let dy = ws.dy_top.off;
                self.dropout_in_place(Site::Output, dy, tb, d, "head.backward.dropout")?;
            }
        }
        let bias = Gemm::new(ws.rows as u32, o, 0)
            .a(dout)
            .c(Matrix::grads(hb, 0));
        self.pg.column_sums(&bias, "head.backward.bias")
    }

    /// Every layer top-down, then the embedding's scatter-add.
    pub fn backward_stack(&mut self) -> Result<()> {
        for k in (0..self.cfg.layers).rev() {
            self.backward_layer(k)?;
        }
        if let Some(a) = self.embed_args() {
            self.pg.embed(Kernel::EmbedBackward, a, "embed.backward")?;
        }
        Ok(())
    }

    /// Layer `k`, both directions: the steps backward through time, then the
    /// weight gradients as single GEMMs over all steps
    /// (`dW_ih = dGᵀ·X`, `dW_hh = dGhᵀ·H_prev`, the bias sums) and the
    /// gradient of its input (`dX = Σ_dir dG·W_ih`) where it has one.
    pub fn backward_layer(&mut self, k: usize) -> Result<()> {
        let (b, h, gh, dirs) = (self.b, self.h, self.gh, self.dirs);
        let tb = self.t * b;
        let ws = self.ws;
        let lw = &ws.layers[k];
        let i_k = self.cfg.layer_input(k) as u32;
        let x = self.layer_input(k);
        // The gradient of this layer's output: from the layer above, from
        // the head at every step, or none (`last`: it comes in the carry).
        let (has_dy, dy_off) = if k + 1 < self.cfg.layers {
            (1, ws.layers[k + 1].dx.off)
        } else if self.cfg.output == OutputMode::Sequence {
            (1, ws.dy_top.off)
        } else {
            (0, 0)
        };
        let label = self.label(k, "step_backward");
        for s in 0..self.step_dispatches() {
            let a = StepArgs {
                has_dy,
                dy_off,
                ..self.step_args(k, s)
            };
            self.pg.step(self.step_backward, a, dirs, &label)?;
        }
        let w = &self.lay.layers[k * self.nd()];
        let stride = self.dir_stride(k);
        // The gate gradients of gx and (GRU: apart) of gh.
        let dg = lw.dg;
        let dgh = if self.cfg.cell == Cell::Gru {
            lw.dgh
        } else {
            lw.dg
        };
        let per_dir = dg.len / dirs;
        let dg_m = Matrix::work(dg.off, gh).z(per_dir);
        let dgh_m = Matrix::work(dgh.off, gh).z(per_dir);
        // dW_ih += dGᵀ·X
        let g = Gemm::new(gh, i_k, tb)
            .accumulate(true)
            .a_t(dg_m)
            .b(Matrix::work(x, i_k))
            .c(Matrix::grads(w.w_ih.start as u32, i_k).z(stride))
            .batch(dirs);
        self.pg.gemm(&g, &self.label(k, "weight_ih_grad"))?;
        let g = Gemm::new(tb, gh, 0)
            .a(dg_m)
            .c(Matrix::grads(w.b_ih.start as u32, 0).z(stride))
            .batch(dirs);
        self.pg.column_sums(&g, &self.label(k, "bias_ih_grad"))?;
        // dW_hh += dGhᵀ·H_prev; prev(t) for all t is slots 0..T (forward) or
        // 1..T+1 (reverse); under recurrent dropout, their masked copy.
        let hs_per_dir = lw.hs.len / dirs;
        let h_prev = if ws.hs_masked.len > 0 {
            self.mask_previous_states(k)?;
            Matrix::work(ws.hs_masked.off, h).z(tb * h)
        } else {
            Matrix::work(lw.hs.off, h).z(hs_per_dir + b * h)
        };
        let g = Gemm::new(gh, h, tb)
            .accumulate(true)
            .a_t(dgh_m)
            .b(h_prev)
            .c(Matrix::grads(w.w_hh.start as u32, h).z(stride))
            .batch(dirs);
        self.pg.gemm(&g, &self.label(k, "weight_hh_grad"))?;
        let g = Gemm::new(tb, gh, 0)
            .a(dgh_m)
            .c(Matrix::grads(w.b_hh.start as u32, 0).z(stride))
            .batch(dirs);
        self.pg.column_sums(&g, &self.label(k, "bias_hh_grad"))?;
        // dX = Σ_dir dG(dir)·W_ih(dir)
        if lw.dx.len > 0 {
            for dir in 0..self.nd() {
                let w_dir = &self.lay.layers[k * self.nd() + dir];
                let g = Gemm::new(tb, i_k, gh)
                    .accumulate(dir > 0)
                    .a(Matrix::work(dg.dir(dir, self.nd()), gh))
                    .b(Matrix::params(w_dir.w_ih.start as u32, i_k))
                    .c(Matrix::work(lw.dx.off, i_k));
                self.pg.gemm(&g, &self.label(k, "input_grad"))?;
            }
            // The mask this layer's input got forward (`forward_stack`).
            let site = if k > 0 { Site::Between(k) } else { Site::Input };
            let label = self.label(k, "input_grad_dropout");
            self.dropout_in_place(site, lw.dx.off, tb, i_k, &label)?;
        }
        if self.state_grad {
            self.initial_state_grad(k)?;
        }
        Ok(())
    }

    /// Recurrent dropout: layer `k`'s previous states `prev(t)` for every t,
    /// each direction with its `[B, H]` mask (the same at every step), into
    /// `hs_masked`: what the step kernels' products saw (`cpu::layer::backward`'s `masked`).
    fn mask_previous_states(&mut self, k: usize) -> Result<()> {
        let (b, h, nd) = (self.b, self.h, self.nd());
        let tb = self.t * b;
        let (hs, out) = (self.ws.layers[k].hs, self.ws.hs_masked);
        for dir in 0..nd {
            // Slot 0 (forward) or 1 (reverse) onwards.
            let first = hs.dir(dir, nd) + dir as u32 * b * h;
            let a = DropArgs {
                rows: tb,
                cols: h,
                src_off: first,
                src_ld: h,
                dst_off: out.dir(dir, nd),
                dst_ld: h,
                mask_base: 0,
                mask_ld: h,
                mask_rows: b,
                ..Default::default()
            };
            let label = self.label(k, "recurrent_dropout");
            self.dropout(Site::Recurrent(k * nd + dir), a, &label)?;
        }
        Ok(())
    }

    /// The gradient of layer `k`'s initial hidden states, into its carry
    /// `[B, dirs*H]`: after the last step backward the carry holds all of it
    /// but the W_hh part, the product the step before would have taken:
    /// `carry(dir) += dG(t_last)·W_hh(dir)`, `t_last` = 0 forward, T-1
    /// reverse (`cpu::layer::backward`'s `dh0`). The cell state's gradient
    /// is complete in `dc` already.
    fn initial_state_grad(&mut self, k: usize) -> Result<()> {
        let (b, h, gh, d, nd) = (self.b, self.h, self.gh, self.d, self.nd());
        let lw = &self.ws.layers[k];
        let rec = if self.cfg.cell == Cell::Gru {
            lw.dgh
        } else {
            lw.dg
        };
        // Under recurrent dropout the product's share gets the mask: the
        // product into hs_masked (free again after dW_hh), then added to
        // the carry with its mask.
        let masked = self.ws.hs_masked;
        for dir in 0..nd {
            let t_last = if dir == 1 { self.t - 1 } else { 0 };
            let w = &self.lay.layers[k * nd + dir];
            let carry = lw.carry.off + dir as u32 * h;
            let c = if masked.len > 0 {
                Matrix::work(masked.dir(dir, nd), h)
            } else {
                Matrix::work(carry, d)
            };
            let g = Gemm::new(b, h, gh)
                .accumulate(masked.len == 0)
                .a(Matrix::work(rec.dir(dir, nd) + t_last * b * gh, gh))
                .b(Matrix::params(w.w_hh.start as u32, h))
                .c(c);
            self.pg.gemm(&g, &self.label(k, "initial_state_grad"))?;
            if masked.len > 0 {
                let a = DropArgs {
                    rows: b,
                    cols: h,
                    src_off: masked.dir(dir, nd),
                    src_ld: h,
                    dst_off: carry,
                    dst_ld: d,
                    mask_base: 0,
                    mask_ld: h,
                    mask_rows: b,
                    accumulate: 1,
                    ..Default::default()
                };
                let label = self.label(k, "initial_state_grad_dropout");
                self.dropout(Site::Recurrent(k * nd + dir), a, &label)?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- optimizer

    /// The gradient norm (and clip coefficient), then the optimizer step;
    /// returns their uniform slots, which every step rewrites with its
    /// hyper-parameters.
    pub fn optimizer(&mut self) -> Result<(u32, u32)> {
        let a = OptArgs {
            n: self.lay.total as u32,
            scalars_off: self.ws.scalars.off,
            partials_off: self.ws.partials.off,
            partials: self.pg.tunables().norm_groups,
            ..Default::default()
        };
        let norm = self.pg.grad_norm(a, "optim.grad_norm")?;
        let opt = self.pg.optimizer(a, "optim.step")?;
        Ok((norm, opt))
    }
}
