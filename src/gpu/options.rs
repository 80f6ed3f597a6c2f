//! [`GpuOptions`]: every setting of the GPU path that the environment can
//! give, read in one place ([`GpuOptions::from_env`]) or given by the
//! program ([`GpuContext::with_options`](super::GpuContext::with_options)),
//! and passed down from the context. Nothing below the context reads the
//! environment.
//!
//! | variable | field | values |
//! | --- | --- | --- |
//! | `RECURRENT_BACKEND` (else wgpu's `WGPU_BACKEND`) | [`GpuOptions::backends`] | `vulkan`, `gl`, `metal`, `dx12` (comma-separated) |
//! | `RECURRENT_AUTOTUNE` | [`GpuOptions::autotune`] | `1`/`on`/`true`/`yes` |
//! | `RECURRENT_STEP_TILE` | [`GpuOptions::step_tile`] | [`StepTile`]'s text form |
//! | `RECURRENT_GPU_F16` | [`GpuOptions::f16_weights`] | `1`/`on`/`true`/`yes` |
//! | `RECURRENT_SHADER_CHECKS` | [`GpuOptions::shader_checks`] | `checked`, `unchecked` |
//! | `RECURRENT_GEMM_SPECIALISE` | [`GpuOptions::specialise_gemms`] | `1`/`on`/`true`/`yes` |

use super::step_tile::StepTile;
use crate::error::{Error, Result};

/// Settings of a GPU context (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct GpuOptions {
    /// Backends searched for an adapter.
    pub backends: wgpu::Backends,
    /// Measure GEMM configurations per shape and step tiles per model shape
    /// at first use ([`super::tune`]). Off by default: a timed choice can
    /// change results from run to run, the fixed one cannot.
    pub autotune: bool,
    /// The step kernels' tile for every model on the context, pinned (not
    /// tuned); `None`: the adapter's default. Checked against the adapter's
    /// limits when the context is created.
    pub step_tile: Option<StepTile>,
    /// Models created on the context read W_hh from an f16 copy in the step kernels.
    pub f16_weights: bool,
    /// The runtime checks wgpu compiles into our shaders ([`ShaderChecks`]).
    pub shader_checks: ShaderChecks,
    /// Each GEMM runs a module specialised to its operands (their buffers
    /// and transposes, its bias and beta as constants: `gemm_spec.rs`). Off
    /// by default until measured; the same results either way.
    pub specialise_gemms: bool,
}

/// Whether wgpu adds its runtime checks to our shaders: on Vulkan, Metal and
/// DX12, wgpu 30 bounds every loop with a 64-bit counter
/// (`force_loop_bounding`) and clamps every dynamic index into buffers and
/// into workgroup and private arrays. Our shaders are our own and keep their
/// loops and indices in range by construction (loop bounds and sizes come
/// from uniforms the host checks against the buffers it binds; workgroup and
/// private arrays are indexed by local invocation ids and loop counters within
/// their constant or override-constant sizes; no loop spins without a bound),
/// so they can run without them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ShaderChecks {
    /// `create_shader_module`: every check on (the default until the device
    /// measurements decide).
    #[default]
    Checked,
    /// `create_shader_module_trusted` with `ShaderRuntimeChecks::unchecked()`:
    /// no loop bounding, no index clamping (buffer accesses stay bounded
    /// wherever the platform bounds them itself, as Vulkan's robustBufferAccess).
    Unchecked,
}

impl ShaderChecks {
    pub fn name(self) -> &'static str {
        match self {
            ShaderChecks::Checked => "checked",
            ShaderChecks::Unchecked => "unchecked",
        }
    }
    pub fn parse(s: &str) -> Result<ShaderChecks> {
        match s.trim().to_ascii_lowercase().as_str() {
            "checked" => Ok(ShaderChecks::Checked),
            "unchecked" => Ok(ShaderChecks::Unchecked),
            other => Err(Error::Argument(format!(
                "RECURRENT_SHADER_CHECKS='{other}': use checked (wgpu's runtime checks, the default) or unchecked"
            ))),
        }
    }
    /// wgpu's settings for this choice.
    pub fn runtime_checks(self) -> wgpu::ShaderRuntimeChecks {
        match self {
            ShaderChecks::Checked => wgpu::ShaderRuntimeChecks::checked(),
            ShaderChecks::Unchecked => wgpu::ShaderRuntimeChecks::unchecked(),
        }
    }
}

impl Default for GpuOptions {
    /// Every backend, tuning off, the default step tile, f32 W_hh, checked shaders.
    fn default() -> GpuOptions {
        GpuOptions {
            backends: wgpu::Backends::all(),
            autotune: false,
            step_tile: None,
            f16_weights: false,
            shader_checks: ShaderChecks::Checked,
            specialise_gemms: false,
        }
    }
}

impl GpuOptions {
    /// The options the environment gives (unset variables: the defaults).
    pub fn from_env() -> Result<GpuOptions> {
        let step_tile = match std::env::var("RECURRENT_STEP_TILE") {
            Ok(v) => Some(v.parse::<StepTile>().map_err(|e| match e {
                Error::Argument(m) => Error::Argument(format!("RECURRENT_STEP_TILE: {m}")),
                e => e,
            })?),
            Err(_) => None,
        };
        Ok(GpuOptions {
            backends: backends_from_env()?,
            autotune: env_flag("RECURRENT_AUTOTUNE"),
            step_tile,
            f16_weights: env_flag("RECURRENT_GPU_F16"),
            shader_checks: match std::env::var("RECURRENT_SHADER_CHECKS") {
                Ok(v) => ShaderChecks::parse(&v)?,
                Err(_) => ShaderChecks::Checked,
            },
            specialise_gemms: env_flag("RECURRENT_GEMM_SPECIALISE"),
        })
    }
}

/// Backends to search: `RECURRENT_BACKEND`, else `WGPU_BACKEND`, else all.
pub fn backends_from_env() -> Result<wgpu::Backends> {
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

/// Is the environment variable `name` set to `1`, `on`, `true` or `yes`
/// (any case, surrounding spaces ignored)? Unset or anything else: no.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "on" | "true" | "yes"
        )
    })
}
