//! The README's library example, as written there (on golden data files, the CPU path
//! unless a hardware GPU is present).

mod common;
use common::golden_dir;

#[test]
fn readme_library_example_runs() -> recurrent::Result<()> {
    use recurrent::train::{FitConfig, Trainer};
    use recurrent::{Cell, Device, DeviceChoice, Init, Loss, Model, ModelConfig, Optimizer};

    let dir = golden_dir().join("lstm-last-ce");
    let train = recurrent::io::dataset::load(dir.join("data.safetensors"))?; // x [N, T, F], y [N]
    let val = recurrent::io::dataset::load(dir.join("data.safetensors"))?;
    let mut model = Model::new(ModelConfig::new(Cell::Lstm, 5, 16, 3), &Init::seed(7))?;
    let mut backend = Device::resolve(DeviceChoice::Auto)?.backend(&model)?;
    let cfg = FitConfig {
        epochs: 3,
        batch_size: 4,
        loss: Loss::Ce,
        clip: Some(1.0),
        ..FitConfig::default()
    };
    let history = Trainer::new(cfg).fit_on(
        &mut *backend,
        &mut Optimizer::adam(1e-3),
        &train,
        Some(&val),
    )?;
    backend.sync_to(&mut model)?; // weights back to the host
    let path = common::temp_dir("readme").join("model.safetensors");
    recurrent::io::checkpoint::save(&model, &path)?; // PyTorch names
    let logits = model.forward(&val)?; // [N, 3]
    assert_eq!(logits.shape, vec![8, 3]);
    assert_eq!(history.epochs.len(), 3);
    Ok(())
}

// The examples of the README's "States, streaming and your own model", as
// written there: `the_readme_examples_are_these_tests` checks that every
// Rust block of that section appears verbatim in this file.

#[test]
fn readme_states_example_runs() -> recurrent::Result<()> {
    use recurrent::{Cell, Dataset, Init, Inputs, Model, ModelConfig, Tensor};
    // README begin
    let (x, h0) = (vec![0.5f32; 2 * 4 * 3], vec![0.1f32; 1 * 2 * 8]); // N=2, T=4, F=3; H=8
    let model = Model::new(ModelConfig::new(Cell::Gru, 3, 8, 2), &Init::seed(1))?;
    let data = Dataset::new(Inputs::features(x, 2, 4, 3)?, None, None)
        .with_states(Tensor::new(vec![1, 2, 8], h0), None); // a GRU has no c0
    let (out, finals) = model.forward_states(&data)?; // out [2, 2]; finals.h: h_n [1, 2, 8]
    assert_eq!((out.shape, finals.h.unwrap().len()), (vec![2, 2], 16));
    // README end
    Ok(())
}

#[test]
fn readme_streaming_example_runs() -> recurrent::Result<()> {
    use recurrent::{Cell, Init, Inputs, Model, ModelConfig, OutputMode, Stream};
    // README begin
    let model = Model::new(
        ModelConfig::new(Cell::Lstm, 3, 16, 2).output(OutputMode::Sequence),
        &Init::seed(2),
    )?;
    let mut stream = Stream::new(&model)?;
    for _ in 0..10 {
        let sample = Inputs::features(vec![0.2; 4 * 3], 4, 1, 3)?; // 4 streams, one step each
        let y = stream.step(sample)?; // [4, 1, 2]
        assert_eq!(y.shape, vec![4, 1, 2]);
    }
    stream.reset_stream(3)?; // stream 3 starts again from zero states

    // README end
    Ok(())
}

#[test]
fn readme_stack_op_example_runs() -> recurrent::Result<()> {
    use recurrent::{Cell, RecurrentStack, Tensor};
    // README begin
    let op = RecurrentStack::new(Cell::Lstm, 3, 8).layers(2);
    let params = op.init(7);
    let x = Tensor::new(vec![6, 4, 3], vec![0.3; 6 * 4 * 3]); // T=6, B=4, I=3
    let f = op.forward(&params, &x, None, None, None)?;
    // A loss of your own: the mean of the last step's outputs.
    let (t, b, d) = (6, 4, op.output_width());
    let mut dy = vec![0.0; t * b * d];
    dy[(t - 1) * b * d..].fill(1.0 / (b * d) as f32);
    let g = op.backward(&params, &f, &Tensor::new(vec![t, b, d], dy), None, None)?;
    assert_eq!((g.dx.shape, g.dparams.len()), (vec![6, 4, 3], params.len()));
    // README end
    Ok(())
}

/// Every Rust block of the README's sections "States, streaming and your
/// own model" and "Sequence to sequence" is, line for line (indentation
/// aside), the body between `README begin` and `README end` of one test here.
#[test]
fn the_readme_examples_are_these_tests() {
    for (section, count) in [
        ("## States, streaming and your own model", 3),
        ("## Sequence to sequence", 1),
    ] {
        check_section(section, count);
    }
}

fn check_section(title: &str, count: usize) {
    let readme = include_str!("../README.md");
    let me = include_str!("readme.rs");
    let section = readme
        .split(title)
        .nth(1)
        .unwrap_or_else(|| panic!("the README has the section {title}"))
        .split("\n## ")
        .next()
        .unwrap();
    let blocks: Vec<Vec<&str>> = section
        .split("```rust\n")
        .skip(1)
        .map(|b| {
            b.split("```")
                .next()
                .unwrap()
                .lines()
                .map(str::trim)
                .collect()
        })
        .collect();
    let bodies: Vec<Vec<&str>> = me
        .split("// README begin\n")
        .skip(1)
        .map(|b| {
            b.split("// README end")
                .next()
                .unwrap()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(blocks.len(), count, "{count} examples in {title}");
    for b in &blocks {
        let b: Vec<&str> = b.iter().copied().filter(|l| !l.is_empty()).collect();
        assert!(
            bodies.contains(&b),
            "a README block of {title} is not a test here:\n{}",
            b.join("\n")
        );
    }
}

#[test]
fn readme_seq2seq_example_runs() -> recurrent::Result<()> {
    // README begin
    use recurrent::seq2seq::{decode, Attention, Seq2Seq, Seq2SeqConfig, Seq2SeqData, Source};
    use recurrent::{Cell, Optimizer};
    // bos = 1, eos = 2 (the defaults); tokens 3..6.
    let cfg = Seq2SeqConfig::new(Cell::Gru, 6, 6, 8, 16).attention(Attention::Dot);
    let mut model = Seq2Seq::new(cfg, 7)?;
    let pairs = [[3, 4], [4, 5], [5, 3], [3, 3]];
    let src: Vec<i64> = pairs.iter().flatten().copied().collect();
    let tgt_in: Vec<i64> = pairs.iter().flat_map(|p| [1, p[0], p[1]]).collect();
    let tgt_out: Vec<i64> = pairs.iter().flat_map(|p| [p[0], p[1], 2]).collect();
    let data = Seq2SeqData::new(Source::new(src, [4, 2], None)?, tgt_in, tgt_out, 3)?;
    let mut opt = Optimizer::adam(0.05);
    for _ in 0..150 {
        model.train_step(&data, &mut opt, Some(1.0))?;
    }
    let out = decode::greedy(&model, &data.src, 4)?; // or decode::beam
    assert_eq!(out.row(2, 2), &[5, 3]);
    // Either path behind one interface (`seq2seq::Backend`): the GPU when there is one.
    let device = recurrent::Device::resolve(recurrent::DeviceChoice::Auto)?;
    let mut on = device.seq2seq(&model)?;
    assert_eq!(on.greedy(&data.src, 4)?, out);
    // README end
    Ok(())
}
