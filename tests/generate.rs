//! Generation (`recurrent::generate`, `recurrent generate`): the streamed
//! draws against whole-sequence recomputation, greedy tokens the same on the
//! CPU and the GPU path, seeded sampling repeatable, bad input refused.

mod common;
use common::*;
use recurrent::generate::{generate, generate_text, Sampling};
use recurrent::gpu::{GpuModel, GpuStream};
use recurrent::text::{self, Vocab};
use recurrent::{Cell, Dataset, Init, Inputs, Model, ModelConfig, OutputMode, Stream};

fn language_model(cell: Cell, vocab: usize, layers: usize, output: OutputMode, seed: u64) -> Model {
    let cfg = ModelConfig::new(cell, 6, 16, vocab)
        .embedding(vocab)
        .layers(layers)
        .output(output);
    Model::new(cfg, &Init::seed(seed)).unwrap()
}

/// Greedy decoding by recomputing the whole sequence every step (no
/// streaming): what the streamed generation must equal.
fn greedy_by_recomputation(model: &Model, prime: &[i64], length: usize) -> Vec<i64> {
    let v = model.config().out_features;
    let mut seq = prime.to_vec();
    for _ in 0..length {
        let data = Dataset::new(
            Inputs::tokens(seq.clone(), 1, seq.len()).unwrap(),
            None,
            None,
        );
        let y = model.forward(&data).unwrap();
        let last = &y.data[y.data.len() - v..];
        let mut best = 0;
        for (i, &l) in last.iter().enumerate() {
            if l > last[best] {
                best = i;
            }
        }
        seq.push(best as i64);
    }
    seq[prime.len()..].to_vec()
}

#[test]
fn streamed_greedy_generation_equals_recomputing_the_whole_sequence() {
    for (cell, layers, output) in [
        (Cell::Lstm, 2, OutputMode::Sequence),
        (Cell::Gru, 1, OutputMode::Last),
        (Cell::Rnn, 1, OutputMode::Sequence),
    ] {
        let model = language_model(cell, 11, layers, output, 3);
        let prime = [1, 5, 2, 9];
        let mut stream = Stream::new(&model).unwrap();
        let got = generate(&mut stream, model.config(), &prime, 25, &Sampling::greedy()).unwrap();
        assert_eq!(got, greedy_by_recomputation(&model, &prime, 25), "{cell:?}");
    }
}

#[test]
fn greedy_generation_gives_the_same_tokens_on_the_gpu() {
    let Some(gpu) = gpu("greedy_generation_gives_the_same_tokens_on_the_gpu") else {
        return;
    };
    for (cell, layers) in [(Cell::Lstm, 2), (Cell::Gru, 1), (Cell::Rnn, 1)] {
        let model = language_model(cell, 13, layers, OutputMode::Sequence, 5);
        let prime = [4, 4, 0, 12, 7];
        let mut cpu = Stream::new(&model).unwrap();
        let want = generate(&mut cpu, model.config(), &prime, 30, &Sampling::greedy()).unwrap();
        let mut g = GpuModel::new(gpu.ctx.clone(), &model).unwrap();
        let mut stream = GpuStream::new(&mut g).unwrap();
        let got = generate(&mut stream, model.config(), &prime, 30, &Sampling::greedy()).unwrap();
        assert_eq!(got, want, "{cell:?}");
    }
}

#[test]
fn seeded_sampling_repeats_and_the_seed_matters() {
    let model = language_model(Cell::Lstm, 12, 1, OutputMode::Sequence, 9);
    let run = |seed: u64| {
        let s = Sampling {
            temperature: 1.5,
            top_k: Some(8),
            top_p: Some(0.95),
            seed,
        };
        let mut stream = Stream::new(&model).unwrap();
        generate(&mut stream, model.config(), &[3], 40, &s).unwrap()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    assert!(run(3).iter().all(|&id| (0..12).contains(&id)));
}

#[test]
fn models_and_settings_generation_cannot_use_are_refused() {
    let sampling = Sampling::greedy();
    let features = Model::new(ModelConfig::new(Cell::Lstm, 4, 8, 4), &Init::seed(1)).unwrap();
    let narrow = Model::new(
        ModelConfig::new(Cell::Lstm, 4, 8, 3).embedding(5),
        &Init::seed(1),
    )
    .unwrap();
    let bidir = Model::new(
        ModelConfig::new(Cell::Gru, 4, 8, 5)
            .embedding(5)
            .bidirectional(true),
        &Init::seed(1),
    )
    .unwrap();
    let good = language_model(Cell::Gru, 5, 1, OutputMode::Sequence, 1);
    let cases: Vec<(&Model, Vec<i64>, usize, Sampling, &str)> = vec![
        (
            &features,
            vec![1],
            3,
            sampling.clone(),
            "needs a model with an embedding",
        ),
        (
            &narrow,
            vec![1],
            3,
            sampling.clone(),
            "the embedding has 5 rows and the head 3",
        ),
        (&bidir, vec![1], 3, sampling.clone(), "bidirectional"),
        (&good, vec![1], 0, sampling.clone(), "length 0"),
        (&good, vec![], 3, sampling.clone(), "the prime is empty"),
        (
            &good,
            vec![1, 5],
            3,
            sampling.clone(),
            "token id 5 at flat index 1",
        ),
        (
            &good,
            vec![1],
            3,
            Sampling {
                temperature: -1.0,
                ..Sampling::default()
            },
            "temperature -1",
        ),
        (
            &good,
            vec![1],
            3,
            Sampling {
                top_k: Some(0),
                ..Sampling::default()
            },
            "top-k 0",
        ),
        (
            &good,
            vec![1],
            3,
            Sampling {
                top_p: Some(2.0),
                ..Sampling::default()
            },
            "top-p 2",
        ),
    ];
    for (model, prime, length, s, says) in cases {
        // A bidirectional model is refused by the stream itself.
        let e = match Stream::new(model) {
            Err(e) => e.to_string(),
            Ok(mut stream) => generate(&mut stream, model.config(), &prime, length, &s)
                .unwrap_err()
                .to_string(),
        };
        assert!(e.contains(says), "{says}: {e}");
    }
    // Text: a prime token outside the vocabulary.
    let vocab = Vocab::from_text("abcd").unwrap();
    let model = language_model(Cell::Gru, vocab.len(), 1, OutputMode::Sequence, 1);
    let mut stream = Stream::new(&model).unwrap();
    let e = generate_text(&mut stream, model.config(), &vocab, "abz", 3, &sampling).unwrap_err();
    assert!(e.to_string().contains("\"z\" at position 2"), "{e}");
}

#[test]
fn the_cli_generates_text_on_both_paths_and_refuses_bad_input() {
    let dir = temp_dir("generate-cli");
    let vocab = Vocab::from_text("the quick brown fox jumps over the lazy dog").unwrap();
    let model = language_model(Cell::Lstm, vocab.len(), 2, OutputMode::Sequence, 4);
    let path = dir.join("lm.safetensors");
    recurrent::io::checkpoint::save_with(&model, &path, &text::metadata(&vocab, None)).unwrap();
    let p = path.to_str().unwrap();
    let mut texts = Vec::new();
    for device in ["cpu", "gpu"] {
        if device == "gpu" && gpu("the_cli_generates_text_on_both_paths (gpu)").is_none() {
            continue;
        }
        let r = recurrent_cli(&[
            "generate", "--model", p, "--prime", "the ", "--length", "20", "--top-k", "1",
            "--device", device,
        ]);
        assert!(
            r.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let out = String::from_utf8(r.stdout).unwrap();
        let line = out.strip_suffix('\n').unwrap_or(&out);
        assert!(
            line.starts_with("the ") && line.chars().count() == 24,
            "{out:?}"
        );
        texts.push(out);
    }
    if texts.len() == 2 {
        assert_eq!(texts[0], texts[1], "greedy text differs between the paths");
    }
    // Sampling with a seed repeats.
    let sample = |seed: &str| {
        let r = recurrent_cli(&[
            "generate",
            "--model",
            p,
            "--prime",
            "a",
            "--length",
            "30",
            "--temperature",
            "0.9",
            "--top-p",
            "0.9",
            "--seed",
            seed,
            "--device",
            "cpu",
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        String::from_utf8(r.stdout).unwrap()
    };
    assert_eq!(sample("7"), sample("7"));

    // Bad input, each with its reason.
    let plain = dir.join("plain.safetensors");
    recurrent::io::checkpoint::save(&model, &plain).unwrap();
    for (args, says) in [
        (
            vec![
                "--model",
                plain.to_str().unwrap(),
                "--prime",
                "a",
                "--length",
                "3",
            ],
            "has no vocabulary",
        ),
        (
            vec!["--model", p, "--prime", "xyz!", "--length", "3"],
            "\"!\" at position 3",
        ),
        (
            vec!["--model", p, "--prime", "a", "--length", "0"],
            "length 0",
        ),
        (
            vec![
                "--model",
                p,
                "--prime",
                "a",
                "--length",
                "3",
                "--temperature",
                "0",
            ],
            "temperature 0",
        ),
        (
            vec![
                "--model", p, "--prime", "a", "--length", "3", "--top-k", "0",
            ],
            "top-k 0",
        ),
        (
            vec![
                "--model", p, "--prime", "a", "--length", "3", "--top-p", "1.5",
            ],
            "top-p 1.5",
        ),
    ] {
        let mut a = vec!["generate", "--device", "cpu"];
        a.extend(args);
        let r = recurrent_cli(&a);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(says), "{a:?}: {err}");
    }
}
