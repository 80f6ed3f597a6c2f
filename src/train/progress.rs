//! The per-epoch progress bar: step, running loss, sequences per second, ETA.
//! Drawn on stderr only when stderr is a terminal, so logs and pipes stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// How often the bar redraws at most (indicatif rate-limits drawing to this).
const REDRAWS_PER_SECOND: u8 = 10;

/// One epoch's bar. Hidden (no output at all) when `enabled` is false or
/// stderr is not a terminal.
pub struct EpochBar {
    bar: ProgressBar,
    start: Instant,
    sequences: usize,
}

impl EpochBar {
    /// A bar over `batches` steps, titled `epoch k/epochs`.
    pub fn new(enabled: bool, epoch: usize, epochs: usize, batches: usize) -> EpochBar {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(batches as u64), target);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        EpochBar {
            bar,
            start: Instant::now(),
            sequences: 0,
        }
    }

    /// Marks one step of `sequences` rows done with the running mean loss.
    pub fn step(&mut self, sequences: usize, running_loss: f64) {
        self.sequences += sequences;
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "loss {running_loss:.4} {:.0} seq/s",
            self.sequences as f64 / secs
        ));
        self.bar.inc(1);
    }

    /// Removes the bar (the caller prints the epoch's summary line).
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
