//! [`GpuStack`]: the recurrent stack as an op on the GPU, as
//! [`crate::RecurrentStack`] on the CPU — the same recording as the
//! library's own models (`record::Recorder::forward_stack` /
//! `backward_stack`), without head, loss or optimizer.
//!
//! On buffers the application owns: [`GpuStack::record_forward`] and
//! [`GpuStack::record_backward`] write into the application's
//! `wgpu::CommandEncoder` on the device of the context
//! ([`super::GpuContext::from_device`] wraps the application's device):
//! copies of the inputs into the plan's workspace, the op's dispatches,
//! copies of the results out. [`GpuStack::forward`] and
//! [`GpuStack::backward`] do the same on host tensors and submit themselves.
//!
//! Layouts as the CPU op: `x [T, B, I]`, `y [T, B, D·H]` (time-major, as
//! `nn.LSTM` without `batch_first`), states `[L·D, B, H]`, f32; every offset
//! in bytes, a multiple of 4. Each batch shape `(B, T)` has one workspace:
//! a second forward of the same shape invalidates the first's handle (its
//! backward is refused) — record a forward's backward before the next
//! forward of its shape. The first forward of a new shape builds its plan,
//! and with tuning on ([`super::GpuOptions::autotune`]) the plan is timed on
//! the device then, which overwrites [`GpuStack::param_grads_buffer`]: read
//! the gradients of a backward before the first forward of a new shape.

use super::context::GpuContext;
use super::model::GpuModel;
use super::plan::Plan;
use super::workspace::Slot;
use crate::error::{Error, Result};
use crate::model::config::Cell;
use crate::model::Model;
use crate::stack::{RecurrentStack, StackGradients};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// Part of a buffer the application owns: `buffer` from byte `offset`.
#[derive(Clone, Copy, Debug)]
pub struct BufferSlice<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
}

impl<'a> BufferSlice<'a> {
    pub fn new(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        BufferSlice { buffer, offset }
    }
    /// Checks that `bytes` fit from the offset, the alignment copies need,
    /// and the usage a copy `from` (else to) it needs.
    fn check(&self, what: &str, bytes: u64, from: bool) -> Result<()> {
        let usage = if from {
            wgpu::BufferUsages::COPY_SRC
        } else {
            wgpu::BufferUsages::COPY_DST
        };
        if !self.buffer.usage().contains(usage) {
            return Err(Error::Argument(format!(
                "{what}: the buffer was created without {usage:?}, which the op needs to copy {} it",
                if from { "from" } else { "into" }
            )));
        }
        if self.offset % 4 != 0 {
            return Err(Error::Argument(format!(
                "{what}: offset {} is not a multiple of 4 bytes",
                self.offset
            )));
        }
        if self.offset + bytes > self.buffer.size() {
            return Err(Error::Argument(format!(
                "{what}: needs {bytes} bytes from offset {}, the buffer has {}",
                self.offset,
                self.buffer.size()
            )));
        }
        Ok(())
    }
}

/// The inputs and outputs of one forward, in the application's buffers.
#[derive(Clone, Copy, Debug)]
pub struct StackInputs<'a> {
    /// `[T, B, I]`.
    pub x: BufferSlice<'a>,
    /// `[L·D, B, H]` each; zeros when absent. `c0`: LSTM only.
    pub h0: Option<BufferSlice<'a>>,
    pub c0: Option<BufferSlice<'a>>,
}

/// Where a forward's results go.
#[derive(Clone, Copy, Debug)]
pub struct StackOutputs<'a> {
    /// `[T, B, D·H]`.
    pub y: BufferSlice<'a>,
    /// `[L·D, B, H]` each, if wanted. `c_n`: LSTM only.
    pub h_n: Option<BufferSlice<'a>>,
    pub c_n: Option<BufferSlice<'a>>,
}

/// The gradients a backward starts from and where its results go.
#[derive(Clone, Copy, Debug)]
pub struct StackBackward<'a> {
    /// `[T, B, D·H]`, the gradient of `y`.
    pub dy: BufferSlice<'a>,
    /// `[L·D, B, H]`, the gradients of the final states (zeros when absent).
    pub dh_n: Option<BufferSlice<'a>>,
    pub dc_n: Option<BufferSlice<'a>>,
    /// `[T, B, I]`, `[L·D, B, H]`: where the gradients of the input and of
    /// the initial states go, if wanted.
    pub dx: Option<BufferSlice<'a>>,
    pub dh0: Option<BufferSlice<'a>>,
    pub dc0: Option<BufferSlice<'a>>,
}

/// A recorded forward, for its backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackHandle {
    t: usize,
    b: usize,
    generation: u64,
}

/// The recurrent stack on the GPU.
pub struct GpuStack {
    stack: RecurrentStack,
    model: GpuModel,
    /// Per batch shape, the generation of its latest forward.
    generations: HashMap<(usize, usize), u64>,
    next: u64,
}

impl GpuStack {
    /// The op `stack` with parameters `params` (flat, [`RecurrentStack::params`]
    /// order) on the device of `ctx`. The step kernels read W_hh in f32.
    pub fn new(ctx: Arc<GpuContext>, stack: &RecurrentStack, params: &[f32]) -> Result<GpuStack> {
        let mut full = params.to_vec();
        if full.len() != stack.num_params() {
            return Err(Error::shape(
                "stack parameters",
                format!("[{}]", stack.num_params()),
                &[full.len()],
            ));
        }
        let total = crate::model::params::Layout::new(stack.config()).total;
        full.resize(total, 0.0); // the unused head
        let host = Model::from_params(stack.config().clone(), full)?;
        let mut model = GpuModel::with_f16_weights(ctx, &host, false)?;
        model.stack_only = true;
        model.state_grad = true;
        model.set_input_gradient(true);
        Ok(GpuStack {
            stack: stack.clone(),
            model,
            generations: HashMap::new(),
            next: 0,
        })
    }

    pub fn stack(&self) -> &RecurrentStack {
        &self.stack
    }
    pub fn context(&self) -> &Arc<GpuContext> {
        self.model.context()
    }

    /// Replaces the parameters (host values, [`RecurrentStack::params`] order).
    pub fn set_params(&mut self, params: &[f32]) -> Result<()> {
        let mut full = self.model.download()?;
        if params.len() != self.stack.num_params() {
            return Err(Error::shape(
                "stack parameters",
                format!("[{}]", self.stack.num_params()),
                &[params.len()],
            ));
        }
        full[..params.len()].copy_from_slice(params);
        self.model.upload(&full)
    }

    /// The parameters (blocking read).
    pub fn params(&self) -> Result<Vec<f32>> {
        let mut p = self.model.download()?;
        p.truncate(self.stack.num_params());
        Ok(p)
    }

    /// The parameters' gradients of the last backward (blocking read).
    pub fn param_grads(&self) -> Result<Vec<f32>> {
        self.model
            .read(&self.model.weights.grads, 0, self.stack.num_params())
    }

    /// The parameter gradients' buffer: `[P]` f32 in [`RecurrentStack::params`]
    /// order from byte 0 (more follows), for the application's own optimizer.
    pub fn param_grads_buffer(&self) -> &wgpu::Buffer {
        &self.model.weights.grads
    }

    fn state_bytes(&self, b: usize) -> u64 {
        (self.stack.state_rows() * b * self.stack.config().hidden * 4) as u64
    }

    fn check_lengths(lengths: Option<&[usize]>, t: usize, b: usize) -> Result<()> {
        if let Some(l) = lengths {
            if l.len() != b {
                return Err(Error::shape("lengths", format!("[{b}]"), &[l.len()]));
            }
            if let Some((i, &len)) = l.iter().enumerate().find(|(_, &v)| v == 0 || v > t) {
                return Err(Error::LengthOutOfRange {
                    index: i,
                    length: len as i64,
                    steps: t,
                });
            }
        }
        Ok(())
    }

    /// Records the forward of `t` steps of `b` sequences into `enc`: `x`
    /// (and the initial states) copied in, the layers, `y` (and the final
    /// states) copied out. Values are the application's: a NaN in them is
    /// not checked here (the host API checks).
    pub fn record_forward(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        t: usize,
        b: usize,
        lengths: Option<&[usize]>,
        inp: StackInputs,
        out: StackOutputs,
    ) -> Result<StackHandle> {
        let cfg = self.stack.config().clone();
        if t == 0 || b == 0 {
            return Err(Error::Empty(format!(
                "a batch of {b} sequences of {t} steps"
            )));
        }
        let lstm = cfg.cell == Cell::Lstm;
        for (name, given) in [("c0", inp.c0.is_some()), ("c_n", out.c_n.is_some())] {
            if given && !lstm {
                return Err(Error::Argument(format!(
                    "{name} was given, but only an LSTM has a cell state; this stack is a {}",
                    cfg.cell.name()
                )));
            }
        }
        if inp.c0.is_some() && inp.h0.is_none() {
            return Err(Error::Argument(
                "c0 without h0: give the pair (h0, c0)".into(),
            ));
        }
        Self::check_lengths(lengths, t, b)?;
        let sb = self.state_bytes(b);
        let (i, d) = (cfg.input, self.stack.output_width());
        inp.x.check("x", (t * b * i * 4) as u64, true)?;
        out.y.check("y", (t * b * d * 4) as u64, false)?;
        for (name, s, from) in [
            ("h0", inp.h0, true),
            ("c0", inp.c0, true),
            ("h_n", out.h_n, false),
            ("c_n", out.c_n, false),
        ] {
            if let Some(s) = s {
                s.check(name, sb, from)?;
            }
        }
        let key = (b, t);
        self.model.plan(b, t)?;
        let plan = &self.model.plans[&key];
        let lens: Vec<i32> = match lengths {
            Some(l) => l.iter().map(|&v| v as i32).collect(),
            None => vec![t as i32; b],
        };
        // The lengths go in through the encoder too, at this point of it: a
        // queue write would land at the next submission, before everything
        // recorded, and give an earlier forward of this shape these lengths.
        let staged = self
            .model
            .ctx
            .device
            .create_buffer(&wgpu::BufferDescriptor {
                label: Some("stack.lengths"),
                size: (b * 4) as u64,
                usage: wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            });
        staged
            .slice(..)
            .get_mapped_range_mut()
            .map_err(|e| Error::Gpu(format!("staging the lengths: {e:?}")))?
            .copy_from_slice(bytemuck::cast_slice(&lens));
        staged.unmap();
        enc.copy_buffer_to_buffer(
            &staged,
            0,
            &plan.ints,
            plan.ws.lengths.off as u64 * 4,
            (b * 4) as u64,
        );
        enc.copy_buffer_to_buffer(
            inp.x.buffer,
            inp.x.offset,
            &plan.work,
            plan.ws.x0.off as u64 * 4,
            (t * b * i * 4) as u64,
        );
        // Initial states into every layer's first slots; zeros when absent.
        let h = cfg.hidden;
        let bh = (b * h * 4) as u64;
        for (k, lw) in plan.ws.layers.iter().enumerate() {
            for dir in 0..cfg.directions() {
                let idx = (k * cfg.directions() + dir) as u64;
                let nd = cfg.directions();
                let hs = lw.hs.state_slot(dir, nd, Slot::First, t, b * h) as u64 * 4;
                let cs = lw.cs.state_slot(dir, nd, Slot::First, t, b * h) as u64 * 4;
                match inp.h0 {
                    Some(s) => {
                        enc.copy_buffer_to_buffer(s.buffer, s.offset + idx * bh, &plan.work, hs, bh)
                    }
                    None => enc.clear_buffer(&plan.work, hs, Some(bh)),
                }
                if lstm {
                    match inp.c0 {
                        Some(s) => enc.copy_buffer_to_buffer(
                            s.buffer,
                            s.offset + idx * bh,
                            &plan.work,
                            cs,
                            bh,
                        ),
                        None => enc.clear_buffer(&plan.work, cs, Some(bh)),
                    }
                }
            }
        }
        let ph = plan.phases;
        plan.step.encode(
            enc,
            plan.binds(),
            &[0..ph.forward],
            1,
            "stack.forward",
            None,
        )?;
        let top = &plan.ws.layers[cfg.layers - 1];
        enc.copy_buffer_to_buffer(
            &plan.work,
            top.y.off as u64 * 4,
            out.y.buffer,
            out.y.offset,
            (t * b * d * 4) as u64,
        );
        for (dst, kind) in [(out.h_n, 0), (out.c_n, 1)] {
            let Some(dst) = dst else { continue };
            for (k, lw) in plan.ws.layers.iter().enumerate() {
                for dir in 0..cfg.directions() {
                    let idx = (k * cfg.directions() + dir) as u64;
                    let region = if kind == 0 { lw.hs } else { lw.cs };
                    let src =
                        region.state_slot(dir, cfg.directions(), Slot::Last, t, b * h) as u64 * 4;
                    enc.copy_buffer_to_buffer(
                        &plan.work,
                        src,
                        dst.buffer,
                        dst.offset + idx * bh,
                        bh,
                    );
                }
            }
        }
        self.next += 1;
        self.generations.insert(key, self.next);
        Ok(StackHandle {
            t,
            b,
            generation: self.next,
        })
    }

    /// Records the backward of the forward `handle` into `enc`: the
    /// gradients cleared, `dy` (and `dh_n`, `dc_n`) copied in, the layers
    /// top-down, the results copied out; the parameters' gradients stay in
    /// [`GpuStack::param_grads_buffer`].
    pub fn record_backward(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        handle: StackHandle,
        io: StackBackward,
    ) -> Result<()> {
        let (t, b) = (handle.t, handle.b);
        let key = (b, t);
        if self.generations.get(&key) != Some(&handle.generation) {
            return Err(Error::Argument(format!(
                "this handle's forward ({b} x {t}) was overwritten by a later forward of the same shape: record a forward's backward before the next forward of its shape"
            )));
        }
        let cfg = self.stack.config().clone();
        let lstm = cfg.cell == Cell::Lstm;
        for (name, given) in [("dc_n", io.dc_n.is_some()), ("dc0", io.dc0.is_some())] {
            if given && !lstm {
                return Err(Error::Argument(format!(
                    "{name} was given, but only an LSTM has a cell state"
                )));
            }
        }
        let sb = self.state_bytes(b);
        let (i, d, h, nd) = (
            cfg.input,
            self.stack.output_width(),
            cfg.hidden,
            cfg.directions(),
        );
        io.dy.check("dy", (t * b * d * 4) as u64, true)?;
        if let Some(s) = io.dx {
            s.check("dx", (t * b * i * 4) as u64, false)?;
        }
        for (name, s, from) in [
            ("dh_n", io.dh_n, true),
            ("dc_n", io.dc_n, true),
            ("dh0", io.dh0, false),
            ("dc0", io.dc0, false),
        ] {
            if let Some(s) = s {
                s.check(name, sb, from)?;
            }
        }
        let plan: &Plan = &self.model.plans[&key];
        plan.clear_for_backward(enc, &self.model.weights);
        enc.copy_buffer_to_buffer(
            io.dy.buffer,
            io.dy.offset,
            &plan.work,
            plan.ws.dy_top.off as u64 * 4,
            (t * b * d * 4) as u64,
        );
        let row = (h * 4) as u64;
        let bh = (b * h * 4) as u64;
        for (k, lw) in plan.ws.layers.iter().enumerate() {
            for dir in 0..nd {
                let idx = (k * nd + dir) as u64;
                if let Some(s) = io.dh_n {
                    // [B, H] rows into the carry's [B, D·H] at the direction's columns.
                    for bi in 0..b as u64 {
                        let dst =
                            (lw.carry.off as u64 + bi * (nd * h) as u64 + (dir * h) as u64) * 4;
                        enc.copy_buffer_to_buffer(
                            s.buffer,
                            s.offset + idx * bh + bi * row,
                            &plan.work,
                            dst,
                            row,
                        );
                    }
                }
                if let Some(s) = io.dc_n {
                    enc.copy_buffer_to_buffer(
                        s.buffer,
                        s.offset + idx * bh,
                        &plan.work,
                        lw.dc.dir(dir, nd) as u64 * 4,
                        bh,
                    );
                }
            }
        }
        let ph = plan.phases;
        plan.step.encode(
            enc,
            plan.binds(),
            &[ph.loss_mse..ph.backward],
            1,
            "stack.backward",
            None,
        )?;
        if let Some(s) = io.dx {
            let dx = plan.ws.layers[0].dx;
            enc.copy_buffer_to_buffer(
                &plan.work,
                dx.off as u64 * 4,
                s.buffer,
                s.offset,
                (t * b * i * 4) as u64,
            );
        }
        for (k, lw) in plan.ws.layers.iter().enumerate() {
            for dir in 0..nd {
                let idx = (k * nd + dir) as u64;
                if let Some(s) = io.dh0 {
                    for bi in 0..b as u64 {
                        let src =
                            (lw.carry.off as u64 + bi * (nd * h) as u64 + (dir * h) as u64) * 4;
                        enc.copy_buffer_to_buffer(
                            &plan.work,
                            src,
                            s.buffer,
                            s.offset + idx * bh + bi * row,
                            row,
                        );
                    }
                }
                if let Some(s) = io.dc0 {
                    enc.copy_buffer_to_buffer(
                        &plan.work,
                        lw.dc.dir(dir, nd) as u64 * 4,
                        s.buffer,
                        s.offset + idx * bh,
                        bh,
                    );
                }
            }
        }
        Ok(())
    }

    /// [`crate::RecurrentStack::forward`] on the GPU, from host tensors:
    /// returns `y`, `h_n` and (LSTM) `c_n`, and the handle for
    /// [`GpuStack::backward`].
    pub fn forward(
        &mut self,
        x: &Tensor,
        lengths: Option<&[usize]>,
        h0: Option<&Tensor>,
        c0: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor, Option<Tensor>, StackHandle)> {
        let cfg = self.stack.config().clone();
        let time_major = || format!("[T, B, {}] (time-major)", cfg.input);
        let [t, b, i] = x.shape[..] else {
            return Err(Error::shape("x", time_major(), &x.shape));
        };
        if i != cfg.input {
            return Err(Error::shape("x", time_major(), &x.shape));
        }
        let state = vec![self.stack.state_rows(), b, cfg.hidden];
        check_host(&[
            ("x", Some(x), &x.shape),
            ("h0", h0, &state),
            ("c0", c0, &state),
        ])?;
        let ctx = self.model.ctx.clone();
        let xb = upload(&ctx, "stack.x", &x.data);
        let h0b = h0.map(|v| upload(&ctx, "stack.h0", &v.data));
        let c0b = c0.map(|v| upload(&ctx, "stack.c0", &v.data));
        let lstm = cfg.cell == Cell::Lstm;
        let out = HostOutputs::new(
            &ctx,
            "stack.outputs",
            &[
                Some(vec![t, b, self.stack.output_width()]),
                Some(state.clone()),
                lstm.then(|| state.clone()),
            ],
        );
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let handle = self.record_forward(
            &mut enc,
            t,
            b,
            lengths,
            StackInputs {
                x: BufferSlice::new(&xb, 0),
                h0: h0b.as_ref().map(|v| BufferSlice::new(v, 0)),
                c0: c0b.as_ref().map(|v| BufferSlice::new(v, 0)),
            },
            StackOutputs {
                y: out.slice(0).expect("always"),
                h_n: out.slice(1),
                c_n: out.slice(2),
            },
        )?;
        ctx.queue.submit([enc.finish()]);
        let mut got = out.read(&ctx)?.into_iter();
        let (y, h_n, c_n) = (
            got.next().flatten(),
            got.next().flatten(),
            got.next().flatten(),
        );
        Ok((y.expect("always"), h_n.expect("always"), c_n, handle))
    }

    /// [`crate::RecurrentStack::backward`] on the GPU, from host tensors.
    pub fn backward(
        &mut self,
        handle: StackHandle,
        dy: &Tensor,
        dh_n: Option<&Tensor>,
        dc_n: Option<&Tensor>,
    ) -> Result<StackGradients> {
        let cfg = self.stack.config().clone();
        let (t, b) = (handle.t, handle.b);
        let output = [t, b, self.stack.output_width()];
        let state = vec![self.stack.state_rows(), b, cfg.hidden];
        check_host(&[
            ("dy", Some(dy), &output),
            ("dh_n", dh_n, &state),
            ("dc_n", dc_n, &state),
        ])?;
        let ctx = self.model.ctx.clone();
        let dyb = upload(&ctx, "stack.dy", &dy.data);
        let dhnb = dh_n.map(|v| upload(&ctx, "stack.dh_n", &v.data));
        let dcnb = dc_n.map(|v| upload(&ctx, "stack.dc_n", &v.data));
        let lstm = cfg.cell == Cell::Lstm;
        let out = HostOutputs::new(
            &ctx,
            "stack.gradients",
            &[
                Some(vec![t, b, cfg.input]),
                Some(state.clone()),
                lstm.then(|| state.clone()),
            ],
        );
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        self.record_backward(
            &mut enc,
            handle,
            StackBackward {
                dy: BufferSlice::new(&dyb, 0),
                dh_n: dhnb.as_ref().map(|v| BufferSlice::new(v, 0)),
                dc_n: dcnb.as_ref().map(|v| BufferSlice::new(v, 0)),
                dx: out.slice(0),
                dh0: out.slice(1),
                dc0: out.slice(2),
            },
        )?;
        ctx.queue.submit([enc.finish()]);
        let mut got = out.read(&ctx)?.into_iter();
        let (dx, dh0, dc0) = (
            got.next().flatten(),
            got.next().flatten(),
            got.next().flatten(),
        );
        Ok(StackGradients {
            dx: dx.expect("always"),
            dh0: dh0.expect("always"),
            dc0,
            dparams: self.param_grads()?,
        })
    }
}

/// Host tensors given to the host API, each `(name, tensor, the shape it
/// must have)`: the shape, then no NaN or infinity.
fn check_host(parts: &[(&str, Option<&Tensor>, &[usize])]) -> Result<()> {
    for &(name, t, want) in parts {
        let Some(t) = t else { continue };
        if t.shape != want {
            return Err(Error::shape(name, format!("{want:?}"), &t.shape));
        }
        Error::check_finite(name, &t.data)?;
    }
    Ok(())
}

/// A buffer holding `v`, for the host API to copy from.
fn upload(ctx: &GpuContext, label: &str, v: &[f32]) -> wgpu::Buffer {
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (v.len() * 4).max(4) as u64,
        usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&buf, 0, bytemuck::cast_slice(v));
    buf
}

/// The host API's results: one buffer, each wanted tensor at its own
/// offset, read back together (one wait).
struct HostOutputs {
    buf: wgpu::Buffer,
    /// Per result, its byte offset and shape, if wanted.
    parts: Vec<Option<(u64, Vec<usize>)>>,
}

impl HostOutputs {
    fn new(ctx: &GpuContext, label: &str, shapes: &[Option<Vec<usize>>]) -> HostOutputs {
        let mut at = 0u64;
        let parts = shapes
            .iter()
            .map(|s| {
                s.clone().map(|s| {
                    let off = at;
                    at += (s.iter().product::<usize>() * 4) as u64;
                    (off, s)
                })
            })
            .collect();
        let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: at.max(4),
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        HostOutputs { buf, parts }
    }

    /// Where result `k` goes, if it is wanted.
    fn slice(&self, k: usize) -> Option<BufferSlice<'_>> {
        self.parts[k]
            .as_ref()
            .map(|(off, _)| BufferSlice::new(&self.buf, *off))
    }

    /// Every wanted result (blocking), in order.
    fn read(&self, ctx: &GpuContext) -> Result<Vec<Option<Tensor>>> {
        let ranges: Vec<(u64, u64)> = self
            .parts
            .iter()
            .flatten()
            .map(|(off, s)| (*off, (s.iter().product::<usize>() * 4) as u64))
            .collect();
        let mut bytes = ctx.read_ranges(&self.buf, &ranges)?.into_iter();
        Ok(self
            .parts
            .iter()
            .map(|p| {
                p.as_ref().map(|(_, s)| {
                    let v = bytemuck::pod_collect_to_vec(&bytes.next().expect("one per part"));
                    Tensor::new(s.clone(), v)
                })
            })
            .collect())
    }
}
