//! Choosing where to compute: the CPU path or a GPU through wgpu, with the
//! same models, checkpoints and training API on both.

use crate::error::{Error, Result};
use crate::gpu::{DevicePreference, GpuContext, GpuModel};
use crate::model::Model;
use crate::seq2seq::Seq2Seq;
use crate::train::Backend;
use std::sync::Arc;

/// What the user asked for (`--device auto|cpu|gpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A hardware GPU (discrete first, then integrated) if wgpu finds one, else the CPU path.
    /// Software adapters (lavapipe, llvmpipe, WARP) are slower than the CPU path and are not chosen.
    Auto,
    /// The CPU path.
    Cpu,
    /// The best GPU adapter wgpu finds, software adapters included; an error if there is none.
    Gpu,
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<DeviceChoice> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpu),
            other => Err(Error::Argument(format!(
                "unknown device '{other}': use auto, cpu or gpu"
            ))),
        }
    }
}

/// Where models run.
#[derive(Clone)]
pub enum Device {
    Cpu,
    Gpu(Arc<GpuContext>),
}

impl Device {
    /// Resolves a choice to a device; `Auto` falls back to the CPU path when no
    /// hardware adapter is found (the reason is in [`Device::describe`]'s caller's hands:
    /// use [`Device::resolve_verbose`] to print it).
    pub fn resolve(choice: DeviceChoice) -> Result<Device> {
        Ok(Self::resolve_verbose(choice)?.0)
    }

    /// Like [`Device::resolve`], also returning why `Auto` chose the CPU path.
    pub fn resolve_verbose(choice: DeviceChoice) -> Result<(Device, Option<String>)> {
        match choice {
            DeviceChoice::Cpu => Ok((Device::Cpu, None)),
            DeviceChoice::Gpu => Ok((Device::Gpu(GpuContext::new(DevicePreference::Auto)?), None)),
            DeviceChoice::Auto => match GpuContext::new(DevicePreference::Hardware) {
                Ok(ctx) => Ok((Device::Gpu(ctx), None)),
                Err(e) => Ok((Device::Cpu, Some(e.to_string()))),
            },
        }
    }

    /// `cpu`, or the adapter's name and backend.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!(
                "cpu ({} threads)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            Device::Gpu(ctx) => format!("gpu: {}", ctx.describe()),
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// A training backend holding a copy of `model`'s weights on this device.
    /// After training, [`Backend::sync_to`] copies the weights back into a host model.
    pub fn backend(&self, model: &Model) -> Result<Box<dyn Backend>> {
        Ok(match self {
            Device::Cpu => Box::new(model.clone()),
            Device::Gpu(ctx) => Box::new(GpuModel::new(ctx.clone(), model)?),
        })
    }

    /// A sequence-to-sequence backend holding a copy of `model`'s weights on
    /// this device; [`crate::seq2seq::Backend::to_model`] gives them back.
    pub fn seq2seq(&self, model: &Seq2Seq) -> Result<Box<dyn crate::seq2seq::Backend>> {
        Ok(match self {
            Device::Cpu => Box::new(model.clone()),
            Device::Gpu(ctx) => Box::new(crate::gpu::GpuSeq2Seq::new(ctx.clone(), model)?),
        })
    }
}

/// One line per adapter wgpu finds (name, backend, type, driver) with its key
/// compute limits, for `recurrent info`.
pub fn adapter_report() -> String {
    let backends = match crate::gpu::backends_from_env() {
        Ok(b) => b,
        Err(e) => return format!("{e}\n"),
    };
    let instance = crate::gpu::instance(backends);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    let mut out = format!("backends searched: {backends:?}\n");
    if adapters.is_empty() {
        out += "no GPU adapter found (install a Vulkan, Metal, DX12 or GL driver; Mesa's lavapipe works without a GPU)\n";
    }
    for a in adapters {
        let i = a.get_info();
        let l = a.limits();
        let f = a.features();
        out += &format!(
            "adapter: {} ({:?}, {:?}, driver {} {})\n  limits: storage buffers/stage {}, storage binding {} MiB, workgroup storage {} KiB, invocations/workgroup {}, workgroups/dimension {}\n  features: shader-f16 {}, subgroup {}, timestamp-query {}\n",
            i.name,
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info,
            l.max_storage_buffers_per_shader_stage,
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            f.contains(wgpu::Features::SHADER_F16),
            f.contains(wgpu::Features::SUBGROUP),
            f.contains(wgpu::Features::TIMESTAMP_QUERY),
        );
    }
    out
}
