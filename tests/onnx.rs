//! ONNX export, run by an ONNX runtime that is not ours: Sonos' tract
//! (`tract-onnx`) runs every exported file and must give what PyTorch gave
//! (`tests/golden`) and what our CPU path gives (random shapes).
//!
//! tract (0.23) refuses a non-constant `sequence_lens` and ignores the RNN
//! operator's `activations`, so files with lengths and ReLU RNNs are run here
//! in the `scan` recurrence only; `tests/onnx/check_onnxruntime.py` runs both
//! recurrences of every case in ONNX Runtime.

mod common;
use common::*;
use recurrent::io::{checkpoint, dataset, st};
use recurrent::onnx::{self, ExportOptions, Recurrence};
use recurrent::{Cell, Dataset, Inputs, Loss, Model, OutputMode};
use tract_onnx::prelude::*;

/// The outputs of one run: `output`, then `h_n` and `c_n` when exported.
struct Run {
    output: (Vec<usize>, Vec<f32>),
    h_n: Option<Vec<f32>>,
    c_n: Option<Vec<f32>>,
}

/// The exported file's inputs for `data`, in the graph's order; with `states`
/// but no states in the data, zeros.
fn inputs(model: &Model, data: &Dataset, opts: &ExportOptions) -> Vec<Tensor> {
    let cfg = model.config();
    let mut v = Vec::new();
    let n = data.x.n();
    match &data.x {
        Inputs::Features { data, n, t, f } => {
            v.push(Tensor::from_shape(&[*n, *t, *f], data).unwrap())
        }
        Inputs::Tokens { ids, n, t } => v.push(Tensor::from_shape(&[*n, *t], ids).unwrap()),
    }
    if opts.lengths {
        let t = data.x.steps();
        let lengths: Vec<i64> = match &data.lengths {
            Some(l) => l.iter().map(|&l| l as i64).collect(),
            None => vec![t as i64; n],
        };
        v.push(Tensor::from_shape(&[n], &lengths).unwrap());
    }
    if opts.states {
        let dims = [cfg.layers * cfg.directions(), n, cfg.hidden];
        let zeros = vec![0.0f32; dims.iter().product()];
        let states = data.states.as_ref();
        let h0 = states
            .map(|s| s.h0.data.clone())
            .unwrap_or_else(|| zeros.clone());
        v.push(Tensor::from_shape(&dims, &h0).unwrap());
        if cfg.cell == Cell::Lstm {
            let c0 = states
                .and_then(|s| s.c0.as_ref())
                .map(|c| c.data.clone())
                .unwrap_or(zeros);
            v.push(Tensor::from_shape(&dims, &c0).unwrap());
        }
    }
    v
}

/// Exports `model` with `opts`, loads the bytes in tract with the inputs'
/// concrete shapes and runs it on `data`.
fn run_tract(model: &Model, data: &Dataset, opts: &ExportOptions) -> Run {
    let bytes = onnx::to_bytes(model, opts).unwrap();
    let inputs = inputs(model, data, opts);
    let mut graph = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap_or_else(|e| panic!("tract cannot read the export: {e:?}"));
    for (i, t) in inputs.iter().enumerate() {
        graph = graph
            .with_input_fact(i, InferenceFact::dt_shape(t.datum_type(), t.shape()))
            .unwrap();
    }
    let plan = graph
        .into_optimized()
        .unwrap_or_else(|e| panic!("tract cannot plan the export: {e:?}"))
        .into_runnable()
        .unwrap();
    let outs = plan
        .run(inputs.into_iter().map(|t| t.into()).collect())
        .unwrap_or_else(|e| panic!("tract cannot run the export: {e:?}"));
    let read = |t: &TValue| {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    };
    Run {
        output: (outs[0].shape().to_vec(), read(&outs[0])),
        h_n: outs.get(1).map(read),
        c_n: outs.get(2).map(read),
    }
}

/// The recurrences tract can run for a model and options (see the header;
/// also, tract 0.23.9's GRU operator fails with "xw not contiguous" when a
/// layer's input width is 1, as a stack of H = 1 has).
fn recurrences(model: &Model, opts: &ExportOptions) -> Vec<Recurrence> {
    let cfg = model.config();
    let relu = cfg.nonlinearity == recurrent::Nonlinearity::Relu && cfg.cell == Cell::Rnn;
    let narrow_gru = cfg.cell == Cell::Gru && (0..cfg.layers).any(|k| cfg.layer_input(k) == 1);
    if opts.lengths || relu || narrow_gru {
        vec![Recurrence::Scan]
    } else {
        vec![Recurrence::Operators, Recurrence::Scan]
    }
}

#[test]
fn every_golden_case_runs_in_tract_as_pytorch_computed_it() {
    let cases = std::fs::read_dir(golden_dir()).unwrap();
    let mut checked = 0;
    for entry in cases {
        let dir = entry.unwrap().path();
        if !dir.join("expected.safetensors").exists() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = checkpoint::load(dir.join("model.safetensors")).unwrap();
        let data = dataset::load(dir.join("data.safetensors")).unwrap();
        let expected = st::read(&dir.join("expected.safetensors")).unwrap();
        let want = |n: &str| expected.tensors[n].floats("golden", n).unwrap();
        let base = ExportOptions {
            lengths: data.lengths.is_some(),
            states: data.states.is_some(),
            ..ExportOptions::default()
        };
        for recurrence in recurrences(&model, &base) {
            let opts = ExportOptions {
                recurrence,
                ..base.clone()
            };
            let what = format!("{name} ({})", recurrence.name());
            let run = run_tract(&model, &data, &opts);
            assert_eq!(
                run.output.0, expected.tensors["output"].shape,
                "{what}: output shape"
            );
            assert_close(
                &format!("{what} output"),
                &run.output.1,
                &want("output"),
                GOLDEN_OUTPUT,
            );
            if opts.states {
                let h = run.h_n.as_ref().expect("h_n exported");
                assert_close(&format!("{what} h_n"), h, &want("h_n"), GOLDEN_OUTPUT);
                if model.config().cell == Cell::Lstm {
                    let c = run.c_n.as_ref().expect("c_n exported");
                    assert_close(&format!("{what} c_n"), c, &want("c_n"), GOLDEN_OUTPUT);
                }
            }
            checked += 1;
        }
    }
    // 8 cases; the 4 without lengths in both recurrences.
    assert!(
        checked >= 12,
        "only {checked} exports checked: golden cases missing?"
    );
}

/// Random shapes, against our CPU path: T = 1, B = 1, H not a multiple of
/// anything, ReLU, embeddings, stacks, both directions, lengths and states.
#[test]
fn random_shapes_run_in_tract_as_the_cpu_path_computes_them() {
    let mut shapes = Vec::new();
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        shapes.push(Case {
            steps: 1,
            batch: 1,
            hidden: 13,
            ..Case::new(cell)
        });
        shapes.push(Case {
            layers: 2,
            bidirectional: true,
            output: OutputMode::Sequence,
            lengths: true,
            hidden: 11,
            steps: 9,
            batch: 5,
            ..Case::new(cell)
        });
        shapes.push(Case {
            bidirectional: true,
            lengths: true,
            vocab: Some(17),
            input: 6,
            hidden: 7,
            steps: 5,
            batch: 3,
            ..Case::new(cell)
        });
        shapes.push(Case {
            layers: 3,
            hidden: 1,
            steps: 4,
            batch: 2,
            ..Case::new(cell)
        });
    }
    shapes.push(Case {
        relu: true,
        bidirectional: true,
        hidden: 9,
        ..Case::new(Cell::Rnn)
    });
    shapes.push(Case {
        relu: true,
        lengths: true,
        output: OutputMode::Sequence,
        ..Case::new(Cell::Rnn)
    });
    for (i, case) in shapes.iter().enumerate() {
        let model = case.model(100 + i as u64);
        let data = case.data(Loss::Mse, 200 + i as u64);
        let (want, finals) = model.forward_states(&data).unwrap();
        for states in [false, true] {
            let base = ExportOptions {
                lengths: case.lengths,
                states,
                ..ExportOptions::default()
            };
            for recurrence in recurrences(&model, &base) {
                let opts = ExportOptions {
                    recurrence,
                    ..base.clone()
                };
                let what = format!(
                    "{} states={states} ({})",
                    case.label(Loss::Mse),
                    recurrence.name()
                );
                let run = run_tract(&model, &data, &opts);
                assert_eq!(run.output.0, want.shape, "{what}: output shape");
                assert_eq!(run.h_n.is_some(), states, "{what}: h_n exported iff asked");
                assert_close(
                    &format!("{what} output"),
                    &run.output.1,
                    &want.data,
                    FORWARD,
                );
                if states {
                    let h = finals.h.as_ref().unwrap();
                    assert_close(
                        &format!("{what} h_n"),
                        run.h_n.as_ref().unwrap(),
                        h,
                        FORWARD,
                    );
                    if let Some(c) = &finals.c {
                        assert_close(
                            &format!("{what} c_n"),
                            run.c_n.as_ref().unwrap(),
                            c,
                            FORWARD,
                        );
                    }
                }
            }
        }
    }
}

/// One file, two batch sizes and sequence lengths: N and T are dynamic.
#[test]
fn one_export_runs_at_any_batch_size_and_length() {
    let case = Case {
        bidirectional: true,
        output: OutputMode::Sequence,
        ..Case::new(Cell::Gru)
    };
    let model = case.model(7);
    for (batch, steps) in [(1, 1), (6, 11)] {
        let data = Case {
            batch,
            steps,
            ..case.clone()
        }
        .data(Loss::Mse, 8);
        let want = model.forward(&data).unwrap();
        let run = run_tract(&model, &data, &ExportOptions::default());
        assert_eq!(run.output.0, vec![batch, steps, 3]);
        assert_close(
            &format!("N{batch} T{steps}"),
            &run.output.1,
            &want.data,
            FORWARD,
        );
    }
    // The file says so: x is [N, T, 5] with N and T named, not fixed.
    let proto = onnx::to_proto(&model, &ExportOptions::default()).unwrap();
    let x = &proto.graph.as_ref().unwrap().input[0];
    let dims = match &x.r#type.as_ref().unwrap().value {
        Some(onnx::proto::TypeValue::TensorType(t)) => t.shape.clone().unwrap().dim,
        None => panic!("x has no type"),
    };
    let dims: Vec<String> = dims
        .iter()
        .map(|d| match &d.value {
            Some(onnx::proto::DimensionValue::DimParam(s)) => s.clone(),
            Some(onnx::proto::DimensionValue::DimValue(v)) => v.to_string(),
            None => "?".into(),
        })
        .collect();
    assert_eq!(dims, ["N", "T", "5"]);
}

/// The operator encoding writes what ONNX's LSTM, GRU and RNN need: the
/// attributes, `sequence_lens` as int32 from `lengths`, the states sliced
/// per layer. (tract runs these nodes for files without lengths; ONNX
/// Runtime runs them all in tests/onnx/check_onnxruntime.py.)
#[test]
fn the_recurrent_operators_carry_their_attributes_and_inputs() {
    let attrs = |node: &onnx::proto::NodeProto| -> Vec<(String, String)> {
        node.attribute
            .iter()
            .map(|a| {
                let v = if !a.s.is_empty() {
                    String::from_utf8(a.s.clone()).unwrap()
                } else if !a.strings.is_empty() {
                    a.strings
                        .iter()
                        .map(|s| String::from_utf8(s.clone()).unwrap())
                        .collect::<Vec<_>>()
                        .join(",")
                } else {
                    a.i.to_string()
                };
                (a.name.clone(), v)
            })
            .collect()
    };
    let opts = ExportOptions {
        lengths: true,
        states: true,
        ..ExportOptions::default()
    };
    for (case, op, want) in [
        (
            Case {
                layers: 2,
                bidirectional: true,
                ..Case::new(Cell::Lstm)
            },
            "LSTM",
            vec![("hidden_size", "8"), ("direction", "bidirectional")],
        ),
        (
            Case::new(Cell::Gru),
            "GRU",
            vec![
                ("hidden_size", "8"),
                ("direction", "forward"),
                ("linear_before_reset", "1"),
            ],
        ),
        (
            Case {
                relu: true,
                bidirectional: true,
                ..Case::new(Cell::Rnn)
            },
            "RNN",
            vec![
                ("hidden_size", "8"),
                ("direction", "bidirectional"),
                ("activations", "Relu,Relu"),
            ],
        ),
    ] {
        let model = case.model(1);
        let proto = onnx::to_proto(&model, &opts).unwrap();
        let graph = proto.graph.unwrap();
        let nodes: Vec<_> = graph.node.iter().filter(|n| n.op_type == op).collect();
        assert_eq!(nodes.len(), case.layers, "{op}: one node per layer");
        for node in nodes {
            let got = attrs(node);
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(got, want, "{op} attributes");
            // X, W, R, B, sequence_lens (a Cast to int32 of `lengths`), initial_h (, initial_c).
            assert_eq!(
                node.input.len(),
                if op == "LSTM" { 7 } else { 6 },
                "{op} inputs"
            );
            let cast = graph
                .node
                .iter()
                .find(|n| n.output[0] == node.input[4])
                .unwrap();
            assert_eq!(
                (cast.op_type.as_str(), cast.input[0].as_str()),
                ("Cast", "lengths")
            );
            assert_eq!(attrs(cast), vec![("to".to_string(), "6".to_string())]);
        }
        let outs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        let want_outs: &[&str] = if op == "LSTM" {
            &["output", "h_n", "c_n"]
        } else {
            &["output", "h_n"]
        };
        assert_eq!(outs, want_outs);
        assert_eq!(proto.opset_import[0].version, onnx::DEFAULT_OPSET);
    }
}

#[test]
fn an_unsupported_opset_or_a_missing_folder_is_refused_and_nothing_is_written() {
    let model = Case::new(Cell::Lstm).model(1);
    for opset in [12, 22] {
        let opts = ExportOptions {
            opset,
            ..ExportOptions::default()
        };
        let e = onnx::to_bytes(&model, &opts).unwrap_err().to_string();
        assert!(
            e.contains(&format!("opset {opset} is not supported")) && e.contains("13..=21"),
            "{e}"
        );
    }
    let dir = temp_dir("onnx-refusals");
    let missing = dir.join("no-such-folder").join("m.onnx");
    let e = onnx::save(&model, &missing, &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert!(!missing.exists());
    let bad = dir.join("bad-opset.onnx");
    let opts = ExportOptions {
        opset: 9,
        ..ExportOptions::default()
    };
    assert!(onnx::save(&model, &bad, &opts).is_err());
    assert!(!bad.exists());
    // Written once: the folder holds the file and no temporary.
    let good = dir.join("m.onnx");
    onnx::save(&model, &good, &ExportOptions::default()).unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["m.onnx"]);
}

#[test]
fn the_cli_exports_what_tract_runs_and_refuses_bad_input() {
    let dir = temp_dir("onnx-cli");
    let case = golden_dir().join("lstm-states-2layer-bidir-lengths-seq-mse");
    let model = case.join("model.safetensors");
    let out = dir.join("m.onnx");
    let r = recurrent_cli(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--with-lengths",
        "--with-states",
        "--recurrence",
        "scan",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let said = String::from_utf8_lossy(&r.stdout);
    assert!(
        said.contains("lengths i64 [N]") && said.contains("c_n f32 [4, N, 5]"),
        "{said}"
    );
    // The file on disk is the library's export, byte for byte.
    let m = checkpoint::load(&model).unwrap();
    let opts = ExportOptions {
        lengths: true,
        states: true,
        recurrence: Recurrence::Scan,
        ..ExportOptions::default()
    };
    assert_eq!(
        std::fs::read(&out).unwrap(),
        onnx::to_bytes(&m, &opts).unwrap()
    );

    // Bad input: a file that is not a model, a missing folder, a low opset, an
    // unknown recurrence. Each says why and writes nothing.
    let not_a_model = dir.join("x.safetensors");
    std::fs::write(&not_a_model, b"not a safetensors file").unwrap();
    let target = dir.join("never.onnx");
    let model = model.to_str().unwrap();
    let missing = dir.join("none").join("m.onnx");
    for (args, says) in [
        (
            vec!["--model", not_a_model.to_str().unwrap()],
            "x.safetensors",
        ),
        (
            vec!["--model", model, "--opset", "11"],
            "opset 11 is not supported",
        ),
        (
            vec!["--model", model, "--recurrence", "loop"],
            "unknown recurrence 'loop'",
        ),
    ] {
        let mut a = vec!["export", "--output", target.to_str().unwrap()];
        a.extend(args);
        let r = recurrent_cli(&a);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(says), "{a:?}: {err}");
        assert!(!target.exists(), "{a:?} wrote a file");
    }
    let r = recurrent_cli(&[
        "export",
        "--model",
        model,
        "--output",
        missing.to_str().unwrap(),
    ]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("does not exist"));
}

/// The README's tract example ("Deploying with ONNX"), as written there, on a
/// golden model (I5 H7, 3 classes) exported with lengths in the scan recurrence.
#[test]
fn readme_tract_example_runs() -> TractResult<()> {
    let path = temp_dir("onnx-readme").join("model.onnx");
    let model = checkpoint::load(golden_dir().join("lstm-last-ce/model.safetensors")).unwrap();
    let opts = ExportOptions {
        lengths: true,
        recurrence: Recurrence::Scan,
        ..ExportOptions::default()
    };
    onnx::save(&model, &path, &opts).unwrap();
    // README begin
    use tract_onnx::prelude::*;
    let plan = tract_onnx::onnx()
        .model_for_path(&path)? // exported with --with-lengths --recurrence scan
        .with_input_fact(0, f32::fact([2, 6, 5]).into())? // x: N=2, T=6, F=5
        .with_input_fact(1, i64::fact([2]).into())? // lengths
        .into_optimized()?
        .into_runnable()?;
    let x = Tensor::from_shape(&[2, 6, 5], &[0.5f32; 60])?;
    let lengths = Tensor::from_shape(&[2], &[6i64, 3])?;
    let out = plan.run(tvec![x.into(), lengths.into()])?;
    assert_eq!(out[0].shape(), &[2, 3]);
    // README end
    Ok(())
}

/// The README's Rust block of "Deploying with ONNX" is, line for line, the
/// body of `readme_tract_example_runs` (its Python block runs in
/// tests/onnx/check_onnxruntime.py).
#[test]
fn the_readme_onnx_example_is_this_test() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Deploying with ONNX")
        .nth(1)
        .expect("the README has the section")
        .split("\n## ")
        .next()
        .unwrap();
    let block: Vec<&str> = section
        .split("```rust\n")
        .nth(1)
        .expect("a Rust block")
        .split("```")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .collect();
    let me = include_str!("onnx.rs");
    let body: Vec<&str> = me
        .split("// README begin\n")
        .nth(1)
        .unwrap()
        .split("// README end")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(block, body);
}

/// Every file is tidy: each value is defined once across the main graph and
/// the Scan bodies (ONNX forbids a body shadowing an outer name), and every
/// initializer is read by some node (ONNX Runtime warns of unused ones).
#[test]
fn every_value_is_defined_once_and_every_initializer_is_used() {
    fn walk(g: &onnx::proto::GraphProto, defined: &mut Vec<String>, used: &mut Vec<String>) {
        defined.extend(g.initializer.iter().map(|t| t.name.clone()));
        defined.extend(g.input.iter().map(|v| v.name.clone()));
        for n in &g.node {
            defined.extend(n.output.iter().cloned());
            used.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            for a in &n.attribute {
                if let Some(body) = &a.g {
                    walk(body, defined, used);
                }
            }
        }
    }
    let shapes = [
        Case {
            layers: 2,
            bidirectional: true,
            output: OutputMode::Sequence,
            ..Case::new(Cell::Lstm)
        },
        Case {
            vocab: Some(9),
            ..Case::new(Cell::Gru)
        },
        Case {
            relu: true,
            bidirectional: true,
            ..Case::new(Cell::Rnn)
        },
    ];
    for case in shapes {
        let model = case.model(3);
        for recurrence in [Recurrence::Operators, Recurrence::Scan] {
            for (lengths, states) in [(false, false), (true, false), (false, true), (true, true)] {
                let opts = ExportOptions {
                    lengths,
                    states,
                    recurrence,
                    ..ExportOptions::default()
                };
                let graph = onnx::to_proto(&model, &opts).unwrap().graph.unwrap();
                let (mut defined, mut used) = (Vec::new(), Vec::new());
                walk(&graph, &mut defined, &mut used);
                let what = format!("{} {opts:?}", case.label(Loss::Mse));
                let mut unique = defined.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), defined.len(), "{what}: a name defined twice");
                for t in &graph.initializer {
                    assert!(
                        used.contains(&t.name),
                        "{what}: initializer {} unused",
                        t.name
                    );
                }
                for u in &used {
                    assert!(defined.contains(u), "{what}: {u} read but never defined");
                }
            }
        }
    }
}
