//! Text models: vocabularies (build, encode, decode, unknown tokens, padding,
//! top-K, the checkpoint metadata round trip), batches trimmed to their
//! longest sequence (same loss and gradients, less work), and raw text through
//! `recurrent predict --text` to class names.

mod common;

use common::*;
use recurrent::gpu::GpuModel;
use recurrent::io::checkpoint;
use recurrent::model::{Evaluation, StepOptions, StepStats};
use recurrent::text::{self, Level, Vocab, VocabOptions};
use recurrent::train::{Backend, FitConfig, Trainer};
use recurrent::{
    Cell, Dataset, Error, Init, Inputs, Loss, Model, ModelConfig, Optimizer, OutputMode, Targets,
    Tensor,
};
use std::process::Command;

const CORPUS: [&str; 3] = ["The cat sat.", "the dog sat!", "a cat"];

#[test]
fn word_vocab_orders_by_count_then_token_with_pad_and_unk_first() {
    let v = Vocab::build(CORPUS, &VocabOptions::words()).unwrap();
    // Counts: the 2, cat 2, sat 2, then ! . a dog once each (ties in code-point order).
    assert_eq!(
        v.tokens(),
        ["<pad>", "<unk>", "cat", "sat", "the", "!", ".", "a", "dog"]
    );
    assert_eq!(
        (v.pad(), v.unk(), v.level()),
        (Some(0), Some(1), Level::Word)
    );
    assert_eq!(v.encode("The DOG sat").unwrap(), vec![4, 8, 3]);
    // Unknown words map to <unk>, they are not errors.
    assert_eq!(v.encode("the bird sat").unwrap(), vec![4, 1, 3]);
    assert_eq!(
        v.decode(&[4, 1, 3, 0, 0]).unwrap(),
        "the <unk> sat",
        "padding is left out"
    );
    assert!(matches!(
        v.decode(&[9]),
        Err(Error::TokenOutOfRange { id: 9, .. })
    ));
    // Round trip of known text: the lowercased tokens joined by spaces.
    let ids = v.encode("A cat sat.").unwrap();
    assert_eq!(v.decode(&ids).unwrap(), "a cat sat .");
}

#[test]
fn top_k_and_min_count_send_rare_words_to_unk() {
    let top = Vocab::build(CORPUS, &VocabOptions::words().max_size(5)).unwrap();
    assert_eq!(top.tokens(), ["<pad>", "<unk>", "cat", "sat", "the"]);
    assert_eq!(top.encode("the dog sat!").unwrap(), vec![4, 1, 3, 1]);
    let frequent = Vocab::build(CORPUS, &VocabOptions::words().min_count(2)).unwrap();
    assert_eq!(frequent.tokens(), top.tokens());
    let cased = Vocab::build(CORPUS, &VocabOptions::words().lowercase(false)).unwrap();
    assert!(cased.id("The").is_some() && cased.id("the").is_some());
    assert!(matches!(
        Vocab::build(CORPUS, &VocabOptions::words().max_size(2)),
        Err(Error::Argument(_))
    ));
    assert!(matches!(
        Vocab::build(CORPUS, &VocabOptions::words().min_count(5)),
        Err(Error::Empty(_))
    ));
}

#[test]
fn char_vocab_builds_with_specials_and_the_lm_vocab_without() {
    let v = Vocab::build(["ab", "ba c"], &VocabOptions::chars()).unwrap();
    assert_eq!(v.tokens(), ["<pad>", "<unk>", "a", "b", " ", "c"]);
    assert_eq!(v.encode("cab!").unwrap(), vec![5, 2, 3, 1]);
    assert_eq!(v.decode(&[5, 2, 3, 0]).unwrap(), "cab");
    // The char-LM vocabulary: exactly the characters, no specials, unknown = error.
    let lm = Vocab::from_text("abc").unwrap();
    assert_eq!((lm.pad(), lm.unk()), (None, None));
    assert!(matches!(lm.encode("abd"), Err(Error::Argument(_))));
    // The older metadata form (a JSON string of the characters) still reads.
    assert_eq!(Vocab::from_json("\"abc\"").unwrap(), lm);
    assert_eq!(Vocab::from_json(&lm.to_json()).unwrap(), lm);
}

#[test]
fn batches_pad_to_the_longest_text_with_lengths() {
    let v = Vocab::build(CORPUS, &VocabOptions::words()).unwrap();
    let (x, lengths) = v
        .encode_batch(&["the cat", "", "cat sat the dog"], Some(3))
        .unwrap();
    let Inputs::Tokens { ids, n, t } = x else {
        panic!("token inputs")
    };
    assert_eq!((n, t), (3, 3));
    // An empty text is one <unk>; the long one is cut to its first 3 tokens.
    assert_eq!(ids, vec![4, 2, 0, 1, 0, 0, 2, 3, 4]);
    assert_eq!(lengths, vec![2, 1, 3]);
    let (classes, y) = text::label_ids(&["pos", "neg", "pos"]);
    let d = text::dataset(&v, &["a", "b", "c"], Some(&y), None).unwrap();
    assert_eq!(classes, ["neg", "pos"]);
    assert_eq!(
        d.y,
        Some(Targets::Classes {
            data: vec![1, 0, 1],
            shape: vec![3]
        })
    );
    assert!(matches!(
        text::dataset(&v, &["a"], Some(&y), None),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        v.encode_batch(&["a"], Some(0)),
        Err(Error::Argument(_))
    ));
    let lm = Vocab::from_text("ab").unwrap();
    assert!(
        matches!(lm.encode_batch(&["ab", ""], None), Err(Error::Argument(m)) if m.contains("text 1"))
    );
}

#[test]
fn vocab_and_classes_round_trip_through_checkpoint_metadata() {
    let dir = temp_dir("text-meta");
    let v = Vocab::build(CORPUS, &VocabOptions::words()).unwrap();
    let classes = vec!["negative".to_string(), "positive".to_string()];
    let model = Model::new(
        ModelConfig::new(Cell::Gru, 4, 5, 2).embedding(v.len()),
        &Init::seed(1),
    )
    .unwrap();
    let path = dir.join("m.safetensors");
    checkpoint::save_with(&model, &path, &text::metadata(&v, Some(&classes))).unwrap();
    let (back, meta) = checkpoint::load_with_metadata(&path).unwrap();
    assert_eq!(back.params(), model.params());
    assert_eq!(text::vocab_from_metadata(&meta).unwrap(), Some(v.clone()));
    assert_eq!(text::classes_from_metadata(&meta).unwrap(), Some(classes));
    // Broken metadata is a typed error, not a panic.
    let mut bad = meta.clone();
    bad.insert(text::CLASSES_KEY.into(), "{\"a\":1}".into());
    assert!(matches!(
        text::classes_from_metadata(&bad),
        Err(Error::Argument(_))
    ));
    bad.insert(
        text::VOCAB_KEY.into(),
        "{\"level\":\"word\",\"lowercase\":true,\"tokens\":[\"a\",\"a\"]}".into(),
    );
    assert!(
        matches!(text::vocab_from_metadata(&bad), Err(Error::Argument(m)) if m.contains("twice"))
    );
    bad.insert(
        text::VOCAB_KEY.into(),
        "{\"level\":\"word\",\"lowercase\":true,\"tokens\":[\"a\"],\"unk\":3}".into(),
    );
    assert!(matches!(
        text::vocab_from_metadata(&bad),
        Err(Error::Argument(_))
    ));
}

/// Same-maths comparison of full-length and trimmed batches: only the GEMM
/// blocking over `T*B` rows may change, which moves sums by a few ulp.
const TRIMMED: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-7,
    name: "full vs trimmed batch (summation blocking only)",
};

/// A batch whose longest sequence (5) is shorter than its `T` (9).
fn padded_batch(case: &Case, loss: Loss) -> Dataset {
    let mut d = case.data(loss, 5);
    d.lengths = Some(vec![5, 3, 1, 4]);
    d
}

#[test]
fn trimming_to_the_longest_sequence_keeps_loss_and_gradients() {
    for (cell, output, bidirectional, loss) in [
        (Cell::Lstm, OutputMode::Last, true, Loss::Ce),
        (Cell::Gru, OutputMode::Sequence, true, Loss::Ce),
        (Cell::Rnn, OutputMode::Sequence, false, Loss::Mse),
    ] {
        let case = Case {
            output,
            bidirectional,
            layers: 2,
            steps: 9,
            lengths: true,
            vocab: Some(13),
            ..Case::new(cell)
        };
        let model = case.model(3);
        let full = padded_batch(&case, loss);
        let trimmed = full.clone().trim_to_longest();
        assert_eq!(trimmed.x.shape(), vec![4, 5]);
        if output == OutputMode::Sequence {
            assert_eq!(trimmed.y.as_ref().unwrap().shape()[1], 5);
        }
        let what = case.label(loss);
        let (l_full, g_full) = model.loss_and_gradients(&full, loss).unwrap();
        let (l_trim, g_trim) = model.loss_and_gradients(&trimmed, loss).unwrap();
        assert_close(&format!("{what}: loss"), &[l_trim], &[l_full], TRIMMED);
        assert_close(&format!("{what}: gradients"), &g_trim, &g_full, TRIMMED);
        // Changing a step past every length changes nothing; one inside does.
        let poke = |pos: usize| {
            let mut d = full.clone();
            if let Inputs::Tokens { ids, .. } = &mut d.x {
                ids[pos] = (ids[pos] + 1) % 13;
            }
            model.loss_and_gradients(&d, loss).unwrap().0
        };
        assert_eq!(
            poke(full.steps() - 1),
            l_full,
            "{what}: a step past every length"
        );
        assert_ne!(poke(0), l_full, "{what}: a step inside a length");
    }
}

/// A CPU backend that records the number of steps of every training batch.
struct StepsSeen {
    inner: Model,
    steps: Vec<usize>,
}

impl Backend for StepsSeen {
    fn device(&self) -> String {
        "cpu (recording steps)".into()
    }
    fn config(&self) -> &ModelConfig {
        self.inner.config()
    }
    fn train_step(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> recurrent::Result<Vec<StepStats>> {
        self.steps.push(batch.steps());
        Backend::train_step(&mut self.inner, batch, opts, opt)
    }
    fn evaluate(&mut self, d: &Dataset, l: Loss, b: usize) -> recurrent::Result<Evaluation> {
        Backend::evaluate(&mut self.inner, d, l, b)
    }
    fn predict(&mut self, d: &Dataset, b: usize) -> recurrent::Result<Tensor> {
        Backend::predict(&mut self.inner, d, b)
    }
    fn predict_states(
        &mut self,
        d: &Dataset,
        b: usize,
    ) -> recurrent::Result<recurrent::train::Prediction> {
        Backend::predict_states(&mut self.inner, d, b)
    }
    fn sync_to(&mut self, m: &mut Model) -> recurrent::Result<()> {
        self.inner.sync_to(m)
    }
    fn load_from(&mut self, m: &Model) -> recurrent::Result<()> {
        self.inner.load_from(m)
    }
}

/// 24 texts of 1..=12 tokens in a `[24, 20]` batch, sorted by length so that
/// file-order batches of 8 have longest lengths 4, 8 and 12; and an LSTM for them.
fn ragged_texts() -> (Dataset, Model) {
    let v = Vocab::build(["a b c d e f g h"], &VocabOptions::words()).unwrap();
    let words = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let texts: Vec<String> = (0..24)
        .map(|i| {
            (0..=i / 2)
                .map(|k| words[(i + k) % 8])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let y: Vec<i64> = (0..24).map(|i| (i % 3 == 0) as i64).collect();
    let mut data = text::dataset(&v, &texts, Some(&y), None).unwrap();
    // Pad further, to T = 20, as a data set cut to a fixed length would be.
    let Inputs::Tokens { ids, n, t } = &data.x else {
        unreachable!()
    };
    let mut wide = vec![0i64; n * 20];
    for r in 0..*n {
        wide[r * 20..r * 20 + t].copy_from_slice(&ids[r * t..(r + 1) * t]);
    }
    data.x = Inputs::tokens(wide, 24, 20).unwrap();
    let model = Model::new(
        ModelConfig::new(Cell::Lstm, 4, 6, 2).embedding(v.len()),
        &Init::seed(2),
    )
    .unwrap();
    (data, model)
}

fn ragged_fit(trim: bool) -> FitConfig {
    FitConfig {
        epochs: 3,
        batch_size: 8,
        shuffle: false,
        clip: Some(1.0),
        progress: false,
        trim_to_longest: trim,
        ..FitConfig::default()
    }
}

#[test]
fn trainer_trims_batches_and_trains_the_same_as_without() {
    let (data, model) = ragged_texts();
    let run = |trim: bool| {
        let cfg = ragged_fit(trim);
        let mut b = StepsSeen {
            inner: model.clone(),
            steps: vec![],
        };
        let mut opt = Optimizer::adam(1e-2);
        let h = Trainer::new(cfg)
            .fit_on(&mut b, &mut opt, &data, Some(&data))
            .unwrap();
        (b, h)
    };
    let (trimmed, h_trim) = run(true);
    let (full, h_full) = run(false);
    assert_eq!(&trimmed.steps[..3], [4, 8, 12]);
    assert!(full.steps.iter().all(|&s| s == 20));
    for (a, b) in h_trim.epochs.iter().zip(&h_full.epochs) {
        assert_close("train loss", &[a.train_loss], &[b.train_loss], TRIMMED);
        assert_close(
            "validation loss",
            &[a.val_loss.unwrap()],
            &[b.val_loss.unwrap()],
            TRIMMED,
        );
    }
    assert_close(
        "weights after 3 epochs",
        trimmed.inner.params(),
        full.inner.params(),
        TRIMMED,
    );
}

/// The same on the GPU path: batches of 4, 8 and 12 steps (one plan per
/// shape) train as the full 20-step batches do.
#[test]
fn trimmed_batches_train_the_same_on_the_gpu() {
    let Some(ctx) = gpu("trimmed_batches_train_the_same_on_the_gpu") else {
        return;
    };
    let (data, model) = ragged_texts();
    let run = |trim: bool| {
        let mut g = GpuModel::new(ctx.ctx.clone(), &model).unwrap();
        let mut opt = Optimizer::adam(1e-2);
        let h = Trainer::new(ragged_fit(trim))
            .fit_on(&mut g, &mut opt, &data, Some(&data))
            .unwrap();
        let mut m = model.clone();
        g.download_into(&mut m).unwrap();
        (m, h)
    };
    let (trimmed, h_trim) = run(true);
    let (full, h_full) = run(false);
    for (a, b) in h_trim.epochs.iter().zip(&h_full.epochs) {
        assert_close("gpu train loss", &[a.train_loss], &[b.train_loss], LOSS);
        assert_close(
            "gpu validation loss",
            &[a.val_loss.unwrap()],
            &[b.val_loss.unwrap()],
            LOSS,
        );
    }
    assert_close(
        "gpu weights after 3 epochs",
        trimmed.params(),
        full.params(),
        TRAINED_WEIGHTS,
    );
}

/// Two clear classes in a handful of sentences.
const SENTENCES: [(&str, &str); 12] = [
    ("i love this great film", "positive"),
    ("what a great happy day", "positive"),
    ("love it , so good", "positive"),
    ("good fun and great music", "positive"),
    ("happy with this , love", "positive"),
    ("a good and happy story", "positive"),
    ("i hate this awful film", "negative"),
    ("what a bad sad day", "negative"),
    ("hate it , so bad", "negative"),
    ("awful noise and bad music", "negative"),
    ("sad with this , hate", "negative"),
    ("a bad and awful story", "negative"),
];

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_recurrent"))
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "command failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cli_predicts_class_names_from_raw_text() {
    let dir = temp_dir("text-cli");
    let texts: Vec<&str> = SENTENCES.iter().map(|s| s.0).collect();
    let labels: Vec<&str> = SENTENCES.iter().map(|s| s.1).collect();
    let vocab = Vocab::build(&texts, &VocabOptions::words()).unwrap();
    let (classes, y) = text::label_ids(&labels);
    let data = text::dataset(&vocab, &texts, Some(&y), None).unwrap();
    let mut model = Model::new(
        ModelConfig::new(Cell::Lstm, 8, 16, 2).embedding(vocab.len()),
        &Init::seed(4),
    )
    .unwrap();
    let cfg = FitConfig {
        epochs: 40,
        batch_size: 6,
        progress: false,
        ..FitConfig::default()
    };
    Trainer::new(cfg)
        .fit(&mut model, &mut Optimizer::adam(0.03), &data, None)
        .unwrap();
    let acc = model
        .evaluate(&data, Loss::Ce, 12)
        .unwrap()
        .accuracy
        .unwrap();
    assert_eq!(acc, 1.0, "the tiny model learns its sentences");
    let path = dir.join("tiny.safetensors");
    checkpoint::save_with(&model, &path, &text::metadata(&vocab, Some(&classes))).unwrap();

    // Unseen sentences (with unknown words) and the library's own answer.
    let new = ["I LOVE this happy song!", "such an awful , sad movie"];
    let (want, _) = text::classify(&mut model.clone(), &vocab, &new, None, 8).unwrap();
    assert_eq!(
        want.iter()
            .map(|p| classes[p.class].as_str())
            .collect::<Vec<_>>(),
        ["positive", "negative"]
    );
    let file = dir.join("texts.txt");
    std::fs::write(&file, format!("{}\r\n{}\n", new[0], new[1])).unwrap();
    let logits = dir.join("logits.safetensors");
    for args in [
        vec!["--text", new[0], "--text", new[1]],
        vec![
            "--text-file",
            file.to_str().unwrap(),
            "--output",
            logits.to_str().unwrap(),
        ],
    ] {
        let out = stdout_of(
            bin()
                .args(["predict", "--device", "cpu", "--model"])
                .arg(&path)
                .args(&args),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        for ((line, p), t) in lines.iter().zip(&want).zip(new) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols[0], classes[p.class], "{line}");
            assert_eq!(cols[2], t);
            for (i, c) in classes.iter().enumerate() {
                let shown: f32 = cols[1]
                    .split(' ')
                    .find_map(|kv| kv.strip_prefix(&format!("{c}=")))
                    .unwrap_or_else(|| panic!("no probability for {c} in {line}"))
                    .parse()
                    .unwrap();
                assert!((shown - p.probabilities[i]).abs() <= 5e-5, "{line}");
            }
        }
    }
    let written = recurrent::io::st::read(&logits).unwrap();
    assert_eq!(written.tensors["output"].shape, vec![2, 2]);

    // A model without a vocabulary cannot read raw text: a clear error.
    let bare = dir.join("bare.safetensors");
    checkpoint::save(&model, &bare).unwrap();
    let out = bin()
        .args(["predict", "--device", "cpu", "--text", "hi", "--model"])
        .arg(&bare)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no vocabulary"));
    // predict --data still needs --output.
    let out = bin()
        .args([
            "predict",
            "--device",
            "cpu",
            "--data",
            "d.safetensors",
            "--model",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--output"));
}

#[test]
fn csv_table_reads_quoted_text_and_the_bundled_tweets() {
    use recurrent::io::csv::Table;
    let t = Table::parse(
        "label,text\npos,\"good, \"\"very\"\" good\"\n\nneg,bad\n",
        "inline",
    )
    .unwrap();
    assert_eq!(t.values("TEXT").unwrap(), ["good, \"very\" good", "bad"]);
    assert!(matches!(t.values("score"), Err(Error::Argument(m)) if m.contains("label, text")));
    assert!(
        matches!(Table::parse("a,b\n1,2,3\n", "inline"), Err(Error::Data { reason, .. }) if reason.contains("line 2"))
    );
    assert!(matches!(
        Table::parse("\n\n", "inline"),
        Err(Error::Empty(_))
    ));

    let tweets = Table::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/tweets-sentiment.csv"
    ))
    .unwrap();
    assert_eq!(tweets.header, ["sentiment", "confidence", "text"]);
    let (classes, y) = text::label_ids(&tweets.values("sentiment").unwrap());
    assert_eq!(classes, ["negative", "neutral", "positive"]);
    let count = |c: i64| y.iter().filter(|&&v| v == c).count();
    assert_eq!(
        (y.len(), count(0), count(1), count(2)),
        (37_202, 15_975, 14_437, 6_790)
    );
}
