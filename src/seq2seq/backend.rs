//! [`Backend`]: what runs a sequence-to-sequence model — the CPU path's
//! [`Seq2Seq`] itself or its copy on the GPU ([`crate::gpu::GpuSeq2Seq`]) —
//! behind one interface, so that training ([`super::fit::fit`]), evaluation,
//! decoding and translating text are written once for both;
//! [`crate::Device::seq2seq`] gives the one `--device` asks for.

use super::data::{Seq2SeqData, Source};
use super::decode::{self, Beam, Decoded};
use super::model::{Evaluation, Seq2Seq};
use super::Seq2SeqConfig;
use crate::error::Result;
use crate::optim::Optimizer;
use crate::tensor::Tensor;

/// A sequence-to-sequence model on one path.
pub trait Backend {
    fn config(&self) -> &Seq2SeqConfig;
    /// Teacher-forced logits `[N, T, tgt_vocab]` ([`Seq2Seq::forward`]).
    fn forward(&mut self, data: &Seq2SeqData) -> Result<Tensor>;
    /// One optimizer step; the batch's loss ([`Seq2Seq::train_step`]).
    fn train_step(
        &mut self,
        data: &Seq2SeqData,
        opt: &mut Optimizer,
        clip: Option<f32>,
    ) -> Result<f32>;
    /// Loss and token accuracy in batches of `batch` ([`Seq2Seq::evaluate`]).
    fn evaluate(&mut self, data: &Seq2SeqData, batch: usize) -> Result<Evaluation>;
    /// Greedy decoding ([`decode::greedy`]).
    fn greedy(&mut self, src: &Source, max_len: usize) -> Result<Decoded>;
    /// Beam search ([`decode::beam`]).
    fn beam(&mut self, src: &Source, max_len: usize, beam: Beam) -> Result<Decoded>;
    /// The model with this backend's current weights (a copy from the GPU).
    fn to_model(&self) -> Result<Seq2Seq>;
    /// Where it runs, for reports: `cpu` or `gpu`.
    fn device(&self) -> &'static str;
}

impl Backend for Seq2Seq {
    fn config(&self) -> &Seq2SeqConfig {
        Seq2Seq::config(self)
    }
    fn forward(&mut self, data: &Seq2SeqData) -> Result<Tensor> {
        Seq2Seq::forward(self, data)
    }
    fn train_step(
        &mut self,
        data: &Seq2SeqData,
        opt: &mut Optimizer,
        clip: Option<f32>,
    ) -> Result<f32> {
        Seq2Seq::train_step(self, data, opt, clip)
    }
    fn evaluate(&mut self, data: &Seq2SeqData, batch: usize) -> Result<Evaluation> {
        Seq2Seq::evaluate(self, data, batch)
    }
    fn greedy(&mut self, src: &Source, max_len: usize) -> Result<Decoded> {
        decode::greedy(self, src, max_len)
    }
    fn beam(&mut self, src: &Source, max_len: usize, beam: Beam) -> Result<Decoded> {
        decode::beam(self, src, max_len, beam)
    }
    fn to_model(&self) -> Result<Seq2Seq> {
        Ok(self.clone())
    }
    fn device(&self) -> &'static str {
        "cpu"
    }
}
