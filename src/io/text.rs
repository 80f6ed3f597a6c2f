//! A text corpus as character sequences for language models: the file, and
//! windows of ids with next-character targets. The vocabulary is
//! [`crate::text::Vocab`] (`Vocab::from_text` for exactly a corpus's characters).

use crate::data::{Dataset, Inputs, Targets};
use crate::error::{Error, Result};
use std::path::Path;

/// The vocabulary types live in [`crate::text`]; re-exported here for the
/// character LM's callers.
pub use crate::text::{Vocab, VOCAB_KEY};

/// Most values (f32 or ids) one call of [`sequences`] builds: 2^31.
pub const MAX_VALUES: usize = 1 << 31;

/// How sequences present characters to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `x [N, T, V]` f32 one-hot rows, for a model without embedding (input = V).
    OneHot,
    /// `x [N, T]` token ids, for a model with an embedding of V rows.
    Ids,
}

/// Reads a UTF-8 text file.
pub fn read_text(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::Data {
        path: path.display().to_string(),
        reason: format!(
            "not UTF-8 text (invalid byte at offset {}); convert the file to UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// Windows of `seq_len` ids starting every `stride` characters, each with the
/// next character at every step as target: `y [N, T]` class ids (output `sequence`,
/// loss `ce`); `x` as `encoding` says. `ids` must be in `0..vocab`.
pub fn sequences(
    ids: &[i64],
    vocab: usize,
    seq_len: usize,
    stride: usize,
    encoding: Encoding,
) -> Result<Dataset> {
    if seq_len == 0 || stride == 0 {
        return Err(Error::Argument(format!(
            "sequence length ({seq_len}) and stride ({stride}) must be at least 1"
        )));
    }
    if ids.len() <= seq_len {
        return Err(Error::Argument(format!("{} characters make no sequence of {seq_len} plus a target; use a shorter sequence length", ids.len())));
    }
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
    let starts: Vec<usize> = (0..=ids.len() - seq_len - 1).step_by(stride).collect();
    let n = starts.len();
    let width = match encoding {
        Encoding::Ids => 1,
        Encoding::OneHot => vocab,
    };
    let values = n.checked_mul(seq_len).and_then(|v| v.checked_mul(width));
    if values.is_none_or(|v| v > MAX_VALUES) {
        return Err(Error::Argument(format!(
            "{n} sequences of {seq_len} steps{} are too many values to hold; use a larger stride or shorter sequences{}",
            if width > 1 { format!(" one-hot over {vocab} characters") } else { String::new() },
            if width > 1 { ", or Encoding::Ids with an embedding" } else { "" }
        )));
    }
    let mut y = Vec::with_capacity(n * seq_len);
    for &s in &starts {
        y.extend_from_slice(&ids[s + 1..s + seq_len + 1]);
    }
    let x = match encoding {
        Encoding::Ids => {
            let mut x = Vec::with_capacity(n * seq_len);
            for &s in &starts {
                x.extend_from_slice(&ids[s..s + seq_len]);
            }
            Inputs::tokens(x, n, seq_len)?
        }
        Encoding::OneHot => {
            let mut x = vec![0.0f32; n * seq_len * vocab];
            for (k, &s) in starts.iter().enumerate() {
                for t in 0..seq_len {
                    x[(k * seq_len + t) * vocab + ids[s + t] as usize] = 1.0;
                }
            }
            Inputs::features(x, n, seq_len, vocab)?
        }
    };
    Ok(Dataset::new(
        x,
        Some(Targets::Classes {
            data: y,
            shape: vec![n, seq_len],
        }),
        None,
    ))
}
