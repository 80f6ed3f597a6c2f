//! The GPU context: instance, adapter, device, queue, limits, and the kernel
//! registry, created once and shared (`Arc`) by every model that runs on it.
//!
//! ## Choosing an adapter
//! [`DevicePreference::Auto`] takes a discrete GPU, else an integrated one,
//! else a virtual one, else a software (CPU-type) adapter such as Mesa's
//! lavapipe or llvmpipe, and [`GpuContext::describe`] says which it took.
//! The backends searched are all those compiled in, narrowed by the
//! environment: `RECURRENT_BACKEND=vulkan|gl|metal|dx12` (ours) or wgpu's own
//! `WGPU_BACKEND` (same names, comma-separated).
//!
//! ## Limits
//! The device is requested with the adapter's own limits (usually far above
//! WebGPU's defaults: storage bindings of gigabytes on desktop GPUs); the
//! model checks its buffers against them and says what to shrink when a
//! shape does not fit.
//!
//! ## GEMM tiles
//! With tuning on, each GEMM shape gets its tile configuration measured at first use and
//! cached here, for every model on the context ([`super::autotune`];
//! opt-in with `RECURRENT_AUTOTUNE=1`, [`GpuContext::tuned_gemms`] lists the decisions).
//!
//! ## f16 recurrent weights
//! Opt-in (`RECURRENT_GPU_F16=1`, [`GpuContext::set_f16_weights`], or per
//! model [`GpuModel::with_f16_weights`](super::GpuModel::with_f16_weights)):
//! the step kernels read W_hh from a half-precision copy (see
//! [`super::model`]). The copy is packed two halves per `u32` and converted
//! with integer operations (`shaders/half.wgsl`), so it needs no adapter
//! feature (`SHADER_F16` is not requested) and runs on every backend, GL included.

use super::autotune::{self, GemmConfig, GemmShape, GemmTimer, TunedGemm, Tuner};
use super::kernels::Kernels;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which adapter to take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DevicePreference {
    /// Discrete, then integrated, then virtual, then software.
    #[default]
    Auto,
    /// Only a discrete or integrated (hardware) GPU.
    Hardware,
    /// Only a software (CPU-type) adapter, e.g. lavapipe: for tests.
    Software,
}

/// One adapter, device and queue, their limits, and the compiled kernels.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// The device's features (`TIMESTAMP_QUERY` where available, for profiles).
    pub features: wgpu::Features,
    pub(crate) kernels: Kernels,
    /// Per-shape GEMM configurations, measured at first use ([`super::autotune`]).
    pub(crate) tuner: Tuner,
    /// Per-model-shape step kernel tiles, measured at first use ([`super::steptune`]).
    pub(crate) step_tuner: super::steptune::StepTuner,
    /// Do models created from now on keep an f16 copy of W_hh for the step kernels?
    f16_weights: AtomicBool,
    /// The first error the device reported outside an error scope (out of
    /// memory, validation, device lost), taken by the next [`GpuContext::wait`].
    /// Without this sink wgpu's default handler would panic inside the host program.
    errors: Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Backends to search: `RECURRENT_BACKEND`, else `WGPU_BACKEND`, else all.
pub(crate) fn backends_from_env() -> Result<wgpu::Backends> {
    if let Ok(v) = std::env::var("RECURRENT_BACKEND") {
        let b = wgpu::Backends::from_comma_list(&v);
        if b.is_empty() {
            return Err(Error::Gpu(format!(
                "RECURRENT_BACKEND='{v}' names no backend. HINT: use vulkan, gl, metal or dx12"
            )));
        }
        return Ok(b);
    }
    Ok(wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()))
}

fn rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl GpuContext {
    /// Finds an adapter as `pref` says and opens a device on it.
    pub fn new(pref: DevicePreference) -> Result<Arc<GpuContext>> {
        pollster::block_on(Self::new_async(pref))
    }

    async fn new_async(pref: DevicePreference) -> Result<Arc<GpuContext>> {
        let backends = backends_from_env()?;
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let mut adapters: Vec<wgpu::Adapter> = instance
            .enumerate_adapters(backends)
            .await
            .into_iter()
            .filter(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            })
            .filter(|a| {
                let t = a.get_info().device_type;
                match pref {
                    DevicePreference::Auto => true,
                    DevicePreference::Hardware => matches!(
                        t,
                        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
                    ),
                    DevicePreference::Software => t == wgpu::DeviceType::Cpu,
                }
            })
            .collect();
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let Some(adapter) = adapters.into_iter().next() else {
            return Err(Error::Gpu(format!(
                "no {} adapter with compute shaders found on backends {backends:?}. HINT: install a \
                 Vulkan driver (on Linux without a GPU: the Mesa package mesa-vulkan-drivers gives the \
                 lavapipe software adapter), try RECURRENT_BACKEND=gl, or use the CPU path",
                match pref {
                    DevicePreference::Auto => "usable",
                    DevicePreference::Hardware => "hardware",
                    DevicePreference::Software => "software",
                }
            )));
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Optional: GPU timestamps for per-kernel profiles where the adapter has them.
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("recurrent"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Gpu(format!(
                    "could not open a device on {} ({:?}): {e}. HINT: another backend may work (RECURRENT_BACKEND=vulkan|gl)",
                    info.name, info.backend
                ))
            })?;
        Self::from_device(device, queue, info)
    }

    /// Wraps a device an application already has. Its limits are the
    /// device's own (`device.limits()`).
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> Result<Arc<GpuContext>> {
        let limits = device.limits();
        let features = device.features();
        let errors = Arc::new(std::sync::Mutex::new(None::<String>));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| format!("the device was lost ({reason:?}): {msg}"));
        });
        let kernels = Kernels::new(&device, &limits)?;
        Ok(Arc::new(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            kernels,
            tuner: Tuner::new(autotune::autotune_from_env()),
            step_tuner: Default::default(),
            f16_weights: AtomicBool::new(f16_weights_from_env()),
            errors,
        }))
    }

    /// `"<adapter name> (<backend>, <device type>)"`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Does the device have GPU timestamp queries (`TIMESTAMP_QUERY`), which
    /// [`GpuModel::profile_train_step`](super::GpuModel::profile_train_step) needs?
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// [`Error::MissingFeature`] unless the device has timestamp queries;
    /// `needed_for` says what wanted them.
    pub fn require_timestamps(&self, needed_for: &str) -> Result<()> {
        if self.has_timestamps() {
            return Ok(());
        }
        Err(Error::MissingFeature {
            adapter: self.describe(),
            feature: "timestamp queries (TIMESTAMP_QUERY)".into(),
            needed_for: needed_for.into(),
        })
    }

    /// Is per-shape GEMM autotuning on? (Off unless `RECURRENT_AUTOTUNE=1` at creation.)
    pub fn autotune(&self) -> bool {
        self.tuner.enabled()
    }

    /// Turns GEMM autotuning on or off for plans built from now on (plans
    /// already built keep their configurations); returns the previous setting.
    /// Off, every GEMM takes the fixed choice and nothing is measured.
    pub fn set_autotune(&self, on: bool) -> bool {
        self.tuner.set_enabled(on)
    }

    /// Do models created on this context with [`GpuModel::new`](super::GpuModel::new)
    /// keep an f16 copy of W_hh for the step kernels? Off unless
    /// `RECURRENT_GPU_F16=1` at creation (see [`super::model`]).
    pub fn f16_weights(&self) -> bool {
        self.f16_weights.load(Ordering::SeqCst)
    }

    /// Turns the f16 copy of W_hh on or off for models created from now on
    /// (models already created keep theirs); returns the previous setting.
    pub fn set_f16_weights(&self, on: bool) -> bool {
        self.f16_weights.swap(on, Ordering::SeqCst)
    }

    /// Replaces the timing source of the autotuner (the default,
    /// [`autotune::DeviceTimer`], runs the candidates on this device). For tests.
    pub fn set_gemm_timer(&self, timer: Arc<dyn GemmTimer>) {
        self.tuner.set_timer(timer)
    }

    /// The configuration GEMMs of `shape` run with on this context: measured
    /// now if the shape is new (and tuning is on), else from the cache; the
    /// fixed choice when tuning is off.
    pub fn gemm_config(&self, shape: &GemmShape) -> Result<GemmConfig> {
        Ok(self.tuner.config(self, shape)?.config)
    }

    /// The decision for `shape`, if it was tuned on this context.
    pub fn tuned_gemm(&self, shape: &GemmShape) -> Option<TunedGemm> {
        self.tuner.lookup(shape)
    }

    /// Every shape tuned on this context so far with its decision
    /// (configuration, measured µs, all candidates' times), ordered by shape.
    pub fn tuned_gemms(&self) -> Vec<(GemmShape, TunedGemm)> {
        self.tuner.all()
    }

    /// The configurations the autotuner would measure for `shape` on this
    /// adapter, the fixed choice first ([`autotune::candidates`]).
    pub fn gemm_candidates(&self, shape: &GemmShape) -> Vec<GemmConfig> {
        autotune::candidates(shape, &self.limits, &self.kernels.tunables)
    }

    /// Every model shape whose step kernel tile was measured on this context,
    /// with its decision (tile, median ms, every candidate's), ordered by key.
    pub fn tuned_step_tiles(&self) -> Vec<(super::steptune::StepKey, super::steptune::TunedStep)> {
        self.step_tuner.all()
    }

    /// The fixed (untuned) configuration for `shape`.
    pub fn gemm_fixed_config(&self, shape: &GemmShape) -> GemmConfig {
        autotune::fixed_config(shape, &self.kernels.tunables)
    }

    /// Reads the first `bytes` of `buf` (which needs `COPY_SRC`) back to the
    /// host, waiting for all submitted work.
    pub(crate) fn read_bytes(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        self.read_bytes_at(buf, 0, bytes)
    }

    /// As [`Self::read_bytes`], from byte `offset` of `buf`.
    pub(crate) fn read_bytes_at(
        &self,
        buf: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging.read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        enc.copy_buffer_to_buffer(buf, offset, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("buffer mapping was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("reading back from the GPU failed: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading back from the GPU failed: {e:?}")))?;
        let out = view.to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// A program's uniform buffer, holding its argument slots `uniforms`, and the
    /// bind group of the six bindings every kernel sees: `[params, grads, work,
    /// ints, state]` whole, then one uniform slot (the dynamic offset picks it).
    pub(crate) fn bind_program(
        &self,
        label: &str,
        uniforms: &[u8],
        [params, grads, work, ints, state]: [&wgpu::Buffer; 5],
    ) -> (wgpu::Buffer, wgpu::BindGroup) {
        use super::kernels::SLOT_BYTES;
        let ubuf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("{label}.uniforms")),
            size: uniforms.len().max(SLOT_BYTES as usize) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&ubuf, 0, uniforms);
        let bind_group = self.bind_group(label, &ubuf, [params, grads, work, ints, state]);
        (ubuf, bind_group)
    }

    /// A bind group of the shared layout over the five storage buffers (bindings
    /// 0-4) and one slot of the uniform buffer `ubuf` (binding 5).
    pub(crate) fn bind_group(
        &self,
        label: &str,
        ubuf: &wgpu::Buffer,
        [params, grads, work, ints, state]: [&wgpu::Buffer; 5],
    ) -> wgpu::BindGroup {
        use super::kernels::SLOT_BYTES;
        fn whole(buf: &wgpu::Buffer, binding: u32) -> wgpu::BindGroupEntry<'_> {
            wgpu::BindGroupEntry {
                binding,
                resource: buf.as_entire_binding(),
            }
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&format!("{label}.bind_group")),
            layout: &self.kernels.bind_group_layout,
            entries: &[
                whole(params, 0),
                whole(grads, 1),
                whole(work, 2),
                whole(ints, 3),
                whole(state, 4),
                wgpu::BindGroupEntry {
                    binding: 5,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: ubuf,
                        offset: 0,
                        size: std::num::NonZeroU64::new(SLOT_BYTES),
                    }),
                },
            ],
        })
    }

    /// Checks that a storage buffer of `bytes` can be created and bound whole.
    pub(crate) fn check_storage(&self, what: &str, bytes: u64) -> Result<()> {
        let max = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > max {
            return Err(Error::Gpu(format!(
                "{what} needs {bytes} bytes, above this adapter's storage binding limit of {max} bytes ({}). \
                 HINT: lower the batch size or the sequence length, or use a smaller model",
                self.describe()
            )));
        }
        Ok(())
    }

    /// Blocks until all submitted work is done.
    /// Fails with the device's error (out of memory, lost device, …) if one was reported.
    pub fn wait(&self) -> Result<()> {
        let polled = self
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")));
        self.check()?;
        polled
    }

    /// Returns the error the device reported since the last check, if any.
    pub fn check(&self) -> Result<()> {
        let taken = self.errors.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            Some(e) => Err(Error::Gpu(format!(
                "{e}. HINT: the weights of the last checkpoint on disk are intact; for out-of-memory, lower the batch size or the sequence length"
            ))),
            None => Ok(()),
        }
    }
}

/// `RECURRENT_GPU_F16` = `1`, `on`, `true` or `yes`: new contexts start with
/// the f16 copy of W_hh on ([`GpuContext::f16_weights`]).
pub fn f16_weights_from_env() -> bool {
    env_flag("RECURRENT_GPU_F16")
}

/// Is the environment variable `name` set to `1`, `on`, `true` or `yes`
/// (any case, surrounding spaces ignored)? Unset or anything else: no.
pub(crate) fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "on" | "true" | "yes"
        )
    })
}

/// A context on the best adapter, or `None` with the reason when there is none.
pub fn try_context() -> std::result::Result<Arc<GpuContext>, Error> {
    GpuContext::new(DevicePreference::Auto)
}

/// Is any adapter with compute shaders usable?
pub fn gpu_available() -> bool {
    try_context().is_ok()
}
