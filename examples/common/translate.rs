//! What the seq2seq examples (`addition`, `dates`) share: training on text
//! pairs with a printed line per epoch, exact-match accuracy on held-out
//! pairs, the data exported for the PyTorch comparison, and one attention
//! map drawn as SVG.

use recurrent::seq2seq::{self, decode, fit, Backend, Seq2Seq, Seq2SeqConfig};
use recurrent::text::Vocab;
use recurrent::{Device, Error, Optimizer};
use std::path::Path;
use std::time::Instant;

/// Text pairs: (source, target).
pub type Pairs = Vec<(String, String)>;

/// The training settings both examples take.
pub struct Settings {
    pub epochs: usize,
    pub batch: usize,
    /// Adam's learning rate at the start; a cosine takes it to a tenth by the last epoch.
    pub lr: f32,
    pub clip: f32,
    pub seed: u64,
    /// Where to train and decode (`--device auto|cpu|gpu`).
    pub device: Device,
}

/// A trained model (on the host, and where it trained), its vocabularies
/// and the seconds its training took.
pub struct Trained {
    pub model: Seq2Seq,
    pub backend: Box<dyn Backend>,
    pub sv: Vocab,
    pub tv: Vocab,
    pub secs: f64,
    /// Held-out pairs decoded exactly, of all held out, after training.
    pub exact: (usize, usize),
}

/// What to write after training (the flags both examples take).
pub struct Outputs<'a> {
    pub svg: Option<&'a Path>,
    pub export: Option<&'a Path>,
    pub save: Option<&'a Path>,
}

/// How held-out pairs are printed: `source sep answer ok`, the source
/// right-aligned to `width` and the answer left-aligned to `answer`.
pub struct Show {
    pub samples: usize,
    pub width: usize,
    pub sep: &'static str,
    pub answer: usize,
}

/// Trains `cfg` (vocabulary sizes filled in) on `train`, printing each
/// epoch's loss and the held-out exact match every `report_every` epochs.
pub fn train(
    cfg: Seq2SeqConfig,
    train: &Pairs,
    test: &Pairs,
    s: &Settings,
    max_len: usize,
    report_every: usize,
) -> Result<Trained, Error> {
    let all: Pairs = train.iter().chain(test).cloned().collect();
    let (sv, tv) = seq2seq::text::char_vocabs(&all)?;
    let cfg = Seq2SeqConfig {
        src_vocab: sv.len(),
        tgt_vocab: tv.len(),
        ..cfg
    };
    let model = Seq2Seq::new(cfg.clone(), s.seed)?;
    let data = seq2seq::text::pairs(&sv, &tv, cfg.bos, cfg.eos, train)?;
    eprintln!("device: {}", s.device.describe());
    eprintln!(
        "model: {} embed {} hidden {}{} attention {}, {} parameters; {} training pairs, {} held out",
        cfg.cell.name(),
        cfg.embed,
        cfg.hidden,
        if cfg.bidirectional { " bidirectional" } else { "" },
        cfg.attention.name(),
        model.params().len(),
        train.len(),
        test.len()
    );
    let mut backend = s.device.seq2seq(&model)?;
    let mut opt = Optimizer::adam(s.lr);
    let t0 = Instant::now();
    // The held-out exact match after the last epoch (measured there).
    let mut last = None;
    for epoch in 1..=s.epochs {
        // Cosine from lr down to lr / 10 over the epochs.
        let done = (epoch - 1) as f32 / s.epochs.max(2).saturating_sub(1) as f32;
        opt.set_lr(s.lr / 10.0 + 0.45 * s.lr * (1.0 + (std::f32::consts::PI * done).cos()));
        let f = fit::Fit {
            epochs: 1,
            batch_size: s.batch,
            shuffle: true,
            seed: s.seed.wrapping_add(epoch as u64),
            clip: Some(s.clip),
        };
        let e = fit::fit(backend.as_mut(), &data, None, &mut opt, &f, |_| {})?;
        let acc = if epoch % report_every == 0 || epoch == s.epochs {
            let (right, n) = exact_match(backend.as_mut(), &sv, &tv, test, max_len)?;
            last = Some((right, n));
            format!(
                "  held-out exact match {:.2}%",
                100.0 * right as f64 / n as f64
            )
        } else {
            String::new()
        };
        println!(
            "epoch {epoch:>2}/{}  loss {:.4}  ({:.1}s){acc}",
            s.epochs, e[0].loss, e[0].seconds
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    let exact = match last {
        Some(v) => v,
        None => exact_match(backend.as_mut(), &sv, &tv, test, max_len)?,
    };
    Ok(Trained {
        model: backend.to_model()?,
        backend,
        sv,
        tv,
        secs,
        exact,
    })
}

/// The held-out exact match and time, some held-out pairs as `show` says,
/// then the attention map, the export and the checkpoint `out` asks for.
pub fn finish(
    t: &mut Trained,
    train: &Pairs,
    test: &Pairs,
    max_len: usize,
    epochs: usize,
    show: &Show,
    out: &Outputs,
) -> Result<(), Error> {
    let Trained {
        model,
        backend,
        sv,
        tv,
        secs,
        exact: (right, n),
    } = t;
    println!(
        "held-out exact match {:.2}% ({right}/{n}) after {epochs} epochs, {secs:.0} s training",
        100.0 * *right as f64 / *n as f64,
    );
    let (w, sep, aw) = (show.width, show.sep, show.answer);
    for (q, want) in test.iter().take(show.samples) {
        let got = &seq2seq::text::translate(backend.as_mut(), sv, tv, &[q], max_len, None)?[0];
        let ok = if got == want { "ok" } else { "wrong" };
        println!("  {q:>w$} {sep} {got:<aw$} {ok}");
    }
    let first = &test[0].0;
    if let Some(p) = out.svg {
        let got = attention_svg(model, sv, tv, first, max_len, p)?;
        println!(
            "attention of {first:?} {sep} {got} drawn in {}",
            p.display()
        );
    }
    if let Some(dir) = out.export {
        export(dir, sv, tv, train, test)?;
    }
    if let Some(p) = out.save {
        seq2seq::checkpoint::save_with(model, p, &seq2seq::text::metadata(sv, tv))?;
        println!(
            "saved {} (recurrent generate --model {} --text {first:?} --max-len {max_len})",
            p.display(),
            p.display()
        );
    }
    Ok(())
}

/// Held-out pairs whose greedy decoding is exactly the target.
pub fn exact_match(
    model: &mut dyn Backend,
    sv: &Vocab,
    tv: &Vocab,
    pairs: &Pairs,
    max_len: usize,
) -> Result<(usize, usize), Error> {
    let mut right = 0;
    for chunk in pairs.chunks(500) {
        let texts: Vec<&str> = chunk.iter().map(|p| p.0.as_str()).collect();
        let got = seq2seq::text::translate(model, sv, tv, &texts, max_len, None)?;
        right += got.iter().zip(chunk).filter(|(g, p)| **g == p.1).count();
    }
    Ok((right, pairs.len()))
}

/// Writes `train` and `test` as seq2seq data files in `dir` (and the
/// vocabularies' sizes and tokens in `vocab.json`) for the PyTorch script.
pub fn export(
    dir: &Path,
    sv: &Vocab,
    tv: &Vocab,
    train: &Pairs,
    test: &Pairs,
) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.into(),
        source: e,
    })?;
    for (name, p) in [("train", train), ("test", test)] {
        let d = seq2seq::text::pairs(sv, tv, 1, 2, p)?;
        seq2seq::data::save(&d, dir.join(format!("{name}.safetensors")))?;
    }
    let json = format!("{{\"src\": {}, \"tgt\": {}}}", sv.to_json(), tv.to_json());
    std::fs::write(dir.join("vocab.json"), json).map_err(|e| Error::Io {
        path: dir.into(),
        source: e,
    })?;
    eprintln!("exported train/test pairs to {}", dir.display());
    Ok(())
}

/// Draws the attention of decoding `source` as an SVG heat map: one column
/// per source character, one row per output character, darker = more weight.
pub fn attention_svg(
    model: &Seq2Seq,
    sv: &Vocab,
    tv: &Vocab,
    source: &str,
    max_len: usize,
    path: &Path,
) -> Result<String, Error> {
    let src = seq2seq::text::source(sv, &[source])?;
    let out = decode::greedy(model, &src, max_len)?;
    let eos = model.config().eos;
    let toks = out.row(0, eos).to_vec();
    let mut with_eos = toks.clone();
    with_eos.push(eos as i64);
    let t = with_eos.len();
    let tgt_in: Vec<i64> = std::iter::once(model.config().bos as i64)
        .chain(toks.iter().copied())
        .collect();
    let data = seq2seq::Seq2SeqData::new(src.clone(), tgt_in, with_eos.clone(), t)?;
    let Some(a) = model.attention_weights(&data)? else {
        return Err(Error::Argument("the model has no attention to draw".into()));
    };
    let s = src.s;
    let cell = 28;
    let (left, top) = (40, 40);
    let (w, h) = (left + s * cell + 10, top + t * cell + 10);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"monospace\" font-size=\"14\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let label = |c: &str| match c {
        "<" => "&lt;".to_string(),
        ">" => "&gt;".to_string(),
        "&" => "&amp;".to_string(),
        " " => "␣".to_string(),
        c => c.to_string(),
    };
    for (j, ch) in source.chars().enumerate() {
        let x = left + j * cell + cell / 2;
        svg += &format!(
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            top - 10,
            label(&ch.to_string())
        );
    }
    for (i, &tok) in with_eos.iter().enumerate() {
        let name = if tok == eos as i64 {
            "eos".to_string()
        } else {
            label(tv.token(tok as usize).unwrap_or("?"))
        };
        let y = top + i * cell + cell / 2 + 5;
        svg += &format!(
            "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{name}</text>\n",
            left - 6
        );
        for j in 0..s {
            let v = a.data[i * s + j];
            svg += &format!(
                "<rect x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb(20,60,160)\" fill-opacity=\"{v:.3}\" stroke=\"#ddd\"/>\n",
                left + j * cell,
                top + i * cell
            );
        }
    }
    svg += "</svg>\n";
    recurrent::io::st::write_atomic(path, svg.as_bytes())?;
    tv.decode(&toks)
}
