//! The one tuner (the shape of Burn's `TunableSet`): a list of candidates
//! whose first is the fallback that must always run, timed interleaved after
//! one warm-up run each, the median per candidate, the fastest wins and ties
//! keep the earlier; decisions cached per key on the context. Times are
//! microseconds everywhere. GEMM configurations per GEMM shape
//! ([`super::gemm_tune`]) and step tiles per model shape
//! ([`super::step_tune`]) are its two uses.
//!
//! Tuning happens while a plan is built, before anything is recorded
//! (`plan.rs`), never inside a training step. It is off unless
//! [`GpuOptions::autotune`](super::GpuOptions::autotune) is on
//! (`RECURRENT_AUTOTUNE=1`): a timed choice can differ from run to run, and
//! with it a split-K sum's order, where the fixed choice keeps results
//! bit-identical.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Timed runs per candidate (after one untimed run); the median is kept.
pub const TIMED_RUNS: usize = 3;

/// How a choice was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every candidate was timed; the fastest won.
    Measured,
    /// Only one candidate fits: nothing to measure.
    Single,
    /// The candidates could not be measured (a GEMM whose scratch operands
    /// would not fit): the fallback, unmeasured.
    TooLarge,
    /// Set by the program or the environment (`RECURRENT_STEP_TILE`): not tuned.
    Pinned,
    /// Tuning is off (the default): the fallback.
    Off,
    /// A persistent grid tile ([`super::step_tile::StepTile::grid`]) whose
    /// workgroups were found not all running at once: the same tile, per step.
    Fallback,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Measured => "measured",
            Decision::Single => "single",
            Decision::TooLarge => "too-large",
            Decision::Pinned => "pinned",
            Decision::Off => "fixed",
            Decision::Fallback => "grid-fallback",
        }
    }
}

/// A decision: the choice, how it was made, its median µs when measured,
/// and every candidate with its median µs (`None` where it failed to build
/// or run), in candidate order, the fallback first (empty unless measured).
#[derive(Clone, Debug, PartialEq)]
pub struct Tuned<C> {
    pub choice: C,
    pub decision: Decision,
    pub us: Option<f64>,
    pub candidates: Vec<(C, Option<f64>)>,
}

impl<C: Copy> Tuned<C> {
    /// A choice that was not measured.
    pub fn unmeasured(choice: C, decision: Decision) -> Tuned<C> {
        Tuned {
            choice,
            decision,
            us: None,
            candidates: Vec::new(),
        }
    }

    /// The fastest of `cands` by `times[i]`, the median µs of `cands[i]`
    /// (`None`: it failed): ties keep the earlier candidate. The first (the
    /// fallback) must have a time.
    pub fn fastest(cands: &[C], times: &[Option<f64>]) -> Result<Tuned<C>> {
        if cands.is_empty() || cands.len() != times.len() {
            return Err(Error::Gpu(format!(
                "tuning: {} times for {} candidates",
                times.len(),
                cands.len()
            )));
        }
        let Some(mut best_us) = times[0] else {
            return Err(Error::Gpu(
                "tuning: the fallback (first) candidate did not run".into(),
            ));
        };
        let mut best = 0;
        for (i, t) in times.iter().enumerate() {
            if let Some(t) = *t {
                if t < best_us {
                    best = i;
                    best_us = t;
                }
            }
        }
        Ok(Tuned {
            choice: cands[best],
            decision: Decision::Measured,
            us: Some(best_us),
            candidates: cands.iter().copied().zip(times.iter().copied()).collect(),
        })
    }
}

/// Times `n` candidates: one untimed round of every candidate (compiling and
/// warming up; a candidate that fails there is left out, and the first's
/// failure is the error), then [`TIMED_RUNS`] interleaved rounds; after the
/// first timed round only candidates within `prune` times the fastest run
/// again (the others keep their one time). `round(live)` runs each listed
/// candidate once, in order, and returns its µs or its failure. Returns the
/// median µs of each candidate (`None`: left out).
pub fn measure(
    n: usize,
    prune: f64,
    mut round: impl FnMut(&[usize]) -> Result<Vec<Result<f64>>>,
) -> Result<Vec<Option<f64>>> {
    let mut live: Vec<usize> = (0..n).collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    for r in 0..=TIMED_RUNS {
        let times = round(&live)?;
        let mut still = Vec::with_capacity(live.len());
        for (&i, t) in live.iter().zip(times) {
            match t {
                Ok(us) => {
                    if r > 0 {
                        samples[i].push(us);
                    }
                    still.push(i);
                }
                Err(e) if i == 0 => return Err(e),
                Err(_) => samples[i].clear(),
            }
        }
        live = still;
        if r == 1 {
            let best = live
                .iter()
                .filter_map(|&i| samples[i].first().copied())
                .fold(f64::INFINITY, f64::min);
            live.retain(|&i| i == 0 || samples[i][0] <= prune * best);
        }
    }
    Ok(samples.iter().map(|v| crate::timing::median(v)).collect())
}

/// Decisions per key, shared by every model on a context.
pub struct Cache<K, C> {
    map: Mutex<HashMap<K, Tuned<C>>>,
}

impl<K, C> Default for Cache<K, C> {
    fn default() -> Self {
        Cache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Copy + Eq + Hash + Ord, C: Clone> Cache<K, C> {
    pub fn lookup(&self, k: &K) -> Option<Tuned<C>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned()
    }

    pub fn insert(&self, k: K, t: Tuned<C>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, t);
    }

    /// The decision of `k`: cached, else `decide()`'s, cached (holding the
    /// lock, so that a key is measured once even with several threads).
    pub fn get_or_decide(
        &self,
        k: K,
        decide: impl FnOnce() -> Result<Tuned<C>>,
    ) -> Result<Tuned<C>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = map.get(&k) {
            return Ok(t.clone());
        }
        let t = decide()?;
        map.insert(k, t.clone());
        Ok(t)
    }

    /// Every decision, ordered by key.
    pub fn all(&self) -> Vec<(K, Tuned<C>)> {
        let mut v: Vec<_> = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, t)| (*k, t.clone()))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_wins_ties_keep_the_earlier_the_fallback_must_run() {
        let c = ['a', 'b', 'c'];
        let t = Tuned::fastest(&c, &[Some(2.0), Some(1.5), Some(1.5)]).unwrap();
        assert_eq!(
            (t.choice, t.us, t.decision),
            ('b', Some(1.5), Decision::Measured)
        );
        assert_eq!(t.candidates.len(), 3);
        assert_eq!(
            Tuned::fastest(&c, &[Some(1.0), Some(1.0), Some(1.0)])
                .unwrap()
                .choice,
            'a'
        );
        let f = Tuned::fastest(&c, &[Some(2.0), None, Some(3.0)]).unwrap();
        assert_eq!((f.choice, f.us), ('a', Some(2.0)));
        assert_eq!(f.candidates[1], ('b', None));
        assert!(Tuned::fastest(&c, &[None, Some(1.0), Some(1.0)]).is_err());
        assert!(Tuned::fastest(&c, &[Some(1.0)]).is_err());
    }

    #[test]
    fn measuring_interleaves_prunes_and_drops_failures() {
        let mut calls: Vec<Vec<usize>> = Vec::new();
        // Candidate 1 fails at warm-up; 3 is over twice as slow as 2.
        let us = [5.0, 0.0, 2.0, 9.0];
        let m = measure(4, 1.5, |live| {
            calls.push(live.to_vec());
            Ok(live
                .iter()
                .map(|&i| {
                    if i == 1 {
                        Err(Error::Gpu("no".into()))
                    } else {
                        Ok(us[i])
                    }
                })
                .collect())
        })
        .unwrap();
        assert_eq!(m, vec![Some(5.0), None, Some(2.0), Some(9.0)]);
        assert_eq!(calls[0], vec![0, 1, 2, 3], "warm-up");
        assert_eq!(calls[1], vec![0, 2, 3], "first timed round");
        assert_eq!(calls[2], vec![0, 2], "pruned, the fallback kept");
        assert_eq!(calls.len(), 1 + TIMED_RUNS);
        // The fallback's failure is the error.
        assert!(measure(2, 1.5, |live| Ok(live
            .iter()
            .map(|&i| if i == 0 {
                Err(Error::Gpu("x".into()))
            } else {
                Ok(1.0)
            })
            .collect()))
        .is_err());
    }
}
