//! Stateful (truncated-BPTT) training against PyTorch's `word_language_model`
//! loop (`tests/stateful/generate.py`): the weights after one epoch, the
//! epoch's training loss and the validation loss, on the CPU and the GPU
//! path; and the refusals.

mod common;
use common::*;
use recurrent::gpu::GpuModel;
use recurrent::io::{checkpoint, dataset, st};
use recurrent::train::{Backend, FitConfig, History, Stateful, Trainer};
use recurrent::{Cell, Dataset, Init, Inputs, Loss, Model, ModelConfig, Optimizer, OutputMode};

struct Case {
    name: String,
    batch: usize,
    eval_batch: usize,
    bptt: usize,
    lr: f32,
    clip: f32,
}

fn cases() -> Vec<Case> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stateful");
    let mut v = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path().join("case.json");
        if !p.exists() {
            continue;
        }
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v.push(Case {
            name: c["name"].as_str().unwrap().into(),
            batch: c["batch"].as_u64().unwrap() as usize,
            eval_batch: c["eval_batch"].as_u64().unwrap() as usize,
            bptt: c["bptt"].as_u64().unwrap() as usize,
            lr: c["lr"].as_f64().unwrap() as f32,
            clip: c["clip"].as_f64().unwrap() as f32,
        });
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(v.len() >= 2, "the stateful reference cases are missing");
    v
}

fn folder(c: &Case) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/stateful")
        .join(&c.name)
}

fn config(c: &Case) -> FitConfig {
    FitConfig {
        epochs: 1,
        batch_size: c.batch,
        eval_batch_size: c.eval_batch,
        shuffle: false,
        loss: Loss::Ce,
        clip: Some(c.clip),
        progress: false,
        stateful: Some(Stateful { seq_len: c.bptt }),
        ..FitConfig::default()
    }
}

/// One epoch on `backend`, then the weights, the epoch's train loss and the
/// validation loss against PyTorch's.
fn check(c: &Case, path: &str, backend: &mut dyn Backend, model: &mut Model) {
    let dir = folder(c);
    let train = dataset::load(dir.join("train.safetensors")).unwrap();
    let val = dataset::load(dir.join("val.safetensors")).unwrap();
    let after = st::read(&dir.join("after.safetensors")).unwrap();
    let want = |n: &str| after.tensors[n].floats("stateful", n).unwrap();
    let mut opt = Optimizer::sgd(c.lr);
    let history: History = Trainer::new(config(c))
        .fit_on(backend, &mut opt, &train, Some(&val))
        .unwrap();
    backend.sync_to(model).unwrap();
    let what = format!("{} {path}", c.name);
    for e in &model.layout().entries {
        assert_close(
            &format!("{what}: {} after one epoch", e.name),
            &model.params()[e.range()],
            &want(&e.name),
            GOLDEN_WEIGHTS,
        );
    }
    // The epoch's loss: PyTorch's per-batch losses, each weighted by its tokens.
    let losses = want("loss");
    let per = match &train.x {
        Inputs::Tokens { t, .. } => t / c.batch,
        _ => unreachable!(),
    };
    let steps: Vec<usize> = (0..losses.len())
        .map(|k| c.bptt.min(per - 1 - k * c.bptt))
        .collect();
    let mean = losses
        .iter()
        .zip(&steps)
        .map(|(l, &s)| *l as f64 * s as f64)
        .sum::<f64>()
        / steps.iter().sum::<usize>() as f64;
    let m = &history.epochs[0];
    assert_close(
        &format!("{what}: train loss"),
        &[m.train_loss],
        &[mean as f32],
        GOLDEN_OUTPUT,
    );
    assert_close(
        &format!("{what}: val loss"),
        &[m.val_loss.unwrap()],
        &want("val_loss"),
        GOLDEN_OUTPUT,
    );
}

#[test]
fn stateful_training_matches_pytorchs_word_language_model_loop_on_cpu() {
    for c in cases() {
        let mut model = checkpoint::load(folder(&c).join("model.safetensors")).unwrap();
        let mut backend = model.clone();
        check(&c, "cpu", &mut backend, &mut model);
    }
}

#[test]
fn stateful_training_matches_pytorchs_word_language_model_loop_on_gpu() {
    let Some(gpu) = gpu("stateful_training_matches_pytorchs_word_language_model_loop_on_gpu")
    else {
        return;
    };
    for c in cases() {
        let mut model = checkpoint::load(folder(&c).join("model.safetensors")).unwrap();
        let mut backend = GpuModel::new(gpu.ctx.clone(), &model).unwrap();
        check(&c, "gpu", &mut backend, &mut model);
    }
}

/// Carrying the states matters: without them (every batch from zeros) the
/// weights after the epoch are not PyTorch's.
#[test]
fn the_states_carried_between_batches_change_the_result() {
    let c = &cases()[0];
    let dir = folder(c);
    let mut model = checkpoint::load(dir.join("model.safetensors")).unwrap();
    let train = dataset::load(dir.join("train.safetensors")).unwrap();
    let Inputs::Tokens { ids, t, .. } = &train.x else {
        unreachable!()
    };
    // Every batch of the epoch, the last shorter one included, in order,
    // each starting from zero states: the loop without the carry.
    let per = t / c.batch;
    let opts = recurrent::StepOptions {
        loss: Loss::Ce,
        clip: Some(c.clip),
    };
    let mut opt = Optimizer::sgd(c.lr);
    let mut i = 0;
    let mut steps = 0;
    while i + 1 < per {
        let s = c.bptt.min(per - 1 - i);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for b in 0..c.batch {
            x.extend_from_slice(&ids[b * per + i..b * per + i + s]);
            y.extend_from_slice(&ids[b * per + i + 1..b * per + i + 1 + s]);
        }
        let batch = Dataset::new(
            Inputs::tokens(x, c.batch, s).unwrap(),
            Some(recurrent::Targets::Classes {
                data: y,
                shape: vec![c.batch, s],
            }),
            None,
        );
        model.train_step(&batch, &opts, &mut opt).unwrap();
        i += c.bptt;
        steps += 1;
    }
    let after_file = st::read(&dir.join("after.safetensors")).unwrap();
    assert_eq!(
        steps, after_file.tensors["loss"].shape[0],
        "the same number of steps as PyTorch"
    );
    let after = st::read(&dir.join("after.safetensors")).unwrap();
    let w = after.tensors["rnn.weight_hh_l0"]
        .floats("stateful", "w")
        .unwrap();
    let e = model.layout().entry("rnn.weight_hh_l0").unwrap();
    let diff = model.params()[e.range()]
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff > 1e-3,
        "weights without carried states are within {diff} of PyTorch's"
    );
}

#[test]
fn stateful_training_refuses_what_it_cannot_do() {
    let lm = |bidirectional: bool, output: OutputMode, out: usize| {
        let cfg = ModelConfig::new(Cell::Lstm, 4, 8, out)
            .embedding(10)
            .bidirectional(bidirectional)
            .output(output);
        Model::new(cfg, &Init::seed(1)).unwrap()
    };
    let stream = |n: usize, len: usize| {
        Dataset::new(
            Inputs::tokens((0..n * len).map(|i| (i % 10) as i64).collect(), n, len).unwrap(),
            None,
            None,
        )
    };
    let base = FitConfig {
        epochs: 1,
        batch_size: 2,
        eval_batch_size: 2,
        shuffle: false,
        progress: false,
        stateful: Some(Stateful { seq_len: 5 }),
        ..FitConfig::default()
    };
    let good = lm(false, OutputMode::Sequence, 10);
    let features = Dataset::new(
        Inputs::features(vec![0.0; 40], 1, 10, 4).unwrap(),
        None,
        None,
    );
    let with_y = {
        let mut d = stream(1, 40);
        d.y = Some(recurrent::Targets::Classes {
            data: vec![0; 40],
            shape: vec![1, 40],
        });
        d
    };
    let no_embed = Model::new(
        ModelConfig::new(Cell::Gru, 4, 8, 10).output(OutputMode::Sequence),
        &Init::seed(1),
    )
    .unwrap();
    let cases: Vec<(Model, FitConfig, Dataset, &str)> = vec![
        (
            good.clone(),
            FitConfig {
                shuffle: true,
                ..base.clone()
            },
            stream(1, 40),
            "turn shuffling off",
        ),
        (
            lm(true, OutputMode::Sequence, 10),
            base.clone(),
            stream(1, 40),
            "bidirectional",
        ),
        (
            lm(false, OutputMode::Last, 10),
            base.clone(),
            stream(1, 40),
            "output sequence",
        ),
        (
            lm(false, OutputMode::Sequence, 7),
            base.clone(),
            stream(1, 40),
            "a head of 10 outputs",
        ),
        (no_embed, base.clone(), stream(1, 40), "no embedding"),
        (
            good.clone(),
            base.clone(),
            stream(3, 40),
            "not one token stream (3 rows)",
        ),
        (good.clone(), base.clone(), with_y, "it has y"),
        (
            good.clone(),
            base.clone(),
            stream(1, 3),
            "3 training tokens cannot be cut into 2 streams",
        ),
        (
            good.clone(),
            FitConfig {
                stateful: Some(Stateful { seq_len: 0 }),
                ..base.clone()
            },
            stream(1, 40),
            "seq_len must be at least 1",
        ),
    ];
    for (mut model, cfg, data, says) in cases {
        let before = model.params().to_vec();
        let e = Trainer::new(cfg)
            .fit(&mut model, &mut Optimizer::sgd(0.1), &data, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{says}: {e}");
        assert_eq!(model.params(), &before[..], "{says}: the weights moved");
    }
    // Features are refused by the stream check too.
    let mut m = good.clone();
    let e = Trainer::new(base)
        .fit(&mut m, &mut Optimizer::sgd(0.1), &features, None)
        .unwrap_err();
    assert!(e.to_string().contains("features, not token ids"), "{e}");
}

#[test]
fn the_cli_trains_statefully_as_pytorch_does() {
    let c = &cases()[0];
    let dir = folder(c);
    let out = temp_dir("stateful-cli").join("lm.safetensors");
    let arg = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let (lr, clip, batch, bptt) = (
        c.lr.to_string(),
        c.clip.to_string(),
        c.batch.to_string(),
        c.bptt.to_string(),
    );
    let mut args = vec![
        "train",
        "--data",
        &arg("train.safetensors"),
        "--model",
        &arg("model.safetensors"),
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for a in [
        "--loss",
        "ce",
        "--optimizer",
        "sgd",
        "--lr",
        &lr,
        "--clip",
        &clip,
        "--batch-size",
        &batch,
        "--epochs",
        "1",
        "--stateful",
        "--seq-len",
        &bptt,
        "--device",
        "cpu",
        "--save",
        out.to_str().unwrap(),
    ] {
        args.push(a.to_string());
    }
    let r = recurrent_cli(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let model = checkpoint::load(&out).unwrap();
    let after = st::read(&dir.join("after.safetensors")).unwrap();
    for e in &model.layout().entries {
        let want = after.tensors[&e.name].floats("stateful", &e.name).unwrap();
        assert_close(
            &format!("cli {}", e.name),
            &model.params()[e.range()],
            &want,
            GOLDEN_WEIGHTS,
        );
    }
    // A data file that is not one token stream is refused.
    let golden = golden_dir().join("embed-lstm-lengths-last-ce/data.safetensors");
    args[2] = golden.to_str().unwrap().to_string();
    let r = recurrent_cli(&args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("not one token stream"),
        "{err}"
    );
}

/// Diverging steps under `OnNonFinite::Skip`: the fit goes on to the end
/// of the stream (each batch after a skipped one from zero states) and
/// counts what it skipped.
#[test]
fn skipped_steps_do_not_stop_a_stateful_fit() {
    let c = &cases()[0];
    let dir = folder(c);
    let mut model = checkpoint::load(dir.join("model.safetensors")).unwrap();
    let train = dataset::load(dir.join("train.safetensors")).unwrap();
    let cfg = FitConfig {
        clip: None,
        on_nonfinite: recurrent::train::OnNonFinite::Skip,
        ..config(c)
    };
    // A step this large sends the loss to infinity after the first update.
    let history = Trainer::new(cfg)
        .fit(&mut model, &mut Optimizer::sgd(1e30), &train, None)
        .unwrap();
    let m = &history.epochs[0];
    assert!(m.skipped_steps > 0, "nothing skipped: {m:?}");
    assert!(m.skipped_steps < 19, "every step skipped: {m:?}");
}
