//! Text for models with an embedding: vocabularies ([`Vocab`], character or
//! word level), class names, data sets from labelled texts, and the checkpoint
//! metadata that lets a saved model read raw text (`recurrent predict --text`).
//!
//! ```
//! use recurrent::text::{self, Vocab, VocabOptions};
//!
//! let texts = ["good movie", "bad movie", "so good!"];
//! let vocab = Vocab::build(&texts, &VocabOptions::words())?;
//! assert_eq!(vocab.id("<pad>"), Some(0));
//! assert_eq!(vocab.encode("Good film")?, vec![vocab.id("good").unwrap() as i64, 1]); // 1 = <unk>
//! let (classes, y) = text::label_ids(&["pos", "neg", "pos"]);
//! assert_eq!(classes, ["neg", "pos"]);
//! let data = text::dataset(&vocab, &texts, Some(&y), None)?;
//! assert_eq!(data.x.shape(), vec![3, 3]); // padded to the longest: "so good !"
//! assert_eq!(data.lengths, Some(vec![2, 2, 3]));
//! let meta = text::metadata(&vocab, Some(&classes));
//! assert_eq!(text::vocab_from_metadata(&meta)?, Some(vocab));
//! # Ok::<(), recurrent::Error>(())
//! ```

pub mod vocab;

pub use vocab::{split, Level, Vocab, VocabOptions, PAD_TOKEN, UNK_TOKEN};

use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// Metadata key of the vocabulary in a checkpoint ([`Vocab::to_json`]).
pub const VOCAB_KEY: &str = "recurrent.vocab";
/// Metadata key of the class names in a checkpoint: a JSON array of strings,
/// name of class `i` at position `i`.
pub const CLASSES_KEY: &str = "recurrent.classes";

/// Sorted distinct labels and the class id of each label (its position in that list).
pub fn label_ids<S: AsRef<str>>(labels: &[S]) -> (Vec<String>, Vec<i64>) {
    let mut classes: Vec<String> = labels.iter().map(|l| l.as_ref().to_string()).collect();
    classes.sort_unstable();
    classes.dedup();
    let ids = labels
        .iter()
        .map(|l| {
            classes
                .binary_search_by(|c| c.as_str().cmp(l.as_ref()))
                .expect("every label is in the list") as i64
        })
        .collect();
    (classes, ids)
}

/// Texts as a data set for a model with an embedding and output `last`:
/// token ids `x [N, T]` padded to the longest text (each cut to `max_len`
/// tokens first), `lengths [N]`, and class targets `y [N]` when `labels` are given.
pub fn dataset<S: AsRef<str>>(
    vocab: &Vocab,
    texts: &[S],
    labels: Option<&[i64]>,
    max_len: Option<usize>,
) -> Result<Dataset> {
    let (x, lengths) = vocab.encode_batch(texts, max_len)?;
    let y = match labels {
        None => None,
        Some(l) if l.len() == texts.len() => Some(Targets::Classes {
            data: l.to_vec(),
            shape: vec![l.len()],
        }),
        Some(l) => {
            return Err(Error::shape(
                "labels",
                format!("[{}] (one per text)", texts.len()),
                &[l.len()],
            ))
        }
    };
    Ok(Dataset::new(x, y, Some(lengths)))
}

/// Checkpoint metadata entries for a text model: [`VOCAB_KEY`] and, when given, [`CLASSES_KEY`].
/// Pass them to [`crate::io::checkpoint::save_with`].
pub fn metadata(vocab: &Vocab, classes: Option<&[String]>) -> HashMap<String, String> {
    let mut m = HashMap::from([(VOCAB_KEY.to_string(), vocab.to_json())]);
    if let Some(c) = classes {
        m.insert(
            CLASSES_KEY.to_string(),
            serde_json::to_string(c).expect("strings serialise"),
        );
    }
    m
}

/// The vocabulary in checkpoint metadata, if there is one.
pub fn vocab_from_metadata(meta: &HashMap<String, String>) -> Result<Option<Vocab>> {
    meta.get(VOCAB_KEY).map(|s| Vocab::from_json(s)).transpose()
}

/// The class names in checkpoint metadata, if there are any.
pub fn classes_from_metadata(meta: &HashMap<String, String>) -> Result<Option<Vec<String>>> {
    meta.get(CLASSES_KEY)
        .map(|s| {
            serde_json::from_str::<Vec<String>>(s).map_err(|e| {
                Error::Argument(format!(
                    "metadata `{CLASSES_KEY}` should be a JSON array of class names ({e}): {s}"
                ))
            })
        })
        .transpose()
}

/// A class prediction for one text.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The arg-max class.
    pub class: usize,
    /// `[classes]` softmax of the model's output row.
    pub probabilities: Vec<f32>,
}

/// Classifies raw texts with a model of output `last` whose outputs are class
/// logits (trained with `ce`): each text is encoded with `vocab` (cut to
/// `max_len` tokens), run in batches of `batch_size` on `backend` (each batch
/// padded to its own longest text), and given its arg-max class and
/// probabilities. Returns the predictions and the raw logits `[N, classes]`.
pub fn classify<B: crate::train::Backend + ?Sized, S: AsRef<str>>(
    backend: &mut B,
    vocab: &Vocab,
    texts: &[S],
    max_len: Option<usize>,
    batch_size: usize,
) -> Result<(Vec<Prediction>, crate::Tensor)> {
    let cfg = backend.config().clone();
    if cfg.output != crate::OutputMode::Last {
        return Err(Error::Argument(
            "classifying texts needs a model with output `last` (one class per text); this model predicts at every step: encode the texts and use predict on the data instead".into(),
        ));
    }
    if cfg.vocab != Some(vocab.len()) {
        return Err(Error::Config(format!(
            "the vocabulary has {} tokens but the model's embedding has {} rows; use the vocabulary the model was trained with",
            vocab.len(),
            cfg.vocab.map_or("no".to_string(), |v| v.to_string())
        )));
    }
    let data = dataset(vocab, texts, None, max_len)?;
    let out = backend.predict(&data, batch_size)?;
    let o = cfg.out_features;
    let preds = out
        .data
        .chunks_exact(o)
        .map(|row| Prediction {
            class: crate::cpu::loss::argmax(row),
            probabilities: crate::cpu::loss::softmax(row),
        })
        .collect();
    Ok((preds, out))
}
