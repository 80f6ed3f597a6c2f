//! The PyTorch reference cases (`tests/golden`, made by `tests/golden/generate.py`)
//! on the CPU path: outputs, losses, and every weight after one epoch of SGD and Adam.

mod common;
use common::*;
use recurrent::io::{checkpoint, dataset, st};
use recurrent::{Loss, Model, Optimizer, StepOptions};

struct Case {
    name: String,
    loss: Loss,
    batch: usize,
    lr_sgd: f32,
    lr_adam: f32,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(golden_dir().join("cases.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().into(),
            loss: Loss::parse(c["loss"].as_str().unwrap()).unwrap(),
            batch: c["batch"].as_u64().unwrap() as usize,
            lr_sgd: c["lr_sgd"].as_f64().unwrap() as f32,
            lr_adam: c["lr_adam"].as_f64().unwrap() as f32,
        })
        .collect()
}

fn tensor(file: &st::File, name: &str) -> Vec<f32> {
    file.tensors[name].floats("golden", name).unwrap()
}

/// Returns the largest deviation seen (output, loss, weights).
fn run_case(c: &Case) -> (f32, f32) {
    let dir = golden_dir().join(&c.name);
    let model = checkpoint::load(dir.join("model.safetensors")).unwrap();
    let data = dataset::load(dir.join("data.safetensors")).unwrap();
    let expected = st::read(&dir.join("expected.safetensors")).unwrap();
    let out = model.forward(&data).unwrap();
    assert_eq!(
        out.shape, expected.tensors["output"].shape,
        "{}: output shape",
        c.name
    );
    let mut worst_out = assert_close(
        &format!("{} output", c.name),
        &out.data,
        &tensor(&expected, "output"),
        GOLDEN_OUTPUT,
    )
    .max_abs;
    let (loss, _) = model.loss_and_gradients(&data, c.loss).unwrap();
    worst_out = worst_out.max(
        assert_close(
            &format!("{} loss", c.name),
            &[loss],
            &tensor(&expected, "loss"),
            GOLDEN_OUTPUT,
        )
        .max_abs,
    );
    let mut worst_w = 0.0f32;
    for (opt_name, mut opt) in [
        ("sgd", Optimizer::sgd(c.lr_sgd)),
        ("adam", Optimizer::adam(c.lr_adam)),
    ] {
        let after = st::read(&dir.join(format!("after-{opt_name}.safetensors"))).unwrap();
        let mut m: Model = model.clone();
        let opts = StepOptions {
            loss: c.loss,
            clip: None,
        };
        let mut losses = Vec::new();
        for start in (0..data.len()).step_by(c.batch) {
            let batch = data.slice(start, (start + c.batch).min(data.len()));
            losses.push(m.train_step(&batch, &opts, &mut opt).unwrap().loss);
        }
        worst_out = worst_out.max(
            assert_close(
                &format!("{} {opt_name} per-batch losses", c.name),
                &losses,
                &tensor(&after, "loss"),
                GOLDEN_OUTPUT,
            )
            .max_abs,
        );
        for e in &m.layout().entries {
            let got = &m.params()[e.range()];
            worst_w = worst_w.max(
                assert_close(
                    &format!("{} {opt_name} {}", c.name, e.name),
                    got,
                    &tensor(&after, &e.name),
                    GOLDEN_WEIGHTS,
                )
                .max_abs,
            );
        }
    }
    (worst_out, worst_w)
}

#[test]
fn every_golden_case_matches_pytorch_on_cpu() {
    let cases = cases();
    assert_eq!(cases.len(), 6, "all six reference cases are present");
    for c in &cases {
        let (o, w) = run_case(c);
        println!(
            "{:<28} largest deviation: output/loss {o:.3e}, weights {w:.3e}",
            c.name
        );
    }
}
