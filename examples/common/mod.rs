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

/// Resolves `--device` to the device the example runs on, saying which it took
/// (and, for `auto` without a hardware GPU, why it fell back to the CPU path).
pub fn resolve(device: Device) -> Result<recurrent::Device, recurrent::Error> {
    let choice = match device {
        Device::Cpu => recurrent::DeviceChoice::Cpu,
        Device::Gpu => recurrent::DeviceChoice::Gpu,
        Device::Auto => recurrent::DeviceChoice::Auto,
    };
    let (d, why) = recurrent::Device::resolve_verbose(choice)?;
    if let Some(why) = why {
        eprintln!("device auto: no hardware GPU ({why}); using the CPU path");
    }
    Ok(d)
}
