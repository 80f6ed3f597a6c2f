//! The optimizers against values printed by real `torch.optim` (PyTorch 2.11,
//! `tests/pytorch/optim_reference.py`, run on the GPU machine): momentum,
//! Nesterov, weight decay, Adam with non-default betas/eps/decay, 3 steps.

mod common;
use common::*;
use recurrent::{Optimizer, OptimizerKind};

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn optimizers_match_torch_optim() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pytorch/optim_reference.json");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let p0 = floats(&r["p0"]);
    let grads: Vec<Vec<f32>> = r["grads"].as_array().unwrap().iter().map(floats).collect();
    let cases = [
        (
            "sgd_momentum_wd",
            OptimizerKind::Sgd {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.01,
                nesterov: false,
            },
        ),
        (
            "sgd_nesterov",
            OptimizerKind::Sgd {
                lr: 0.1,
                momentum: 0.8,
                weight_decay: 0.0,
                nesterov: true,
            },
        ),
        (
            "adam_wd",
            OptimizerKind::Adam {
                lr: 0.01,
                beta1: 0.8,
                beta2: 0.99,
                eps: 1e-6,
                weight_decay: 0.1,
            },
        ),
        (
            "adam_default",
            OptimizerKind::Adam {
                lr: 0.001,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
        ),
    ];
    for (name, kind) in cases {
        let mut p = p0.clone();
        let mut opt = Optimizer::new(kind);
        for g in &grads {
            opt.update(&mut p, g);
        }
        let want = floats(&r[name]["after"]);
        assert_ne!(want, p0, "{name}: the reference moved the parameters");
        assert_close(name, &p, &want, OPTIM);
    }
}
