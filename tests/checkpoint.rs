//! Checkpoints: bit-exact round trips, PyTorch state_dicts without metadata,
//! and files PyTorch can read (names, shapes, dtypes, header).

mod common;
use common::*;
use recurrent::io::{checkpoint, st};
use recurrent::{Cell, Init, Model, ModelConfig, Nonlinearity, OutputMode};
use std::collections::HashMap;

fn models() -> Vec<Model> {
    vec![
        Model::new(
            ModelConfig::new(Cell::Lstm, 5, 7, 3)
                .layers(2)
                .bidirectional(true)
                .output(OutputMode::Sequence),
            &Init::seed(1),
        )
        .unwrap(),
        Model::new(ModelConfig::new(Cell::Gru, 3, 4, 2), &Init::seed(2)).unwrap(),
        Model::new(
            ModelConfig::new(Cell::Rnn, 2, 3, 1)
                .nonlinearity(Nonlinearity::Relu)
                .layers(3),
            &Init::seed(3),
        )
        .unwrap(),
        Model::new(
            ModelConfig::new(Cell::Lstm, 4, 6, 3).embedding(11),
            &Init::seed(4),
        )
        .unwrap(),
    ]
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    let tmp = temp_dir("ckpt-roundtrip");
    for (i, m) in models().into_iter().enumerate() {
        let p = tmp.join(format!("{i}.safetensors"));
        checkpoint::save(&m, &p).unwrap();
        let back = checkpoint::load(&p).unwrap();
        assert_eq!(back.config(), m.config());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(back.params()), bits(m.params()), "model {i}");
        // Saving again gives the same bytes.
        let p2 = tmp.join(format!("{i}b.safetensors"));
        checkpoint::save(&back, &p2).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&p2).unwrap());
    }
}

#[test]
fn plain_state_dict_without_metadata_loads_by_inference() {
    for m in models() {
        let p = m.params();
        // As `safetensors.torch.save_file(model.state_dict(), f)` writes it: no metadata.
        let tensors: Vec<_> = m
            .layout()
            .entries
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.shape.clone(),
                    st::Write_::F32(&p[e.range()]),
                )
            })
            .collect();
        let bytes = st::serialize(&tensors, HashMap::new()).unwrap();
        let (back, meta) = checkpoint::from_bytes(&bytes, "state_dict").unwrap();
        assert!(meta.is_empty());
        let mut want = m.config().clone();
        // Without metadata: tanh and last are the defaults.
        want.nonlinearity = Nonlinearity::Tanh;
        want.output = OutputMode::Last;
        assert_eq!(back.config(), &want);
        assert_eq!(back.params(), m.params());
    }
    // A bare nn.LSTM state_dict (no `rnn.` prefix) with a head.
    let m = &models()[1];
    let p = m.params();
    let tensors: Vec<_> = m
        .layout()
        .entries
        .iter()
        .map(|e| {
            (
                e.name.trim_start_matches("rnn.").to_string(),
                e.shape.clone(),
                st::Write_::F32(&p[e.range()]),
            )
        })
        .collect();
    let (back, _) =
        checkpoint::from_bytes(&st::serialize(&tensors, HashMap::new()).unwrap(), "bare").unwrap();
    assert_eq!(back.config().cell, Cell::Gru);
    assert_eq!(back.params(), m.params());
}

#[test]
fn golden_pytorch_files_load_with_their_metadata() {
    for case in [
        "lstm-last-ce",
        "gru-last-ce",
        "rnn-tanh-seq-mse",
        "lstm-2layer-bidir-seq-ce",
        "gru-bidir-lengths-seq-ce",
        "embed-lstm-lengths-last-ce",
    ] {
        let (m, meta) =
            checkpoint::load_with_metadata(golden_dir().join(case).join("model.safetensors"))
                .unwrap();
        assert!(meta.contains_key("recurrent"), "{case}");
        let c: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(golden_dir().join(case).join("case.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(m.config().cell.name(), c["cell"].as_str().unwrap());
        assert_eq!(m.config().hidden as u64, c["hidden"].as_u64().unwrap());
        assert_eq!(m.config().layers as u64, c["layers"].as_u64().unwrap());
        assert_eq!(
            m.config().bidirectional,
            c["bidirectional"].as_bool().unwrap()
        );
        assert_eq!(m.config().output.name(), c["output"].as_str().unwrap());
    }
}

/// What `torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)` names its
/// parameters, in `state_dict` order, with shapes; PyTorch is not needed to
/// check that our file carries exactly these, as little-endian F32.
#[test]
fn written_checkpoint_has_the_names_shapes_and_dtypes_pytorch_expects() {
    let m = &models()[0];
    let bytes = checkpoint::to_bytes(m, &HashMap::new()).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut expected = vec![];
    for k in 0..2 {
        let i = if k == 0 { 5 } else { 14 };
        for sfx in ["", "_reverse"] {
            expected.push((format!("rnn.weight_ih_l{k}{sfx}"), vec![28, i]));
            expected.push((format!("rnn.weight_hh_l{k}{sfx}"), vec![28, 7]));
            expected.push((format!("rnn.bias_ih_l{k}{sfx}"), vec![28]));
            expected.push((format!("rnn.bias_hh_l{k}{sfx}"), vec![28]));
        }
    }
    expected.push(("head.weight".into(), vec![3, 14]));
    expected.push(("head.bias".into(), vec![3]));
    let obj = header.as_object().unwrap();
    assert_eq!(obj.len(), expected.len() + 1, "tensors plus __metadata__");
    for (name, shape) in &expected {
        let t = &obj[name];
        assert_eq!(t["dtype"], "F32", "{name}");
        let got: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(&got, shape, "{name}");
    }
    let meta: serde_json::Value =
        serde_json::from_str(obj["__metadata__"]["recurrent"].as_str().unwrap()).unwrap();
    assert_eq!(meta["cell"], "lstm");
    assert_eq!(meta["nonlinearity"], "tanh");
    assert_eq!(meta["output"], "sequence");
}

#[test]
fn an_interrupted_save_leaves_the_previous_checkpoint_intact() {
    let tmp = temp_dir("ckpt-atomic");
    let p = tmp.join("m.safetensors");
    let m = &models()[1];
    checkpoint::save(m, &p).unwrap();
    let before = std::fs::read(&p).unwrap();
    // Saving into a folder that does not exist fails before touching anything.
    assert!(checkpoint::save(m, tmp.join("missing/m.safetensors")).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), before);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
