//! What a sequence-to-sequence model is: its cell, sizes, attention and
//! special tokens; and the parameters it has, named as the reference's
//! `state_dict` (`../shared/seq2seq/generate.py`, `tests/seq2seq/generate.py`).

use crate::error::{Error, Result};
use crate::model::config::{Cell, Nonlinearity};
use crate::model::params::Entry;
use crate::stack::RecurrentStack;
use std::ops::Range;

/// Luong et al. (2015) global attention's score, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attention {
    /// `score(d_t, m_s) = d_t · (W_a m_s)` (`attn.weight`, no bias).
    General,
    /// `score(d_t, m_s) = d_t · m_s`.
    Dot,
    /// No attention: the head reads the decoder's output.
    None,
}

impl Attention {
    pub fn name(self) -> &'static str {
        match self {
            Attention::General => "general",
            Attention::Dot => "dot",
            Attention::None => "none",
        }
    }
    pub fn parse(s: &str) -> Result<Attention> {
        match s.to_ascii_lowercase().as_str() {
            "general" => Ok(Attention::General),
            "dot" => Ok(Attention::Dot),
            "none" => Ok(Attention::None),
            other => Err(Error::Argument(format!(
                "unknown attention '{other}': use general, dot or none"
            ))),
        }
    }
}

/// An encoder–decoder: source embedding → encoder stack; target embedding →
/// decoder stack started from the encoder's final states (directions
/// concatenated, so the decoder has `D·H` units); attention over the
/// encoder's top-layer outputs; `tanh(combine([context; decoder output]))`;
/// a linear head over the target vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct Seq2SeqConfig {
    pub cell: Cell,
    /// RNN only (tanh or relu), for both stacks.
    pub nonlinearity: Nonlinearity,
    pub src_vocab: usize,
    pub tgt_vocab: usize,
    /// Width of both embeddings.
    pub embed: usize,
    /// Units of each encoder direction.
    pub hidden: usize,
    /// Layers of each stack.
    pub layers: usize,
    /// A bidirectional encoder (the decoder is always forward).
    pub bidirectional: bool,
    pub attention: Attention,
    /// The target token decoding starts from, and the one that ends a row.
    pub bos: usize,
    pub eos: usize,
}

impl Seq2SeqConfig {
    /// One layer, unidirectional, `general` attention, bos 1, eos 2.
    pub fn new(
        cell: Cell,
        src_vocab: usize,
        tgt_vocab: usize,
        embed: usize,
        hidden: usize,
    ) -> Seq2SeqConfig {
        Seq2SeqConfig {
            cell,
            nonlinearity: Nonlinearity::Tanh,
            src_vocab,
            tgt_vocab,
            embed,
            hidden,
            layers: 1,
            bidirectional: false,
            attention: Attention::General,
            bos: 1,
            eos: 2,
        }
    }
    pub fn layers(mut self, layers: usize) -> Self {
        self.layers = layers;
        self
    }
    pub fn bidirectional(mut self, on: bool) -> Self {
        self.bidirectional = on;
        self
    }
    pub fn attention(mut self, a: Attention) -> Self {
        self.attention = a;
        self
    }
    pub fn nonlinearity(mut self, n: Nonlinearity) -> Self {
        self.nonlinearity = n;
        self
    }
    /// The special tokens (target ids).
    pub fn tokens(mut self, bos: usize, eos: usize) -> Self {
        self.bos = bos;
        self.eos = eos;
        self
    }

    /// Directions of the encoder.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// Units of the decoder, the memory's width: `D·H`.
    pub fn width(&self) -> usize {
        self.directions() * self.hidden
    }

    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("src_vocab", self.src_vocab),
            ("tgt_vocab", self.tgt_vocab),
            ("embed", self.embed),
            ("hidden", self.hidden),
            ("layers", self.layers),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        if self.nonlinearity == Nonlinearity::Relu && self.cell != Cell::Rnn {
            return Err(Error::Config(
                "nonlinearity relu is for the plain RNN cell only".into(),
            ));
        }
        for (name, v) in [("bos", self.bos), ("eos", self.eos)] {
            if v >= self.tgt_vocab {
                return Err(Error::Config(format!(
                    "{name} token {v} is outside the target vocabulary of {}",
                    self.tgt_vocab
                )));
            }
        }
        if self.bos == self.eos {
            return Err(Error::Config(format!(
                "bos and eos are both token {}: they must differ",
                self.bos
            )));
        }
        Ok(())
    }

    /// The encoder: `embed` inputs, `hidden` units, `layers`, the directions.
    pub fn encoder(&self) -> RecurrentStack {
        RecurrentStack::new(self.cell, self.embed, self.hidden)
            .layers(self.layers)
            .bidirectional(self.bidirectional)
            .nonlinearity(self.nonlinearity)
    }
    /// The decoder: `embed` inputs, `D·H` units, `layers`, forward only.
    pub fn decoder(&self) -> RecurrentStack {
        RecurrentStack::new(self.cell, self.embed, self.width())
            .layers(self.layers)
            .nonlinearity(self.nonlinearity)
    }
}

/// Where each part's parameters are in the flat vector, in the reference's
/// `state_dict` order: `src_embed.weight`, `encoder.*` (`nn.LSTM`'s names),
/// `tgt_embed.weight`, `decoder.*`, `attn.weight` (general), `combine.weight`
/// and `combine.bias` (general, dot), `head.weight`, `head.bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct Seq2SeqLayout {
    pub entries: Vec<Entry>,
    /// `[src_vocab, E]`
    pub src_embed: Range<usize>,
    /// The encoder stack's own flat parameters ([`RecurrentStack::params`] order).
    pub encoder: Range<usize>,
    /// `[tgt_vocab, E]`
    pub tgt_embed: Range<usize>,
    pub decoder: Range<usize>,
    /// `[Hd, Hd]` (general).
    pub attn: Option<Range<usize>>,
    /// `[Hd, 2·Hd]` and `[Hd]` (general, dot).
    pub combine_w: Option<Range<usize>>,
    pub combine_b: Option<Range<usize>>,
    /// `[tgt_vocab, Hd]` and `[tgt_vocab]`.
    pub head_w: Range<usize>,
    pub head_b: Range<usize>,
    pub total: usize,
}

/// Appends named tensors to a flat layout.
#[derive(Default)]
struct Builder {
    entries: Vec<Entry>,
    total: usize,
}

impl Builder {
    fn push(&mut self, name: String, shape: Vec<usize>) -> Range<usize> {
        let e = Entry {
            name,
            shape,
            offset: self.total,
        };
        self.total += e.len();
        let r = e.range();
        self.entries.push(e);
        r
    }

    /// A stack's tensors under `prefix.`, its range in the flat vector.
    fn stack(&mut self, prefix: &str, s: &RecurrentStack) -> Range<usize> {
        let start = self.total;
        for (name, shape, _) in s.params() {
            self.push(format!("{prefix}.{name}"), shape);
        }
        start..self.total
    }
}

impl Seq2SeqLayout {
    pub fn new(cfg: &Seq2SeqConfig) -> Seq2SeqLayout {
        let mut b = Builder::default();
        let hd = cfg.width();
        let src_embed = b.push("src_embed.weight".into(), vec![cfg.src_vocab, cfg.embed]);
        let encoder = b.stack("encoder", &cfg.encoder());
        let tgt_embed = b.push("tgt_embed.weight".into(), vec![cfg.tgt_vocab, cfg.embed]);
        let decoder = b.stack("decoder", &cfg.decoder());
        let attn = (cfg.attention == Attention::General)
            .then(|| b.push("attn.weight".into(), vec![hd, hd]));
        let (combine_w, combine_b) = if cfg.attention == Attention::None {
            (None, None)
        } else {
            (
                Some(b.push("combine.weight".into(), vec![hd, 2 * hd])),
                Some(b.push("combine.bias".into(), vec![hd])),
            )
        };
        let head_w = b.push("head.weight".into(), vec![cfg.tgt_vocab, hd]);
        let head_b = b.push("head.bias".into(), vec![cfg.tgt_vocab]);
        Seq2SeqLayout {
            entries: b.entries,
            src_embed,
            encoder,
            tgt_embed,
            decoder,
            attn,
            combine_w,
            combine_b,
            head_w,
            head_b,
            total: b.total,
        }
    }
}
