//! Property-based fuzzing of the file parsers: no input, however broken,
//! reaches a panic. Each property runs `PROPTEST_CASES` inputs (default below).

mod common;
use common::*;
use proptest::prelude::*;
use recurrent::io::{checkpoint, dataset, st};

fn golden_bytes(case: &str, file: &str) -> Vec<u8> {
    std::fs::read(golden_dir().join(case).join(file)).unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = checkpoint::from_bytes(&bytes, "fuzz");
        if let Ok(f) = st::parse(&bytes, "fuzz") {
            let _ = dataset::from_file(f, "fuzz");
        }
    }

    #[test]
    fn mutated_checkpoints_never_panic(case in 0usize..6, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let names = ["lstm-last-ce", "gru-last-ce", "rnn-tanh-seq-mse", "lstm-2layer-bidir-seq-ce", "gru-bidir-lengths-seq-ce", "embed-lstm-lengths-last-ce"];
        let mut b = golden_bytes(names[case], "model.safetensors");
        // Edits land mostly in the JSON header, where parsing happens.
        let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        for (i, v) in edits {
            let at = i.index(header.min(b.len()));
            b[at] = v;
        }
        let _ = checkpoint::from_bytes(&b, "fuzz");
        let _ = checkpoint::from_bytes(&b[..cut.index(b.len())], "fuzz");
    }

    #[test]
    fn mutated_data_files_never_panic(case in 0usize..6, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let names = ["lstm-last-ce", "gru-last-ce", "rnn-tanh-seq-mse", "lstm-2layer-bidir-seq-ce", "gru-bidir-lengths-seq-ce", "embed-lstm-lengths-last-ce"];
        let mut b = golden_bytes(names[case], "data.safetensors");
        let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        for (i, v) in edits {
            let at = i.index(header.min(b.len()));
            b[at] = v;
        }
        if let Ok(f) = st::parse(&b, "fuzz") {
            if let Ok(d) = dataset::from_file(f, "fuzz") {
                // A loadable data set must also be checkable against a model without panicking.
                let m = checkpoint::load(golden_dir().join(names[case]).join("model.safetensors")).unwrap();
                let _ = d.check_inputs(m.config());
                let _ = m.forward(&d);
            }
        }
    }
}

// ---------------------------------------------------------------- IDX, CSV, text, optimizer state
// (issue 6: every parser in src/io, and what a successful parse feeds into).

use recurrent::io::{csv, idx, optim_state, text};

/// A gzip stream of `bytes` (the IDX reader takes gzipped files too).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An IDX header (u8 payload, `dims`) followed by `payload`.
fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

/// CSV-ish text: digits, signs, separators, quotes, missing markers, newlines.
fn csv_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("1".to_string()),
            Just("-2.5".to_string()),
            Just("3e38".to_string()),
            Just("4e39".to_string()),
            Just("1e-45".to_string()),
            Just(",".to_string()),
            Just("\n".to_string()),
            Just("\"".to_string()),
            Just("NA".to_string()),
            Just("?".to_string()),
            Just("nan".to_string()),
            Just("inf".to_string()),
            Just(" ".to_string()),
            Just("value".to_string()),
            Just("\r\n".to_string()),
            Just("x".to_string()),
            "[0-9.eE+-]{1,6}",
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn idx_inputs_never_panic(
        dims in proptest::collection::vec(prop_oneof![0u32..6, Just(u32::MAX), any::<u32>()], 0..5),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        raw in proptest::collection::vec(any::<u8>(), 0..64),
        zipped in any::<bool>(),
        labels in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut b = idx_bytes(&dims, &payload);
        if zipped {
            b = gzip(&b);
        }
        let _ = idx::parse(&raw, "fuzz");
        let _ = idx::parse(&gzip(&raw), "fuzz");
        // A truncated gzip stream.
        let z = gzip(&raw);
        let _ = idx::parse(&z[..z.len() / 2], "fuzz");
        if let Ok(img) = idx::parse(&b, "fuzz") {
            let lab = idx::parse(&idx_bytes(&[labels.len() as u32], &labels), "fuzz").unwrap();
            if let Ok(d) = idx::mnist_dataset(img.clone(), lab, "images", "labels") {
                prop_assert_eq!(d.len(), labels.len());
            }
            // Images and labels swapped.
            let _ = idx::mnist_dataset(idx::parse(&idx_bytes(&[labels.len() as u32], &labels), "fuzz").unwrap(), img, "images", "labels");
        }
    }

    #[test]
    fn csv_inputs_never_panic(
        body in csv_text(),
        by_name in any::<bool>(),
        index in 0usize..4,
        skip in any::<bool>(),
        window in 0usize..6,
        fraction in prop_oneof![Just(0.0f32), Just(1.0), Just(f32::NAN), 0.0f32..1.0],
    ) {
        let column = if by_name { csv::Column::Name("value".into()) } else { csv::Column::Index(index) };
        let missing = if skip { csv::Missing::Skip } else { csv::Missing::Interpolate };
        if let Ok(series) = csv::parse_column(&body, "fuzz", &column, missing) {
            prop_assert!(!series.is_empty() && series.iter().all(|v| v.is_finite()));
            if let Ok(d) = csv::windows(&series, window) {
                prop_assert_eq!(d.len(), series.len() - window);
            }
            for scaling in [csv::Scaling::None, csv::Scaling::MinMax, csv::Scaling::ZScore] {
                if let Ok(s) = csv::split_windows(&series, window, fraction, scaling) {
                    prop_assert!(s.scaler.scale.is_finite() && s.scaler.scale > 0.0);
                }
            }
        }
    }

    #[test]
    fn text_inputs_never_panic(
        corpus in "\\PC{0,40}",
        other in "\\PC{0,10}",
        ids in proptest::collection::vec(prop_oneof![-3i64..50, Just(i64::MAX), Just(i64::MIN)], 0..12),
        json in "\\PC{0,20}",
        seq_len in 0usize..12,
        stride in 0usize..4,
        one_hot in any::<bool>(),
    ) {
        let _ = text::Vocab::from_json(&json);
        let _ = text::Vocab::from_json(&format!("{json:?}"));
        if let Ok(v) = text::Vocab::from_text(&corpus) {
            let enc = v.encode(&corpus).unwrap();
            prop_assert_eq!(v.decode(&enc).unwrap(), corpus.clone());
            let _ = v.encode(&other);
            let _ = v.decode(&ids);
            prop_assert_eq!(text::Vocab::from_json(&v.to_json()).unwrap(), v.clone());
            let encoding = if one_hot { text::Encoding::OneHot } else { text::Encoding::Ids };
            let _ = text::sequences(&enc, v.len(), seq_len, stride, encoding);
            let _ = text::sequences(&ids, v.len(), seq_len, stride, encoding);
        }
    }

    #[test]
    fn optimizer_state_sidecars_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), params in 0usize..64) {
        let _ = optim_state::from_bytes(&bytes, "fuzz", b"model", params);
        // A real sidecar, its header edited.
        let mut opt = recurrent::Optimizer::adam(1e-3);
        opt.m = vec![0.5; 16];
        opt.v = vec![0.25; 16];
        opt.step = 3;
        let state = optim_state::TrainState { optimizer: opt, moments_saved: true, epoch: 2, rng_state: u64::MAX, monitor: Default::default() };
        let mut b = optim_state::to_bytes(&state, b"model").unwrap();
        let back = optim_state::from_bytes(&b, "fuzz", b"model", 16).unwrap();
        prop_assert_eq!((back.epoch, back.rng_state, back.optimizer.step), (2, u64::MAX, 3));
        let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        for (i, v) in edits {
            let at = i.index(header.min(b.len()));
            b[at] = v;
        }
        let _ = optim_state::from_bytes(&b, "fuzz", b"model", params);
    }
}
