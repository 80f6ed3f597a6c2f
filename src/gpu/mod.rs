//! The GPU path: the same model maths as [`crate::cpu`], as WGSL compute
//! kernels of our own run through wgpu (Vulkan, Metal, DX12, GL).
//!
//! - [`context`]: adapter, device, queue, limits — created once.
//! - [`kernels`]: the shader registry, pipeline cache and typed launches.
//! - [`workspace`]: where every activation of a batch shape lives.
//! - [`model`]: [`GpuModel`], forward / gradients / training steps.

pub mod context;
pub mod kernels;
pub mod model;
pub mod workspace;

pub use context::{gpu_available, try_context, DevicePreference, GpuContext};
pub use model::GpuModel;
