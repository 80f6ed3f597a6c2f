//! [`Weights`]: a model's buffers on the device — `params [P]` and `grads
//! [P]` in the host model's [`Layout`] order, the optimizer state `[2P]` — and
//! the opt-in f16 copy of W_hh with the program that refreshes it.
//!
//! ## The f16 copy of W_hh (opt-in)
//! With [`GpuModel::with_f16_weights`](super::GpuModel::with_f16_weights) (or
//! the context's default, `RECURRENT_GPU_F16=1`), the model keeps a
//! half-precision copy of every layer-direction's W_hh in its own buffer
//! (`"whh.f16"`: binary16, two per `u32`, rounded to nearest even exactly as
//! [`super::half::round_to_f16`]), and the per-step kernels read W_hh from it
//! — the weight they re-read every time step, half the bytes — while
//! accumulating in f32. Everything else stays f32. The copy is refreshed by
//! `whh_to_f16` after every upload and after every optimizer step, inside
//! that step's command buffer. Results then equal the f32 path's on a model
//! whose W_hh was rounded to f16 (`tests/gpu_f16.rs`). Stored as packed
//! `u32` pairs converted with integer operations, so no adapter feature is
//! needed (GL too).

use super::args::ConvertArgs;
use super::device::GpuDevice;
use super::encode::{Binds, Compiled};
use super::program::{Program, Resolved};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::params::Layout;

/// The model's parameter, gradient and optimizer-state buffers.
pub struct Weights {
    /// `[P]` parameters in [`Layout`] order ("params").
    pub params: wgpu::Buffer,
    /// `[P]` gradients in [`Layout`] order ("grads").
    pub grads: wgpu::Buffer,
    /// `[2P]` optimizer state: SGD momentum / Adam exp_avg, then exp_avg_sq ("optim.state").
    pub state: wgpu::Buffer,
    /// The f16 copy of W_hh the step kernels read, when on.
    pub whh16: Option<WhhF16>,
}

impl Weights {
    /// Buffers for a model of `config` laid out by `layout`, holding `params`
    /// (the f16 copy, with `f16`, not yet filled: [`Weights::refresh`]).
    pub fn new(
        gpu: &GpuDevice,
        config: &ModelConfig,
        layout: &Layout,
        params: &[f32],
        f16: bool,
    ) -> Result<Weights> {
        let mut w = Weights::flat(gpu, layout.total, params)?;
        if f16 {
            w.whh16 = Some(WhhF16::new(gpu, config, layout, &w)?);
        }
        Ok(w)
    }

    /// Buffers for `total` parameters holding `params`, without an f16 copy
    /// (a sequence-to-sequence model's, its stacks inside).
    pub fn flat(gpu: &GpuDevice, total: usize, params: &[f32]) -> Result<Weights> {
        let p = total.max(1);
        gpu.check_storage("the parameters", (p * 4) as u64)?;
        gpu.check_storage("the optimizer state", (2 * p * 4) as u64)?;
        let mk = |label: &str, len: usize| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (len * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let w = Weights {
            params: mk("params", p),
            grads: mk("grads", p),
            state: mk("optim.state", 2 * p),
            whh16: None,
        };
        gpu.queue
            .write_buffer(&w.params, 0, bytemuck::cast_slice(params));
        Ok(w)
    }

    /// The five storage buffers of a bind group: `[params, grads, work, ints,
    /// state]`, or with `f16` the f16 copy in the state's place.
    pub fn bindings<'a>(
        &'a self,
        work: &'a wgpu::Buffer,
        ints: &'a wgpu::Buffer,
        f16: bool,
    ) -> Option<[&'a wgpu::Buffer; 5]> {
        let fifth = if f16 {
            &self.whh16.as_ref()?.buffer
        } else {
            &self.state
        };
        Some([&self.params, &self.grads, work, ints, fifth])
    }

    /// The start of each layer-direction's W_hh as the step kernels read it:
    /// in params, or in halves into the f16 copy.
    pub fn whh_offsets(&self, layout: &Layout) -> Vec<u32> {
        match &self.whh16 {
            Some(w) => w.offsets.clone(),
            None => layout.layers.iter().map(|l| l.w_hh.start as u32).collect(),
        }
    }

    /// Records the refresh of the f16 copy from params (nothing without one).
    pub fn encode_refresh(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        match &self.whh16 {
            Some(w) => w.encode(enc),
            None => Ok(()),
        }
    }
}

/// The f16 copy of W_hh and the program that refreshes it from params.
pub struct WhhF16 {
    /// `[words]` u32: binary16 pairs, one block per layer-direction ("whh.f16").
    pub buffer: wgpu::Buffer,
    /// Offset in halves of each layer-direction's block (even), [`Layout::layers`] order.
    pub offsets: Vec<u32>,
    /// Elements of each block (G·H·H).
    pub len: usize,
    /// One `whh_to_f16` per layer (both directions).
    pub refresh: Compiled,
    /// Its uniforms; `bind_group` is `[params, grads, state, (placeholder), whh.f16]`.
    _uniforms: wgpu::Buffer,
    _placeholder: wgpu::Buffer,
    pub bind_group: wgpu::BindGroup,
}

impl WhhF16 {
    fn new(gpu: &GpuDevice, config: &ModelConfig, layout: &Layout, w: &Weights) -> Result<WhhF16> {
        let len = config.cell.gates() * config.hidden * config.hidden;
        let mut offsets = Vec::with_capacity(layout.layers.len());
        let mut words = 0usize;
        for _ in &layout.layers {
            offsets.push(2 * words);
            words += len.div_ceil(2);
        }
        gpu.check_storage("the f16 copy of W_hh", (words.max(1) * 4) as u64)?;
        if 2 * words >= u32::MAX as usize {
            return Err(Error::Gpu(format!(
                "the f16 copy of W_hh has {} elements, more than 32-bit offsets address. HINT: use a smaller model",
                2 * words
            )));
        }
        let offsets: Vec<u32> = offsets.into_iter().map(|o| o as u32).collect();
        let dev = &gpu.device;
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
        let mut program = Program::new(Resolved::fixed(gpu.tunables, &gpu.limits));
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
        let (uniforms, bind_group) = gpu.bind_program(
            "whh.f16",
            &program.uniforms,
            [&w.params, &w.grads, &w.state, &placeholder, &buffer],
        );
        Ok(WhhF16 {
            buffer,
            offsets,
            len,
            refresh: Compiled::all(gpu, program)?,
            _uniforms: uniforms,
            _placeholder: placeholder,
            bind_group,
        })
    }

    /// The bind groups of the refresh program.
    pub fn binds(&self) -> Binds<'_> {
        Binds {
            main: &self.bind_group,
            f16: Some(&self.bind_group),
            sync: None,
        }
    }

    /// Records the refresh of the copy from params.
    fn encode(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let n = self.refresh.len();
        self.refresh
            .encode(enc, self.binds(), &[0..n], 1, "whh.f16", None)
    }
}
