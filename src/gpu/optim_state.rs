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
            opt.m.clear();
            opt.v.clear();
            return Ok(());
        }
        let p = self.num_params();
        let s = self.read_state()?;
        match opt.kind {
            OptimizerKind::Sgd { momentum, .. } => {
                opt.m = if momentum != 0.0 {
                    s[..p].to_vec()
                } else {
                    Vec::new()
                };
                opt.v.clear();
            }
            OptimizerKind::Adam { .. } => {
                opt.m = s[..p].to_vec();
                opt.v = s[p..2 * p].to_vec();
            }
        }
        Ok(())
    }

    /// Writes `opt`'s moments to the device, before resuming at `opt.step`.
    /// Moments the optimizer does not have (SGD's `v`, or all of them before
    /// the first step) are written as zeros.
    pub fn upload_moments(&mut self, opt: &Optimizer) -> Result<()> {
        let p = self.num_params();
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
        self.write_state(&s)
    }
}
