//! The GPU path: the same model maths as [`crate::cpu`], as WGSL compute
//! kernels of our own run through wgpu (Vulkan, Metal, DX12, GL).
//!
//! - [`context`]: adapter, device, queue, limits — created once.
//! - [`kernels`]: the shader registry, pipeline cache and typed launches.
//! - [`autotune`]: GEMM tile shapes chosen per problem at first use, measured
//!   and cached in the context.
//! - [`workspace`]: where every activation of a batch shape lives.
//! - [`model`]: [`GpuModel`], forward / gradients / training steps.
//! - [`half`]: f32 ↔ binary16 by hand, as the opt-in f16 copy of W_hh rounds.
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
//! ## Running without a GPU (CI)
//! The parity tests run on Mesa's software drivers. Debian/Ubuntu packages:
//! `mesa-vulkan-drivers` (lavapipe, pulls in the loader `libvulkan1`) for
//! Vulkan, and `libegl1 libegl-mesa0 libgl1-mesa-dri` (llvmpipe through EGL)
//! for GL. Environment:
//! - `RECURRENT_REQUIRE_GPU=1`: a missing adapter fails the GPU tests instead
//!   of skipping them;
//! - `RECURRENT_BACKEND=vulkan` or `RECURRENT_BACKEND=gl` (or wgpu's own
//!   `WGPU_BACKEND`): which backend to search; run the suite once per backend.
//!
//! ## Environment
//! - `RECURRENT_AUTOTUNE=1` (or `on`): per-shape GEMM tuning (see [`autotune`]):
//!   each new GEMM shape costs at most 8 candidates x 4 runs when its plan is
//!   first built; and the step kernels' tile per model shape ([`steptune`]:
//!   at most 10 tiles x 4 forward+backward passes when a new shape's plan is
//!   first built, unless `RECURRENT_STEP_TILE` or [`GpuModel::set_step_tile`]
//!   pinned it). Off by default (every GEMM takes the fixed choice, the step
//!   kernels the default tile): unmeasured on real GPUs so far, and a timed
//!   GEMM choice can change run-to-run results (a step tile cannot).
//! - `RECURRENT_STEP_TILE=units,rows,chunk[,rb[,sk[,direct]]][,ub=N][,persist]`: the step kernels' tile
//!   (manual; [`StepTile`]): a workgroup of units x rows (x sk) invocations owns
//!   `units` hidden units for rows·rb batch rows, each invocation one unit
//!   for `rb` rows (register blocking, 1 to 8, default 1), staging `chunk`
//!   inputs at a time, the loop over K split over `sk` slices (default 1);
//!   with `direct`, nothing staged: W_hh and the states read straight from
//!   memory, K interleaved over the slices, a tree adding their sums; `ub=N`
//!   gives each backward invocation N units (1 to 4); `persist` runs the
//!   tile persistently: one workgroup per direction loops over every step
//!   (and the step's tiles) in one dispatch per layer and pass, a storage
//!   barrier between steps, the same bits as the tile per step (for small
//!   steps, where launching one costs more than computing it).
//!   Default 16,16,32,1 (16,4,32,1 where a workgroup has fewer than 256
//!   invocations). Every tile with sk = 1 gives the same bits; sk > 1 adds
//!   partial sums (other rounding). Per model: [`GpuModel::set_step_tile`].
//!   rb > 1, sk > 1, direct, ub > 1 and persist are unmeasured on real GPUs so far.
//! - `RECURRENT_GPU_F16=1` (or `on`): models keep a half-precision copy of
//!   every W_hh, which the per-step kernels read instead of the f32 weights
//!   (f32 accumulation; master weights, gradients, optimizer and every other
//!   GEMM stay f32). Also [`GpuContext::set_f16_weights`],
//!   [`GpuModel::with_f16_weights`], `recurrent bench --f16`. Off by default.
//!   Results match the f32 path run on W_hh rounded to f16 (round to nearest
//!   even) to the usual GPU tolerances, and the unrounded model to a looser
//!   one (`tests/gpu_f16.rs`). Stored as packed `u32` pairs converted with
//!   integer operations, so no adapter feature is needed (GL too). Unmeasured
//!   on real GPUs so far: whether halving W_hh's bytes beats the unpacking is
//!   for `recurrent bench --f16` on the hardware to say. See [`model`].
//!
//! Lavapipe prints `XDG_RUNTIME_DIR is invalid` on stderr without a session;
//! it is harmless.
//!
//! ## Performance (measured, NVIDIA H200, Vulkan; `training_throughput` test)
//! | model (Adam, clip 1) | GPU ms/step | CPU path ms/step (16 cores) |
//! | --- | --- | --- |
//! | LSTM 2 layers I28 H128 B64 T28 (MNIST) | 4.6 | 136 |
//! | LSTM H512 B64 T25 | 11.8 | 562 |
//! | LSTM H1024 B64 T25 | 32.8 | 2075 |
//! | GRU 2 layers bidirectional H256 B32 T50 | 15.6 | 682 |
//!
//! [`GpuModel::profile_train_step`] gives the per-kernel split: the per-step
//! recurrent kernels take 50-80% of the time (each step is a tiny GEMM whose
//! cost is latency: chunk loads and barriers), then the large GEMMs.
//! What to do next, in order of expected gain:
//! 1. Step kernels: split K across the warps of a workgroup (fewer sequential
//!    chunks per dispatch), keep W_hh tiles resident across steps for small H
//!    (one persistent workgroup per tile, DESIGN 4.6/"persistent kernel"), and
//!    run layer l+1 beside layer l as a wavefront.
//! 2. GEMM: remove the per-load buffer switch (specialise pipelines by operand
//!    buffer with an `override`), 8x8 outputs per invocation and double-buffered
//!    tiles; f16 storage with `SHADER_F16`.
//! 3. Tile shapes per problem size, measured at first use and cached: done
//!    for the GEMMs ([`autotune`]: register block, tile, small-grid kernel and
//!    split-K per shape) and for the step kernels' tile ([`steptune`], rows per
//!    invocation `rb` among the candidates; a manual sweep is in `benches/device_run3.sh`).

pub mod autotune;
pub mod bench;
pub mod context;
pub mod half;
pub mod kernels;
pub mod model;
pub mod optim_state;
pub mod steptune;
pub mod workspace;

pub use context::{gpu_available, try_context, DevicePreference, GpuContext};
pub use kernels::StepTile;
pub use model::GpuModel;
