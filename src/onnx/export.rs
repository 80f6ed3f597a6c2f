//! A model as an ONNX graph: the inputs, the embedding, the recurrent layers
//! (ONNX's own operators, `operators.rs`, or Scan loops, `scan.rs`), the head
//! and the outputs. Everything runs time-major inside, as the ONNX recurrent
//! operators do; the graph's inputs and outputs are batch-first as
//! `recurrent predict`'s.

use super::build::{transpose, Build};
use super::graph::{attr, Dim, Graph};
use super::proto::{DataType, ModelProto, OperatorSetIdProto, StringStringEntryProto};
use super::{operators, scan, ExportOptions, Recurrence};
use crate::model::config::{Cell, OutputMode};
use crate::Model;

/// ONNX IR version of the files we write for `opset` (onnx's own version table).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

pub(super) fn build(model: &Model, opts: &ExportOptions) -> ModelProto {
    let cfg = model.config();
    let (layers, dirs, hidden) = (cfg.layers, cfg.directions(), cfg.hidden);
    let mut g = Graph::new("");

    // Inputs, batch-first as the data files hold them.
    if cfg.vocab.is_some() {
        g.input("x", DataType::Int64, &[Dim::Named("N"), Dim::Named("T")]);
    } else {
        g.input(
            "x",
            DataType::Float,
            &[Dim::Named("N"), Dim::Named("T"), Dim::Fixed(cfg.input)],
        );
    }
    let state_dims = [
        Dim::Fixed(layers * dirs),
        Dim::Named("N"),
        Dim::Fixed(hidden),
    ];
    if opts.lengths {
        g.input("lengths", DataType::Int64, &[Dim::Named("N")]);
    }
    if opts.states {
        g.input("h0", DataType::Float, &state_dims);
        if cfg.cell == Cell::Lstm {
            g.input("c0", DataType::Float, &state_dims);
        }
    }

    // Time-major features [T, N, I]: the embedding gathers rows by id.
    let x = match cfg.vocab {
        Some(vocab) => {
            let perm = attr::ints("perm", &[1, 0]);
            let ids = g.op("Transpose", &["x"], vec![perm]);
            let range = model
                .layout()
                .embed
                .clone()
                .expect("an embedding model has embed.weight");
            let table = g.f32_init("embed.weight", &[vocab, cfg.input], &model.params()[range]);
            g.op("Gather", &[&table, &ids], vec![attr::int("axis", 0)])
        }
        None => g.op("Transpose", &["x"], vec![attr::ints("perm", &[1, 0, 2])]),
    };
    let shape = g.op("Shape", &[&x], vec![]);
    // Masks are read by the Scan loops and, with the operators, by a
    // `sequence` output; nothing else needs them.
    let masked =
        opts.lengths && (opts.recurrence == Recurrence::Scan || cfg.output == OutputMode::Sequence);
    let mask = masked.then(|| {
        // t < lengths[n], for t in 0..T: [T, 1] against [N] broadcasts to [T, N].
        let zero = g.int(0);
        let steps = g.op("Gather", &[&shape, &zero], vec![attr::int("axis", 0)]);
        let step = g.int(1);
        let t = g.op("Range", &[&zero, &steps, &step], vec![]);
        let axis1 = g.ints(&[1]);
        let t = g.op("Unsqueeze", &[&t, &axis1], vec![]);
        let fed = g.op("Less", &[&t, "lengths"], vec![]);
        let axis2 = g.ints(&[2]);
        g.op("Unsqueeze", &[&fed, &axis2], vec![])
    });
    let mut b = Build {
        g,
        model,
        lengths: opts.lengths.then(|| "lengths".to_string()),
        mask,
        h0: opts.states.then(|| "h0".to_string()),
        c0: (opts.states && cfg.cell == Cell::Lstm).then(|| "c0".to_string()),
        shape,
        batch: None,
    };

    // The stack, layer by layer.
    let mut input = x;
    let mut h_n = Vec::new();
    let mut c_n = Vec::new();
    for k in 0..layers {
        let out = match opts.recurrence {
            Recurrence::Operators => operators::layer(&mut b, &input, k),
            Recurrence::Scan => scan::layer(&mut b, &input, k),
        };
        input = out.y;
        h_n.push(out.h_n);
        c_n.extend(out.c_n);
    }
    let top_h = h_n.last().expect("at least one layer").clone();

    // The head, on the last state or on every step.
    let width = cfg.top_width();
    let (w, bias) = {
        let layout = model.layout();
        let w = transpose(
            &model.params()[layout.head_w.clone()],
            cfg.out_features,
            width,
        );
        (w, model.params()[layout.head_b.clone()].to_vec())
    };
    let w =
        b.g.f32_init("head.weight_t", &[width, cfg.out_features], &w);
    let bias = b.g.f32_init("head.bias", &[cfg.out_features], &bias);
    let features = match cfg.output {
        OutputMode::Last => {
            // [D, N, H] -> [N, D, H] -> [N, D*H]: concat(forward h_n, backward h_n).
            let nd =
                b.g.op("Transpose", &[&top_h], vec![attr::ints("perm", &[1, 0, 2])]);
            let shape = b.g.ints(&[0, -1]);
            b.g.op("Reshape", &[&nd, &shape], vec![])
        }
        OutputMode::Sequence => {
            // Steps past a length are not fed: their output is zero, so the
            // head gives its bias there (PyTorch's pad_packed_sequence).
            let y = match &b.mask {
                Some(mask) if opts.recurrence == Recurrence::Operators => {
                    let zero = b.g.float(0.0);
                    b.g.op("Where", &[mask, &input, &zero], vec![])
                }
                _ => input,
            };
            b.g.op("Transpose", &[&y], vec![attr::ints("perm", &[1, 0, 2])])
        }
    };
    let product = b.g.op("MatMul", &[&features, &w], vec![]);
    b.g.op_to("Add", &[&product, &bias], &["output"], vec![]);
    let out_dims: Vec<Dim> = match cfg.output {
        OutputMode::Last => vec![Dim::Named("N"), Dim::Fixed(cfg.out_features)],
        OutputMode::Sequence => vec![
            Dim::Named("N"),
            Dim::Named("T"),
            Dim::Fixed(cfg.out_features),
        ],
    };
    b.g.output("output", DataType::Float, &out_dims);
    if opts.states {
        let refs: Vec<&str> = h_n.iter().map(String::as_str).collect();
        b.g.op_to("Concat", &refs, &["h_n"], vec![attr::int("axis", 0)]);
        b.g.output("h_n", DataType::Float, &state_dims);
        if cfg.cell == Cell::Lstm {
            let refs: Vec<&str> = c_n.iter().map(String::as_str).collect();
            b.g.op_to("Concat", &refs, &["c_n"], vec![attr::int("axis", 0)]);
            b.g.output("c_n", DataType::Float, &state_dims);
        }
    }

    let doc = describe(model, opts);
    let meta = serde_json::json!({
        "cell": cfg.cell.name(),
        "nonlinearity": cfg.nonlinearity.name(),
        "output": cfg.output.name(),
        "input": cfg.input,
        "hidden": cfg.hidden,
        "layers": cfg.layers,
        "bidirectional": cfg.bidirectional,
        "out_features": cfg.out_features,
        "vocab": cfg.vocab,
        "lengths": opts.lengths,
        "states": opts.states,
        "recurrence": opts.recurrence.name(),
    });
    ModelProto {
        ir_version: ir_version(opts.opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opts.opset,
        }],
        producer_name: "recurrent".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: doc.clone(),
        graph: Some(b.g.into_proto("recurrent", &doc)),
        metadata_props: vec![StringStringEntryProto {
            key: "recurrent".into(),
            value: meta.to_string(),
        }],
    }
}

/// One line on what the file computes, for the file's doc string and the CLI.
pub(super) fn describe(model: &Model, opts: &ExportOptions) -> String {
    let cfg = model.config();
    let mut inputs = vec![if cfg.vocab.is_some() {
        "x i64 [N, T]".to_string()
    } else {
        format!("x f32 [N, T, {}]", cfg.input)
    }];
    let states = format!("[{}, N, {}]", cfg.layers * cfg.directions(), cfg.hidden);
    if opts.lengths {
        inputs.push("lengths i64 [N]".into());
    }
    let mut outputs = vec![match cfg.output {
        OutputMode::Last => format!("output f32 [N, {}]", cfg.out_features),
        OutputMode::Sequence => format!("output f32 [N, T, {}]", cfg.out_features),
    }];
    if opts.states {
        inputs.push(format!("h0 f32 {states}"));
        outputs.push(format!("h_n f32 {states}"));
        if cfg.cell == Cell::Lstm {
            inputs.push(format!("c0 f32 {states}"));
            outputs.push(format!("c_n f32 {states}"));
        }
    }
    format!(
        "{} {}-layer{} {} (hidden {}), {} output; inputs {}; outputs {}; opset {}, recurrence as {}",
        cfg.cell.name().to_uppercase(),
        cfg.layers,
        if cfg.bidirectional { " bidirectional" } else { "" },
        if cfg.vocab.is_some() { "with an embedding" } else { "on features" },
        cfg.hidden,
        cfg.output.name(),
        inputs.join(", "),
        outputs.join(", "),
        opts.opset,
        opts.recurrence.describe(),
    )
}
