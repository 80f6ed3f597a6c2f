//! What a model is: cell, sizes, layers, directions, output mode and head.

use crate::dropout::Dropout;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    /// Long short-term memory, gates `i, f, g, o` (PyTorch order).
    Lstm,
    /// Gated recurrent unit, gates `r, z, n`, PyTorch formulation
    /// (`n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`).
    Gru,
    /// Plain (Elman) RNN, `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.
    Rnn,
}

impl Cell {
    /// Gates per unit: G in `weight_ih [G*H, I]`.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }
    /// Name as used in checkpoints and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
            Cell::Rnn => "rnn",
        }
    }
    /// Parse `lstm`, `gru` or `rnn`.
    pub fn parse(s: &str) -> Result<Cell> {
        match s.to_ascii_lowercase().as_str() {
            "lstm" => Ok(Cell::Lstm),
            "gru" => Ok(Cell::Gru),
            "rnn" => Ok(Cell::Rnn),
            other => Err(Error::Argument(format!(
                "unknown cell '{other}': use lstm, gru or rnn"
            ))),
        }
    }
}

/// Activation of the plain RNN cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Nonlinearity {
    #[default]
    Tanh,
    Relu,
}

impl Nonlinearity {
    pub fn name(self) -> &'static str {
        match self {
            Nonlinearity::Tanh => "tanh",
            Nonlinearity::Relu => "relu",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tanh" => Ok(Nonlinearity::Tanh),
            "relu" => Ok(Nonlinearity::Relu),
            other => Err(Error::Argument(format!(
                "unknown nonlinearity '{other}': use tanh or relu"
            ))),
        }
    }
}

/// Where the head reads the recurrent stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// `head(final hidden state of the top layer)`; bidirectional: `concat(fwd h_n, bwd h_n)`.
    /// Output shape `[N, out]`.
    #[default]
    Last,
    /// `head` at every step of the top layer's output. Output shape `[N, T, out]`.
    Sequence,
}

impl OutputMode {
    pub fn name(self) -> &'static str {
        match self {
            OutputMode::Last => "last",
            OutputMode::Sequence => "sequence",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "last" => Ok(OutputMode::Last),
            "sequence" | "seq" => Ok(OutputMode::Sequence),
            other => Err(Error::Argument(format!(
                "unknown output mode '{other}': use last or sequence"
            ))),
        }
    }
}

/// A model's architecture. Build one with [`ModelConfig::new`] and the setters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub cell: Cell,
    #[serde(default)]
    pub nonlinearity: Nonlinearity,
    /// Features per step fed to the first recurrent layer (the embedding width when `vocab` is set).
    pub input: usize,
    /// Hidden units per direction.
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
    pub output: OutputMode,
    /// Width of the linear head's output (classes for `ce`).
    pub out_features: usize,
    /// Vocabulary size of an `nn.Embedding` in front of the stack; inputs are then token ids.
    #[serde(default)]
    pub vocab: Option<usize>,
    /// Dropout while training (none by default); evaluation and prediction never drop.
    #[serde(default, skip_serializing_if = "Dropout::is_off")]
    pub dropout: Dropout,
}

/// Most parameters a model may have: 2^31 f32 values (8 GiB), far above any
/// recurrent model trained here, and a bound that keeps every size product
/// (parameters, gradients, optimizer moments, GPU buffers) far from overflow.
pub const MAX_PARAMS: usize = 1 << 31;

impl ModelConfig {
    /// A one-layer, unidirectional model with `last` output and a head of width `out_features`.
    pub fn new(cell: Cell, input: usize, hidden: usize, out_features: usize) -> Self {
        ModelConfig {
            cell,
            nonlinearity: Nonlinearity::Tanh,
            input,
            hidden,
            layers: 1,
            bidirectional: false,
            output: OutputMode::Last,
            out_features,
            vocab: None,
            dropout: Dropout::default(),
        }
    }
    pub fn layers(mut self, layers: usize) -> Self {
        self.layers = layers;
        self
    }
    pub fn bidirectional(mut self, yes: bool) -> Self {
        self.bidirectional = yes;
        self
    }
    pub fn output(mut self, output: OutputMode) -> Self {
        self.output = output;
        self
    }
    pub fn nonlinearity(mut self, n: Nonlinearity) -> Self {
        self.nonlinearity = n;
        self
    }
    /// Put an embedding of `vocab` rows of width `input` in front of the stack.
    pub fn embedding(mut self, vocab: usize) -> Self {
        self.vocab = Some(vocab);
        self
    }
    /// Train with these dropout probabilities (see [`Dropout`]).
    pub fn dropout(mut self, d: Dropout) -> Self {
        self.dropout = d;
        self
    }
    /// 2 for bidirectional models, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// Width of the top layer's output and of the head's input: `directions * hidden`.
    pub fn top_width(&self) -> usize {
        self.directions() * self.hidden
    }
    /// Input width of recurrent layer `k`.
    pub fn layer_input(&self, k: usize) -> usize {
        if k == 0 {
            self.input
        } else {
            self.top_width()
        }
    }
    /// Checks that every size is usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.input == 0 {
            return bad("input size must be at least 1");
        }
        if self.hidden == 0 {
            return bad("hidden size must be at least 1");
        }
        if self.layers == 0 {
            return bad("layers must be at least 1");
        }
        if self.out_features == 0 {
            return bad("out_features must be at least 1");
        }
        if self.vocab == Some(0) {
            return bad("embedding vocabulary must have at least 1 row");
        }
        if self.cell != Cell::Rnn && self.nonlinearity != Nonlinearity::Tanh {
            return bad("nonlinearity relu only applies to the rnn cell");
        }
        self.dropout.validate()?;
        match self.checked_num_params() {
            Some(n) if n <= MAX_PARAMS => Ok(()),
            n => Err(Error::Config(format!(
                "{} parameters ({} input, {} hidden, {} layer(s){}, {} outputs{}) is more than this library can hold ({MAX_PARAMS} f32 values at most); use smaller sizes",
                n.map_or("more than 2^64".to_string(), |n| n.to_string()),
                self.input,
                self.hidden,
                self.layers,
                if self.bidirectional { ", bidirectional" } else { "" },
                self.out_features,
                self.vocab.map(|v| format!(", vocabulary {v}")).unwrap_or_default()
            ))),
        }
    }

    /// The number of parameters, or `None` when counting them overflows `usize`
    /// (sizes from flags or files can be anything).
    pub fn checked_num_params(&self) -> Option<usize> {
        let gh = self.cell.gates().checked_mul(self.hidden)?;
        let top = self.directions().checked_mul(self.hidden)?;
        let mut total = match self.vocab {
            Some(v) => v.checked_mul(self.input)?,
            None => 0,
        };
        for k in 0..self.layers.min(2) {
            let input = if k == 0 { self.input } else { top };
            // w_ih, w_hh, b_ih, b_hh per direction.
            let per_dir = gh.checked_mul(input.checked_add(self.hidden)?.checked_add(2)?)?;
            let per_layer = per_dir.checked_mul(self.directions())?;
            let times = if k == 0 { 1 } else { self.layers - 1 };
            total = total.checked_add(per_layer.checked_mul(times)?)?;
        }
        let head = self.out_features.checked_mul(top.checked_add(1)?)?;
        total.checked_add(head)
    }
}
