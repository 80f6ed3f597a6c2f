//! Optimizers' hyper-parameters and state ([`Optimizer`]) and the per-step
//! coefficients both paths compute their updates with ([`AdamStep`]): the
//! CPU path's update is in [`crate::cpu::optim`], the GPU's in
//! `shaders/optim.wgsl`, which gets these coefficients in its arguments.

use crate::error::{Error, Result};

/// An optimizer's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `torch.optim.SGD(lr, momentum, dampening=0, weight_decay, nesterov)`.
    Sgd {
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        nesterov: bool,
    },
    /// `torch.optim.Adam(lr, betas, eps, weight_decay)` (L2 decay added to the gradient, not AdamW).
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

/// An optimizer and its state over one flat parameter vector.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    /// SGD momentum buffer, or Adam's first moment.
    pub m: Vec<f32>,
    /// Adam's second moment.
    pub v: Vec<f32>,
    /// Steps taken.
    pub step: u64,
}

impl Optimizer {
    /// Plain SGD.
    pub fn sgd(lr: f32) -> Self {
        Self::new(OptimizerKind::Sgd {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        })
    }
    /// Adam with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8).
    pub fn adam(lr: f32) -> Self {
        Self::new(OptimizerKind::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        })
    }
    pub fn new(kind: OptimizerKind) -> Self {
        Optimizer {
            kind,
            m: Vec::new(),
            v: Vec::new(),
            step: 0,
        }
    }
    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Argument(m));
        match self.kind {
            OptimizerKind::Sgd {
                lr,
                momentum,
                weight_decay,
                ..
            } => {
                if !(lr.is_finite() && lr >= 0.0) {
                    return bad(format!("learning rate {lr} must be a finite number >= 0"));
                }
                if !(momentum.is_finite() && momentum >= 0.0) {
                    return bad(format!("momentum {momentum} must be >= 0"));
                }
                if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                    return bad(format!("weight decay {weight_decay} must be >= 0"));
                }
            }
            OptimizerKind::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                if !(lr.is_finite() && lr >= 0.0) {
                    return bad(format!("learning rate {lr} must be a finite number >= 0"));
                }
                if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2)) {
                    return bad(format!("Adam betas ({beta1}, {beta2}) must be in [0, 1)"));
                }
                if !(eps.is_finite() && eps >= 0.0) {
                    return bad(format!("Adam eps {eps} must be >= 0"));
                }
                if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                    return bad(format!("weight decay {weight_decay} must be >= 0"));
                }
            }
        }
        Ok(())
    }
    pub fn lr(&self) -> f32 {
        match self.kind {
            OptimizerKind::Sgd { lr, .. } | OptimizerKind::Adam { lr, .. } => lr,
        }
    }
    /// Sets the learning rate (for schedules).
    pub fn set_lr(&mut self, new: f32) {
        match &mut self.kind {
            OptimizerKind::Sgd { lr, .. } | OptimizerKind::Adam { lr, .. } => *lr = new,
        }
    }
}

/// Adam's coefficients for step `step` (counted from 1), as `torch.optim.Adam`
/// (single-tensor path) computes them: the bias corrections in f64, then
/// rounded to f32 once. Both paths take them from here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// `lr / (1 - beta1^step)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^step)`.
    pub bc2_sqrt: f32,
    /// `1 - beta1` (the weight of `exp_avg.lerp_`).
    pub w1: f32,
    /// `1 - beta2`, computed in f64.
    pub w2: f32,
}

impl AdamStep {
    pub fn at(lr: f32, beta1: f32, beta2: f32, step: u64) -> AdamStep {
        let t = step as i32;
        let bc1 = 1.0 - (beta1 as f64).powi(t);
        let bc2 = 1.0 - (beta2 as f64).powi(t);
        AdamStep {
            step_size: (lr as f64 / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            w1: 1.0 - beta1,
            w2: (1.0 - beta2 as f64) as f32,
        }
    }
}
