//! Sequence to sequence against PyTorch: the reference cases in
//! `tests/seq2seq` (made by `tests/seq2seq/generate.py`: LSTM with general
//! attention, a bidirectional GRU with dot attention, an RNN without
//! attention, and three more shapes) load from the reference's own checkpoints, give its
//! teacher-forced logits and loss, its greedy tokens exactly, and after one
//! epoch of SGD and of Adam its weights; bad data is refused.

mod common;
use common::*;
use recurrent::gpu::GpuSeq2Seq;
use recurrent::io::st;
use recurrent::seq2seq::{self, checkpoint, decode, Seq2Seq, Seq2SeqData};
use recurrent::Optimizer;
use std::path::PathBuf;

/// The reference's three (`cases.json`) and three of other shapes made by
/// the same script (`more_cases.json`: two layers, bidirectional LSTM,
/// ReLU RNN with a bidirectional encoder).
const CASES: [&str; 6] = [
    "s2s-lstm-general",
    "s2s-gru-bidir-dot",
    "s2s-rnn-none",
    "s2s-lstm-2layer-bidir-general",
    "s2s-gru-2layer-dot",
    "s2s-rnn-relu-bidir-general",
];

fn case_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seq2seq")
        .join(name)
}

/// One reference case: its model, data, parameters and PyTorch's results.
struct Case {
    model: Seq2Seq,
    data: Seq2SeqData,
    json: serde_json::Value,
    expected: st::File,
}

impl Case {
    fn load(name: &'static str) -> Case {
        let dir = case_dir(name);
        Case {
            model: checkpoint::load(dir.join("model.safetensors")).unwrap(),
            data: seq2seq::data::load(dir.join("data.safetensors")).unwrap(),
            json: serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap())
                .unwrap(),
            expected: st::read(&dir.join("expected.safetensors")).unwrap(),
        }
    }

    fn floats(f: &st::File, name: &str) -> Vec<f32> {
        f.tensors[name].floats("expected", name).unwrap()
    }

    fn num(&self, key: &str) -> f64 {
        self.json[key].as_f64().unwrap()
    }

    /// One epoch in batches of `batch`, in order, as the reference trains.
    fn epoch(&self, mut opt: Optimizer) -> (Seq2Seq, Vec<f32>) {
        let mut m = self.model.clone();
        let batch = self.num("batch") as usize;
        let n = self.data.n();
        let mut losses = Vec::new();
        for start in (0..n).step_by(batch) {
            let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
            losses.push(
                m.train_step(&self.data.gather(&idx), &mut opt, None)
                    .unwrap(),
            );
        }
        (m, losses)
    }
}

/// Every weight of `m` within GOLDEN_WEIGHTS of PyTorch's in `want`.
fn weights_match(what: &str, m: &Seq2Seq, want: &st::File) {
    for e in &m.layout().entries {
        assert_close(
            &format!("{what}: {}", e.name),
            &m.params()[e.range()],
            &Case::floats(want, &e.name),
            GOLDEN_WEIGHTS,
        );
    }
}

#[test]
fn the_reference_checkpoints_load_with_their_configuration() {
    for name in CASES {
        let c = Case::load(name);
        let cfg = c.model.config();
        assert_eq!(cfg.cell.name(), c.json["cell"].as_str().unwrap(), "{name}");
        assert_eq!(
            cfg.attention.name(),
            c.json["attention"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(cfg.hidden as f64, c.num("hidden"), "{name}");
        assert_eq!(cfg.embed as f64, c.num("embed"), "{name}");
        assert_eq!(cfg.src_vocab as f64, c.num("src_vocab"), "{name}");
        assert_eq!(cfg.tgt_vocab as f64, c.num("tgt_vocab"), "{name}");
        assert_eq!(
            cfg.bidirectional,
            c.json["bidirectional"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(
            (cfg.bos, cfg.eos),
            (c.num("bos") as usize, c.num("eos") as usize)
        );
        // Saved and loaded again: the same model, the same names.
        let tmp = temp_dir("seq2seq-ckpt").join(format!("{name}.safetensors"));
        checkpoint::save(&c.model, &tmp).unwrap();
        assert_eq!(checkpoint::load(&tmp).unwrap(), c.model, "{name}");
        let ours = st::read(&tmp).unwrap();
        let theirs = st::read(&case_dir(name).join("model.safetensors")).unwrap();
        assert_eq!(
            ours.tensors.keys().collect::<Vec<_>>(),
            theirs.tensors.keys().collect::<Vec<_>>(),
            "{name}: tensor names"
        );
    }
}

#[test]
fn teacher_forced_logits_and_loss_match_pytorch() {
    for name in CASES {
        let c = Case::load(name);
        let out = c.model.forward(&c.data).unwrap();
        assert_eq!(out.shape, c.expected.tensors["output"].shape, "{name}");
        assert_close(
            &format!("{name}: logits"),
            &out.data,
            &Case::floats(&c.expected, "output"),
            GOLDEN_OUTPUT,
        );
        let (loss, _) = c.model.loss_and_gradients(&c.data).unwrap();
        assert_close(
            &format!("{name}: loss"),
            &[loss],
            &Case::floats(&c.expected, "loss"),
            GOLDEN_OUTPUT,
        );
        let e = c.model.evaluate(&c.data, 3).unwrap();
        assert_close(&format!("{name}: evaluate"), &[e.loss], &[loss], LOSS);
    }
}

#[test]
fn greedy_decoding_gives_pytorchs_tokens() {
    for name in CASES {
        let c = Case::load(name);
        let max_len = c.num("max_len") as usize;
        let got = decode::greedy(&c.model, &c.data.src, max_len).unwrap();
        let want = match &c.expected.tensors["generated"].values {
            st::Values::I64(v) => v.clone(),
            _ => panic!("generated is i64"),
        };
        assert_eq!(got.tokens, want, "{name}: greedy tokens");
    }
}

#[test]
fn one_epoch_of_sgd_and_adam_matches_pytorch() {
    for name in CASES {
        let c = Case::load(name);
        for (opt, file) in [
            (Optimizer::sgd(c.num("lr_sgd") as f32), "after-sgd"),
            (Optimizer::adam(c.num("lr_adam") as f32), "after-adam"),
        ] {
            let (m, losses) = c.epoch(opt);
            let want = st::read(&case_dir(name).join(format!("{file}.safetensors"))).unwrap();
            assert_close(
                &format!("{name} {file}: batch losses"),
                &losses,
                &Case::floats(&want, "loss"),
                GOLDEN_OUTPUT,
            );
            weights_match(&format!("{name} {file}"), &m, &want);
        }
    }
}

#[test]
fn beam_search_of_width_one_is_greedy() {
    for name in CASES {
        let c = Case::load(name);
        let max_len = c.num("max_len") as usize;
        let g = decode::greedy(&c.model, &c.data.src, max_len).unwrap();
        for length_norm in [false, true] {
            let b = decode::beam(
                &c.model,
                &c.data.src,
                max_len,
                decode::Beam {
                    width: 1,
                    length_norm,
                },
            )
            .unwrap();
            assert_eq!(b, g, "{name}: beam 1 (length_norm {length_norm})");
        }
    }
}

/// With a beam wider than every prefix, beam search is exhaustive: it
/// returns the ended sequence of highest log-probability (in total, or per
/// token with length normalisation), each sequence's scored here from the
/// teacher-forced forward over it.
#[test]
fn a_beam_wider_than_every_prefix_finds_the_best_sequence() {
    use recurrent::seq2seq::{Attention, Seq2SeqConfig, Source};
    for (cell, attention) in [
        (recurrent::Cell::Lstm, Attention::General),
        (recurrent::Cell::Gru, Attention::None),
    ] {
        let cfg = Seq2SeqConfig::new(cell, 6, 4, 3, 4).attention(attention);
        let model = Seq2Seq::new(cfg.clone(), 3).unwrap();
        let src = Source::new(vec![3, 4, 5, 0, 5, 4, 3, 3], [2, 4], Some(vec![3, 4])).unwrap();
        let max_len = 3;
        for row in 0..2 {
            let one = src.gather(&[row]);
            // Every ended sequence: up to max_len - 1 tokens other than eos, then eos.
            let mut seqs: Vec<Vec<i64>> = vec![vec![]];
            let mut all = Vec::new();
            for _ in 0..max_len {
                for s in &seqs {
                    let mut e = s.clone();
                    e.push(cfg.eos as i64);
                    all.push(e);
                }
                seqs = seqs
                    .iter()
                    .flat_map(|s| {
                        (0..cfg.tgt_vocab as i64)
                            .filter(|&t| t != cfg.eos as i64)
                            .map(move |t| [s.clone(), vec![t]].concat())
                    })
                    .collect();
            }
            let score = |seq: &[i64]| -> f64 {
                let t = seq.len();
                let tgt_in = [vec![cfg.bos as i64], seq[..t - 1].to_vec()].concat();
                let d = Seq2SeqData::new(one.clone(), tgt_in, vec![-100; t], t).unwrap();
                let out = model.forward(&d).unwrap();
                let w = cfg.tgt_vocab;
                (0..t)
                    .map(|i| {
                        let r = &out.data[i * w..(i + 1) * w];
                        let mx = r.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                        let lse = mx + r.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln();
                        r[seq[i] as usize] as f64 - lse
                    })
                    .sum()
            };
            for length_norm in [false, true] {
                let rank = |s: &Vec<i64>| score(s) / if length_norm { s.len() as f64 } else { 1.0 };
                let want = all
                    .iter()
                    .max_by(|a, b| rank(a).total_cmp(&rank(b)))
                    .unwrap();
                let got = decode::beam(
                    &model,
                    &one,
                    max_len,
                    decode::Beam {
                        width: 50,
                        length_norm,
                    },
                )
                .unwrap();
                let mut padded = want.clone();
                padded.resize(max_len, 0);
                assert_eq!(
                    got.tokens, padded,
                    "{cell:?} row {row} length_norm {length_norm}"
                );
            }
        }
    }
}

/// Runs the CLI; panics with its stderr unless it succeeds; returns stdout.
fn cli_ok(args: &[&str]) -> String {
    let out = recurrent_cli(args);
    assert!(
        out.status.success(),
        "recurrent {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the CLI expecting failure; returns stderr.
fn cli_err(args: &[&str]) -> String {
    let out = recurrent_cli(args);
    assert!(
        !out.status.success(),
        "recurrent {} succeeded",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The reference cases through the CLI: predict writes PyTorch's logits,
/// evaluate prints its loss, generate its greedy tokens, and train one
/// epoch of SGD and of Adam in file order gives its weights.
#[test]
fn the_reference_cases_through_the_cli() {
    reference_cases_through_the_cli("cpu");
}

/// The same on the GPU path (`--device gpu`).
#[test]
fn the_reference_cases_through_the_cli_on_the_gpu() {
    if gpu("the_reference_cases_through_the_cli_on_the_gpu").is_none() {
        return;
    }
    reference_cases_through_the_cli("gpu");
}

fn reference_cases_through_the_cli(device: &str) {
    let tmp = temp_dir(&format!("seq2seq-cli-{device}"));
    for name in CASES {
        let c = Case::load(name);
        let dir = case_dir(name);
        let (model, data) = (dir.join("model.safetensors"), dir.join("data.safetensors"));
        let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
        let out = tmp.join(format!("{name}-out.safetensors"));
        let out_s = out.to_str().unwrap();
        cli_ok(&[
            "predict", "--model", model, "--data", data, "--output", out_s, "--device", device,
        ]);
        let got = st::read(&out).unwrap();
        assert_close(
            &format!("{name}: CLI predict on {device}"),
            &Case::floats(&got, "output"),
            &Case::floats(&c.expected, "output"),
            GOLDEN_OUTPUT,
        );
        let text = cli_ok(&[
            "evaluate", "--model", model, "--data", data, "--device", device,
        ]);
        let loss: f32 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_close(
            &format!("{name}: CLI evaluate"),
            &[loss],
            &Case::floats(&c.expected, "loss"),
            PRINTED_LOSS,
        );
        let max_len = (c.num("max_len") as usize).to_string();
        cli_ok(&[
            "generate",
            "--model",
            model,
            "--data",
            data,
            "--max-len",
            &max_len,
            "--output",
            out_s,
            "--device",
            device,
        ]);
        let got = st::read(&out).unwrap();
        assert_eq!(
            got.tensors["generated"].values, c.expected.tensors["generated"].values,
            "{name}: CLI generate on {device}"
        );
        for (opt, lr, file) in [
            ("sgd", c.num("lr_sgd"), "after-sgd"),
            ("adam", c.num("lr_adam"), "after-adam"),
        ] {
            let saved = tmp.join(format!("{name}-{opt}.safetensors"));
            let batch = (c.num("batch") as usize).to_string();
            cli_ok(&[
                "train",
                "--model",
                model,
                "--data",
                data,
                "--optimizer",
                opt,
                "--lr",
                &lr.to_string(),
                "--epochs",
                "1",
                "--batch-size",
                &batch,
                "--no-shuffle",
                "--save",
                saved.to_str().unwrap(),
                "--device",
                device,
            ]);
            let m = checkpoint::load(&saved).unwrap();
            let want = st::read(&dir.join(format!("{file}.safetensors"))).unwrap();
            weights_match(&format!("{name} CLI {file} on {device}"), &m, &want);
        }
    }
}

/// A new model from the CLI's flags (vocabularies from the data), trained
/// with shuffling and validation, then decoded by beam search; the flags
/// and files a seq2seq model cannot take are refused, and nothing is written.
#[test]
fn the_cli_trains_a_new_seq2seq_model_and_refuses_bad_input() {
    let tmp = temp_dir("seq2seq-cli-new");
    let dir = case_dir("s2s-gru-bidir-dot");
    let data = dir.join("data.safetensors");
    let data = data.to_str().unwrap();
    let save = tmp.join("new.safetensors");
    let save_s = save.to_str().unwrap();
    let text = cli_ok(&[
        "train",
        "--arch",
        "seq2seq",
        "--cell",
        "lstm",
        "--embed",
        "4",
        "--hidden",
        "5",
        "--layers",
        "2",
        "--bidirectional",
        "--attention",
        "general",
        "--data",
        data,
        "--validation",
        data,
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--lr",
        "0.01",
        "--save",
        save_s,
    ]);
    assert!(
        text.contains("epoch 2/2") && text.contains("val_accuracy"),
        "{text}"
    );
    let m = checkpoint::load(&save).unwrap();
    let reference = Case::load("s2s-gru-bidir-dot");
    let cfg = m.config();
    assert_eq!(
        (cfg.layers, cfg.bidirectional, cfg.hidden, cfg.embed),
        (2, true, 5, 4)
    );
    // The vocabularies cover the data's ids.
    assert!(cfg.src_vocab >= 3 && cfg.src_vocab <= reference.model.config().src_vocab);
    assert!(cfg.tgt_vocab <= reference.model.config().tgt_vocab);
    let out = tmp.join("beam.safetensors");
    let out_s = out.to_str().unwrap();
    cli_ok(&[
        "generate",
        "--model",
        save_s,
        "--data",
        data,
        "--max-len",
        "5",
        "--beam",
        "3",
        "--output",
        out_s,
    ]);
    assert_eq!(
        st::read(&out).unwrap().tensors["generated"].shape,
        vec![6, 5]
    );
    // Refused, nothing written.
    let missing = tmp.join("never.safetensors");
    let m_s = missing.to_str().unwrap();
    for (args, says) in [
        (
            vec![
                "generate",
                "--model",
                save_s,
                "--data",
                data,
                "--max-len",
                "5",
                "--beam",
                "0",
                "--output",
                m_s,
            ],
            "--beam must be at least 1",
        ),
        (
            vec![
                "generate",
                "--model",
                save_s,
                "--data",
                data,
                "--max-len",
                "0",
                "--output",
                m_s,
            ],
            "--max-len must be at least 1",
        ),
        (
            vec![
                "generate", "--model", save_s, "--data", data, "--output", m_s,
            ],
            "--max-len",
        ),
        (
            vec![
                "generate",
                "--model",
                save_s,
                "--text",
                "abc",
                "--max-len",
                "3",
            ],
            "no vocabularies",
        ),
        (
            vec![
                "train",
                "--arch",
                "seq2seq",
                "--cell",
                "gru",
                "--embed",
                "4",
                "--hidden",
                "5",
                "--data",
                data,
                "--dropout",
                "0.1",
                "--save",
                m_s,
            ],
            "not available for seq2seq",
        ),
        (
            vec![
                "train", "--arch", "seq2seq", "--cell", "gru", "--hidden", "5", "--data", data,
                "--save", m_s,
            ],
            "--embed",
        ),
        (
            vec![
                "train",
                "--arch",
                "seq2seq",
                "--cell",
                "gru",
                "--embed",
                "4",
                "--hidden",
                "5",
                "--src-vocab",
                "3",
                "--data",
                data,
                "--save",
                m_s,
            ],
            "out of range",
        ),
        (
            vec![
                "train",
                "--cell",
                "gru",
                "--hidden",
                "5",
                "--out-features",
                "3",
                "--loss",
                "ce",
                "--data",
                data,
                "--save",
                m_s,
            ],
            "seq2seq data file",
        ),
        (
            vec![
                "predict",
                "--model",
                save_s,
                "--data",
                &golden_dir()
                    .join("lstm-last-ce/data.safetensors")
                    .to_string_lossy(),
                "--output",
                m_s,
            ],
            "plain model",
        ),
        (
            vec![
                "train",
                "--model",
                save_s,
                "--data",
                &golden_dir()
                    .join("lstm-last-ce/data.safetensors")
                    .to_string_lossy(),
                "--save",
                m_s,
            ],
            "plain model",
        ),
        (
            vec![
                "evaluate",
                "--model",
                &golden_dir()
                    .join("lstm-last-ce/model.safetensors")
                    .to_string_lossy(),
                "--data",
                data,
                "--loss",
                "ce",
            ],
            "seq2seq data file",
        ),
    ] {
        let e = cli_err(&args);
        assert!(e.contains(says), "{args:?}: {e}");
        assert!(!missing.exists(), "{args:?} wrote its output");
    }
}

/// Bad data files are refused with what is wrong.
#[test]
fn bad_seq2seq_data_is_refused() {
    use recurrent::io::st::Write_;
    let tmp = temp_dir("seq2seq-bad-data");
    let write = |name: &str, tensors: Vec<(&str, Vec<usize>, Vec<i64>)>| {
        let t: Vec<_> = tensors
            .iter()
            .map(|(n, s, v)| (n.to_string(), s.clone(), Write_::I64(v)))
            .collect();
        let p = tmp.join(name);
        std::fs::write(&p, st::serialize(&t, Default::default()).unwrap()).unwrap();
        p
    };
    let src = ("src", vec![2, 3], vec![3, 4, 5, 3, 0, 0]);
    let tgt_in = ("tgt_in", vec![2, 2], vec![1, 3, 1, 4]);
    let tgt_out = ("tgt_out", vec![2, 2], vec![3, 2, 4, 2]);
    let cases = [
        (
            vec![src.clone(), tgt_in.clone()],
            "missing tensor `tgt_out`",
        ),
        (
            vec![
                src.clone(),
                tgt_in.clone(),
                ("tgt_out", vec![2, 3], vec![0; 6]),
            ],
            "must agree",
        ),
        (
            vec![
                src.clone(),
                ("src_lengths", vec![2], vec![3, 4]),
                tgt_in.clone(),
                tgt_out.clone(),
            ],
            "lengths[1] = 4",
        ),
        (
            vec![
                src.clone(),
                ("src_lengths", vec![2], vec![0, 1]),
                tgt_in.clone(),
                tgt_out.clone(),
            ],
            "lengths[0] = 0",
        ),
        (
            vec![
                src.clone(),
                ("tgt_in", vec![3, 2], vec![1; 6]),
                ("tgt_out", vec![3, 2], vec![2; 6]),
            ],
            "one target per source",
        ),
        (
            vec![
                ("src", vec![6], vec![3; 6]),
                tgt_in.clone(),
                tgt_out.clone(),
            ],
            "expected [N, steps]",
        ),
    ];
    for (i, (tensors, says)) in cases.into_iter().enumerate() {
        let p = write(&format!("bad{i}.safetensors"), tensors);
        let e = seq2seq::data::load(&p).unwrap_err().to_string();
        assert!(e.contains(says), "case {i}: {e}");
    }
    // Ids outside a model's vocabularies.
    let model = Case::load("s2s-lstm-general").model;
    let (sv, tv) = (
        model.config().src_vocab as i64,
        model.config().tgt_vocab as i64,
    );
    for (tensors, says) in [
        (
            vec![
                ("src", vec![2, 3], vec![3, 4, sv, 3, 0, 0]),
                tgt_in.clone(),
                tgt_out.clone(),
            ],
            format!("token id {sv}"),
        ),
        (
            vec![
                src.clone(),
                ("tgt_in", vec![2, 2], vec![1, tv, 1, 4]),
                tgt_out.clone(),
            ],
            format!("token id {tv}"),
        ),
        (
            vec![
                src.clone(),
                tgt_in.clone(),
                ("tgt_out", vec![2, 2], vec![3, -5, 4, 2]),
            ],
            "label -5".to_string(),
        ),
    ] {
        let p = write("ids.safetensors", tensors);
        let d = seq2seq::data::load(&p).unwrap();
        let e = model.forward(&d).unwrap_err().to_string();
        assert!(e.contains(&says), "{e}");
    }
}

/// Text pairs through the library's character vocabularies, trained until
/// it copies them, then saved with its vocabularies: `recurrent generate
/// --text` translates with them as `seq2seq::text::translate` does, greedy
/// and with a beam, and a character outside the source vocabulary is refused.
#[test]
fn a_model_saved_with_its_vocabularies_translates_text_through_the_cli() {
    use recurrent::seq2seq::{text, Attention, Seq2SeqConfig};
    let pairs: Vec<(String, String)> = ["ab", "ba", "abc", "cab", "bca", "ca"]
        .iter()
        .map(|s| (s.to_string(), s.chars().rev().collect()))
        .collect();
    let (sv, tv) = text::char_vocabs(&pairs).unwrap();
    let cfg = Seq2SeqConfig::new(recurrent::Cell::Gru, sv.len(), tv.len(), 8, 24)
        .attention(Attention::General);
    let mut model = Seq2Seq::new(cfg.clone(), 5).unwrap();
    let data = text::pairs(&sv, &tv, cfg.bos, cfg.eos, &pairs).unwrap();
    let mut opt = Optimizer::adam(0.03);
    for _ in 0..200 {
        model.train_step(&data, &mut opt, Some(1.0)).unwrap();
    }
    let texts: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    let got = text::translate(&mut model, &sv, &tv, &texts, 5, None).unwrap();
    let want: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    assert_eq!(got, want, "the model learned to reverse its pairs");
    let path = temp_dir("seq2seq-text").join("rev.safetensors");
    checkpoint::save_with(&model, &path, &text::metadata(&sv, &tv)).unwrap();
    let p = path.to_str().unwrap();
    for beam in [None, Some("3")] {
        let mut args = vec!["generate", "--model", p, "--max-len", "5"];
        for t in &texts {
            args.extend(["--text", t]);
        }
        if let Some(b) = beam {
            args.extend(["--beam", b]);
        }
        let out = cli_ok(&args);
        assert_eq!(out.lines().collect::<Vec<_>>(), want, "beam {beam:?}");
    }
    let e = cli_err(&["generate", "--model", p, "--max-len", "5", "--text", "abz"]);
    assert!(e.contains("not in the vocabulary"), "{e}");
}

// ---------------------------------------------------------------- the GPU path

/// The GPU path's teacher-forced logits and loss are PyTorch's, and its
/// gradients the CPU path's, for every case; evaluation agrees.
#[test]
fn gpu_logits_loss_and_gradients_match_pytorch_and_the_cpu() {
    let Some(ctx) = gpu("gpu_logits_loss_and_gradients_match_pytorch_and_the_cpu") else {
        return;
    };
    for name in CASES {
        let c = Case::load(name);
        let mut g = GpuSeq2Seq::new(ctx.ctx.clone(), &c.model).unwrap();
        let out = g.forward(&c.data).unwrap();
        assert_eq!(out.shape, c.expected.tensors["output"].shape, "{name}");
        assert_close(
            &format!("{name}: GPU logits"),
            &out.data,
            &Case::floats(&c.expected, "output"),
            GOLDEN_OUTPUT,
        );
        let (loss, grads) = g.loss_and_gradients(&c.data).unwrap();
        assert_close(
            &format!("{name}: GPU loss"),
            &[loss],
            &Case::floats(&c.expected, "loss"),
            GOLDEN_OUTPUT,
        );
        let (_, want) = c.model.loss_and_gradients(&c.data).unwrap();
        for e in &c.model.layout().entries {
            assert_close(
                &format!("{name}: GPU gradient of {}", e.name),
                &grads[e.range()],
                &want[e.range()],
                GRADIENTS,
            );
        }
        let e = g.evaluate(&c.data, 3).unwrap();
        let cpu = c.model.evaluate(&c.data, 3).unwrap();
        assert_close(
            &format!("{name}: GPU evaluate"),
            &[e.loss],
            &[cpu.loss],
            LOSS,
        );
        assert_eq!((e.accuracy, e.tokens), (cpu.accuracy, cpu.tokens), "{name}");
    }
}

/// Greedy decoding on the device gives PyTorch's tokens.
#[test]
fn gpu_greedy_decoding_gives_pytorchs_tokens() {
    let Some(ctx) = gpu("gpu_greedy_decoding_gives_pytorchs_tokens") else {
        return;
    };
    for name in CASES {
        let c = Case::load(name);
        let mut g = GpuSeq2Seq::new(ctx.ctx.clone(), &c.model).unwrap();
        let max_len = c.num("max_len") as usize;
        let got = g.greedy(&c.data.src, max_len).unwrap();
        let want = match &c.expected.tensors["generated"].values {
            st::Values::I64(v) => v.clone(),
            _ => panic!("generated is i64"),
        };
        assert_eq!(got.tokens, want, "{name}: GPU greedy tokens");
        assert_eq!(got, decode::greedy(&c.model, &c.data.src, max_len).unwrap());
    }
}

/// One epoch of SGD and of Adam on the GPU gives PyTorch's batch losses and weights.
#[test]
fn gpu_one_epoch_of_sgd_and_adam_matches_pytorch() {
    let Some(ctx) = gpu("gpu_one_epoch_of_sgd_and_adam_matches_pytorch") else {
        return;
    };
    for name in CASES {
        let c = Case::load(name);
        for (mut opt, file) in [
            (Optimizer::sgd(c.num("lr_sgd") as f32), "after-sgd"),
            (Optimizer::adam(c.num("lr_adam") as f32), "after-adam"),
        ] {
            let mut g = GpuSeq2Seq::new(ctx.ctx.clone(), &c.model).unwrap();
            let batch = c.num("batch") as usize;
            let n = c.data.n();
            let mut losses = Vec::new();
            for start in (0..n).step_by(batch) {
                let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
                losses.push(g.train_step(&c.data.gather(&idx), &mut opt, None).unwrap());
            }
            let want = st::read(&case_dir(name).join(format!("{file}.safetensors"))).unwrap();
            assert_close(
                &format!("{name} {file}: GPU batch losses"),
                &losses,
                &Case::floats(&want, "loss"),
                GOLDEN_OUTPUT,
            );
            weights_match(&format!("{name} GPU {file}"), &g.download().unwrap(), &want);
        }
    }
}

/// Beam search on the device gives the CPU path's tokens, for several
/// widths, with and without length normalisation.
#[test]
fn gpu_beam_search_gives_the_cpus_tokens() {
    let Some(ctx) = gpu("gpu_beam_search_gives_the_cpus_tokens") else {
        return;
    };
    for name in CASES {
        let c = Case::load(name);
        let mut g = GpuSeq2Seq::new(ctx.ctx.clone(), &c.model).unwrap();
        let max_len = c.num("max_len") as usize;
        for width in [1, 2, 4] {
            for length_norm in [false, true] {
                let b = decode::Beam { width, length_norm };
                let want = decode::beam(&c.model, &c.data.src, max_len, b).unwrap();
                let got = g.beam(&c.data.src, max_len, b).unwrap();
                assert_eq!(
                    got, want,
                    "{name}: GPU beam {width} (length_norm {length_norm})"
                );
            }
        }
        let b = decode::Beam {
            width: 1,
            length_norm: false,
        };
        assert_eq!(
            g.beam(&c.data.src, max_len, b).unwrap(),
            g.greedy(&c.data.src, max_len).unwrap()
        );
    }
}

/// Adam with clipping on the GPU follows the CPU path step for step; the
/// moments it keeps on the device come back to the host and continue there
/// as they would have on the device.
#[test]
fn gpu_training_with_clipping_follows_the_cpu_and_its_moments_move_to_the_host() {
    let Some(ctx) =
        gpu("gpu_training_with_clipping_follows_the_cpu_and_its_moments_move_to_the_host")
    else {
        return;
    };
    for name in ["s2s-lstm-2layer-bidir-general", "s2s-gru-bidir-dot"] {
        let c = Case::load(name);
        let mut cpu = c.model.clone();
        let mut g = GpuSeq2Seq::new(ctx.ctx.clone(), &c.model).unwrap();
        let (mut oc, mut og) = (Optimizer::adam(0.01), Optimizer::adam(0.01));
        for _ in 0..5 {
            let lc = cpu.train_step(&c.data, &mut oc, Some(0.5)).unwrap();
            let lg = g.train_step(&c.data, &mut og, Some(0.5)).unwrap();
            assert_close(&format!("{name}: loss"), &[lg], &[lc], LOSS);
        }
        let on_gpu = g.download().unwrap();
        for e in &cpu.layout().entries {
            assert_close(
                &format!("{name}: {} after 5 clipped Adam steps", e.name),
                &on_gpu.params()[e.range()],
                &cpu.params()[e.range()],
                TRAINED_WEIGHTS,
            );
        }
        // The device's moments continue on the host as on the device.
        g.download_moments(&mut og).unwrap();
        assert_eq!(
            (og.m.len(), og.v.len()),
            (cpu.params().len(), cpu.params().len())
        );
        let mut host = on_gpu.clone();
        let mut oh = og.clone();
        host.train_step(&c.data, &mut oh, Some(0.5)).unwrap();
        g.train_step(&c.data, &mut og, Some(0.5)).unwrap();
        let after = g.download().unwrap();
        assert_close(
            &format!("{name}: a step after moving the moments"),
            after.params(),
            host.params(),
            TRAINED_WEIGHTS,
        );
        // And back: the host's moments uploaded continue on the device.
        let mut g2 = GpuSeq2Seq::new(ctx.ctx.clone(), &host).unwrap();
        g2.upload_moments(&oh).unwrap();
        let mut o2 = oh.clone();
        g2.train_step(&c.data, &mut o2, Some(0.5)).unwrap();
        host.train_step(&c.data, &mut oh, Some(0.5)).unwrap();
        assert_close(
            &format!("{name}: a step after uploading the moments"),
            g2.download().unwrap().params(),
            host.params(),
            TRAINED_WEIGHTS,
        );
    }
}

/// A step whose loss is not finite is refused on both paths and leaves the
/// weights as they were; bad data and settings are refused before anything runs.
#[test]
fn gpu_refuses_a_diverged_step_and_bad_input_as_the_cpu_does() {
    let Some(ctx) = gpu("gpu_refuses_a_diverged_step_and_bad_input_as_the_cpu_does") else {
        return;
    };
    let c = Case::load("s2s-lstm-general");
    // A head that gives every target -f32::MAX against another token's +f32::MAX:
    // finite weights, an infinite loss.
    let mut p = c.model.params().to_vec();
    let hb = c.model.layout().head_b.clone();
    p[hb.clone()].iter_mut().for_each(|v| *v = -f32::MAX);
    p[hb.start] = f32::MAX;
    let inf = Seq2Seq::from_params(c.model.config().clone(), p).unwrap();
    assert!(
        c.data.tgt_out.iter().all(|&t| t != 0),
        "no target is token 0"
    );
    let mut g = GpuSeq2Seq::new(ctx.ctx.clone(), &inf).unwrap();
    let mut cpu = inf.clone();
    let (mut og, mut oc) = (Optimizer::adam(0.01), Optimizer::adam(0.01));
    let eg = g.train_step(&c.data, &mut og, None).unwrap_err();
    let ec = cpu.train_step(&c.data, &mut oc, None).unwrap_err();
    assert!(
        matches!(eg, recurrent::Error::Diverged { step: 1, .. }),
        "{eg}"
    );
    assert!(
        matches!(ec, recurrent::Error::Diverged { step: 1, .. }),
        "{ec}"
    );
    assert_eq!(
        g.download().unwrap(),
        inf,
        "the diverged step changed nothing"
    );
    assert_eq!(cpu, inf);
    assert_eq!((og.step, oc.step), (0, 0));
    // Bad input.
    let mut g = GpuSeq2Seq::new(ctx.ctx.clone(), &c.model).unwrap();
    let mut bad = c.data.clone();
    bad.tgt_in[0] = c.model.config().tgt_vocab as i64;
    let e = g.forward(&bad).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    let mut bad = c.data.clone();
    bad.src.ids[0] = -3;
    assert!(g.loss_and_gradients(&bad).is_err());
    assert!(g.greedy(&bad.src, 4).is_err());
    assert!(g.greedy(&c.data.src, 0).is_err());
    // The public fields edited out of shape: refused on both paths, not read past.
    let mut bad = c.data.clone();
    bad.src.lengths.push(1);
    assert!(g
        .forward(&bad)
        .unwrap_err()
        .to_string()
        .contains("src_lengths"));
    assert!(c.model.forward(&bad).is_err());
    let mut bad = c.data.clone();
    bad.src.lengths[1] = bad.src.s + 1;
    assert!(g.greedy(&bad.src, 3).is_err());
    let mut bad = c.data.clone();
    bad.tgt_out.pop();
    assert!(g.loss_and_gradients(&bad).is_err());
    let b = decode::Beam {
        width: 0,
        length_norm: false,
    };
    assert!(g.beam(&c.data.src, 4, b).is_err());
    let mut opt = Optimizer::adam(0.01);
    assert!(g.train_step(&c.data, &mut opt, Some(-1.0)).is_err());
    assert_eq!(opt.step, 0);
    assert_eq!(g.download().unwrap(), c.model, "nothing ran");
}

/// More rows than one GPU plan takes (512; beam search: hypotheses) run in
/// parts and give the CPU path's logits and tokens.
#[test]
fn gpu_forwards_and_decodings_of_many_rows_run_in_parts() {
    let Some(ctx) = gpu("gpu_forwards_and_decodings_of_many_rows_run_in_parts") else {
        return;
    };
    let c = Case::load("s2s-gru-bidir-dot");
    let idx: Vec<usize> = (0..600).map(|i| (i * 7) % c.data.n()).collect();
    let data = c.data.gather(&idx);
    let mut g = GpuSeq2Seq::new(ctx.ctx.clone(), &c.model).unwrap();
    let out = g.forward(&data).unwrap();
    let want = c.model.forward(&data).unwrap();
    assert_eq!(out.shape, want.shape);
    assert_close("600 rows: logits", &out.data, &want.data, FORWARD);
    let max_len = c.num("max_len") as usize;
    let got = g.greedy(&data.src, max_len).unwrap();
    assert_eq!(got, decode::greedy(&c.model, &data.src, max_len).unwrap());
    let src = data.src.gather(&(0..300).collect::<Vec<_>>());
    let b = decode::Beam {
        width: 2,
        length_norm: true,
    };
    assert_eq!(
        g.beam(&src, max_len, b).unwrap(),
        decode::beam(&c.model, &src, max_len, b).unwrap()
    );
}
