//! The guard of the GPU host's layout: the dispatch trace of a training step
//! — every dispatch's kernel, grid, override constants, f16 binding, label,
//! uniform slot and argument bytes, in program order — for a handful of
//! models (each cell; two bidirectional layers with lengths; an embedding;
//! f16 W_hh; pinned step tiles, persistent among them; the input gradient;
//! dropout at every site, recurrent dropout;
//! tuning off, the default) must equal `tests/dispatch_trace.txt` byte for
//! byte. A refactor of the recording code leaves it unchanged; a change that
//! means to alter what runs regenerates it in its own commit
//! (`RECURRENT_BLESS_TRACE=1 cargo test --test dispatch_trace`) and says why.
//!
//! The trace depends on the adapter's limits only through the tunables on its
//! first line (GEMM tile, reduction widths, default step tile), which are the
//! same on lavapipe and llvmpipe; on an adapter whose tunables differ the
//! comparison cannot hold, and the test says so and skips.
//!
//! Without a GPU adapter the test prints `SKIPPED` and passes, unless
//! `RECURRENT_REQUIRE_GPU=1`.

mod common;

use common::{gpu, Case};
use recurrent::gpu::{GpuModel, StepTile};
use recurrent::{Cell, Dropout, Model, OutputMode};

const TRACE: &str = "tests/dispatch_trace.txt";

/// One model of the trace: a name, the case, and what to set on the GPU model.
struct Traced {
    name: &'static str,
    case: Case,
    f16: bool,
    tile: Option<StepTile>,
    input_grad: bool,
    dropout: Dropout,
}

fn traced(name: &'static str, case: Case) -> Traced {
    Traced {
        name,
        case,
        f16: false,
        tile: None,
        input_grad: false,
        dropout: Dropout::default(),
    }
}

fn models() -> Vec<Traced> {
    let small = |cell| Case {
        hidden: 5,
        input: 3,
        out: 2,
        batch: 3,
        steps: 4,
        ..Case::new(cell)
    };
    let layered = |cell| Case {
        layers: 2,
        bidirectional: true,
        lengths: true,
        hidden: 20,
        batch: 37,
        output: OutputMode::Sequence,
        ..small(cell)
    };
    vec![
        traced("lstm", small(Cell::Lstm)),
        traced("gru", small(Cell::Gru)),
        traced(
            "rnn relu sequence",
            Case {
                relu: true,
                output: OutputMode::Sequence,
                ..small(Cell::Rnn)
            },
        ),
        traced("lstm 2 layers bidirectional lengths", layered(Cell::Lstm)),
        traced(
            "gru 2 layers bidirectional lengths last",
            Case {
                output: OutputMode::Last,
                ..layered(Cell::Gru)
            },
        ),
        traced(
            "lstm embedding",
            Case {
                vocab: Some(11),
                ..small(Cell::Lstm)
            },
        ),
        Traced {
            f16: true,
            ..traced("lstm f16 whh", layered(Cell::Lstm))
        },
        Traced {
            tile: Some(StepTile::new(8, 4, 16, 2)),
            ..traced("gru pinned tile 8,4,16,2", layered(Cell::Gru))
        },
        Traced {
            tile: Some(StepTile::new(16, 4, 32, 1).with_back_units(2).persist()),
            ..traced("rnn persistent tile", layered(Cell::Rnn))
        },
        Traced {
            tile: Some(StepTile::direct(16, 1, 7, 8, 4)),
            ..traced("lstm direct tile", small(Cell::Lstm))
        },
        Traced {
            input_grad: true,
            ..traced("lstm input gradient", layered(Cell::Lstm))
        },
        Traced {
            dropout: Dropout {
                dropout: 0.3,
                input: 0.2,
                output: 0.4,
                seed: 1,
                ..Dropout::default()
            },
            ..traced(
                "gru 2 layers bidirectional last dropout",
                Case {
                    output: OutputMode::Last,
                    ..layered(Cell::Gru)
                },
            )
        },
        Traced {
            dropout: Dropout {
                recurrent: 0.25,
                seed: 2,
                ..Dropout::default()
            },
            ..traced(
                "lstm 2 layers bidirectional recurrent dropout",
                layered(Cell::Lstm),
            )
        },
    ]
}

fn trace(ctx: &std::sync::Arc<recurrent::gpu::GpuContext>) -> String {
    let mut out = String::new();
    for m in models() {
        let model = m.case.model(1);
        let cfg = model.config().clone().dropout(m.dropout);
        let model = Model::from_params(cfg, model.params().to_vec()).unwrap();
        let mut g = GpuModel::with_f16_weights(ctx.clone(), &model, m.f16).unwrap();
        if let Some(t) = m.tile {
            g.set_step_tile(t).unwrap();
        }
        g.set_input_gradient(m.input_grad);
        out.push_str(&format!("== {}\n", m.name));
        out.push_str(&g.dispatch_trace(m.case.batch, m.case.steps).unwrap());
    }
    out
}

#[test]
fn the_dispatch_trace_is_unchanged() {
    let Some(ctx) = gpu("the_dispatch_trace_is_unchanged") else {
        return;
    };
    assert!(
        !ctx.autotune(),
        "the trace is of the fixed choices: unset RECURRENT_AUTOTUNE"
    );
    let now = trace(&ctx);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TRACE);
    if std::env::var("RECURRENT_BLESS_TRACE").as_deref() == Ok("1") {
        std::fs::write(&path, &now).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    let tunables = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("tunables"))
            .map(str::to_string)
    };
    let (head_now, head_want) = (tunables(&now), tunables(&want));
    if head_now != head_want {
        eprintln!(
            "SKIPPED the_dispatch_trace_is_unchanged: this adapter's tunables ({head_now:?}) are not those of {TRACE} ({head_want:?})"
        );
        return;
    }
    if now != want {
        let (i, (a, b)) = now
            .lines()
            .zip(want.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((
                now.lines().count().min(want.lines().count()),
                ("<end>", "<end>"),
            ));
        panic!(
            "the dispatch trace differs from {TRACE} at line {}:\n  now:  {a}\n  file: {b}\n({} lines now, {} in the file)",
            i + 1,
            now.lines().count(),
            want.lines().count()
        );
    }
}
