//! `recurrent train --arch seq2seq`, and predict, evaluate and generate for a
//! seq2seq checkpoint (the commands route here when the model is one).

use super::{
    cell_of, optimizer_of, AttentionArg, EvaluateArgs, GenerateArgs, PredictArgs, TrainArgs,
};
use recurrent::io::st::{self, Write_};
use recurrent::seq2seq::{
    self, checkpoint, decode, fit, Attention, Seq2Seq, Seq2SeqConfig, Seq2SeqData,
};
use recurrent::{Error, Nonlinearity, Result};
use std::path::{Path, PathBuf};

/// Is the checkpoint at `path` a seq2seq model? (`false` when it cannot be
/// read: the plain path then reports why.)
pub fn is_seq2seq_checkpoint(path: Option<&PathBuf>) -> Result<bool> {
    let Some(path) = path else { return Ok(false) };
    Ok(st::read_metadata(path).is_ok_and(|m| checkpoint::is_seq2seq(&m)))
}

/// Flags of plain models that a seq2seq fit does not take, if given.
fn refuse_plain_flags(a: &TrainArgs) -> Result<()> {
    let given = [
        ("--stateful", a.stateful),
        ("--resume", a.resume.is_some()),
        ("--checkpoint", a.checkpoint.is_some()),
        ("--patience", a.patience.is_some()),
        ("--f16", a.f16),
        ("--keras-init", a.keras_init),
        ("--out-features", a.out_features.is_some()),
        ("--vocab", a.vocab.is_some()),
        ("--schedule", a.schedule != "constant"),
        (
            "--dropout flags",
            a.dropout.is_some()
                || a.input_dropout.is_some()
                || a.output_dropout.is_some()
                || a.recurrent_dropout.is_some(),
        ),
        ("--loss mse", matches!(a.loss, Some(super::LossArg::Mse))),
    ];
    match given.iter().find(|g| g.1) {
        Some((flag, _)) => Err(Error::Argument(format!(
            "{flag} is not available for seq2seq models (they train with ce, teacher forcing, in batches)"
        ))),
        None => Ok(()),
    }
}

/// Vocabulary size covering every id of `ids` (and `at_least`).
fn vocab_of(ids: &[i64], at_least: usize) -> usize {
    ids.iter()
        .copied()
        .filter(|&v| v >= 0)
        .max()
        .map_or(0, |m| m as usize + 1)
        .max(at_least)
}

fn new_model(a: &TrainArgs, data: &Seq2SeqData) -> Result<Seq2Seq> {
    let embed = a.embed_dim.ok_or_else(|| {
        Error::Argument("a new seq2seq model needs --embed E (both embeddings' width)".into())
    })?;
    let targets: Vec<i64> = data.tgt_in.iter().chain(&data.tgt_out).copied().collect();
    let cfg = Seq2SeqConfig {
        cell: cell_of(a.cell.expect("clap requires it")),
        nonlinearity: Nonlinearity::parse(&a.nonlinearity)?,
        src_vocab: a.src_vocab.unwrap_or_else(|| vocab_of(&data.src.ids, 1)),
        tgt_vocab: a
            .tgt_vocab
            .unwrap_or_else(|| vocab_of(&targets, a.bos.max(a.eos) + 1)),
        embed,
        hidden: a.hidden.expect("clap requires it"),
        layers: a.layers,
        bidirectional: a.bidirectional,
        attention: match a.attention {
            AttentionArg::General => Attention::General,
            AttentionArg::Dot => Attention::Dot,
            AttentionArg::None => Attention::None,
        },
        bos: a.bos,
        eos: a.eos,
    };
    Seq2Seq::new(cfg, a.seed)
}

pub fn train(a: TrainArgs) -> Result<()> {
    refuse_plain_flags(&a)?;
    if a.epochs == 0 {
        return Err(Error::Argument("--epochs must be at least 1".into()));
    }
    let device = super::pick_device(a.device)?;
    let data = seq2seq::data::load(&a.data)?;
    let (model, meta) = match &a.model {
        Some(p) => checkpoint::load_with_metadata(p)?,
        None => (new_model(&a, &data)?, Default::default()),
    };
    let validation = a.validation.as_ref().map(seq2seq::data::load).transpose()?;
    let mut opt = optimizer_of(&a)?;
    let c = model.config();
    eprintln!(
        "model: seq2seq {} embed {} hidden {} layers {}{} attention {} vocab {} -> {} ({} parameters); {} pairs of {} -> {} steps",
        c.cell.name(),
        c.embed,
        c.hidden,
        c.layers,
        if c.bidirectional { " bidirectional" } else { "" },
        c.attention.name(),
        c.src_vocab,
        c.tgt_vocab,
        model.params().len(),
        data.n(),
        data.src.s,
        data.t
    );
    let f = fit::Fit {
        epochs: a.epochs,
        batch_size: a.batch_size,
        shuffle: !a.no_shuffle,
        seed: a.seed,
        clip: a.clip,
    };
    let epochs = a.epochs;
    let mut model = device.seq2seq(&model)?;
    fit::fit(
        model.as_mut(),
        &data,
        validation.as_ref(),
        &mut opt,
        &f,
        |e| {
            let v = e.validation.map_or(String::new(), |v| {
                format!(
                    " val_loss {:.6} val_accuracy {:.2}%",
                    v.loss,
                    v.accuracy * 100.0
                )
            });
            println!(
                "epoch {}/{epochs} loss {:.6}{v} ({:.1}s)",
                e.epoch, e.loss, e.seconds
            );
        },
    )?;
    checkpoint::save_with(&model.to_model()?, &a.save, &meta)?;
    println!("saved {}", a.save.display());
    Ok(())
}

pub fn predict(a: PredictArgs) -> Result<()> {
    let Some(data) = &a.data else {
        return Err(Error::Argument(
            "a seq2seq model predicts the teacher-forced logits of --data; translate text with `recurrent generate --text`".into(),
        ));
    };
    let output = a
        .output
        .as_ref()
        .ok_or_else(|| Error::Argument("predict --data needs --output OUT.safetensors".into()))?;
    let device = super::pick_device(a.device)?;
    let mut model = device.seq2seq(&checkpoint::load(&a.model)?)?;
    let data = seq2seq::data::load(data)?;
    let out = model.forward(&data)?;
    recurrent::io::dataset::save_tensors(output, &[("output", &out)])?;
    println!("wrote output {:?} to {}", out.shape, output.display());
    Ok(())
}

pub fn evaluate(a: EvaluateArgs) -> Result<()> {
    if matches!(a.loss, Some(super::LossArg::Mse)) {
        return Err(Error::Argument(
            "seq2seq models evaluate with ce (and token accuracy)".into(),
        ));
    }
    let device = super::pick_device(a.device)?;
    let mut model = device.seq2seq(&checkpoint::load(&a.model)?)?;
    let data = seq2seq::data::load(&a.data)?;
    let e = model.evaluate(&data, a.batch_size)?;
    println!(
        "loss {:.6} accuracy {:.2}% ({} pairs, {} target tokens)",
        e.loss,
        e.accuracy * 100.0,
        data.n(),
        e.tokens
    );
    Ok(())
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    if a.prime.is_some() || a.length.is_some() {
        return Err(Error::Argument(
            "--prime and --length are for language models; a seq2seq model decodes --data or --text up to --max-len tokens".into(),
        ));
    }
    let max_len = a.max_len.ok_or_else(|| {
        Error::Argument("give --max-len K, the most tokens to decode a row".into())
    })?;
    let beam = a.beam.map(|width| decode::Beam {
        width,
        length_norm: a.length_norm,
    });
    let device = super::pick_device(a.device)?;
    let (model, meta) = checkpoint::load_with_metadata(&a.model)?;
    let mut model = device.seq2seq(&model)?;
    match (&a.data, a.text.is_empty()) {
        (Some(data), true) => {
            let output = a.output.as_ref().ok_or_else(|| {
                Error::Argument("generate --data needs --output OUT.safetensors".into())
            })?;
            let src = seq2seq::data::load_source(data)?;
            let out = match beam {
                Some(b) => model.beam(&src, max_len, b)?,
                None => model.greedy(&src, max_len)?,
            };
            write_tokens(output, &out)?;
            println!(
                "wrote generated [{}, {}] to {}",
                out.n,
                out.max_len,
                output.display()
            );
        }
        (None, false) => {
            let (src, tgt) = seq2seq::text::vocabs_from_metadata(&meta)?.ok_or_else(|| {
                Error::Argument(format!(
                    "{} has no vocabularies (metadata `{}` and `{}`), so text cannot be encoded; give token ids with --data",
                    a.model.display(),
                    seq2seq::text::SRC_VOCAB_KEY,
                    seq2seq::text::TGT_VOCAB_KEY
                ))
            })?;
            for line in
                seq2seq::text::translate(model.as_mut(), &src, &tgt, &a.text, max_len, beam)?
            {
                println!("{line}");
            }
        }
        _ => {
            return Err(Error::Argument(
                "give either --data FILE (with --output) or --text TEXT".into(),
            ))
        }
    }
    Ok(())
}

/// `generated` i64 `[N, max_len]`, written atomically.
fn write_tokens(path: &Path, out: &decode::Decoded) -> Result<()> {
    let tensors = vec![(
        "generated".to_string(),
        vec![out.n, out.max_len],
        Write_::I64(&out.tokens),
    )];
    st::write_atomic(path, &st::serialize(&tensors, Default::default())?)
}
