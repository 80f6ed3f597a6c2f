//! Dropout (PyTorch semantics, training only): the probabilities a model
//! trains with, and its masks, drawn from a counter-based hash of the seed,
//! the training step, the site and the element's index. Nothing is stored
//! between forward and backward (backward draws the same masks again), a
//! seeded run repeats, and a resumed run draws what the uninterrupted one
//! would have (the step is the optimizer's). The hash is 32-bit integer
//! arithmetic only, so that a WGSL kernel can compute the same masks.
//!
//! Where the masks go (as `nn.LSTM(dropout=)` and `word_language_model`'s
//! `nn.Dropout`s):
//! - `input`: the stack's input (the features, or the embedding's output);
//! - `dropout`: the output of every recurrent layer but the last;
//! - `output`: the top layer's output before the head (its final states for
//!   `last`, every step for `sequence`);
//! - `recurrent` (variational, Gal and Ghahramani 2016): the state feeding
//!   `W_hh`, one `[B, H]` mask per layer-direction, the same at every step
//!   (only the recurrent product sees it: the GRU's `z·h_prev` term and the
//!   LSTM's cell state do not).
//!
//! The GPU path draws the same masks (`shaders/mask.wgsl`): `dropout.wgsl`
//! for the first three, the step kernels themselves for `recurrent`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Dropout probabilities of a model, each in `[0, 1)`; all zero: off.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Dropout {
    /// On the output of every recurrent layer but the last (`nn.LSTM`'s `dropout`).
    #[serde(default)]
    pub dropout: f32,
    /// On the stack's input: the features, or the embedding's output.
    #[serde(default)]
    pub input: f32,
    /// On the top layer's output before the head.
    #[serde(default)]
    pub output: f32,
    /// On the state feeding `W_hh`, one mask per sequence for all steps.
    #[serde(default)]
    pub recurrent: f32,
    /// Seed of the masks (with the step, it picks them).
    #[serde(default)]
    pub seed: u64,
}

impl Dropout {
    /// No dropout anywhere.
    pub fn is_off(&self) -> bool {
        self.dropout == 0.0 && self.input == 0.0 && self.output == 0.0 && self.recurrent == 0.0
    }

    /// The probability at `site`.
    pub fn p(&self, site: Site) -> f32 {
        match site {
            Site::Input => self.input,
            Site::Between(_) => self.dropout,
            Site::Output => self.output,
            Site::Recurrent(_) => self.recurrent,
        }
    }

    /// Each probability in `[0, 1)`: 1 would drop everything and scale by infinity.
    pub fn validate(&self) -> Result<()> {
        for (name, p) in [
            ("dropout", self.dropout),
            ("input dropout", self.input),
            ("output dropout", self.output),
            ("recurrent dropout", self.recurrent),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::Config(format!(
                    "{name} {p} is outside [0, 1): give a probability such as 0.2"
                )));
            }
        }
        Ok(())
    }
}

/// Where a mask is applied; each site of a step gets its own mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The stack's input `[T, B, I]`.
    Input,
    /// The input of layer `k ≥ 1`, the output of layer `k - 1`: `[T, B, D·H]`.
    Between(usize),
    /// The head's input: `[B, D·H]` (`last`) or `[T, B, D·H]` (`sequence`).
    Output,
    /// The state feeding `W_hh` in layer-direction `k` (layer · directions +
    /// direction): `[B, H]`, the same at every step.
    Recurrent(usize),
}

impl Site {
    /// The number that keys the site's mask (the GPU kernel's `site`).
    pub fn code(self) -> u32 {
        match self {
            Site::Input => 1,
            Site::Output => 2,
            Site::Between(k) => 0x100 + k as u32,
            Site::Recurrent(k) => 0x200 + k as u32,
        }
    }
}

/// The PCG hash (Jarzynski and Olano, *Hash Functions for GPU Rendering*,
/// JCGT 2020): one step of a 32-bit LCG, then PCG's RXS-M-XS output permutation.
pub fn mix(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The masks of one training step: `seed` and `step` folded into one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepKey(pub u32);

impl StepKey {
    /// The key of training step `step` (the optimizer's count after it, from 1) under `seed`.
    pub fn new(seed: u64, step: u64) -> StepKey {
        let mut k = mix(seed as u32);
        for w in [(seed >> 32) as u32, step as u32, (step >> 32) as u32] {
            k = mix(k ^ w);
        }
        StepKey(k)
    }

    /// The key of one site's mask.
    pub fn site(self, site: Site) -> u32 {
        mix(self.0 ^ mix(site.code()))
    }
}

/// A probability as the masks use it: an element is kept when the top 24
/// bits of its hash are at least `threshold` (= ⌈p·2²⁴⌉), and scaled by `scale` = 1/(1-p).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub threshold: u32,
    pub scale: f32,
}

impl Rate {
    pub fn new(p: f32) -> Rate {
        Rate {
            threshold: (p as f64 * (1u64 << 24) as f64).ceil() as u32,
            scale: (1.0 / (1.0 - p as f64)) as f32,
        }
    }

    /// The mask's value at element `i` of the site keyed `site`: 0 or `scale`.
    pub fn at(self, site: u32, i: u32) -> f32 {
        if mix(site ^ mix(i)) >> 8 >= self.threshold {
            self.scale
        } else {
            0.0
        }
    }
}

/// The dropout of one training step: the model's probabilities and the step's key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepDropout {
    pub rates: Dropout,
    pub key: StepKey,
}

impl StepDropout {
    /// The probability at `site`.
    pub fn p(&self, site: Site) -> f32 {
        self.rates.p(site)
    }

    /// The mask of `site` over `n` elements (0 or the scale each), or `None`
    /// when its probability is 0.
    pub fn mask(&self, site: Site, n: usize) -> Option<Vec<f32>> {
        let p = self.p(site);
        if p == 0.0 {
            return None;
        }
        let (rate, key) = (Rate::new(p), self.key.site(site));
        Some((0..n).map(|i| rate.at(key, i as u32)).collect())
    }

    /// Multiplies `v` (a site's activations or their gradient, element `i`
    /// at `v[i]`) by the site's mask; nothing when its probability is 0.
    pub fn apply(&self, site: Site, v: &mut [f32]) {
        let p = self.p(site);
        if p == 0.0 {
            return;
        }
        let (rate, key) = (Rate::new(p), self.key.site(site));
        for (i, x) in v.iter_mut().enumerate() {
            *x *= rate.at(key, i as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash's values, pinned: another implementation (a WGSL kernel, a
    /// PyTorch script applying our masks) must give these.
    #[test]
    fn the_hash_is_pinned() {
        assert_eq!(mix(0), 129_708_002);
        assert_eq!(mix(1), 2_831_084_092);
        assert_eq!(mix(0xffff_ffff), 3_861_530_882);
        assert_eq!(StepKey::new(0, 1).0, 537_453_139);
    }

    /// Over a large mask the kept fraction is within 4 standard deviations of
    /// 1 - p, kept values are exactly 1/(1-p) in f32, and other steps, seeds
    /// and sites draw other masks.
    #[test]
    fn masks_keep_one_minus_p_and_differ_by_step_seed_and_site() {
        let n = 1 << 20;
        for p in [0.1f32, 0.25, 0.5, 0.8] {
            let d = StepDropout {
                rates: Dropout {
                    dropout: p,
                    input: p,
                    output: p,
                    recurrent: p,
                    seed: 7,
                },
                key: StepKey::new(7, 3),
            };
            let mut v = vec![1.0f32; n];
            d.apply(Site::Input, &mut v);
            let kept = v.iter().filter(|&&x| x != 0.0).count() as f64;
            let (q, nf) = (1.0 - p as f64, n as f64);
            let sd = (nf * q * (1.0 - q)).sqrt();
            assert!((kept - nf * q).abs() < 4.0 * sd, "p={p}: kept {kept}");
            let scale = (1.0 / (1.0 - p as f64)) as f32;
            assert!(v.iter().all(|&x| x == 0.0 || x == scale));
            let other = |key: StepKey, site| {
                let mut w = vec![1.0f32; n];
                StepDropout { key, ..d }.apply(site, &mut w);
                w
            };
            assert_eq!(other(StepKey::new(7, 3), Site::Input), v, "repeats");
            assert_eq!(d.mask(Site::Input, n).unwrap(), v, "mask is apply on ones");
            for w in [
                other(StepKey::new(7, 4), Site::Input),
                other(StepKey::new(8, 3), Site::Input),
                other(StepKey::new(7, 3), Site::Output),
                other(StepKey::new(7, 3), Site::Between(1)),
                other(StepKey::new(7, 3), Site::Recurrent(0)),
                d.mask(Site::Recurrent(1), n).unwrap(),
            ] {
                let same = v.iter().zip(&w).filter(|(a, b)| a == b).count() as f64;
                // Two independent masks agree on q² + (1-q)² of the elements.
                let agree = q * q + (1.0 - q) * (1.0 - q);
                assert!((same / nf - agree).abs() < 0.01, "p={p}: {same}");
            }
        }
    }

    #[test]
    fn probabilities_outside_zero_to_one_are_refused() {
        for p in [1.0f32, 1.5, -0.1, f32::NAN, f32::INFINITY] {
            let d = Dropout {
                output: p,
                ..Dropout::default()
            };
            let e = d.validate().unwrap_err().to_string();
            assert!(e.contains("output dropout") && e.contains("[0, 1)"), "{e}");
        }
        assert!(Dropout::default().validate().is_ok() && Dropout::default().is_off());
    }
}
