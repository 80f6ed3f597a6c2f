//! The PyTorch reference cases (`tests/golden`, made by `tests/golden/generate.py`)
//! on the CPU and GPU paths: outputs, losses, every weight after one epoch of
//! SGD and Adam, and in the cases with initial states the final states and
//! the gradients of the initial states.

mod common;
use common::*;
use recurrent::gpu::GpuModel;
use recurrent::io::{checkpoint, dataset, st};
use recurrent::{Dataset, Loss, Model, Optimizer, States, StepOptions};

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

/// The final states and the gradients of the initial states against the
/// case's `h_n`, `c_n`, `grad_h0`, `grad_c0` (cases with states); returns the
/// largest deviation. `path` names the path in messages.
fn check_states(c: &Case, path: &str, expected: &st::File, finals: &States, grads: &States) -> f32 {
    let mut worst = 0.0f32;
    for (name, got) in [
        ("h_n", &finals.h),
        ("c_n", &finals.c),
        ("grad_h0", &grads.h),
        ("grad_c0", &grads.c),
    ] {
        let Some(want) = expected.tensors.get(name) else {
            assert!(
                got.is_none(),
                "{} {path}: {name} computed, but the cell has none",
                c.name
            );
            continue;
        };
        let got = got
            .as_ref()
            .unwrap_or_else(|| panic!("{} {path}: no {name}", c.name));
        worst = worst.max(
            assert_close(
                &format!("{} {path} {name}", c.name),
                got,
                &want.floats("golden", name).unwrap(),
                GOLDEN_OUTPUT,
            )
            .max_abs,
        );
    }
    worst
}

/// One epoch in file order, batches of `c.batch` (each with its own rows
/// of the initial states), through `step`; returns the per-batch losses.
fn epoch(
    c: &Case,
    data: &Dataset,
    mut step: impl FnMut(&Dataset, &StepOptions) -> f32,
) -> Vec<f32> {
    let opts = StepOptions {
        loss: c.loss,
        clip: None,
    };
    (0..data.len())
        .step_by(c.batch)
        .map(|start| step(&data.slice(start, (start + c.batch).min(data.len())), &opts))
        .collect()
}

/// The per-batch losses and every weight after an epoch against `after`.
fn check_after(
    c: &Case,
    path: &str,
    opt: &str,
    losses: &[f32],
    params: &Model,
    after: &st::File,
) -> (f32, f32) {
    let o = assert_close(
        &format!("{} {path} {opt} per-batch losses", c.name),
        losses,
        &tensor(after, "loss"),
        GOLDEN_OUTPUT,
    )
    .max_abs;
    let mut w = 0.0f32;
    for e in &params.layout().entries {
        w = w.max(
            assert_close(
                &format!("{} {path} {opt} {}", c.name, e.name),
                &params.params()[e.range()],
                &tensor(after, &e.name),
                GOLDEN_WEIGHTS,
            )
            .max_abs,
        );
    }
    (o, w)
}

/// The case on the GPU path, as [`run_case`] on the CPU: returns the largest
/// deviations (output, loss and states; weights).
fn run_case_gpu(c: &Case, ctx: &std::sync::Arc<recurrent::gpu::GpuContext>) -> (f32, f32) {
    let dir = golden_dir().join(&c.name);
    let model = checkpoint::load(dir.join("model.safetensors")).unwrap();
    let data = dataset::load(dir.join("data.safetensors")).unwrap();
    let expected = st::read(&dir.join("expected.safetensors")).unwrap();
    let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
    let (out, finals) = g.forward_states(&data).unwrap();
    let mut worst_out = assert_close(
        &format!("{} gpu output", c.name),
        &out.data,
        &tensor(&expected, "output"),
        GOLDEN_OUTPUT,
    )
    .max_abs;
    let (loss, _, grads) = g.gradients_with_states(&data, c.loss).unwrap();
    worst_out = worst_out.max(
        assert_close(
            &format!("{} gpu loss", c.name),
            &[loss],
            &tensor(&expected, "loss"),
            GOLDEN_OUTPUT,
        )
        .max_abs,
    );
    if data.states.is_some() {
        worst_out = worst_out.max(check_states(c, "gpu", &expected, &finals, &grads));
    }
    let mut worst_w = 0.0f32;
    for (opt_name, mut opt) in [
        ("sgd", Optimizer::sgd(c.lr_sgd)),
        ("adam", Optimizer::adam(c.lr_adam)),
    ] {
        let after = st::read(&dir.join(format!("after-{opt_name}.safetensors"))).unwrap();
        let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
        let losses = epoch(c, &data, |b, opts| {
            g.train_step_sync(b, opts, &mut opt).unwrap().loss
        });
        let mut m = model.clone();
        g.download_into(&mut m).unwrap();
        let (o, w) = check_after(c, "gpu", opt_name, &losses, &m, &after);
        worst_out = worst_out.max(o);
        worst_w = worst_w.max(w);
    }
    (worst_out, worst_w)
}

/// Returns the largest deviation seen (output, loss and states; weights).
fn run_case(c: &Case) -> (f32, f32) {
    let dir = golden_dir().join(&c.name);
    let model = checkpoint::load(dir.join("model.safetensors")).unwrap();
    let data = dataset::load(dir.join("data.safetensors")).unwrap();
    let expected = st::read(&dir.join("expected.safetensors")).unwrap();
    let (out, finals) = model.forward_states(&data).unwrap();
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
    let (loss, _, grads) = model
        .gradients_with_states(&data, c.loss, &States::default())
        .unwrap();
    worst_out = worst_out.max(
        assert_close(
            &format!("{} loss", c.name),
            &[loss],
            &tensor(&expected, "loss"),
            GOLDEN_OUTPUT,
        )
        .max_abs,
    );
    if data.states.is_some() {
        worst_out = worst_out.max(check_states(c, "cpu", &expected, &finals, &grads));
    }
    let mut worst_w = 0.0f32;
    for (opt_name, mut opt) in [
        ("sgd", Optimizer::sgd(c.lr_sgd)),
        ("adam", Optimizer::adam(c.lr_adam)),
    ] {
        let after = st::read(&dir.join(format!("after-{opt_name}.safetensors"))).unwrap();
        let mut m: Model = model.clone();
        let losses = epoch(c, &data, |b, opts| {
            m.train_step(b, opts, &mut opt).unwrap().loss
        });
        let (o, w) = check_after(c, "cpu", opt_name, &losses, &m, &after);
        worst_out = worst_out.max(o);
        worst_w = worst_w.max(w);
    }
    (worst_out, worst_w)
}

#[test]
fn every_golden_case_matches_pytorch_on_cpu() {
    let cases = cases();
    assert_eq!(cases.len(), 8, "all eight reference cases are present");
    assert_eq!(
        cases.iter().filter(|c| c.name.contains("states")).count(),
        2,
        "two of them start from given states"
    );
    for c in &cases {
        let (o, w) = run_case(c);
        println!(
            "{:<42} largest deviation: output/loss/states {o:.3e}, weights {w:.3e}",
            c.name
        );
    }
}

#[test]
fn every_golden_case_matches_pytorch_on_gpu() {
    let Some(ctx) = gpu("every_golden_case_matches_pytorch_on_gpu") else {
        return;
    };
    for c in &cases() {
        let (o, w) = run_case_gpu(c, &ctx);
        println!(
            "{:<42} gpu largest deviation: output/loss/states {o:.3e}, weights {w:.3e}",
            c.name
        );
    }
}

/// The cases with states under the step tiles that read and write the state
/// slots their own way — persistent (every step in one dispatch), direct,
/// K split — and with the f16 copy of W_hh: the final states and the
/// gradients of the initial states still match PyTorch's (the f16 copy
/// within its own tolerance).
#[test]
fn the_state_cases_hold_under_every_kind_of_step_tile_on_gpu() {
    use recurrent::gpu::StepTile;
    let Some(ctx) = gpu("the_state_cases_hold_under_every_kind_of_step_tile_on_gpu") else {
        return;
    };
    let tiles = [
        StepTile::new(8, 4, 8, 1).persist(),
        StepTile::direct(8, 2, 7, 4, 4),
        StepTile {
            splits: 2,
            ..StepTile::new(8, 4, 16, 2)
        },
    ];
    for c in cases().iter().filter(|c| c.name.contains("states")) {
        let dir = golden_dir().join(&c.name);
        let model = checkpoint::load(dir.join("model.safetensors")).unwrap();
        let data = dataset::load(dir.join("data.safetensors")).unwrap();
        let expected = st::read(&dir.join("expected.safetensors")).unwrap();
        for (tile, f16) in tiles.iter().map(|&t| (t, false)).chain([(tiles[0], true)]) {
            let mut g = GpuModel::with_f16_weights(ctx.clone(), &model, f16).unwrap();
            g.set_step_tile(tile).unwrap();
            let (out, finals) = g.forward_states(&data).unwrap();
            let (_, _, grads) = g.gradients_with_states(&data, c.loss).unwrap();
            let path = format!("gpu tile {tile} f16={f16}");
            if f16 {
                // W_hh rounded to f16: F16_WEIGHTS, for the states and their gradients too.
                assert_close(&path, &out.data, &tensor(&expected, "output"), F16_WEIGHTS);
                for (name, got) in [
                    ("h_n", &finals.h),
                    ("c_n", &finals.c),
                    ("grad_h0", &grads.h),
                    ("grad_c0", &grads.c),
                ] {
                    if expected.tensors.contains_key(name) {
                        let want = tensor(&expected, name);
                        assert_close(
                            &format!("{path} {name}"),
                            got.as_ref().unwrap(),
                            &want,
                            F16_WEIGHTS,
                        );
                    }
                }
                continue;
            }
            assert_close(
                &path,
                &out.data,
                &tensor(&expected, "output"),
                GOLDEN_OUTPUT,
            );
            check_states(c, &path, &expected, &finals, &grads);
        }
    }
}
