//! Learning-rate schedules, set once per epoch (as PyTorch's `scheduler.step()`
//! after each epoch).

use crate::error::{Error, Result};

/// The learning rate of each epoch as a function of the optimizer's base rate.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// `base * gamma^(epoch / every)` (epoch counted from 0): `torch.optim.lr_scheduler.StepLR`.
    Step { every: usize, gamma: f32 },
    /// Cosine annealing from `base` at epoch 0 towards `eta_min`:
    /// `eta_min + (base - eta_min) * (1 + cos(pi * epoch / epochs)) / 2`, which is
    /// `torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs)` stepped once per
    /// epoch (the last epoch still trains, just above `eta_min`).
    Cosine { eta_min: f32 },
}

impl LrSchedule {
    /// The learning rate of epoch `epoch` (from 0) of a fit of `epochs` epochs.
    pub fn lr(&self, base: f32, epoch: usize, epochs: usize) -> f32 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
            LrSchedule::Cosine { eta_min } => {
                let t = epoch.min(epochs) as f64 / epochs.max(1) as f64;
                (eta_min as f64
                    + (base as f64 - eta_min as f64) * (1.0 + (std::f64::consts::PI * t).cos())
                        / 2.0) as f32
            }
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step { every, gamma } => {
                if every == 0 {
                    return Err(Error::Argument(
                        "step schedule: `every` must be at least 1 epoch".into(),
                    ));
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(Error::Argument(format!("step schedule: gamma {gamma} must be a finite number > 0 (0.1 divides the rate by 10)")));
                }
                Ok(())
            }
            LrSchedule::Cosine { eta_min } => {
                if !(eta_min.is_finite() && eta_min >= 0.0) {
                    return Err(Error::Argument(format!(
                        "cosine schedule: eta_min {eta_min} must be a finite number >= 0"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Parses `constant`, `step:EVERY:GAMMA` (e.g. `step:5:0.5`) or `cosine[:ETA_MIN]`.
    pub fn parse(s: &str) -> Result<LrSchedule> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str, what: &str| -> Result<f64> {
            p.parse::<f64>().map_err(|_| {
                Error::Argument(format!("schedule '{s}': {what} '{p}' is not a number"))
            })
        };
        let sched = match parts.as_slice() {
            ["constant"] => LrSchedule::Constant,
            ["step", every, gamma] => LrSchedule::Step { every: num(every, "every")? as usize, gamma: num(gamma, "gamma")? as f32 },
            ["cosine"] => LrSchedule::Cosine { eta_min: 0.0 },
            ["cosine", m] => LrSchedule::Cosine { eta_min: num(m, "eta_min")? as f32 },
            _ => return Err(Error::Argument(format!("unknown schedule '{s}': use constant, step:EVERY:GAMMA (e.g. step:5:0.5) or cosine[:ETA_MIN]"))),
        };
        sched.validate()?;
        Ok(sched)
    }
}
