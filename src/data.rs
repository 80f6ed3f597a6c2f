//! In-memory data: inputs `x` (batch-first), optional targets `y`, `lengths`
//! and initial states `h0`/`c0`.

use crate::error::{Error, Result};
use crate::model::config::{Cell, ModelConfig, OutputMode};
use crate::tensor::Tensor;

/// Model inputs, batch-first.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    /// Float features `[n, t, f]`.
    Features {
        data: Vec<f32>,
        n: usize,
        t: usize,
        f: usize,
    },
    /// Token ids `[n, t]` for a model with an embedding.
    Tokens { ids: Vec<i64>, n: usize, t: usize },
}

impl Inputs {
    pub fn features(data: Vec<f32>, n: usize, t: usize, f: usize) -> Result<Self> {
        if data.len() != n * t * f {
            return Err(Error::shape(
                "x",
                format!("[{n}, {t}, {f}] ({} values)", n * t * f),
                &[data.len()],
            ));
        }
        Ok(Inputs::Features { data, n, t, f })
    }
    pub fn tokens(ids: Vec<i64>, n: usize, t: usize) -> Result<Self> {
        if ids.len() != n * t {
            return Err(Error::shape(
                "x",
                format!("[{n}, {t}] ({} ids)", n * t),
                &[ids.len()],
            ));
        }
        Ok(Inputs::Tokens { ids, n, t })
    }
    pub fn n(&self) -> usize {
        match self {
            Inputs::Features { n, .. } | Inputs::Tokens { n, .. } => *n,
        }
    }
    pub fn steps(&self) -> usize {
        match self {
            Inputs::Features { t, .. } | Inputs::Tokens { t, .. } => *t,
        }
    }
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Inputs::Features { n, t, f, .. } => vec![*n, *t, *f],
            Inputs::Tokens { n, t, .. } => vec![*n, *t],
        }
    }
    /// Rows `idx` of the batch.
    pub fn gather(&self, idx: &[usize]) -> Inputs {
        match self {
            Inputs::Features { data, t, f, .. } => {
                let row = t * f;
                let mut out = Vec::with_capacity(idx.len() * row);
                for &i in idx {
                    out.extend_from_slice(&data[i * row..(i + 1) * row]);
                }
                Inputs::Features {
                    data: out,
                    n: idx.len(),
                    t: *t,
                    f: *f,
                }
            }
            Inputs::Tokens { ids, t, .. } => {
                let mut out = Vec::with_capacity(idx.len() * t);
                for &i in idx {
                    out.extend_from_slice(&ids[i * t..(i + 1) * t]);
                }
                Inputs::Tokens {
                    ids: out,
                    n: idx.len(),
                    t: *t,
                }
            }
        }
    }
}

impl Inputs {
    /// The first `steps` steps of every sequence: `[n, steps(, f)]` (`steps <= t`).
    pub fn first_steps(&self, steps: usize) -> Inputs {
        fn cut<T: Copy>(d: &[T], n: usize, row: usize, keep: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(n * keep);
            for i in 0..n {
                out.extend_from_slice(&d[i * row..i * row + keep]);
            }
            out
        }
        match self {
            Inputs::Features { data, n, t, f } => Inputs::Features {
                data: cut(data, *n, t * f, steps.min(*t) * f),
                n: *n,
                t: steps.min(*t),
                f: *f,
            },
            Inputs::Tokens { ids, n, t } => Inputs::Tokens {
                ids: cut(ids, *n, *t, steps.min(*t)),
                n: *n,
                t: steps.min(*t),
            },
        }
    }
}

/// Training targets.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Class indices for `ce`: `[n]` (output `last`) or `[n, t]` (output `sequence`); -100 = ignore.
    Classes { data: Vec<i64>, shape: Vec<usize> },
    /// Values for `mse`, shaped like the output: `[n, out]` or `[n, t, out]`.
    Values { data: Vec<f32>, shape: Vec<usize> },
}

impl Targets {
    pub fn shape(&self) -> &[usize] {
        match self {
            Targets::Classes { shape, .. } | Targets::Values { shape, .. } => shape,
        }
    }
    pub fn gather(&self, idx: &[usize]) -> Targets {
        fn rows<T: Copy>(d: &[T], shape: &[usize], idx: &[usize]) -> (Vec<T>, Vec<usize>) {
            let row: usize = shape[1..].iter().product();
            let mut out = Vec::with_capacity(idx.len() * row);
            for &i in idx {
                out.extend_from_slice(&d[i * row..(i + 1) * row]);
            }
            let mut s = shape.to_vec();
            s[0] = idx.len();
            (out, s)
        }
        match self {
            Targets::Classes { data, shape } => {
                let (data, shape) = rows(data, shape, idx);
                Targets::Classes { data, shape }
            }
            Targets::Values { data, shape } => {
                let (data, shape) = rows(data, shape, idx);
                Targets::Values { data, shape }
            }
        }
    }
}

/// States of the stack, flat, PyTorch shapes: `h`, `c` `[layers*directions, B, H]`
/// (initial states given to a forward, the final states it returns, or their gradients).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct States {
    pub h: Option<Vec<f32>>,
    pub c: Option<Vec<f32>>,
}

/// Each sequence's initial states, laid out as `nn.LSTM`'s `(h0, c0)`:
/// `[L*D, N, H]` each (layer-major, then direction; batch-first inputs do
/// not change it). `c0` is for LSTM models only, which need both.
#[derive(Clone, Debug, PartialEq)]
pub struct InitialStates {
    pub h0: Tensor,
    pub c0: Option<Tensor>,
}

impl InitialStates {
    /// Sequences `idx` (dimension 1), in that order.
    /// A state that is not `[L*D, N, H]` is kept as it is, for
    /// [`InitialStates::check`] to report.
    pub fn gather(&self, idx: &[usize]) -> InitialStates {
        let pick = |t: &Tensor| {
            let [ld, n, h] = t.shape[..] else {
                return t.clone();
            };
            if t.data.len() != ld * n * h || idx.iter().any(|&i| i >= n) {
                return t.clone();
            }
            let mut out = Vec::with_capacity(ld * idx.len() * h);
            for l in 0..ld {
                for &i in idx {
                    out.extend_from_slice(&t.data[(l * n + i) * h..(l * n + i + 1) * h]);
                }
            }
            Tensor::new(vec![ld, idx.len(), h], out)
        };
        InitialStates {
            h0: pick(&self.h0),
            c0: self.c0.as_ref().map(pick),
        }
    }

    /// As the CPU path takes them.
    pub fn to_states(&self) -> States {
        States {
            h: Some(self.h0.data.clone()),
            c: self.c0.as_ref().map(|c| c.data.clone()),
        }
    }

    /// Checks shapes `[L*D, n, H]`, finiteness, and `c0` against the cell.
    pub fn check(&self, cfg: &ModelConfig, n: usize) -> Result<()> {
        let want = [cfg.layers * cfg.directions(), n, cfg.hidden];
        let expect = format!(
            "[{}, {n}, {}] (layers x directions, sequences, hidden size)",
            want[0], want[2]
        );
        let lstm = cfg.cell == Cell::Lstm;
        match (&self.c0, lstm) {
            (Some(_), false) => {
                return Err(Error::Argument(format!(
                    "c0 was given, but only LSTM models have a cell state; this model is a {}: give h0 alone",
                    cfg.cell.name()
                )))
            }
            (None, true) => {
                return Err(Error::Argument(
                    "h0 was given without c0: an LSTM starts from both (h0, c0), as nn.LSTM takes them; give c0 too (zeros for none)".into(),
                ))
            }
            _ => {}
        }
        for (name, t) in [("h0", Some(&self.h0)), ("c0", self.c0.as_ref())] {
            let Some(t) = t else { continue };
            if t.shape != want {
                return Err(Error::shape(name, expect.clone(), &t.shape));
            }
            Error::check_finite(name, &t.data)?;
        }
        Ok(())
    }
}

/// A set of sequences: inputs, optional targets, lengths and initial states.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub x: Inputs,
    pub y: Option<Targets>,
    /// Valid steps per sequence, each in `1..=t` (packed-sequence semantics).
    pub lengths: Option<Vec<usize>>,
    /// Initial states of each sequence; without them the states start at zero.
    pub states: Option<InitialStates>,
}

impl Dataset {
    pub fn new(x: Inputs, y: Option<Targets>, lengths: Option<Vec<usize>>) -> Dataset {
        Dataset {
            x,
            y,
            lengths,
            states: None,
        }
    }
    /// The same data, each sequence starting from the given states
    /// (`h0`, and `c0` for LSTM: `[L*D, N, H]`; checked against a model with the inputs).
    pub fn with_states(mut self, h0: Tensor, c0: Option<Tensor>) -> Dataset {
        self.states = Some(InitialStates { h0, c0 });
        self
    }
    pub fn len(&self) -> usize {
        self.x.n()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn steps(&self) -> usize {
        self.x.steps()
    }
    /// The rows `idx`, in that order.
    pub fn gather(&self, idx: &[usize]) -> Dataset {
        Dataset {
            x: self.x.gather(idx),
            y: self.y.as_ref().map(|y| y.gather(idx)),
            lengths: self
                .lengths
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            states: self.states.as_ref().map(|s| s.gather(idx)),
        }
    }
    /// The same sequences cut to their longest length, `[N, max(lengths)]`:
    /// a batch padded to its own longest sequence. Steps past every length are
    /// masked (packed-sequence semantics), so outputs at valid steps, the loss
    /// and every gradient are unchanged; only the work shrinks. Per-step
    /// targets (`y [N, T]`, `[N, T, out]`) are cut the same way. Without
    /// `lengths`, or when the longest is already `T`, the data is returned as is.
    pub fn trim_to_longest(self) -> Dataset {
        let t = self.steps();
        let longest = match &self.lengths {
            Some(l) => l.iter().copied().max().unwrap_or(t),
            None => t,
        };
        if longest == 0 || longest >= t {
            return self;
        }
        let y = self.y.map(|y| match y {
            Targets::Classes { data, shape } if shape.len() == 2 && shape[1] == t => {
                let n = shape[0];
                let mut out = Vec::with_capacity(n * longest);
                for i in 0..n {
                    out.extend_from_slice(&data[i * t..i * t + longest]);
                }
                Targets::Classes {
                    data: out,
                    shape: vec![n, longest],
                }
            }
            Targets::Values { data, shape } if shape.len() == 3 && shape[1] == t => {
                let (n, o) = (shape[0], shape[2]);
                let mut out = Vec::with_capacity(n * longest * o);
                for i in 0..n {
                    out.extend_from_slice(&data[i * t * o..(i * t + longest) * o]);
                }
                Targets::Values {
                    data: out,
                    shape: vec![n, longest, o],
                }
            }
            other => other,
        });
        Dataset {
            x: self.x.first_steps(longest),
            y,
            lengths: self.lengths,
            states: self.states,
        }
    }
    /// Rows `start..end`.
    pub fn slice(&self, start: usize, end: usize) -> Dataset {
        let idx: Vec<usize> = (start..end).collect();
        self.gather(&idx)
    }

    /// The initial states as the CPU path takes them (none: zeros).
    pub fn cpu_states(&self) -> States {
        self.states
            .as_ref()
            .map_or_else(Default::default, InitialStates::to_states)
    }

    /// Checks the inputs (lengths, initial states) against a model: shapes, finiteness, token range.
    pub fn check_inputs(&self, cfg: &ModelConfig) -> Result<()> {
        let n = self.len();
        if n == 0 {
            return Err(Error::Empty("the input batch".into()));
        }
        let t = self.steps();
        if t == 0 {
            return Err(Error::Empty("the sequence axis of x (T = 0)".into()));
        }
        match (&self.x, cfg.vocab) {
            (Inputs::Features { data, f, .. }, None) => {
                if *f != cfg.input {
                    return Err(Error::shape(
                        "x",
                        format!("[N, T, {}] (the model's input size)", cfg.input),
                        &self.x.shape(),
                    ));
                }
                Error::check_finite("x", data)?;
            }
            (Inputs::Tokens { ids, .. }, Some(vocab)) => {
                if let Some((i, &id)) = ids
                    .iter()
                    .enumerate()
                    .find(|(_, &id)| id < 0 || id as usize >= vocab)
                {
                    return Err(Error::TokenOutOfRange {
                        id,
                        index: i,
                        vocab,
                    });
                }
            }
            (Inputs::Features { .. }, Some(_)) => {
                return Err(Error::Dtype {
                    what: "x".into(),
                    got: "f32 features".into(),
                    expected: "integer token ids [N, T]: this model has an embedding".into(),
                })
            }
            (Inputs::Tokens { .. }, None) => {
                return Err(Error::Dtype {
                    what: "x".into(),
                    got: "integer token ids".into(),
                    expected: "f32 features [N, T, F]: this model has no embedding".into(),
                })
            }
        }
        if let Some(l) = &self.lengths {
            if l.len() != n {
                return Err(Error::shape("lengths", format!("[{n}]"), &[l.len()]));
            }
            if let Some((i, &len)) = l.iter().enumerate().find(|(_, &v)| v == 0 || v > t) {
                return Err(Error::LengthOutOfRange {
                    index: i,
                    length: len as i64,
                    steps: t,
                });
            }
        }
        if let Some(s) = &self.states {
            s.check(cfg, n)?;
        }
        Ok(())
    }

    /// Checks the targets against a model and a loss.
    pub fn check_targets(&self, cfg: &ModelConfig, loss: crate::Loss) -> Result<&Targets> {
        let y = self
            .y
            .as_ref()
            .ok_or_else(|| Error::Argument("training and evaluation need targets `y`".into()))?;
        let n = self.len();
        let t = self.steps();
        let o = cfg.out_features;
        match (loss, y) {
            (crate::Loss::Ce, Targets::Classes { data, shape }) => {
                let want: Vec<usize> = match cfg.output {
                    OutputMode::Last => vec![n],
                    OutputMode::Sequence => vec![n, t],
                };
                if *shape != want {
                    return Err(Error::shape(
                        "y (class indices)",
                        format!("{want:?}"),
                        shape,
                    ));
                }
                if let Some((i, &c)) = data
                    .iter()
                    .enumerate()
                    .find(|(_, &c)| c != -100 && (c < 0 || c as usize >= o))
                {
                    return Err(Error::LabelOutOfRange {
                        label: c,
                        index: i,
                        classes: o,
                    });
                }
            }
            (crate::Loss::Mse, Targets::Values { data, shape }) => {
                let want: Vec<usize> = match cfg.output {
                    OutputMode::Last => vec![n, o],
                    OutputMode::Sequence => vec![n, t, o],
                };
                if *shape != want {
                    return Err(Error::shape("y (mse targets)", format!("{want:?}"), shape));
                }
                Error::check_finite("y", data)?;
            }
            (crate::Loss::Ce, Targets::Values { .. }) => {
                return Err(Error::Dtype {
                    what: "y".into(),
                    got: "f32 values".into(),
                    expected: "integer class indices for loss ce".into(),
                })
            }
            (crate::Loss::Mse, Targets::Classes { .. }) => {
                return Err(Error::Dtype {
                    what: "y".into(),
                    got: "integer class indices".into(),
                    expected: "f32 values shaped like the output for loss mse".into(),
                })
            }
        }
        Ok(y)
    }
}
