//! Text in and out of a seq2seq model: its source and target vocabularies
//! kept in the checkpoint's metadata, sources encoded from raw text, decoded
//! tokens turned back into text.

use super::backend::Backend;
use super::data::{Seq2SeqData, Source};
use super::decode::Beam;
use crate::error::{Error, Result};
use crate::text::{Level, Vocab, PAD_TOKEN};
use std::collections::HashMap;

/// Metadata key of the source vocabulary (JSON, as [`Vocab::to_json`]).
pub const SRC_VOCAB_KEY: &str = "recurrent.src_vocab";
/// Metadata key of the target vocabulary; its ids are the model's target
/// ids, `bos` and `eos` among them.
pub const TGT_VOCAB_KEY: &str = "recurrent.tgt_vocab";

/// Checkpoint metadata entries for both vocabularies (for
/// [`super::checkpoint::save_with`]).
pub fn metadata(src: &Vocab, tgt: &Vocab) -> HashMap<String, String> {
    HashMap::from([
        (SRC_VOCAB_KEY.to_string(), src.to_json()),
        (TGT_VOCAB_KEY.to_string(), tgt.to_json()),
    ])
}

/// Both vocabularies from checkpoint metadata, if it has them.
pub fn vocabs_from_metadata(meta: &HashMap<String, String>) -> Result<Option<(Vocab, Vocab)>> {
    match (meta.get(SRC_VOCAB_KEY), meta.get(TGT_VOCAB_KEY)) {
        (Some(s), Some(t)) => Ok(Some((Vocab::from_json(s)?, Vocab::from_json(t)?))),
        _ => Ok(None),
    }
}

/// Texts as a source batch: each text's tokens, padded with the
/// vocabulary's padding id (or 0) to the longest.
pub fn source<S: AsRef<str>>(vocab: &Vocab, texts: &[S]) -> Result<Source> {
    if texts.is_empty() {
        return Err(Error::Empty("the list of texts".into()));
    }
    let ids: Vec<Vec<i64>> = texts
        .iter()
        .map(|t| vocab.encode(t.as_ref()))
        .collect::<Result<_>>()?;
    if let Some(i) = ids.iter().position(|v| v.is_empty()) {
        return Err(Error::Argument(format!(
            "text {i} ({:?}) has no tokens: nothing to translate",
            texts[i].as_ref()
        )));
    }
    let s = ids.iter().map(Vec::len).max().unwrap_or(1);
    let pad = vocab.pad().unwrap_or(0) as i64;
    let lengths = ids.iter().map(Vec::len).collect();
    let flat = ids
        .into_iter()
        .flat_map(|mut v| {
            v.resize(s, pad);
            v
        })
        .collect();
    Source::new(flat, [texts.len(), s], Some(lengths))
}

/// Translates each text: encoded with `src`, decoded (greedy, or `beam`)
/// for at most `max_len` tokens, the tokens before `eos` written with `tgt`.
pub fn translate<S: AsRef<str>>(
    model: &mut dyn Backend,
    src: &Vocab,
    tgt: &Vocab,
    texts: &[S],
    max_len: usize,
    beam: Option<Beam>,
) -> Result<Vec<String>> {
    if tgt.len() != model.config().tgt_vocab || src.len() != model.config().src_vocab {
        return Err(Error::Argument(format!(
            "the vocabularies have {} source and {} target tokens but the model {} and {}",
            src.len(),
            tgt.len(),
            model.config().src_vocab,
            model.config().tgt_vocab
        )));
    }
    let source = source(src, texts)?;
    let out = match beam {
        Some(b) => model.beam(&source, max_len, b)?,
        None => model.greedy(&source, max_len)?,
    };
    (0..out.n)
        .map(|i| tgt.decode(out.row(i, model.config().eos)))
        .collect()
}

/// The characters that stand for `bos` and `eos` (ids 1 and 2, the model's
/// defaults) in a target vocabulary from [`char_vocabs`].
pub const BOS: char = '\u{2}';
pub const EOS: char = '\u{3}';

/// Character vocabularies for text pairs: the source's `<pad>` (0) then
/// every character of the sources, sorted; the target's `<pad>` (0),
/// [`BOS`] (1), [`EOS`] (2), then every character of the targets, sorted.
pub fn char_vocabs<S: AsRef<str>, T: AsRef<str>>(pairs: &[(S, T)]) -> Result<(Vocab, Vocab)> {
    let chars = |texts: &mut dyn Iterator<Item = &str>| {
        let mut c: Vec<char> = texts.flat_map(str::chars).collect();
        c.sort_unstable();
        c.dedup();
        c.into_iter().map(String::from)
    };
    let pad = PAD_TOKEN.to_string();
    let src: Vec<String> = std::iter::once(pad.clone())
        .chain(chars(&mut pairs.iter().map(|p| p.0.as_ref())))
        .collect();
    let tgt: Vec<String> = [pad, BOS.to_string(), EOS.to_string()]
        .into_iter()
        .chain(chars(&mut pairs.iter().map(|p| p.1.as_ref())))
        .collect();
    Ok((
        Vocab::from_parts(Level::Char, false, src, Some(0), None)?,
        Vocab::from_parts(Level::Char, false, tgt, Some(0), None)?,
    ))
}

/// Text pairs as training data: the sources padded (with their lengths),
/// `tgt_in` = `bos` then the target, `tgt_out` = the target then `eos`
/// (padding: 0 in, -100 out), to the longest target plus one.
pub fn pairs<S: AsRef<str>, T: AsRef<str>>(
    src: &Vocab,
    tgt: &Vocab,
    bos: usize,
    eos: usize,
    pairs: &[(S, T)],
) -> Result<Seq2SeqData> {
    let sources: Vec<&str> = pairs.iter().map(|p| p.0.as_ref()).collect();
    let source = source(src, &sources)?;
    let targets: Vec<Vec<i64>> = pairs
        .iter()
        .map(|p| tgt.encode(p.1.as_ref()))
        .collect::<Result<_>>()?;
    let t = targets.iter().map(Vec::len).max().unwrap_or(0) + 1;
    let (mut tgt_in, mut tgt_out) = (Vec::new(), Vec::new());
    for v in &targets {
        tgt_in.push(bos as i64);
        tgt_in.extend_from_slice(v);
        tgt_in.resize(tgt_in.len() + t - 1 - v.len(), 0);
        tgt_out.extend_from_slice(v);
        tgt_out.push(eos as i64);
        tgt_out.resize(tgt_out.len() + t - 1 - v.len(), -100);
    }
    Seq2SeqData::new(source, tgt_in, tgt_out, t)
}
