//! Shared by the examples: the `--device` flag.

use clap::ValueEnum;

/// Where to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The CPU path.
    Cpu,
    /// A GPU through wgpu.
    Gpu,
    /// The best GPU wgpu finds, else the CPU path.
    Auto,
}

/// Resolves `--device` to the device the example runs on, saying which it took.
/// The GPU path is not linked into the examples yet: `gpu` is refused with a
/// clear message and `auto` falls back to the CPU path.
pub fn resolve(device: Device) -> Result<&'static str, String> {
    match device {
        Device::Cpu => Ok("cpu"),
        Device::Gpu => Err("--device gpu: the GPU path is not linked into this example yet; run with --device cpu (or auto, which falls back to the CPU)".into()),
        Device::Auto => {
            eprintln!("device auto: the GPU path is not linked into this example yet, using the CPU path");
            Ok("cpu")
        }
    }
}
