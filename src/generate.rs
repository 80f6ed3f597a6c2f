//! Generation from a language model: a model whose output is a distribution
//! over its own input vocabulary (an embedding of V rows and a head of width
//! V) is fed a prime, then one token at a time what it drew, on the streaming
//! API, so the states stay where the stream keeps them: on the host for
//! [`Stream`], on the device for [`crate::gpu::GpuStream`].
//!
//! ```
//! use recurrent::generate::{generate, Sampling};
//! use recurrent::{Cell, Init, Model, ModelConfig, OutputMode, Stream};
//! let cfg = ModelConfig::new(Cell::Lstm, 8, 16, 12).embedding(12).output(OutputMode::Sequence);
//! let model = Model::new(cfg, &Init::seed(1))?;
//! let mut stream = Stream::new(&model)?;
//! let ids = generate(&mut stream, model.config(), &[3, 1, 4], 20, &Sampling::greedy())?;
//! assert_eq!(ids.len(), 20);
//! # Ok::<(), recurrent::Error>(())
//! ```

use crate::data::Inputs;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::rng::Rng;
use crate::stream::Stream;
use crate::tensor::Tensor;
use crate::text::Vocab;

/// How the next token is drawn from the model's logits.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Logits are divided by it before the softmax: below 1 sharpens, above
    /// 1 flattens. Must be finite and above 0.
    pub temperature: f32,
    /// Keep only the k most likely tokens (1 = greedy: the most likely,
    /// the lowest id among ties).
    pub top_k: Option<usize>,
    /// Keep the most likely tokens whose probabilities sum to at least p
    /// (nucleus sampling), in (0, 1].
    pub top_p: Option<f32>,
    /// Seed of the draws: the same seed and logits give the same tokens.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

impl Sampling {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        Sampling {
            top_k: Some(1),
            ..Sampling::default()
        }
    }

    /// Every setting in range, or an error naming the one that is not.
    pub fn check(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature <= 0.0 {
            return Err(Error::Argument(format!(
                "temperature {} is not usable: it must be finite and above 0 (1 samples the model's distribution; lower is more conservative)",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::Argument(
                "top-k 0 keeps no token: use 1 (greedy) or more".into(),
            ));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::Argument(format!(
                    "top-p {p} is outside (0, 1]: it is the probability mass of the tokens kept"
                )));
            }
        }
        Ok(())
    }
}

/// A batch of streams generation can feed: the CPU path's [`Stream`] and the
/// GPU path's [`crate::gpu::GpuStream`].
pub trait Steps {
    /// Feeds `[B, T_c]` token ids; returns the output as [`Stream::step`] does.
    fn step(&mut self, chunk: Inputs) -> Result<Tensor>;
}

impl Steps for Stream<'_> {
    fn step(&mut self, chunk: Inputs) -> Result<Tensor> {
        Stream::step(self, chunk)
    }
}

/// Checks that `cfg` is a language model over its own vocabulary; returns V.
pub fn check_language_model(cfg: &ModelConfig) -> Result<usize> {
    let Some(v) = cfg.vocab else {
        return Err(Error::Argument(
            "generation needs a model with an embedding (token ids in): this one reads features"
                .into(),
        ));
    };
    if cfg.out_features != v {
        return Err(Error::Argument(format!(
            "generation needs a head over the model's own vocabulary: the embedding has {v} rows and the head {} outputs",
            cfg.out_features
        )));
    }
    crate::stream::check_streamable(cfg)?;
    Ok(v)
}

/// Feeds `prime` (one stream), then draws `length` tokens one at a time,
/// each fed back; returns the drawn ids (the prime not included). The
/// stream must be fresh or hold one stream.
pub fn generate(
    stream: &mut dyn Steps,
    cfg: &ModelConfig,
    prime: &[i64],
    length: usize,
    sampling: &Sampling,
) -> Result<Vec<i64>> {
    let v = check_language_model(cfg)?;
    sampling.check()?;
    if length == 0 {
        return Err(Error::Argument(
            "length 0: nothing to generate (give at least 1)".into(),
        ));
    }
    if prime.is_empty() {
        return Err(Error::Argument(
            "the prime is empty: give at least one token to start from".into(),
        ));
    }
    if let Some((index, &id)) = prime
        .iter()
        .enumerate()
        .find(|(_, &id)| id < 0 || id as usize >= v)
    {
        return Err(Error::TokenOutOfRange {
            id,
            index,
            vocab: v,
        });
    }
    let mut rng = Rng::new(sampling.seed);
    let mut input = prime.to_vec();
    let mut out = Vec::with_capacity(length);
    for _ in 0..length {
        let t = input.len();
        let y = stream.step(Inputs::tokens(input, 1, t)?)?;
        // `sequence`: [1, t, V], the last step's; `last`: [1, V].
        let logits = &y.data[y.data.len() - v..];
        let id = draw(logits, sampling, &mut rng) as i64;
        out.push(id);
        input = vec![id];
    }
    Ok(out)
}

/// Text in, text out, for a model saved with its vocabulary: the prime's
/// tokens (each must be in the vocabulary: `<unk>` is not a prime), then
/// `length` tokens drawn, decoded.
pub fn generate_text(
    stream: &mut dyn Steps,
    cfg: &ModelConfig,
    vocab: &Vocab,
    prime: &str,
    length: usize,
    sampling: &Sampling,
) -> Result<String> {
    let v = check_language_model(cfg)?;
    if vocab.len() != v {
        return Err(Error::Argument(format!(
            "the vocabulary has {} tokens and the model's embedding {v} rows: the model was not saved with this vocabulary",
            vocab.len()
        )));
    }
    let ids = vocab
        .split(prime)
        .iter()
        .enumerate()
        .map(|(pos, t)| {
            vocab.id(t).map(|i| i as i64).ok_or_else(|| {
                Error::Argument(format!(
                    "the prime's token {t:?} at position {pos} is not in the model's vocabulary of {} tokens",
                    vocab.len()
                ))
            })
        })
        .collect::<Result<Vec<i64>>>()?;
    let out = generate(stream, cfg, &ids, length, sampling)?;
    vocab.decode(&out)
}

/// One token from `logits` under `sampling` (checked).
pub fn draw(logits: &[f32], sampling: &Sampling, rng: &mut Rng) -> usize {
    // Most likely first; ties by the lower id, so greedy is argmax.
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if sampling.top_k == Some(1) {
        return order[0];
    }
    let top = logits[order[0]] as f64;
    let t = sampling.temperature as f64;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - top) / t).exp())
        .collect();
    let keep = sampling.top_k.unwrap_or(probs.len()).min(probs.len());
    probs.truncate(keep);
    if let Some(p) = sampling.top_p {
        let total: f64 = probs.iter().sum();
        let mut mass = 0.0;
        let mut n = 0;
        for q in &probs {
            mass += q / total;
            n += 1;
            if mass >= p as f64 {
                break;
            }
        }
        probs.truncate(n);
    }
    let mut r = rng.next_f64() * probs.iter().sum::<f64>();
    for (k, q) in probs.iter().enumerate() {
        if r < *q {
            return order[k];
        }
        r -= q;
    }
    order[probs.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(logits: &[f32], s: &Sampling, n: usize) -> Vec<usize> {
        let mut rng = Rng::new(s.seed);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[draw(logits, s, &mut rng)] += 1;
        }
        c
    }

    #[test]
    fn greedy_is_argmax_and_ties_go_to_the_lower_id() {
        let s = Sampling::greedy();
        let mut rng = Rng::new(1);
        assert_eq!(draw(&[0.1, 2.0, -1.0, 2.0], &s, &mut rng), 1);
        assert_eq!(draw(&[5.0, 2.0], &s, &mut rng), 0);
    }

    #[test]
    fn top_k_and_top_p_keep_only_the_most_likely() {
        let logits = [3.0, 2.0, 1.0, 0.0, -1.0];
        // softmax: 0.636, 0.234, 0.086, ...: top-k 2 and p = 0.8 both keep the first two.
        for s in [
            Sampling {
                top_k: Some(2),
                ..Sampling::default()
            },
            Sampling {
                top_p: Some(0.8),
                ..Sampling::default()
            },
        ] {
            let c = counts(&logits, &s, 4000);
            assert!(
                c[0] > 0 && c[1] > 0 && c[2..].iter().all(|&n| n == 0),
                "{s:?}: {c:?}"
            );
        }
        // p small keeps the most likely only.
        let c = counts(
            &logits,
            &Sampling {
                top_p: Some(0.1),
                ..Sampling::default()
            },
            100,
        );
        assert_eq!(c[0], 100);
    }

    #[test]
    fn temperature_one_samples_the_softmax() {
        let logits = [1.0f32, 0.0, -1.0];
        let n = 20000;
        let c = counts(&logits, &Sampling::default(), n);
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        for (i, &l) in logits.iter().enumerate() {
            let p = (l as f64).exp() / z;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            let got = c[i] as f64 / n as f64;
            assert!((got - p).abs() < 4.0 * sd, "token {i}: {got} vs {p}");
        }
        // A low temperature concentrates on the most likely.
        let cold = counts(
            &logits,
            &Sampling {
                temperature: 0.05,
                ..Sampling::default()
            },
            1000,
        );
        assert!(cold[0] > 990, "{cold:?}");
    }

    #[test]
    fn bad_settings_are_refused() {
        for (s, says) in [
            (
                Sampling {
                    temperature: 0.0,
                    ..Sampling::default()
                },
                "temperature 0",
            ),
            (
                Sampling {
                    temperature: f32::NAN,
                    ..Sampling::default()
                },
                "temperature NaN",
            ),
            (
                Sampling {
                    top_k: Some(0),
                    ..Sampling::default()
                },
                "top-k 0",
            ),
            (
                Sampling {
                    top_p: Some(0.0),
                    ..Sampling::default()
                },
                "top-p 0",
            ),
            (
                Sampling {
                    top_p: Some(1.5),
                    ..Sampling::default()
                },
                "top-p 1.5",
            ),
        ] {
            let e = s.check().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        assert!(Sampling {
            top_p: Some(1.0),
            ..Sampling::default()
        }
        .check()
        .is_ok());
    }
}
