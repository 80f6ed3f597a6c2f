//! The GPU path's training on a kept set: [`GpuModel::keep_dataset`] puts a
//! training set on the device (`resident.rs`), [`GpuModel::train_step_rows`]
//! steps on rows of it.

use super::model::GpuModel;
use super::resident::Resident;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::config::OutputMode;
use crate::Loss;

impl GpuModel {
    /// Keeps `data` (its inputs, lengths and the targets of `loss`) on the
    /// device for [`GpuModel::train_step_rows`]: checked as a training
    /// batch is, uploaded once. Replaces a set kept before. Initial states
    /// (`data.states`) are not kept: such a set trains through
    /// [`GpuModel::train_step`]. Fails, keeping nothing, if the set does not
    /// fit in the adapter's storage buffers. (A fit with
    /// [`crate::train::FitConfig::keep_on_device`] keeps its own training
    /// set in place of one kept before, and lets go of it at the end.)
    pub fn keep_dataset(&mut self, data: &Dataset, loss: Loss) -> Result<()> {
        self.resident = None;
        let cfg = self.config().clone();
        self.resident = Some(Resident::new(&self.ctx, &cfg, data, loss)?);
        self.kept_sets += 1;
        Ok(())
    }

    /// Lets go of the kept set (its buffers are freed).
    pub fn drop_dataset(&mut self) {
        self.resident = None;
    }

    /// Sequences in the kept set, if there is one.
    pub fn kept_len(&self) -> Option<usize> {
        self.resident.as_ref().map(Resident::len)
    }

    /// [`GpuModel::train_step`] on rows `rows` of the kept set, in that order
    /// ([`Dataset::gather`]), cut to their longest sequence with `trim`
    /// ([`Dataset::trim_to_longest`]): the same step, gathered on the device.
    pub fn train_step_rows(
        &mut self,
        rows: &[usize],
        trim: bool,
        opts: &crate::StepOptions,
        opt: &mut crate::Optimizer,
    ) -> Result<()> {
        opt.validate()?;
        let r = self.resident.as_ref().ok_or_else(|| {
            Error::Argument("train_step_rows: no training set is kept (keep_dataset)".into())
        })?;
        let t = r.batch_steps(rows, trim, opts.loss)?;
        let ids = r.batch_ids(rows, t);
        let key = (rows.len(), t);
        let slot = self.stats.free_slot(&self.ctx)?;
        self.plan(key.0, key.1)?;
        self.write_initial_states(key, None);
        // The ids are gathered on the device; their index for the
        // embedding's backward comes from the host's copy.
        if let Some(ids) = ids {
            let plan = &self.plans[&key];
            let vocab = self.config().vocab.unwrap_or(0);
            super::tokens::write_tokens(&self.ctx.queue, &plan.ints, &plan.ws, &ids, vocab, false);
        }
        let seq = self.config().output == OutputMode::Sequence;
        let r = self.resident.as_mut().expect("checked");
        let gather = r.gather_commands(&self.ctx, seq, key, &self.plans[&key], rows)?;
        self.submit_step(key, slot, Some(gather), opts, opt)
    }
}
