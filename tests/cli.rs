//! The command line from outside: the golden cases through `predict` and `train`.

mod common;
use common::*;
use recurrent::io::{checkpoint, st};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_recurrent"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "command failed: {text}");
    text
}

#[test]
fn predict_reproduces_pytorch_outputs() {
    let tmp = temp_dir("cli-predict");
    for case in [
        "lstm-2layer-bidir-seq-ce",
        "gru-bidir-lengths-seq-ce",
        "embed-lstm-lengths-last-ce",
        "lstm-states-2layer-bidir-lengths-seq-mse",
        "gru-states-last-ce",
    ] {
        let dir = golden_dir().join(case);
        let out = tmp.join(format!("{case}.safetensors"));
        run(bin()
            .args(["predict", "--device", "cpu", "--model"])
            .arg(dir.join("model.safetensors"))
            .arg("--data")
            .arg(dir.join("data.safetensors"))
            .arg("--output")
            .arg(&out));
        let got = st::read(&out).unwrap();
        let want = st::read(&dir.join("expected.safetensors")).unwrap();
        assert_eq!(got.tensors["output"].shape, want.tensors["output"].shape);
        assert_close(
            case,
            &got.tensors["output"].floats("", "output").unwrap(),
            &want.tensors["output"].floats("", "output").unwrap(),
            GOLDEN_OUTPUT,
        );
        final_states_match(case, &got, &want);
    }
}

/// `predict` wrote `h_n` (and `c_n` for LSTM) as the case expects, where the
/// case has them (those with initial states).
fn final_states_match(case: &str, got: &st::File, want: &st::File) {
    assert!(
        got.tensors.contains_key("h_n"),
        "{case}: predict wrote no h_n"
    );
    for name in ["h_n", "c_n"] {
        let Some(w) = want.tensors.get(name) else {
            continue;
        };
        let g = &got.tensors[name];
        assert_eq!(g.shape, w.shape, "{case}: {name} shape");
        assert_close(
            &format!("{case} {name}"),
            &g.floats("", name).unwrap(),
            &w.floats("", name).unwrap(),
            GOLDEN_OUTPUT,
        );
    }
}

/// Trains a golden case's model for one epoch in file order through the CLI on
/// `device`, then checks every weight against PyTorch's `after-{opt}` file.
fn golden_epoch_matches_pytorch(case: &str, device: &str, opt: &str, tmp: &std::path::Path) {
    let dir = golden_dir().join(case);
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let lr = if opt == "sgd" {
        c["lr_sgd"].to_string()
    } else {
        c["lr_adam"].to_string()
    };
    let save = tmp.join(format!("{case}-{device}-{opt}.safetensors"));
    let text = run(bin()
        .args([
            "train",
            "--device",
            device,
            "--no-shuffle",
            "--epochs",
            "1",
            "--loss",
            c["loss"].as_str().unwrap(),
            "--optimizer",
            opt,
            "--lr",
            &lr,
            "--batch-size",
            &c["batch"].to_string(),
            "--model",
        ])
        .arg(dir.join("model.safetensors"))
        .arg("--data")
        .arg(dir.join("data.safetensors"))
        .arg("--save")
        .arg(&save));
    assert!(text.contains("epoch 1/1"), "{text}");
    let got = checkpoint::load(&save).unwrap();
    let want = st::read(&dir.join(format!("after-{opt}.safetensors"))).unwrap();
    for e in &got.layout().entries {
        assert_close(
            &format!("{device} {case} {opt} {}", e.name),
            &got.params()[e.range()],
            &want.tensors[&e.name].floats("", "").unwrap(),
            GOLDEN_WEIGHTS,
        );
    }
}

#[test]
fn train_one_epoch_in_file_order_reproduces_pytorch_weights() {
    let tmp = temp_dir("cli-train");
    for (case, opt) in [
        ("lstm-last-ce", "sgd"),
        ("rnn-tanh-seq-mse", "adam"),
        ("gru-bidir-lengths-seq-ce", "sgd"),
        ("lstm-states-2layer-bidir-lengths-seq-mse", "adam"),
        ("gru-states-last-ce", "sgd"),
    ] {
        golden_epoch_matches_pytorch(case, "cpu", opt, &tmp);
    }
}

#[test]
fn train_resume_continues_a_fit_bit_for_bit() {
    // 3 epochs straight vs 1 epoch then --resume to 3 (Adam with momentum
    // state, shuffled batches): the saved weights are the same bits.
    let tmp = temp_dir("cli-resume");
    let data = golden_dir().join("gru-last-ce/data.safetensors");
    let train = |epochs: &str, ckpt: &str, save: &str, resume: bool| {
        let mut c = bin();
        c.args([
            "train",
            "--loss",
            "ce",
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--batch-size",
            "2",
            "--seed",
            "3",
            "--device",
            "cpu",
            "--epochs",
            epochs,
            "--data",
        ])
        .arg(&data);
        if resume {
            c.arg("--resume").arg(tmp.join(ckpt));
        } else {
            c.args(["--cell", "lstm", "--hidden", "6", "--out-features", "3"]);
        }
        c.arg("--checkpoint")
            .arg(tmp.join(ckpt))
            .arg("--save")
            .arg(tmp.join(save));
        run(&mut c)
    };
    train(
        "3",
        "straight.safetensors",
        "straight-final.safetensors",
        false,
    );
    train("1", "part.safetensors", "part-final.safetensors", false);
    let text = train("3", "part.safetensors", "resumed-final.safetensors", true);
    assert!(
        text.contains("epoch 2/3") && !text.contains("epoch 1/3"),
        "{text}"
    );
    let a = checkpoint::load(tmp.join("straight-final.safetensors")).unwrap();
    let b = checkpoint::load(tmp.join("resumed-final.safetensors")).unwrap();
    let c = checkpoint::load(tmp.join("part-final.safetensors")).unwrap();
    let bits = |m: &recurrent::Model| m.params().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&a),
        bits(&b),
        "resumed weights differ from the uninterrupted fit"
    );
    assert_ne!(bits(&a), bits(&c), "the resumed part trained further");
}

#[test]
fn train_new_model_from_flags_then_evaluate() {
    let tmp = temp_dir("cli-new");
    let data = golden_dir().join("lstm-2layer-bidir-seq-ce/data.safetensors");
    let save = tmp.join("m.safetensors");
    run(bin()
        .args([
            "train",
            "--cell",
            "gru",
            "--hidden",
            "8",
            "--layers",
            "2",
            "--bidirectional",
            "--output",
            "sequence",
            "--out-features",
            "4",
            "--loss",
            "ce",
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--batch-size",
            "2",
            "--epochs",
            "3",
            "--seed",
            "7",
            "--device",
            "cpu",
            "--data",
        ])
        .arg(&data)
        .arg("--validation")
        .arg(&data)
        .arg("--save")
        .arg(&save));
    let m = checkpoint::load(&save).unwrap();
    assert_eq!(m.config().hidden, 8);
    assert!(m.config().bidirectional);
    let text = run(bin()
        .args(["evaluate", "--device", "cpu", "--loss", "ce", "--model"])
        .arg(&save)
        .arg("--data")
        .arg(&data));
    assert!(text.contains("accuracy"), "{text}");
}

#[test]
fn bad_input_fails_with_a_message_not_a_panic() {
    let tmp = temp_dir("cli-bad");
    let golden = golden_dir();
    // Data of the wrong width for the model.
    let out = bin()
        .args(["predict", "--device", "cpu", "--model"])
        .arg(golden.join("lstm-last-ce/model.safetensors"))
        .arg("--data")
        .arg(golden.join("gru-last-ce/data.safetensors"))
        .arg("--output")
        .arg(tmp.join("o.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("error: x: expected shape [N, T, 5]"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A truncated checkpoint.
    let bytes = std::fs::read(golden.join("lstm-last-ce/model.safetensors")).unwrap();
    std::fs::write(tmp.join("cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let out = bin()
        .args(["predict", "--model"])
        .arg(tmp.join("cut.safetensors"))
        .arg("--data")
        .arg(golden.join("lstm-last-ce/data.safetensors"))
        .arg("--output")
        .arg(tmp.join("o.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a valid safetensors file"), "{err}");
    // A bad flag value.
    let out = bin()
        .args([
            "train",
            "--cell",
            "lstm",
            "--hidden",
            "4",
            "--out-features",
            "3",
            "--loss",
            "ce",
            "--batch-size",
            "0",
            "--save",
            "x.safetensors",
            "--data",
        ])
        .arg(golden.join("lstm-last-ce/data.safetensors"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch-size must be at least 1"));
}

#[test]
fn golden_cases_through_the_cli_on_the_gpu() {
    if gpu("golden_cases_through_the_cli_on_the_gpu").is_none() {
        return;
    }
    let tmp = temp_dir("cli-gpu");
    for case in [
        "lstm-2layer-bidir-seq-ce",
        "gru-bidir-lengths-seq-ce",
        "rnn-tanh-seq-mse",
        "embed-lstm-lengths-last-ce",
        "lstm-states-2layer-bidir-lengths-seq-mse",
        "gru-states-last-ce",
    ] {
        let dir = golden_dir().join(case);
        let out = tmp.join(format!("{case}.safetensors"));
        let text = run(bin()
            .args(["predict", "--device", "gpu", "--model"])
            .arg(dir.join("model.safetensors"))
            .arg("--data")
            .arg(dir.join("data.safetensors"))
            .arg("--output")
            .arg(&out));
        assert!(text.contains("device: gpu"), "{text}");
        let got = st::read(&out).unwrap();
        let want = st::read(&dir.join("expected.safetensors")).unwrap();
        assert_close(
            &format!("gpu {case}"),
            &got.tensors["output"].floats("", "output").unwrap(),
            &want.tensors["output"].floats("", "output").unwrap(),
            GOLDEN_OUTPUT,
        );
        final_states_match(&format!("gpu {case}"), &got, &want);
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        // evaluate prints the same loss on both paths (printed to 6 decimals).
        let eval = |device: &str| -> f32 {
            let text = run(bin()
                .args([
                    "evaluate",
                    "--device",
                    device,
                    "--loss",
                    c["loss"].as_str().unwrap(),
                    "--model",
                ])
                .arg(dir.join("model.safetensors"))
                .arg("--data")
                .arg(dir.join("data.safetensors")));
            let line = text
                .lines()
                .find(|l| l.starts_with("loss "))
                .unwrap_or_else(|| panic!("no loss line in {text}"));
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        assert_close(
            &format!("{case} evaluate gpu vs cpu"),
            &[eval("gpu")],
            &[eval("cpu")],
            PRINTED_LOSS,
        );
        for opt in ["sgd", "adam"] {
            golden_epoch_matches_pytorch(case, "gpu", opt, &tmp);
        }
    }
}

#[test]
fn info_lists_adapters_and_the_auto_choice() {
    let text = run(bin().arg("info"));
    assert!(
        text.contains("cpu path:") && text.contains("--device auto picks:"),
        "{text}"
    );
}

#[test]
fn bench_profile_on_the_cpu_path_is_an_argument_error() {
    let out = bin()
        .args(["bench", "--device", "cpu", "--profile", "--reps", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("error: invalid argument: --profile") && err.contains("--device gpu"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `bench --profile` on the GPU: the per-kernel table after the size's row and
/// the same in the JSON, covering every dispatch of the training step once.
/// The shape is `gpu_parity`'s dispatch-count case (2-layer LSTM, T=28, B=8):
/// 131 dispatches with the fixed GEMM choice (`RECURRENT_AUTOTUNE=0`: tuning
/// could split a GEMM over K, one more dispatch, differently in each process).
/// Adapters without timestamp queries get the typed error (`gpu_limits`
/// checks that path on a device opened without them).
#[test]
fn bench_profile_times_every_dispatch_of_a_training_step() {
    let Some(ctx) = gpu("bench_profile_times_every_dispatch_of_a_training_step") else {
        return;
    };
    let tmp = temp_dir("cli-bench-profile");
    let json = tmp.join("profile.json");
    let mut cmd = bin();
    cmd.env("RECURRENT_AUTOTUNE", "0")
        .args(["bench", "--device", "gpu", "--profile"])
        .args(DISPATCH_CASE_ARGS)
        .arg("--json")
        .arg(&json);
    if !ctx.has_timestamps() {
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("has no timestamp queries"), "{err}");
        eprintln!(
            "(no TIMESTAMP_QUERY on {}: the error path was checked)",
            ctx.describe()
        );
        return;
    }
    let text = run(&mut cmd);
    // The step's dispatch count, from the library, for the bench's model
    // (one output, as `bench` builds it).
    let cfg = recurrent::ModelConfig::new(recurrent::Cell::Lstm, 28, 32, 1).layers(2);
    let model = recurrent::Model::new(cfg, &recurrent::Init::seed(1)).unwrap();
    let mut g = recurrent::gpu::GpuModel::new(ctx.ctx.clone(), &model).unwrap();
    // The bench computes layer 0's input gradient too: one GEMM more.
    g.set_input_gradient(true);
    let was = ctx.set_autotune(false);
    let want = g.dispatches_per_step(8, 28);
    ctx.set_autotune(was);
    let want = want.unwrap();
    assert_eq!(
        want, 132,
        "gpu_parity's dispatch count (131) and dX of layer 0"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &report["results"][0];
    for field in [
        "device",
        "adapter",
        "cell",
        "input",
        "hidden",
        "batch",
        "steps",
        "layers",
        "forward_ms",
        "train_ms",
        "gflops",
    ] {
        assert!(!r[field].is_null(), "documented field {field} missing: {r}");
    }
    let profile = r["profile"].as_array().expect("a profile array");
    assert!(!profile.is_empty());
    let mut dispatches = 0;
    for k in profile {
        let us = k["total_us"].as_f64().unwrap();
        assert!(us.is_finite() && us >= 0.0, "{k}");
        let n = k["dispatches"].as_u64().unwrap() as usize;
        assert!(n >= 1, "{k}");
        dispatches += n;
        assert!(!k["kernel"].as_str().unwrap().is_empty(), "{k}");
    }
    assert_eq!(dispatches, want, "every dispatch timed once: {profile:?}");
    let row = |kernel: &str, label: &str| {
        profile
            .iter()
            .find(|k| k["kernel"] == kernel && k["label"] == label)
            .unwrap_or_else(|| panic!("no {kernel} as {label} in {profile:?}"))["dispatches"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(row("lstm_step_backward", "lstm.l1.step_backward"), 28);
    assert_eq!(row("lstm_step_forward", "lstm.l0.step_forward"), 28);
    assert_eq!(row("grad_norm_finish", "optim.grad_norm"), 1);
    // The printed table: a header, then one line per JSON entry.
    assert!(
        text.contains(&format!("{want} dispatches")) && text.contains("share"),
        "{text}"
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("lstm_step_backward") && l.contains("lstm.l1.step_backward"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let cols: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(cols[2], "28", "{text}");
    let share: f64 = cols[4].trim_end_matches('%').parse().unwrap();
    assert!((0.0..=100.0).contains(&share), "{text}");
}

/// `bench --show-tuning`: every GEMM of the training step with its tile
/// configuration, printed under the size's row and in the JSON as `tuning`
/// (the documented fields unchanged); `RECURRENT_AUTOTUNE=0` gives the fixed
/// choice, unmeasured; `--device cpu` refuses the flag.
#[test]
fn bench_show_tuning_lists_every_gemm_with_its_configuration() {
    let out = bin()
        .args(["bench", "--device", "cpu", "--show-tuning", "--reps", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--show-tuning") && err.contains("--device gpu"),
        "{err}"
    );
    if gpu("bench_show_tuning_lists_every_gemm_with_its_configuration").is_none() {
        return;
    }
    let tmp = temp_dir("cli-bench-tuning");
    for tune in [false, true] {
        let json = tmp.join(format!("tuning-{tune}.json"));
        let mut cmd = bin();
        if tune {
            cmd.env("RECURRENT_AUTOTUNE", "1");
        } else {
            cmd.env_remove("RECURRENT_AUTOTUNE");
        }
        cmd.env_remove("RECURRENT_STEP_TILE");
        cmd.args(["bench", "--device", "gpu", "--show-tuning"])
            .args(DISPATCH_CASE_ARGS)
            .arg("--json")
            .arg(&json);
        let text = run(&mut cmd);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let r = &report["results"][0];
        for field in ["device", "adapter", "forward_ms", "train_ms", "gflops"] {
            assert!(!r[field].is_null(), "documented field {field} missing: {r}");
        }
        assert!(r["profile"].is_null(), "{r}");
        let tuning = r["tuning"].as_array().expect("a tuning array");
        // 2 input projections + head; head backward 2; 2 x 2 weight gradients;
        // dX of layer 1, and of layer 0 (the bench computes the input gradient).
        assert_eq!(tuning.len(), 11, "{tuning:?}");
        for g in tuning {
            let decision = g["decision"].as_str().unwrap();
            let config = g["config"].as_str().unwrap();
            assert!(config.starts_with("gemm"), "{g}");
            assert!(
                g["m"].as_u64().unwrap() > 0 && g["k"].as_u64().unwrap() > 0,
                "{g}"
            );
            if tune {
                assert!(
                    ["measured", "single", "too-large"].contains(&decision),
                    "{g}"
                );
                if decision == "measured" {
                    let us = g["us"].as_f64().expect("a measured time");
                    assert!(us.is_finite() && us >= 0.0, "{g}");
                    assert!(g["candidates"].as_u64().unwrap() >= 2, "{g}");
                }
            } else {
                assert_eq!(decision, "fixed", "{g}");
                assert!(g["us"].is_null(), "{g}");
            }
            let label = g["label"].as_str().unwrap();
            assert!(
                text.lines()
                    .any(|l| l.contains(label) && l.contains(config) && l.contains(decision)),
                "{label} {config} {decision} not printed:\n{text}"
            );
        }
        assert!(text.contains("GEMM tiles of one training step"), "{text}");
        // The step kernels' tile: measured with tuning on (several candidates
        // fit this small model), the adapter's default without.
        let st = &r["step_tile"];
        let decision = st["decision"].as_str().expect("a step tile decision");
        let cands = st["candidates"].as_array().unwrap();
        if tune {
            assert_eq!(decision, "measured", "{st}");
            assert!(cands.len() >= 2, "{st}");
            let ms = st["ms"].as_f64().expect("a measured time");
            assert!(
                cands
                    .iter()
                    .any(|c| c["tile"] == st["tile"] && c["ms"] == ms),
                "{st}"
            );
        } else {
            assert_eq!(decision, "fixed", "{st}");
            assert!(cands.is_empty() && st["ms"].is_null(), "{st}");
        }
        let line = format!(
            "step kernel tile (units,rows,chunk,rb[,sk[,direct]][,ub=N][,persist[=P]]): {} ({decision}",
            st["tile"].as_str().unwrap()
        );
        assert!(text.contains(&line), "{line} not printed:\n{text}");
        eprintln!("{text}");
    }
}

/// `bench --f16` (and `RECURRENT_GPU_F16=1`): the GPU rows say `gpu+f16` in the
/// table and `"f16_weights": true` in the JSON; rows without it carry no such
/// field. On the CPU path `--f16` is an argument error, for bench and train.
#[test]
fn bench_f16_marks_its_rows_and_needs_the_gpu() {
    for cmd in ["bench", "train"] {
        let out = bin()
            .args([cmd, "--device", "cpu", "--f16"])
            .args(if cmd == "bench" {
                &["--reps", "1"][..]
            } else {
                &[
                    "--data",
                    "none.safetensors",
                    "--cell",
                    "lstm",
                    "--hidden",
                    "4",
                    "--output",
                    "last",
                    "--out-features",
                    "2",
                    "--loss",
                    "ce",
                    "--optimizer",
                    "sgd",
                    "--lr",
                    "0.1",
                    "--batch-size",
                    "2",
                    "--epochs",
                    "1",
                    "--save",
                    "none-out.safetensors",
                ][..]
            })
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}: {err}");
        assert!(
            err.contains("error: invalid argument:")
                && err.contains("f16")
                && err.contains("--device gpu"),
            "{cmd}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    if gpu("bench_f16_marks_its_rows_and_needs_the_gpu").is_none() {
        return;
    }
    let tmp = temp_dir("cli-bench-f16");
    let size = [
        "--hidden", "16", "--input", "4", "--batch", "3", "--steps", "5", "--reps", "1",
    ];
    for how in ["flag", "env", "off"] {
        let json = tmp.join(format!("f16-{how}.json"));
        let mut cmd = bin();
        cmd.env_remove("RECURRENT_GPU_F16")
            .args(["bench", "--device", "gpu"])
            .args(size)
            .arg("--json")
            .arg(&json);
        match how {
            "flag" => {
                cmd.arg("--f16");
            }
            "env" => {
                cmd.env("RECURRENT_GPU_F16", "1");
            }
            _ => {}
        }
        let text = run(&mut cmd);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let r = &report["results"][0];
        let on = how != "off";
        assert_eq!(text.contains("gpu+f16"), on, "{how}: {text}");
        assert_eq!(r["f16_weights"].as_bool(), on.then_some(true), "{how}: {r}");
        assert!(r["train_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
}

/// `predict` on a data file whose states do not fit the model: a clear
/// message, a failed exit, no output file.
#[test]
fn predict_refuses_states_that_do_not_fit() {
    let tmp = temp_dir("cli-bad-states");
    let dir = golden_dir().join("lstm-states-2layer-bidir-lengths-seq-mse");
    let data = recurrent::io::dataset::load(dir.join("data.safetensors")).unwrap();
    let mut bad = data.clone();
    bad.states.as_mut().unwrap().c0 = None; // an LSTM needs both
    let path = tmp.join("bad.safetensors");
    recurrent::io::dataset::save(&bad, &path).unwrap();
    let out = tmp.join("out.safetensors");
    let r = bin()
        .args(["predict", "--device", "cpu", "--model"])
        .arg(dir.join("model.safetensors"))
        .arg("--data")
        .arg(&path)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(err.contains("without c0"), "{err}");
    assert!(!out.exists(), "nothing is written");
}
