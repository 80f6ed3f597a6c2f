//! Vocabularies: the tokens (characters or words) a model with an embedding
//! knows, and their ids.
//!
//! ## Split rule
//! A text is first lowercased (Unicode `to_lowercase`) when the vocabulary says
//! so, then cut into tokens:
//! - [`Level::Char`]: every character is a token, whitespace included.
//! - [`Level::Word`]: whitespace separates tokens and is dropped. A word is a
//!   maximal run of alphanumeric characters (Unicode) and `_`; an apostrophe
//!   (`'` or `’`) between two such characters stays inside the word (`don't`,
//!   `google's`). Every other character (punctuation, `#`, `@`, emoji) is a
//!   token of its own: `"#sxsw!!"` gives `#`, `sxsw`, `!`, `!`.
//!
//! ## Ids
//! A vocabulary built by [`Vocab::build`] reserves id 0 for padding
//! ([`PAD_TOKEN`]) and id 1 for tokens it does not know ([`UNK_TOKEN`]); the
//! other tokens follow by decreasing count in the corpus, ties in code-point
//! order of the token, so the same corpus always gives the same ids. Top-K:
//! `max_size` bounds the whole vocabulary (the embedding's rows), specials
//! included. [`Vocab::from_text`] is the character-LM vocabulary: exactly the
//! characters of a corpus, sorted, no specials (an unknown character is then
//! an error, not `<unk>`).
//!
//! Padding positions are masked by `lengths` (packed-sequence semantics), so
//! the pad id never changes a result; it only has to be a valid row.

use crate::data::Inputs;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The padding token of vocabularies built with specials (id 0).
pub const PAD_TOKEN: &str = "<pad>";
/// The unknown-token token of vocabularies built with specials (id 1).
pub const UNK_TOKEN: &str = "<unk>";

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One character per token.
    Char,
    /// Words and single punctuation characters (see the module's split rule).
    Word,
}

/// How [`Vocab::build`] makes a vocabulary from a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VocabOptions {
    pub level: Level,
    /// Lowercase texts before splitting (when building and when encoding).
    pub lowercase: bool,
    /// Keep at most this many ids in all, `<pad>` and `<unk>` included
    /// (= the embedding's rows): the `max_size - 2` most frequent tokens.
    pub max_size: Option<usize>,
    /// Leave out tokens seen fewer times than this (they become `<unk>`).
    pub min_count: usize,
}

impl VocabOptions {
    /// Word level, lowercased, every token kept.
    pub fn words() -> Self {
        VocabOptions {
            level: Level::Word,
            lowercase: true,
            max_size: None,
            min_count: 1,
        }
    }
    /// Character level, case kept, every character kept.
    pub fn chars() -> Self {
        VocabOptions {
            level: Level::Char,
            lowercase: false,
            max_size: None,
            min_count: 1,
        }
    }
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = Some(n);
        self
    }
    pub fn min_count(mut self, n: usize) -> Self {
        self.min_count = n;
        self
    }
    pub fn lowercase(mut self, yes: bool) -> Self {
        self.lowercase = yes;
        self
    }
}

/// Tokens and their ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    level: Level,
    lowercase: bool,
    /// `[V]` the token of each id.
    tokens: Vec<String>,
    index: HashMap<String, usize>,
    pad: Option<usize>,
    unk: Option<usize>,
}

/// The JSON form kept in checkpoint metadata under [`crate::text::VOCAB_KEY`].
#[derive(Serialize, Deserialize)]
struct VocabJson {
    level: Level,
    lowercase: bool,
    tokens: Vec<String>,
    #[serde(default)]
    pad: Option<usize>,
    #[serde(default)]
    unk: Option<usize>,
}

/// The tokens of `text` under the module's split rule (after lowercasing when `lowercase`).
pub fn split(level: Level, lowercase: bool, text: &str) -> Vec<String> {
    let lowered;
    let text = if lowercase {
        lowered = text.to_lowercase();
        &lowered
    } else {
        text
    };
    match level {
        Level::Char => text.chars().map(String::from).collect(),
        Level::Word => split_words(text),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn split_words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let inner_apostrophe = (c == '\'' || c == '\u{2019}')
            && !word.is_empty()
            && chars.get(i + 1).is_some_and(|&n| is_word_char(n));
        if is_word_char(c) || inner_apostrophe {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

impl Vocab {
    /// A vocabulary of the tokens of `texts`, with `<pad>` = 0 and `<unk>` = 1,
    /// the rest by decreasing count (ties in code-point order), cut to `max_size`.
    pub fn build<I, S>(texts: I, opts: &VocabOptions) -> Result<Vocab>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if let Some(m) = opts.max_size {
            if m < 3 {
                return Err(Error::Argument(format!(
                    "vocabulary size {m} leaves no room for tokens: <pad> and <unk> take 2 ids, give at least 3"
                )));
            }
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        for t in texts {
            for tok in split(opts.level, opts.lowercase, t.as_ref()) {
                *counts.entry(tok).or_default() += 1;
            }
        }
        counts.remove(PAD_TOKEN);
        counts.remove(UNK_TOKEN);
        let mut ranked: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, c)| *c >= opts.min_count)
            .collect();
        if ranked.is_empty() {
            return Err(Error::Empty(format!(
                "the vocabulary (no token occurs at least {} time(s) in the texts)",
                opts.min_count.max(1)
            )));
        }
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if let Some(m) = opts.max_size {
            ranked.truncate(m - 2);
        }
        let mut tokens = vec![PAD_TOKEN.to_string(), UNK_TOKEN.to_string()];
        tokens.extend(ranked.into_iter().map(|(t, _)| t));
        Vocab::from_parts(opts.level, opts.lowercase, tokens, Some(0), Some(1))
    }

    /// The distinct characters of `text`, sorted, without specials (the char-LM vocabulary).
    pub fn from_text(text: &str) -> Result<Vocab> {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocab::from_chars(chars)
    }

    /// A character vocabulary of exactly these characters, ids in this order, no specials.
    pub fn from_chars(chars: Vec<char>) -> Result<Vocab> {
        Vocab::from_parts(
            Level::Char,
            false,
            chars.into_iter().map(String::from).collect(),
            None,
            None,
        )
    }

    /// A vocabulary of these tokens (id = position), checked: not empty, no
    /// duplicates, single characters at char level, specials in range.
    pub fn from_parts(
        level: Level,
        lowercase: bool,
        tokens: Vec<String>,
        pad: Option<usize>,
        unk: Option<usize>,
    ) -> Result<Vocab> {
        if tokens.is_empty() {
            return Err(Error::Empty("the vocabulary".into()));
        }
        let mut index = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if level == Level::Char && t.chars().count() != 1 && Some(i) != pad && Some(i) != unk {
                return Err(Error::Argument(format!(
                    "token {t:?} (id {i}) of a character vocabulary is not one character"
                )));
            }
            if index.insert(t.clone(), i).is_some() {
                return Err(Error::Argument(format!(
                    "token {t:?} appears twice in the vocabulary"
                )));
            }
        }
        for (what, id) in [("padding", pad), ("unknown-token", unk)] {
            if let Some(id) = id {
                if id >= tokens.len() {
                    return Err(Error::Argument(format!(
                        "the {what} id {id} is outside the vocabulary of {} tokens",
                        tokens.len()
                    )));
                }
            }
        }
        if pad.is_some() && pad == unk {
            return Err(Error::Argument(
                "padding and unknown tokens must have different ids".into(),
            ));
        }
        Ok(Vocab {
            level,
            lowercase,
            tokens,
            index,
            pad,
            unk,
        })
    }

    /// Number of ids (= rows of the embedding).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    pub fn level(&self) -> Level {
        self.level
    }
    pub fn lowercase(&self) -> bool {
        self.lowercase
    }
    /// `[V]` the token of each id.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
    /// The id of a token (as split, i.e. already lowercased where the vocabulary lowercases).
    pub fn id(&self, token: &str) -> Option<usize> {
        self.index.get(token).copied()
    }
    pub fn token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(String::as_str)
    }
    /// The padding id (`<pad>`), if the vocabulary has one.
    pub fn pad(&self) -> Option<usize> {
        self.pad
    }
    /// The id unknown tokens map to (`<unk>`), if the vocabulary has one.
    pub fn unk(&self) -> Option<usize> {
        self.unk
    }

    /// The tokens of `text` under this vocabulary's level and case rule.
    pub fn split(&self, text: &str) -> Vec<String> {
        split(self.level, self.lowercase, text)
    }

    /// Ids of the tokens of `text`. A token outside the vocabulary becomes
    /// `<unk>`; without `<unk>` it is an error.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        self.split(text)
            .iter()
            .enumerate()
            .map(|(pos, t)| match (self.id(t), self.unk) {
                (Some(i), _) | (None, Some(i)) => Ok(i as i64),
                (None, None) => Err(Error::Argument(format!(
                    "token {t:?} at position {pos} is not in the vocabulary of {} tokens, which has no <unk>; build the vocabulary from this text",
                    self.len()
                ))),
            })
            .collect()
    }

    /// The text of `ids`: characters concatenated, words joined by single
    /// spaces; padding ids are left out. An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let mut parts = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            let tok = usize::try_from(id)
                .ok()
                .and_then(|u| self.token(u).map(|t| (u, t)))
                .ok_or(Error::TokenOutOfRange {
                    id,
                    index: i,
                    vocab: self.len(),
                })?;
            if Some(tok.0) != self.pad {
                parts.push(tok.1);
            }
        }
        Ok(match self.level {
            Level::Char => parts.concat(),
            Level::Word => parts.join(" "),
        })
    }

    /// A batch of texts as token ids `[N, T]` padded to the longest (after
    /// cutting each to its first `max_len` tokens), with `lengths [N]`.
    /// A text without tokens is read as one `<unk>` (every length must be at
    /// least 1); without `<unk>` that is an error naming the text.
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        max_len: Option<usize>,
    ) -> Result<(Inputs, Vec<usize>)> {
        if texts.is_empty() {
            return Err(Error::Empty("the list of texts".into()));
        }
        if max_len == Some(0) {
            return Err(Error::Argument(
                "maximum sequence length must be at least 1 token".into(),
            ));
        }
        let mut rows = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let mut ids = self.encode(t.as_ref())?;
            if let Some(m) = max_len {
                ids.truncate(m);
            }
            if ids.is_empty() {
                let unk = self.unk.ok_or_else(|| {
                    Error::Argument(format!(
                        "text {i} has no tokens and the vocabulary has no <unk> to stand for it; leave empty texts out"
                    ))
                })?;
                ids.push(unk as i64);
            }
            rows.push(ids);
        }
        let t = rows.iter().map(Vec::len).max().unwrap_or(1);
        let pad = self.pad.unwrap_or(0) as i64;
        let mut flat = Vec::with_capacity(rows.len() * t);
        let mut lengths = Vec::with_capacity(rows.len());
        for r in &rows {
            lengths.push(r.len());
            flat.extend_from_slice(r);
            flat.extend(std::iter::repeat_n(pad, t - r.len()));
        }
        Ok((Inputs::tokens(flat, rows.len(), t)?, lengths))
    }

    /// The vocabulary as JSON `{"level","lowercase","tokens","pad","unk"}`
    /// (for checkpoint metadata under [`crate::text::VOCAB_KEY`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&VocabJson {
            level: self.level,
            lowercase: self.lowercase,
            tokens: self.tokens.clone(),
            pad: self.pad,
            unk: self.unk,
        })
        .expect("strings and numbers serialise")
    }

    /// Reads [`Vocab::to_json`]'s output, or the older form: a JSON string of
    /// the characters of a character vocabulary without specials.
    pub fn from_json(s: &str) -> Result<Vocab> {
        let value: serde_json::Value = serde_json::from_str(s).map_err(|e| {
            Error::Argument(format!(
                "vocabulary metadata is not JSON ({e}); it should be what Vocab::to_json writes"
            ))
        })?;
        if let serde_json::Value::String(chars) = &value {
            return Vocab::from_chars(chars.chars().collect());
        }
        let v: VocabJson = serde_json::from_value(value).map_err(|e| {
            Error::Argument(format!(
                "vocabulary metadata is not of the form {{\"level\":\"char|word\",\"lowercase\":bool,\"tokens\":[...],\"pad\":id,\"unk\":id}} ({e})"
            ))
        })?;
        Vocab::from_parts(v.level, v.lowercase, v.tokens, v.pad, v.unk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_whitespace_and_punctuation_keeping_inner_apostrophes() {
        assert_eq!(
            split(
                Level::Word,
                true,
                "I can't see #SXSW!! 'quoted' rock’n roll_1"
            ),
            ["i", "can't", "see", "#", "sxsw", "!", "!", "'", "quoted", "'", "rock’n", "roll_1"]
        );
        assert_eq!(split(Level::Char, false, "Ab c"), ["A", "b", " ", "c"]);
        assert!(split(Level::Word, true, "  \t\n").is_empty());
    }
}
