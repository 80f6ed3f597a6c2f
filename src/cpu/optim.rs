//! Optimizers exactly as `torch.optim` computes them (single-tensor CPU
//! path, same order of f32 operations), and `clip_grad_norm_`.

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

    /// One update of `params` from `grads` (same length).
    pub fn update(&mut self, params: &mut [f32], grads: &[f32]) {
        let n = params.len();
        self.step += 1;
        match self.kind {
            OptimizerKind::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => {
                let first = self.m.len() != n;
                if momentum != 0.0 && first {
                    self.m = vec![0.0; n];
                }
                for k in 0..n {
                    let mut g = grads[k];
                    if weight_decay != 0.0 {
                        g += weight_decay * params[k];
                    }
                    if momentum != 0.0 {
                        let buf = if first { g } else { momentum * self.m[k] + g };
                        self.m[k] = buf;
                        g = if nesterov { g + momentum * buf } else { buf };
                    }
                    params[k] += -lr * g;
                }
            }
            OptimizerKind::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                // Also when only one of them fits (the fields are public): never index past `v`.
                if self.m.len() != n || self.v.len() != n {
                    self.m = vec![0.0; n];
                    self.v = vec![0.0; n];
                }
                let t = self.step as i32;
                let bc1 = 1.0 - (beta1 as f64).powi(t);
                let bc2 = 1.0 - (beta2 as f64).powi(t);
                let step_size = (lr as f64 / bc1) as f32;
                let bc2_sqrt = bc2.sqrt() as f32;
                let w1 = 1.0 - beta1;
                let w2 = (1.0 - beta2 as f64) as f32;
                // Zipped slices (no index checks), so the loop vectorises;
                // the same operations per element as indexing would do.
                let (m_all, v_all) = (&mut self.m[..n], &mut self.v[..n]);
                for (((p, &g), m), v) in params
                    .iter_mut()
                    .zip(&grads[..n])
                    .zip(m_all.iter_mut())
                    .zip(v_all.iter_mut())
                {
                    let g = if weight_decay != 0.0 {
                        g + weight_decay * *p
                    } else {
                        g
                    };
                    // exp_avg.lerp_(grad, 1 - beta1)
                    *m += w1 * (g - *m);
                    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    *v = *v * beta2 + w2 * (g * g);
                    let denom = v.sqrt() / bc2_sqrt + eps;
                    *p += -step_size * (*m / denom);
                }
            }
        }
    }
}

/// `torch.nn.utils.clip_grad_norm_(max_norm)`: scales `grads` so that their
/// global L2 norm is at most `max_norm`; returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let total = grads
        .iter()
        .map(|&g| (g as f64) * (g as f64))
        .sum::<f64>()
        .sqrt() as f32;
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    if coef < 1.0 {
        grads.iter_mut().for_each(|g| *g *= coef);
    }
    total
}
