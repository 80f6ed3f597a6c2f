//! The CPU path's optimizer updates, exactly as `torch.optim` computes them
//! (single-tensor CPU path, same order of f32 operations), and
//! `clip_grad_norm_`. The hyper-parameters and the per-step coefficients
//! both paths use are in [`crate::optim`].

use crate::optim::{AdamStep, Optimizer, OptimizerKind};

impl Optimizer {
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
                let AdamStep {
                    step_size,
                    bc2_sqrt,
                    w1,
                    w2,
                } = AdamStep::at(lr, beta1, beta2, self.step);
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
