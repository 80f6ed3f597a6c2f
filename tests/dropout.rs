//! Dropout: PyTorch's gradients under our masks (the cases in
//! `tests/dropout`, made by `tests/dropout/generate.py`, which draws the masks
//! with its own copy of the hash) on the CPU and the GPU path, the training
//! step using the masks of its step on both, evaluation untouched, the
//! checkpoint keeping it, the CLI's flags and bad probabilities refused.

mod common;
use common::*;
use recurrent::io::{checkpoint, dataset, st};
use recurrent::{
    Cell, Dropout, Init, Loss, Model, ModelConfig, Optimizer, OutputMode, StepOptions,
};
use std::path::PathBuf;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dropout")
}

const CASES: [&str; 6] = [
    "lstm-2layer-embed-seq-ce",
    "gru-bidir-2layer-last-mse",
    "rnn-3layer-last-ce",
    // Recurrent dropout too.
    "lstm-bidir-2layer-recurrent-last-ce",
    "gru-embed-recurrent-seq-ce",
    "rnn-2layer-recurrent-last-mse",
];

/// One case of `tests/dropout`: the model (with its dropout), the batch, the
/// loss, the training step whose masks PyTorch applied, and its results.
struct MaskCase {
    name: &'static str,
    seed: u64,
    model: Model,
    data: recurrent::Dataset,
    loss: Loss,
    step: u64,
    expected: st::File,
}

impl MaskCase {
    fn load(name: &'static str) -> MaskCase {
        let dir = cases_dir().join(name);
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        MaskCase {
            name,
            seed: case["seed"].as_u64().unwrap(),
            model: checkpoint::load(dir.join("model.safetensors")).unwrap(),
            data: dataset::load(dir.join("data.safetensors")).unwrap(),
            loss: Loss::parse(case["loss"].as_str().unwrap()).unwrap(),
            step: case["step"].as_u64().unwrap(),
            expected: st::read(&dir.join("expected.safetensors")).unwrap(),
        }
    }

    /// PyTorch's value of `name` (`loss`, `grad.<parameter>`).
    fn want(&self, name: &str) -> Vec<f32> {
        self.expected.tensors[name]
            .floats("expected", name)
            .unwrap()
    }

    /// `loss` and `grads` (one step's, under its masks) against PyTorch's,
    /// within GOLDEN_OUTPUT; `path` names them in a failure.
    fn check(&self, path: &str, loss: f32, grads: &[f32]) {
        let name = self.name;
        assert_close(
            &format!("{name}: {path} loss"),
            &[loss],
            &self.want("loss"),
            GOLDEN_OUTPUT,
        );
        for e in &self.model.layout().entries {
            assert_close(
                &format!("{name}: {path} grad of {}", e.name),
                &grads[e.range()],
                &self.want(&format!("grad.{}", e.name)),
                GOLDEN_OUTPUT,
            );
        }
    }
}

/// Loss and every gradient of one step under the masks, against PyTorch
/// with the same masks applied by hand (input, between layers, output,
/// recurrent; embedding, bidirectional, both outputs, both losses, every cell).
#[test]
fn gradients_under_our_masks_match_pytorch_with_the_same_masks() {
    for name in CASES {
        let c = MaskCase::load(name);
        let d = c.model.config().dropout;
        assert!(
            !d.is_off(),
            "{name}: the checkpoint's metadata keeps the dropout"
        );
        assert_eq!(d.seed, c.seed, "{name}: seed");
        let (l, g) = c
            .model
            .gradients_with_dropout(&c.data, c.loss, c.step)
            .unwrap();
        c.check("CPU", l, &g);
        // The masks matter: without them, or at another step, the gradients differ.
        let (_, plain) = c.model.loss_and_gradients(&c.data, c.loss).unwrap();
        let (_, other) = c
            .model
            .gradients_with_dropout(&c.data, c.loss, c.step + 1)
            .unwrap();
        for v in [plain, other] {
            assert!(
                deviation(&v, &g).max_abs > 1e-3,
                "{name}: masks have no effect"
            );
        }
    }
}

/// A 2-layer LSTM case with output `output` and dropout `d`, and its batch.
fn small_with(output: OutputMode, d: Dropout) -> (Model, recurrent::Dataset) {
    let case = Case {
        layers: 2,
        output,
        ..Case::new(Cell::Lstm)
    };
    let m = case.model(3);
    let cfg = m.config().clone().dropout(d);
    (
        Model::from_params(cfg, m.params().to_vec()).unwrap(),
        case.data(Loss::Ce, 4),
    )
}

fn small(d: Dropout) -> (Model, recurrent::Dataset) {
    small_with(OutputMode::Last, d)
}

const SOME: Dropout = Dropout {
    dropout: 0.3,
    input: 0.2,
    output: 0.4,
    recurrent: 0.0,
    seed: 5,
};

/// A training step computes the gradients of its own step's masks (the
/// optimizer's count after it), and SGD applies them; forward and evaluation
/// never drop; probabilities of 0 train bit for bit as no dropout. (Every
/// site, recurrent included.)
#[test]
fn a_training_step_uses_its_steps_masks_and_evaluation_none() {
    let (m, data) = small(Dropout {
        recurrent: 0.25,
        ..SOME
    });
    let (plain, _) = small(Dropout::default());
    let opts = StepOptions {
        loss: Loss::Ce,
        clip: None,
    };
    // Two steps: the second uses step 2's masks.
    let lr = 0.5;
    let mut a = m.clone();
    let mut opt = Optimizer::sgd(lr);
    a.train_step(&data, &opts, &mut opt).unwrap();
    let (_, g2) = a.gradients_with_dropout(&data, Loss::Ce, 2).unwrap();
    let before = a.params().to_vec();
    a.train_step(&data, &opts, &mut opt).unwrap();
    let want: Vec<f32> = before.iter().zip(&g2).map(|(p, g)| p - lr * g).collect();
    assert_close("SGD under step 2's masks", a.params(), &want, GOLDEN_OUTPUT);
    // Forward and evaluation: the same bits as the model without dropout.
    let (f, p) = (m.forward(&data).unwrap(), plain.forward(&data).unwrap());
    assert!(f
        .data
        .iter()
        .zip(&p.data)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    let (e, q) = (
        m.evaluate(&data, Loss::Ce, 3).unwrap(),
        plain.evaluate(&data, Loss::Ce, 3).unwrap(),
    );
    assert_eq!(e, q);
    // p = 0 everywhere (a seed alone): bit-identical training.
    let (zero, _) = small(Dropout {
        seed: 9,
        ..Dropout::default()
    });
    let (mut x, mut y) = (zero.clone(), plain.clone());
    let (mut ox, mut oy) = (Optimizer::adam(0.01), Optimizer::adam(0.01));
    for _ in 0..3 {
        x.train_step(&data, &opts, &mut ox).unwrap();
        y.train_step(&data, &opts, &mut oy).unwrap();
    }
    assert!(x
        .params()
        .iter()
        .zip(y.params())
        .all(|(p, q)| p.to_bits() == q.to_bits()));
}

/// The dropout travels in the checkpoint's metadata; a model without any
/// writes none (files as before).
#[test]
fn the_checkpoint_keeps_the_dropout() {
    let dir = temp_dir("dropout-ckpt");
    let (m, _) = small(SOME);
    checkpoint::save(&m, dir.join("m.safetensors")).unwrap();
    assert_eq!(
        checkpoint::load(dir.join("m.safetensors"))
            .unwrap()
            .config()
            .dropout,
        SOME
    );
    let (plain, _) = small(Dropout::default());
    let bytes = checkpoint::to_bytes(&plain, &Default::default()).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("dropout"));
}

/// Probabilities outside [0, 1) are refused by the config, the library and the CLI.
#[test]
fn bad_probabilities_are_refused() {
    for p in [1.0, -0.5, f32::NAN] {
        let cfg = ModelConfig::new(Cell::Gru, 2, 3, 2).dropout(Dropout {
            dropout: p,
            ..Dropout::default()
        });
        let e = Model::new(cfg, &Init::seed(0)).unwrap_err().to_string();
        assert!(e.contains("[0, 1)"), "{e}");
    }
}

/// `recurrent train --dropout --input-dropout --output-dropout
/// --recurrent-dropout` trains (on both paths) a
/// 2-layer model with dropout and saves it in the checkpoint; `--dropout 1`
/// is refused and writes nothing.
#[test]
fn the_cli_trains_with_dropout_and_refuses_bad_probabilities() {
    let dir = temp_dir("dropout-cli");
    let case = Case {
        layers: 2,
        output: OutputMode::Sequence,
        ..Case::new(Cell::Lstm)
    };
    let data = dir.join("d.safetensors");
    dataset::save(&case.data(Loss::Ce, 1), &data).unwrap();
    let out = dir.join("m.safetensors");
    let run_on = |device: &str, p: &str, out: &std::path::Path| {
        recurrent_cli(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--cell",
            "lstm",
            "--hidden",
            "5",
            "--layers",
            "2",
            "--output",
            "sequence",
            "--out-features",
            &case.out.to_string(),
            "--loss",
            "ce",
            "--epochs",
            "2",
            "--device",
            device,
            "--dropout",
            p,
            "--input-dropout",
            "0.1",
            "--output-dropout",
            "0.2",
            "--recurrent-dropout",
            "0.25",
            "--seed",
            "4",
            "--save",
            out.to_str().unwrap(),
        ])
    };
    let run = |p: &str| run_on("cpu", p, &out);
    let bad = run("1");
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(e.contains("[0, 1)"), "{e}");
    assert!(!out.exists(), "nothing written");
    let ok = run("0.3");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let d = checkpoint::load(&out).unwrap().config().dropout;
    assert_eq!(
        d,
        Dropout {
            dropout: 0.3,
            input: 0.1,
            output: 0.2,
            recurrent: 0.25,
            seed: 4
        }
    );
    // The GPU path trains the same steps under the same masks, recurrent
    // dropout's in its step kernels.
    if gpu("the_cli_trains_with_dropout_and_refuses_bad_probabilities").is_some() {
        let on_gpu = dir.join("gpu.safetensors");
        let r = run_on("gpu", "0.3", &on_gpu);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let (g, c) = (
            checkpoint::load(&on_gpu).unwrap(),
            checkpoint::load(&out).unwrap(),
        );
        assert_eq!(g.config().dropout, c.config().dropout);
        assert_close(
            "CLI: GPU vs CPU weights",
            g.params(),
            c.params(),
            TRAINED_WEIGHTS,
        );
    }
}

/// The GPU path's masks (`dropout.wgsl`, and recurrent dropout's in the
/// step kernels) are the CPU path's: on every PyTorch case its gradients
/// under a step's masks match PyTorch's and the CPU path's, and change with
/// the step.
#[test]
fn gpu_gradients_under_our_masks_match_pytorch_and_the_cpu_path() {
    let Some(gpu) = gpu("gpu_gradients_under_our_masks_match_pytorch_and_the_cpu_path") else {
        return;
    };
    for name in CASES {
        let c = MaskCase::load(name);
        let (model, data, loss, step) = (&c.model, &c.data, c.loss, c.step);
        let mut g = recurrent::gpu::GpuModel::new(gpu.clone(), model).unwrap();
        let (l, grads) = g.gradients_with_dropout(data, loss, step).unwrap();
        c.check("GPU", l, &grads);
        let (cl, cpu) = model.gradients_with_dropout(data, loss, step).unwrap();
        assert_close(&format!("{name}: GPU vs CPU loss"), &[l], &[cl], LOSS);
        for e in &model.layout().entries {
            assert_close(
                &format!("{name}: GPU vs CPU grad of {}", e.name),
                &grads[e.range()],
                &cpu[e.range()],
                GRADIENTS,
            );
        }
        let (_, other) = g.gradients_with_dropout(data, loss, step + 1).unwrap();
        assert!(
            deviation(&other, &grads).max_abs > 1e-3,
            "{name}: the GPU's masks do not change with the step"
        );
        // Plain gradients afterwards: the masks are off again.
        let (_, plain) = g.loss_and_gradients(data, loss).unwrap();
        let (_, cpu_plain) = model.loss_and_gradients(data, loss).unwrap();
        assert_close(&format!("{name}: GPU plain"), &plain, &cpu_plain, GRADIENTS);
    }
}

/// Recurrent dropout under the step tiles that read the states their own
/// way (persistent: every step in one dispatch; direct: no staging; K split)
/// and with the f16 copy of W_hh: the gradients of the PyTorch cases under
/// their masks still match PyTorch's (the f16 copy within its own
/// tolerance), and tiles that sum over K in the same order give the default
/// tile's bits.
#[test]
fn gpu_recurrent_dropout_holds_under_every_kind_of_step_tile() {
    use recurrent::gpu::{GpuModel, StepTile};
    let Some(gpu) = gpu("gpu_recurrent_dropout_holds_under_every_kind_of_step_tile") else {
        return;
    };
    let same_order = StepTile::new(8, 4, 8, 1);
    let tiles = [
        (same_order, false),
        (same_order.persist(), false),
        (StepTile::direct(8, 2, 7, 4, 4), false),
        (
            StepTile {
                splits: 2,
                ..StepTile::new(8, 4, 16, 2)
            },
            false,
        ),
        (same_order.persist(), true),
    ];
    for name in CASES.iter().filter(|n| n.contains("recurrent")) {
        let c = MaskCase::load(name);
        let mut first = None;
        for (tile, f16) in tiles {
            let mut g = GpuModel::with_f16_weights(gpu.clone(), &c.model, f16).unwrap();
            g.set_step_tile(tile).unwrap();
            let (l, grads) = g.gradients_with_dropout(&c.data, c.loss, c.step).unwrap();
            let path = format!("GPU tile {tile} f16={f16}");
            if f16 {
                // W_hh rounded to f16: F16_WEIGHTS.
                for e in &c.model.layout().entries {
                    assert_close(
                        &format!("{name}: {path} grad of {}", e.name),
                        &grads[e.range()],
                        &c.want(&format!("grad.{}", e.name)),
                        F16_WEIGHTS,
                    );
                }
                continue;
            }
            c.check(&path, l, &grads);
            if !tile.direct && tile.splits == 1 {
                let want = first.get_or_insert_with(|| grads.clone());
                assert!(
                    grads
                        .iter()
                        .zip(want.iter())
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{name}: {path} differs from tile {same_order}"
                );
            }
        }
    }
}

/// The gradients of the initial states of a model with recurrent dropout
/// outside training (masks off) are those of the same weights without it
/// (its backward adds the product's share to them through the mask kernel).
#[test]
fn gpu_state_gradients_of_a_model_with_recurrent_dropout_are_mask_free_outside_training() {
    let Some(gpu) =
        gpu("gpu_state_gradients_of_a_model_with_recurrent_dropout_are_mask_free_outside_training")
    else {
        return;
    };
    // A bidirectional GRU with lengths: its carry keeps z·dh besides the
    // product's share, and the reverse direction starts from slot T.
    let case = Case {
        layers: 2,
        bidirectional: true,
        lengths: true,
        ..Case::new(Cell::Gru)
    };
    let data = case.data(Loss::Ce, 4);
    let base = case.model(3);
    let cfg = base.config().clone().dropout(Dropout {
        recurrent: 0.3,
        ..SOME
    });
    let m = Model::from_params(cfg, base.params().to_vec()).unwrap();
    let plain = Model::from_params(
        m.config().clone().dropout(Dropout::default()),
        m.params().to_vec(),
    )
    .unwrap();
    let mut g = recurrent::gpu::GpuModel::new(gpu.clone(), &m).unwrap();
    let mut gp = recurrent::gpu::GpuModel::new(gpu.clone(), &plain).unwrap();
    let (l, p, s) = g.gradients_with_states(&data, Loss::Ce).unwrap();
    let (lp, pp, sp) = gp.gradients_with_states(&data, Loss::Ce).unwrap();
    assert_eq!(l.to_bits(), lp.to_bits());
    assert_eq!(p, pp);
    assert_eq!(s.h, sp.h);
    assert_eq!(s.c, sp.c);
    assert!(s.h.as_ref().unwrap().iter().any(|&v| v != 0.0));
}

/// Training steps with dropout on the GPU (both outputs, so the head's
/// masked copy of the final states and the masked sequence; with and
/// without recurrent dropout) follow the CPU
/// path's steps; the GPU's forward afterwards never drops: the same bits as
/// the same weights without dropout.
#[test]
fn gpu_training_with_dropout_follows_the_cpu_path_and_evaluation_never_drops() {
    let Some(gpu) =
        gpu("gpu_training_with_dropout_follows_the_cpu_path_and_evaluation_never_drops")
    else {
        return;
    };
    let with_recurrent = Dropout {
        recurrent: 0.25,
        ..SOME
    };
    for (output, d) in [
        (OutputMode::Last, SOME),
        (OutputMode::Sequence, SOME),
        (OutputMode::Last, with_recurrent),
        (OutputMode::Sequence, with_recurrent),
    ] {
        let (m, data) = small_with(output, d);
        let opts = StepOptions {
            loss: Loss::Ce,
            clip: None,
        };
        let mut g = recurrent::gpu::GpuModel::new(gpu.clone(), &m).unwrap();
        let mut c = m.clone();
        let (mut og, mut oc) = (Optimizer::adam(0.01), Optimizer::adam(0.01));
        for _ in 0..3 {
            g.train_step_sync(&data, &opts, &mut og).unwrap();
            c.train_step(&data, &opts, &mut oc).unwrap();
        }
        let trained = g.download().unwrap();
        assert_close(
            &format!("{output:?}: GPU vs CPU after 3 steps with dropout"),
            &trained,
            c.params(),
            TRAINED_WEIGHTS,
        );
        assert!(
            deviation(&trained, m.params()).max_abs > 1e-3,
            "{output:?}: nothing trained"
        );
        let out = g.forward(&data).unwrap();
        let plain_cfg = m.config().clone().dropout(Dropout::default());
        let plain = Model::from_params(plain_cfg, trained).unwrap();
        let mut gp = recurrent::gpu::GpuModel::new(gpu.clone(), &plain).unwrap();
        let want = gp.forward(&data).unwrap();
        assert!(
            out.data
                .iter()
                .zip(&want.data)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{output:?}: the GPU forward of a model with dropout differs from the same weights without"
        );
    }
}

/// `recurrent bench --recurrent-dropout P` times training steps with the
/// masks on, says so in its rows (`+rdrop`, `recurrent_dropout` in the
/// JSON) on both paths, and refuses a probability outside [0, 1).
#[test]
fn bench_times_recurrent_dropout_and_refuses_bad_probabilities() {
    let dir = temp_dir("dropout-bench");
    let mut devices = vec!["cpu"];
    if gpu("bench_times_recurrent_dropout_and_refuses_bad_probabilities").is_some() {
        devices.push("gpu");
    }
    for device in devices {
        let json = dir.join(format!("{device}.json"));
        let out = recurrent_cli(&[
            "bench",
            "--device",
            device,
            "--input",
            "3",
            "--hidden",
            "8",
            "--batch",
            "2",
            "--steps",
            "4",
            "--reps",
            "1",
            "--recurrent-dropout",
            "0.25",
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("+rdrop"),
            "{device}"
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(r["results"][0]["recurrent_dropout"], 0.25, "{device}");
    }
    let out = recurrent_cli(&[
        "bench",
        "--device",
        "cpu",
        "--recurrent-dropout",
        "1",
        "--reps",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside [0, 1)"));
}
