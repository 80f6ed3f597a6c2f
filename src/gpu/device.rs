//! [`GpuDevice`]: one adapter's device and queue, their limits and
//! features, the kernel registry and the tunables that follow from the
//! limits, the sink of the device's errors, and reading buffers back.
//! Created once per context; everything on the GPU path runs through it.
//!
//! ## Choosing an adapter
//! [`DevicePreference::Auto`] takes a discrete GPU, else an integrated one,
//! else a virtual one, else a software (CPU-type) adapter such as Mesa's
//! lavapipe or llvmpipe. The device is requested with the adapter's own
//! limits (usually far above WebGPU's defaults); models check their buffers
//! against them and say what to shrink when a shape does not fit.

use super::options::ShaderChecks;
use super::registry::{Registry, SLOT_BYTES};
use super::step_tile::StepTile;
use super::tunables::Tunables;
use crate::error::{Error, Result};
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

/// One device and queue, their limits, the kernel registry and tunables.
pub struct GpuDevice {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// The device's features (`TIMESTAMP_QUERY` where available, for profiles).
    pub features: wgpu::Features,
    /// Shader modules and compiled pipelines.
    pub registry: Registry,
    /// Sizes the kernels run with on this adapter.
    pub tunables: Tunables,
    /// The first error the device reported outside an error scope (out of
    /// memory, validation, device lost), taken by the next [`GpuDevice::wait`].
    /// Without this sink wgpu's default handler would panic inside the host program.
    errors: Arc<std::sync::Mutex<Option<String>>>,
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

/// Finds an adapter among `backends` as `pref` says and opens a device on
/// it with the adapter's own limits (and timestamp queries where it has them).
pub fn open_adapter(
    pref: DevicePreference,
    backends: wgpu::Backends,
) -> Result<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo)> {
    pollster::block_on(open_async(pref, backends))
}

/// A wgpu instance over `backends`. Before the first one, with no Wayland
/// session (`WAYLAND_DISPLAY` and `XDG_RUNTIME_DIR` unset, as on a server or
/// in CI), sets `NODEVICE_SELECT=1`: Mesa's device-select Vulkan layer
/// otherwise connects to Wayland to find the display's GPU, and libwayland
/// prints `error: XDG_RUNTIME_DIR is invalid or not set` for every instance.
/// The layer only reorders adapters, which [`open_adapter`] ranks itself.
/// (Set once, before this crate creates any instance.)
pub fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let unset = |v: &str| std::env::var_os(v).is_none();
        if unset("WAYLAND_DISPLAY") && unset("XDG_RUNTIME_DIR") && unset("NODEVICE_SELECT") {
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    });
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

async fn open_async(
    pref: DevicePreference,
    backends: wgpu::Backends,
) -> Result<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo)> {
    let instance = instance(backends);
    let found: Vec<wgpu::Adapter> = instance
        .enumerate_adapters(backends)
        .await
        .into_iter()
        .filter(|a| {
            a.get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        })
        .collect();
    let software: Vec<String> = found
        .iter()
        .map(|a| a.get_info())
        .filter(|i| i.device_type == wgpu::DeviceType::Cpu)
        .map(|i| format!("{} ({:?})", i.name, i.backend))
        .collect();
    let mut adapters: Vec<wgpu::Adapter> = found
        .into_iter()
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
        if pref == DevicePreference::Hardware && !software.is_empty() {
            return Err(Error::Gpu(format!(
                "found only software adapters ({}), which `auto` skips: they are slower than the CPU path. \
                 HINT: --device gpu (DevicePreference::Auto) takes them",
                software.join(", ")
            )));
        }
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
    Ok((device, queue, info))
}

impl GpuDevice {
    /// Wraps a device (one of ours or an application's); its limits are the
    /// device's own (`device.limits()`). `step_tile`: a pinned step tile
    /// ([`super::GpuOptions::step_tile`]), checked against them.
    pub fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        step_tile: Option<StepTile>,
        checks: ShaderChecks,
        specialise_gemms: bool,
    ) -> Result<GpuDevice> {
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
        let mut tunables = Tunables::new(&limits, step_tile)?;
        if info.device_type == wgpu::DeviceType::Cpu {
            // llvmpipe ends an invocation's loops after 65,535 iterations
            // in all: a grid's wait stays well under that, with room for
            // the loops over tiles and chunks (~40 ms of polling).
            tunables.grid_spin = 40_000;
        }
        let registry = Registry::new(&device, checks, specialise_gemms);
        Ok(GpuDevice {
            device,
            queue,
            info,
            limits,
            features,
            registry,
            tunables,
            errors,
        })
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
        Ok(self.read_ranges(buf, &[(offset, bytes)])?.remove(0))
    }

    /// Several `(offset, bytes)` ranges of `buf` (multiples of 4) read back
    /// through one staging buffer, one submission and one wait.
    pub(crate) fn read_ranges(
        &self,
        buf: &wgpu::Buffer,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        if total == 0 {
            return Ok(vec![Vec::new(); ranges.len()]);
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging.read"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        let mut at = 0;
        for &(offset, bytes) in ranges {
            if bytes > 0 {
                enc.copy_buffer_to_buffer(buf, offset, &staging, at, bytes);
            }
            at += bytes;
        }
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
        let mut out = Vec::with_capacity(ranges.len());
        let mut at = 0usize;
        for &(_, bytes) in ranges {
            out.push(view[at..at + bytes as usize].to_vec());
            at += bytes as usize;
        }
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
        fn whole(buf: &wgpu::Buffer, binding: u32) -> wgpu::BindGroupEntry<'_> {
            wgpu::BindGroupEntry {
                binding,
                resource: buf.as_entire_binding(),
            }
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&format!("{label}.bind_group")),
            layout: &self.registry.bind_group_layout,
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
