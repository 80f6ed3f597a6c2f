//! Sequence to sequence against PyTorch: the reference cases in
//! `tests/seq2seq` (made by `tests/seq2seq/generate.py`: LSTM with general
//! attention, a bidirectional GRU with dot attention, an RNN without
//! attention, and three more shapes) load from the reference's own checkpoints, give its
//! teacher-forced logits and loss, its greedy tokens exactly, and after one
//! epoch of SGD and of Adam its weights; bad data is refused.

mod common;
use common::*;
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
            for e in &m.layout().entries {
                assert_close(
                    &format!("{name} {file}: {}", e.name),
                    &m.params()[e.range()],
                    &Case::floats(&want, &e.name),
                    GOLDEN_WEIGHTS,
                );
            }
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
