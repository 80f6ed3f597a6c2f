//! The model's two stacks as the recording reads them ([`Stack`]: a
//! configuration, its parameters' layout at its place in the flat vector,
//! its W_hh offsets) and where every other weight is ([`Stacks`]).

use crate::model::config::{Cell, ModelConfig};
use crate::model::params::Layout;
use crate::seq2seq::{Attention, Seq2SeqConfig, Seq2SeqLayout};
use std::ops::Range;

/// One stack as the recording reads it: its model configuration (with the
/// embedding where the stack gathers its own inputs), its parameters'
/// layout at its place in the flat vector, the start of each W_hh.
pub(crate) struct Stack {
    pub config: ModelConfig,
    pub layout: Layout,
    pub whh: Vec<u32>,
}

impl Stack {
    fn new(config: ModelConfig, at: usize) -> Stack {
        let layout = Layout::new(&config).shifted(at);
        let whh = layout.layers.iter().map(|l| l.w_hh.start as u32).collect();
        Stack {
            config,
            layout,
            whh,
        }
    }
}

/// The model's stacks and where its other weights are (element offsets
/// into params).
pub(crate) struct Stacks {
    /// The encoder (embedding the source), the decoder (embedding the
    /// target inputs) and the decoder for decoding (fed one step at a time).
    pub enc: Stack,
    pub dec: Stack,
    pub step: Stack,
    pub cell: Cell,
    /// Encoder directions and units per direction; the decoder's units `D·H`.
    pub dirs: usize,
    pub hidden: usize,
    pub hd: usize,
    pub embed: usize,
    pub tgt_vocab: usize,
    pub attends: bool,
    pub general: bool,
    pub wa: Option<u32>,
    pub wc: Option<u32>,
    pub bc: Option<u32>,
    pub hw: u32,
    pub hb: u32,
    pub tgt_embed: u32,
    pub total: usize,
}

impl Stacks {
    pub fn new(cfg: &Seq2SeqConfig, l: &Seq2SeqLayout) -> Stacks {
        let with_vocab = |c: &ModelConfig, v: usize| ModelConfig {
            vocab: Some(v),
            ..c.clone()
        };
        let enc = Stack::new(with_vocab(cfg.encoder().config(), cfg.src_vocab), 0);
        let dec = Stack::new(
            with_vocab(cfg.decoder().config(), cfg.tgt_vocab),
            l.tgt_embed.start,
        );
        let step = Stack::new(cfg.decoder().config().clone(), l.decoder.start);
        debug_assert_eq!(enc.layout.layers[0].w_ih.start, l.encoder.start);
        debug_assert_eq!(dec.layout.layers[0].w_ih.start, l.decoder.start);
        debug_assert_eq!(step.layout.layers[0].w_ih.start, l.decoder.start);
        let at = |r: &Option<Range<usize>>| r.as_ref().map(|r| r.start as u32);
        Stacks {
            enc,
            dec,
            step,
            cell: cfg.cell,
            dirs: cfg.directions(),
            hidden: cfg.hidden,
            hd: cfg.width(),
            embed: cfg.embed,
            tgt_vocab: cfg.tgt_vocab,
            attends: cfg.attention != Attention::None,
            general: cfg.attention == Attention::General,
            wa: at(&l.attn),
            wc: at(&l.combine_w),
            bc: at(&l.combine_b),
            hw: l.head_w.start as u32,
            hb: l.head_b.start as u32,
            tgt_embed: l.tgt_embed.start as u32,
            total: l.total,
        }
    }
}
