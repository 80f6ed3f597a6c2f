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
    ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() }
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
