//! Shared test helpers: tolerances (all in `tolerance.rs`), the GPU context
//! (or a clear skip), random models and data, golden files, temporary folders.
#![allow(dead_code)]

pub mod tolerance;
#[allow(unused_imports)] // not every test binary uses every tolerance
pub use tolerance::*;

use recurrent::gpu::GpuContext;
use recurrent::rng::Rng;
use recurrent::{Cell, Dataset, Init, Inputs, Loss, Model, ModelConfig, OutputMode, Targets};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The shared GPU context for one test, holding the GPU test lock: tests use
/// the device one at a time. (wgpu's GL backend panics when a thread waits
/// more than 6 s for the GL context while another thread's long submission
/// holds it — which a software GL adapter reaches with the MNIST-sized cases.)
pub struct Gpu {
    pub ctx: Arc<GpuContext>,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Gpu {
    type Target = Arc<GpuContext>;
    fn deref(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
}

/// The shared GPU context, or `None` after printing that the test is skipped.
/// With `RECURRENT_REQUIRE_GPU=1` a missing adapter fails the test instead.
pub fn gpu(test: &str) -> Option<Gpu> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let ctx = CTX.get_or_init(|| {
        let r = recurrent::gpu::try_context().map_err(|e| e.to_string());
        if let Ok(c) = &r {
            eprintln!("GPU adapter: {}", c.describe());
        }
        r
    });
    match ctx {
        Ok(c) => Some(Gpu {
            ctx: c.clone(),
            // A test that failed while holding the lock poisons it; the next may still run.
            _turn: TURN.lock().unwrap_or_else(|p| p.into_inner()),
        }),
        Err(e) => {
            if std::env::var("RECURRENT_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("{test}: RECURRENT_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("SKIPPED {test}: no GPU adapter ({e}). Set RECURRENT_REQUIRE_GPU=1 to make this a failure.");
            None
        }
    }
}

/// [`Case::dispatch_count`]'s size as `recurrent bench` flags (one rep).
pub const DISPATCH_CASE_ARGS: [&str; 12] = [
    "--layers", "2", "--input", "28", "--hidden", "32", "--batch", "8", "--steps", "28", "--reps",
    "1",
];

/// A model shape for the parity grid.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub cell: Cell,
    pub layers: usize,
    pub bidirectional: bool,
    pub output: OutputMode,
    pub input: usize,
    pub hidden: usize,
    pub out: usize,
    pub batch: usize,
    pub steps: usize,
    pub lengths: bool,
    pub vocab: Option<usize>,
    pub relu: bool,
}

impl Case {
    pub fn new(cell: Cell) -> Case {
        Case {
            cell,
            layers: 1,
            bidirectional: false,
            output: OutputMode::Last,
            input: 5,
            hidden: 8,
            out: 3,
            batch: 4,
            steps: 6,
            lengths: false,
            vocab: None,
            relu: false,
        }
    }

    /// The MNIST-shaped case whose training step's dispatches the tests count
    /// (131 with the fixed GEMM choice): 2-layer LSTM, 28 steps of 28 features,
    /// H=32, batch 8. `recurrent bench` takes the same size as [`DISPATCH_CASE_ARGS`].
    pub fn dispatch_count() -> Case {
        Case {
            layers: 2,
            input: 28,
            hidden: 32,
            out: 10,
            batch: 8,
            steps: 28,
            ..Case::new(Cell::Lstm)
        }
    }

    /// Short description: `lstm L2 bi last I5 H8 O3 B4 T6 len ce`.
    pub fn label(&self, loss: Loss) -> String {
        format!(
            "{} L{}{} {}{} I{} H{} O{} B{} T{}{}{} {}",
            self.cell.name(),
            self.layers,
            if self.bidirectional { " bi" } else { "" },
            self.output.name(),
            if self.relu { " relu" } else { "" },
            self.input,
            self.hidden,
            self.out,
            self.batch,
            self.steps,
            if self.lengths { " len" } else { "" },
            self.vocab.map(|v| format!(" V{v}")).unwrap_or_default(),
            loss.name()
        )
    }

    pub fn model(&self, seed: u64) -> Model {
        let mut cfg = ModelConfig::new(self.cell, self.input, self.hidden, self.out)
            .layers(self.layers)
            .bidirectional(self.bidirectional)
            .output(self.output);
        if self.relu {
            cfg = cfg.nonlinearity(recurrent::Nonlinearity::Relu);
        }
        if let Some(v) = self.vocab {
            cfg = cfg.embedding(v);
        }
        Model::new(cfg, &Init::seed(seed)).expect("valid config")
    }

    /// Random inputs, targets for `loss` (with some -100 ignores for ce) and lengths.
    pub fn data(&self, loss: Loss, seed: u64) -> Dataset {
        let mut rng = Rng::new(seed);
        let (n, t) = (self.batch, self.steps);
        let x = match self.vocab {
            Some(v) => {
                Inputs::tokens((0..n * t).map(|_| rng.below(v) as i64).collect(), n, t).unwrap()
            }
            None => Inputs::features(
                (0..n * t * self.input)
                    .map(|_| rng.uniform(-1.0, 1.0))
                    .collect(),
                n,
                t,
                self.input,
            )
            .unwrap(),
        };
        let rows = match self.output {
            OutputMode::Last => n,
            OutputMode::Sequence => n * t,
        };
        let shape = match self.output {
            OutputMode::Last => vec![n],
            OutputMode::Sequence => vec![n, t],
        };
        let y = match loss {
            Loss::Ce => Targets::Classes {
                data: (0..rows)
                    .map(|p| {
                        if p % 7 == 3 && rows > 1 {
                            -100
                        } else {
                            rng.below(self.out) as i64
                        }
                    })
                    .collect(),
                shape,
            },
            Loss::Mse => {
                let mut s = shape;
                s.push(self.out);
                Targets::Values {
                    data: (0..rows * self.out)
                        .map(|_| rng.uniform(-1.0, 1.0))
                        .collect(),
                    shape: s,
                }
            }
        };
        // Lengths: the first row is full (PyTorch needs one full row for
        // `last` outputs to be meaningful), the rest random in 1..=T.
        let lengths = self.lengths.then(|| {
            (0..n)
                .map(|i| if i == 0 { t } else { 1 + rng.below(t) })
                .collect()
        });
        Dataset::new(x, Some(y), lengths)
    }
}

/// Runs the `recurrent` binary with `args`; returns what it did.
pub fn recurrent_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_recurrent"))
        .args(args)
        .output()
        .expect("the recurrent binary runs")
}

/// The golden cases folder.
pub fn golden_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A fresh temporary folder for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("recurrent-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
