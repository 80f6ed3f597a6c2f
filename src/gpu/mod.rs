//! The GPU path: the model maths of [`crate::cpu`] as WGSL compute kernels of
//! our own (`shaders/`), run through wgpu (Vulkan, Metal, DX12, GL). A
//! [`GpuContext`] (one device, built once) runs any number of [`GpuModel`]s;
//! each training step is recorded once per batch shape (a plan) and then
//! submitted as one command buffer, with no CPU wait inside it.
//! `ARCHITECTURE.md` at the root shows the files and the path of a step;
//! `BENCHMARKS.md` has the figures.
//!
//! ```no_run
//! # fn main() -> recurrent::Result<()> {
//! use recurrent::gpu::{GpuContext, GpuModel, DevicePreference};
//! use recurrent::{Cell, Init, Model, ModelConfig, Optimizer, StepOptions, Loss};
//! let ctx = GpuContext::new(DevicePreference::Auto)?;
//! println!("training on {}", ctx.describe());
//! let model = Model::new(ModelConfig::new(Cell::Lstm, 28, 128, 10).layers(2), &Init::seed(1))?;
//! let mut gpu = GpuModel::new(ctx, &model)?;
//! # let batch: recurrent::Dataset = unimplemented!();
//! let mut opt = Optimizer::adam(1e-3);
//! let opts = StepOptions { loss: Loss::Ce, clip: Some(1.0) };
//! for _ in 0..100 {
//!     gpu.train_step(&batch, &opts, &mut opt)?; // no CPU wait inside
//!     for s in gpu.poll_stats()? {
//!         println!("loss {}", s.loss); // arrives a few steps later
//!     }
//! }
//! gpu.finish()?;
//! let weights = gpu.download()?; // flat, Layout order
//! # Ok(()) }
//! ```
//!
//! Settings ([`GpuOptions`]: backend, tuning, step tile, f16 W_hh) come from
//! the environment when the context is created, or from the program
//! ([`GpuContext::with_options`]). The GPU tests run on Mesa's software
//! drivers (lavapipe for Vulkan, llvmpipe for GL); `RECURRENT_REQUIRE_GPU=1`
//! makes a missing adapter a failure instead of a skip.

mod args;
mod context;
mod device;
mod encode;
mod gemm_config;
mod gemm_spec;
mod gemm_tune;
mod grid;
mod grid_module;
pub(crate) mod half;
mod launch;
mod model;
mod options;
mod plan;
mod profile;
mod program;
mod record;
mod registry;
mod resident;
mod seq2seq;
mod stack;
mod states;
mod stats;
mod step_tile;
mod step_tune;
mod stream;
mod tokens;
mod train_rows;
mod tunables;
mod tune;
mod weights;
mod workspace;

mod bench;
mod optim_state;

pub use context::{gpu_available, try_context, GpuContext};
pub use device::{DevicePreference, GpuDevice};
pub use model::GpuModel;
pub use options::{GpuOptions, ShaderChecks};
pub use profile::DispatchTime;
pub use seq2seq::GpuSeq2Seq;
pub use stack::{BufferSlice, GpuStack, StackBackward, StackHandle, StackInputs, StackOutputs};
pub use step_tile::StepTile;
pub use stream::GpuStream;
// What the tuner decided, for reports (`recurrent bench --show-tuning`).
pub use gemm_config::{GemmChoice, GemmConfig, GemmShape, TunedGemm};
pub use gemm_tune::GemmTimer;
pub use program::Dispatch;
pub use registry::Kernel;
pub use step_tune::{StepKey, TunedStep};
pub use tune::{Decision, Tuned};

pub(crate) use device::instance;
pub(crate) use options::backends_from_env;

/// The GPU host's internals, for the kernel-level tests and benches (shader
/// sources and their override constants, tuner candidates, the f16
/// conversions, one GEMM on its own). Not a stable API: the layout of the
/// files behind it may change at any time.
#[doc(hidden)]
pub mod internals {
    pub use super::bench::{dispatch_overhead, gemm_tflops, GemmBench};
    pub use super::gemm_config::{
        blocked_gemm_kernel, fixed_config, gemm_candidates, gemm_constants, GEMM_MAX_CANDIDATES,
        SPLIT_PARTIALS,
    };
    pub use super::gemm_spec::GemmSpec;
    pub use super::gemm_tune::{DeviceTimer, SCRATCH_MAX_BYTES};
    pub use super::grid_module::variant as grid_variant;
    pub use super::half::{f16_bits_to_f32, f32_to_f16_bits, round_to_f16};
    pub use super::registry::{file, requires, Shader, PARTS};
    pub use super::stats::STATS_RING;
    pub use super::step_tile::step_constants;
    pub use super::step_tune::{step_candidates, PRUNE_FACTOR, STEP_MAX_CANDIDATES};
    pub use super::tunables::Tunables;
}
