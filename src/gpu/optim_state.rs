//! Moving the optimizer's moments between the device and the host
//! [`Optimizer`], so that checkpoints of GPU fits carry them and a fit resumes
//! exactly on either path.

use super::model::GpuModel;
use crate::error::{Error, Result};
use crate::optim::{Optimizer, OptimizerKind};

impl GpuModel {
    /// Copies the device's moments into `opt.m` (SGD momentum buffer / Adam
    /// `exp_avg`) and `opt.v` (Adam `exp_avg_sq`; empty for SGD), `[P]` each,
    /// as the CPU path keeps them. Waits for the steps in flight.
    pub fn download_moments(&mut self, opt: &mut Optimizer) -> Result<()> {
        if opt.step == 0 {
            return unpack_moments(opt, &[], 0);
        }
        let s = self.read_state()?;
        unpack_moments(opt, &s, self.num_params())
    }

    /// Writes `opt`'s moments to the device, before resuming at `opt.step`.
    /// Moments the optimizer does not have (SGD's `v`, or all of them before
    /// the first step) are written as zeros.
    pub fn upload_moments(&mut self, opt: &Optimizer) -> Result<()> {
        let s = pack_moments(opt, self.num_params())?;
        self.write_state(&s)
    }
}

/// The device's optimizer state `s` (`[2P]`: the first moments, then the
/// second) into `opt.m` and `opt.v` as the CPU path keeps them (nothing
/// before the first step, no `v` for SGD, no `m` for SGD without momentum).
pub(crate) fn unpack_moments(opt: &mut Optimizer, s: &[f32], p: usize) -> Result<()> {
    opt.m.clear();
    opt.v.clear();
    if opt.step == 0 {
        return Ok(());
    }
    if s.len() != 2 * p {
        return Err(Error::Gpu(format!(
            "the optimizer state has {} values, not {}",
            s.len(),
            2 * p
        )));
    }
    match opt.kind {
        OptimizerKind::Sgd { momentum, .. } => {
            if momentum != 0.0 {
                opt.m = s[..p].to_vec();
            }
        }
        OptimizerKind::Adam { .. } => {
            opt.m = s[..p].to_vec();
            opt.v = s[p..2 * p].to_vec();
        }
    }
    Ok(())
}

/// `opt`'s moments as the device's state `[2P]` (zeros where it has none).
pub(crate) fn pack_moments(opt: &Optimizer, p: usize) -> Result<Vec<f32>> {
    let mut s = vec![0.0f32; 2 * p];
    for (what, src, dst) in [("m", &opt.m, 0..p), ("v", &opt.v, p..2 * p)] {
        match src.len() {
            0 => {}
            n if n == p => s[dst].copy_from_slice(src),
            n => {
                return Err(Error::Argument(format!(
                    "optimizer moment `{what}` has {n} values; the model has {p} parameters"
                )))
            }
        }
    }
    Ok(s)
}
