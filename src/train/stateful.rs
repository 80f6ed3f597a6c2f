//! Stateful (truncated-BPTT) training of language models, as PyTorch's
//! `word_language_model` example trains them: the token stream cut into B
//! parallel streams (stream b is the b-th contiguous slice of `L / B`
//! tokens), batches of `seq_len` steps taken in order (the last one
//! shorter), each step's target the next token, and every batch starting
//! from the previous batch's final states as constants (no gradient across
//! batches); the states start at zero each epoch. Validation runs the same
//! way over its own stream, the loss a mean over every predicted token.
//!
//! After a step that failed or was skipped ([`super::fit::OnNonFinite::Skip`])
//! the next batch starts from zero states.
//!
//! The states a batch leaves are those of its forward pass before the
//! update, as in PyTorch's loop (`output, hidden = model(data, hidden)`,
//! then the step): [`Backend::train_step_states`] gives them from the
//! step's own forward, on both paths (the GPU path reads them from the
//! step's workspace, one wait a batch).

use super::backend::{Backend, FinalStates};
use crate::data::{Dataset, Inputs, Targets};
use crate::error::{Error, Result};
use crate::model::config::{ModelConfig, OutputMode};
use crate::model::Evaluation;
use crate::Loss;

/// [`super::FitConfig::stateful`]: batches of `seq_len` steps of B parallel streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stateful {
    /// Steps per batch (PyTorch's `--bptt`).
    pub seq_len: usize,
}

/// Everything about a stateful fit that can be checked before any work:
/// `streams` are the training and validation batch sizes.
pub(super) fn check(
    s: &Stateful,
    (shuffle, drop_last): (bool, bool),
    loss: Loss,
    streams: (usize, usize),
    model: &ModelConfig,
    train: &Dataset,
    val: Option<&Dataset>,
) -> Result<()> {
    if s.seq_len == 0 {
        return Err(Error::Argument(
            "stateful training: seq_len must be at least 1".into(),
        ));
    }
    if drop_last {
        return Err(Error::Argument(
            "stateful training takes every batch of the stream (the last one shorter): drop_last does not apply; turn it off".into(),
        ));
    }
    if shuffle {
        return Err(Error::Argument(
            "stateful training takes the batches in stream order (each starts where the last ended): turn shuffling off (--no-shuffle)".into(),
        ));
    }
    if model.bidirectional {
        return Err(Error::Argument(
            "stateful training carries the states forward from batch to batch, which a bidirectional model's reverse direction cannot use: train a unidirectional model".into(),
        ));
    }
    let Some(vocab) = model.vocab else {
        return Err(Error::Argument(
            "stateful training is for language models over token ids: the model has no embedding"
                .into(),
        ));
    };
    if model.out_features != vocab || model.output != OutputMode::Sequence || loss != Loss::Ce {
        return Err(Error::Argument(format!(
            "stateful training predicts each next token: it needs output sequence, a head of {vocab} outputs (the vocabulary) and loss ce"
        )));
    }
    for (what, data) in [("training", Some(train)), ("validation", val)] {
        let Some(d) = data else { continue };
        check_stream(what, d)?;
        d.check_inputs(model)?;
    }
    stream_rows(train, streams.0, "training")?;
    if let Some(v) = val {
        stream_rows(v, streams.1, "validation")?;
    }
    Ok(())
}

/// One token stream: `x` token ids `[1, L]`, nothing else.
fn check_stream(what: &str, d: &Dataset) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Argument(format!(
            "stateful training: the {what} data is not one token stream ({why}); give x as token ids [1, L], without y, lengths or states (the targets are the stream's next tokens)"
        )))
    };
    match &d.x {
        Inputs::Tokens { n: 1, .. } => {}
        Inputs::Tokens { n, .. } => return bad(&format!("{n} rows")),
        Inputs::Features { .. } => return bad("features, not token ids"),
    }
    if d.y.is_some() {
        return bad("it has y");
    }
    if d.lengths.is_some() {
        return bad("it has lengths");
    }
    if d.states.is_some() {
        return bad("it has initial states");
    }
    Ok(())
}

/// The stream's ids and the length of each of its `streams` rows (at least 2).
fn stream_rows<'d>(data: &'d Dataset, streams: usize, what: &str) -> Result<(&'d [i64], usize)> {
    let Inputs::Tokens { ids, .. } = &data.x else {
        return Err(Error::Argument(format!(
            "stateful training: the {what} data is not token ids"
        )));
    };
    let per = ids.len() / streams;
    if per < 2 {
        return Err(Error::Argument(format!(
            "stateful training: {} {what} tokens cannot be cut into {streams} streams of at least 2 tokens; use fewer streams (the batch size) or more data",
            ids.len()
        )));
    }
    Ok((ids, per))
}

/// The stream cut into `streams` rows and batches of `seq_len` steps, in
/// order: `x [B, s]` ids and `y [B, s]` the next ids.
pub(super) fn stream_batches(
    data: &Dataset,
    streams: usize,
    seq_len: usize,
    what: &str,
) -> Result<Vec<Dataset>> {
    let (ids, per) = stream_rows(data, streams, what)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < per - 1 {
        let s = seq_len.min(per - 1 - i);
        let mut x = Vec::with_capacity(streams * s);
        let mut y = Vec::with_capacity(streams * s);
        for b in 0..streams {
            let row = &ids[b * per..(b + 1) * per];
            x.extend_from_slice(&row[i..i + s]);
            y.extend_from_slice(&row[i + 1..i + 1 + s]);
        }
        let targets = Targets::Classes {
            data: y,
            shape: vec![streams, s],
        };
        out.push(Dataset::new(
            Inputs::tokens(x, streams, s)?,
            Some(targets),
            None,
        ));
        i += seq_len;
    }
    Ok(out)
}

/// `batch` starting from the states `prev` left (none: zeros).
pub(super) fn with_states(batch: &Dataset, prev: &Option<FinalStates>) -> Dataset {
    let b = batch.clone();
    match prev {
        Some(p) => b.with_states(p.h_n.clone(), p.c_n.clone()),
        None => b,
    }
}

/// Loss and accuracy over every predicted token of `batches`, the states
/// carried from each batch to the next (PyTorch's `evaluate`): one forward
/// pass a batch, which gives the outputs and the states.
pub(super) fn evaluate<B: Backend + ?Sized>(
    backend: &mut B,
    batches: &[Dataset],
) -> Result<Evaluation> {
    let cfg = backend.config().clone();
    let (mut loss, mut correct, mut tokens) = (0.0f64, 0.0f64, 0usize);
    let mut prev = None;
    for batch in batches {
        let b = with_states(batch, &prev);
        let mut finals = None;
        let e = crate::model::evaluate_by(&cfg, &b, Loss::Ce, b.len(), |part| {
            let (output, states) = backend.predict_states(part, part.len())?.into_parts();
            finals = Some(states);
            Ok(output)
        })?;
        let n = b.len() * b.steps();
        loss += e.loss as f64 * n as f64;
        correct += e.accuracy.unwrap_or(0.0) as f64 * n as f64;
        tokens += n;
        prev = finals;
    }
    Ok(Evaluation {
        loss: (loss / tokens as f64) as f32,
        accuracy: Some((correct / tokens as f64) as f32),
    })
}
