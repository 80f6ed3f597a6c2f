//! Timing support for `recurrent bench --device gpu`.

use super::model::GpuModel;
use crate::bench::median;
use crate::data::Dataset;
use crate::error::Result;
use crate::Loss;
use std::time::Instant;

impl GpuModel {
    /// Median wall-clock milliseconds of (forward) and of (forward, loss,
    /// backward through time, weight gradients: no optimizer) on `data`, over
    /// `reps` runs after one warm-up. Each timing records, submits and waits
    /// for the GPU to finish; the batch is uploaded once, before timing.
    pub fn time_forward_backward(
        &mut self,
        data: &Dataset,
        loss: Loss,
        reps: usize,
    ) -> Result<(f64, f64)> {
        let key = self.upload_batch(data, Some(loss))?;
        let (mut fwd, mut train) = (Vec::new(), Vec::new());
        for rep in 0..=reps.max(1) {
            for backward in [false, true] {
                let t0 = Instant::now();
                let enc = self.encode(key, backward.then_some(loss), backward, None)?;
                self.context().queue.submit([enc.finish()]);
                self.context().wait()?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                if rep > 0 {
                    if backward { &mut train } else { &mut fwd }.push(ms);
                }
            }
        }
        Ok((median(fwd), median(train)))
    }
}
