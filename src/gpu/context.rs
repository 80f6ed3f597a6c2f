//! [`GpuContext`]: one [`GpuDevice`] (adapter, device, queue, limits, kernel
//! registry, tunables), the [`GpuOptions`] it was created with, and the
//! tuner's decisions ([`super::tune`]), shared (`Arc`) by every model that
//! runs on it. It derefs to its [`GpuDevice`].

use super::device::{open_adapter, DevicePreference, GpuDevice};
use super::gemm_config::{fixed_config, gemm_candidates, GemmConfig, GemmShape, TunedGemm};
use super::gemm_tune::{self, DeviceTimer, GemmTimer};
use super::options::GpuOptions;
use super::step_tile::StepTile;
use super::step_tune::{StepKey, TunedStep};
use super::tune::Cache;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One device and what every model on it shares.
pub struct GpuContext {
    gpu: GpuDevice,
    /// Measure GEMM configurations and step tiles at first use.
    autotune: AtomicBool,
    /// Models created from now on keep an f16 copy of W_hh for the step kernels.
    f16_weights: AtomicBool,
    /// Per-shape GEMM configurations ([`super::gemm_tune`]).
    gemms: Cache<GemmShape, GemmConfig>,
    /// Per-model-shape step tiles ([`super::step_tune`]).
    steps: Cache<StepKey, StepTile>,
    timer: Mutex<Arc<dyn GemmTimer>>,
}

impl std::ops::Deref for GpuContext {
    type Target = GpuDevice;
    fn deref(&self) -> &GpuDevice {
        &self.gpu
    }
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl GpuContext {
    /// Finds an adapter as `pref` says and opens a device on it, with the
    /// options the environment gives ([`GpuOptions::from_env`]).
    pub fn new(pref: DevicePreference) -> Result<Arc<GpuContext>> {
        Self::with_options(pref, GpuOptions::from_env()?)
    }

    /// [`GpuContext::new`] with options given by the program.
    pub fn with_options(pref: DevicePreference, options: GpuOptions) -> Result<Arc<GpuContext>> {
        let (device, queue, info) = open_adapter(pref, options.backends)?;
        Self::from_device_with_options(device, queue, info, options)
    }

    /// Wraps a device an application already has, with the options the
    /// environment gives. Its limits are the device's own (`device.limits()`).
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> Result<Arc<GpuContext>> {
        Self::from_device_with_options(device, queue, info, GpuOptions::from_env()?)
    }

    /// [`GpuContext::from_device`] with options given by the program
    /// (`options.backends` is not used: the device is given).
    pub fn from_device_with_options(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        options: GpuOptions,
    ) -> Result<Arc<GpuContext>> {
        let gpu = GpuDevice::new(
            device,
            queue,
            info,
            options.step_tile,
            options.shader_checks,
            options.specialise_gemms,
        )?;
        Ok(Arc::new(GpuContext {
            gpu,
            autotune: AtomicBool::new(options.autotune),
            f16_weights: AtomicBool::new(options.f16_weights),
            gemms: Cache::default(),
            steps: Cache::default(),
            timer: Mutex::new(Arc::new(DeviceTimer)),
        }))
    }

    /// Does every GEMM run a module specialised to its operands
    /// ([`super::GpuOptions::specialise_gemms`])?
    pub fn specialises_gemms(&self) -> bool {
        self.gpu.registry.specialises_gemms()
    }

    /// Modules of `gemm.wgsl` compiled so far (for the tests).
    #[doc(hidden)]
    pub fn gemm_modules(&self) -> usize {
        self.gpu.registry.gemm_modules()
    }

    /// The device this context runs on.
    pub fn device(&self) -> &GpuDevice {
        &self.gpu
    }

    /// The runtime checks our shaders are compiled with ([`GpuOptions::shader_checks`],
    /// `RECURRENT_SHADER_CHECKS`).
    pub fn shader_checks(&self) -> super::ShaderChecks {
        self.gpu.registry.shader_checks()
    }

    /// Is tuning on (GEMM configurations and step tiles measured at first use)?
    pub fn autotune(&self) -> bool {
        self.autotune.load(Ordering::Relaxed)
    }

    /// Turns tuning on or off for plans built from now on (plans already
    /// built keep their choices); returns the previous setting. Off, every
    /// GEMM takes the fixed choice, every model its default step tile, and
    /// nothing is measured.
    pub fn set_autotune(&self, on: bool) -> bool {
        self.autotune.swap(on, Ordering::Relaxed)
    }

    /// Do models created on this context with [`GpuModel::new`](super::GpuModel::new)
    /// keep an f16 copy of W_hh for the step kernels? Off unless
    /// [`GpuOptions::f16_weights`] (`RECURRENT_GPU_F16=1`).
    pub fn f16_weights(&self) -> bool {
        self.f16_weights.load(Ordering::SeqCst)
    }

    /// Turns the f16 copy of W_hh on or off for models created from now on
    /// (models already created keep theirs); returns the previous setting.
    pub fn set_f16_weights(&self, on: bool) -> bool {
        self.f16_weights.swap(on, Ordering::SeqCst)
    }

    /// Replaces the GEMM tuner's timing source (the default,
    /// [`DeviceTimer`], runs the candidates on this device). For tests.
    pub fn set_gemm_timer(&self, timer: Arc<dyn GemmTimer>) {
        *self.timer.lock().unwrap_or_else(|p| p.into_inner()) = timer;
    }

    /// The decision for `shape` on this context: measured now if the shape
    /// is new and tuning is on, else from the cache; the fixed choice when
    /// tuning is off (not cached).
    pub fn gemm_decision(&self, shape: &GemmShape) -> Result<TunedGemm> {
        let timer = self.timer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !self.autotune() {
            return gemm_tune::decide(&self.gpu, timer.as_ref(), shape, false);
        }
        self.gemms.get_or_decide(*shape, || {
            gemm_tune::decide(&self.gpu, timer.as_ref(), shape, true)
        })
    }

    /// The decisions for `shapes` (see [`GpuContext::gemm_decision`]).
    pub fn gemm_decisions(
        &self,
        shapes: impl IntoIterator<Item = GemmShape>,
    ) -> Result<HashMap<GemmShape, TunedGemm>> {
        let mut out = HashMap::new();
        for s in shapes {
            if !out.contains_key(&s) {
                out.insert(s, self.gemm_decision(&s)?);
            }
        }
        Ok(out)
    }

    /// The configuration GEMMs of `shape` run with on this context.
    pub fn gemm_config(&self, shape: &GemmShape) -> Result<GemmConfig> {
        Ok(self.gemm_decision(shape)?.choice)
    }

    /// The decision for `shape`, if it was tuned on this context.
    pub fn tuned_gemm(&self, shape: &GemmShape) -> Option<TunedGemm> {
        self.gemms.lookup(shape)
    }

    /// Every shape tuned on this context so far with its decision
    /// (configuration, measured µs, all candidates' times), ordered by shape.
    pub fn tuned_gemms(&self) -> Vec<(GemmShape, TunedGemm)> {
        self.gemms.all()
    }

    /// The configurations the tuner would measure for `shape` on this
    /// adapter, the fixed choice first.
    pub fn gemm_candidates(&self, shape: &GemmShape) -> Vec<GemmConfig> {
        gemm_candidates(shape, &self.limits, &self.tunables)
    }

    /// The fixed (untuned) configuration for `shape`.
    pub fn gemm_fixed_config(&self, shape: &GemmShape) -> GemmConfig {
        fixed_config(shape, &self.tunables)
    }

    /// The step tile decided for `key` on this context, if any.
    pub fn step_tile_decision(&self, key: &StepKey) -> Option<TunedStep> {
        self.steps.lookup(key)
    }

    /// Records the step tile decided for `key`.
    pub(crate) fn set_step_tile_decision(&self, key: StepKey, t: TunedStep) {
        self.steps.insert(key, t)
    }

    /// Every model shape whose step kernel tile was measured on this context,
    /// with its decision (tile, median µs, every candidate's), ordered by key.
    pub fn tuned_step_tiles(&self) -> Vec<(StepKey, TunedStep)> {
        self.steps.all()
    }
}

/// A context on the best adapter, or the reason there is none.
pub fn try_context() -> std::result::Result<Arc<GpuContext>, Error> {
    GpuContext::new(DevicePreference::Auto)
}

/// Is any adapter with compute shaders usable?
pub fn gpu_available() -> bool {
    try_context().is_ok()
}
