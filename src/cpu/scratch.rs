//! Large zeroed buffers kept from one training step to the next.
//!
//! A step's large buffers (input projections, saved gates, states, gate
//! gradients: tens of MB at H=512) are the same sizes every step. Freshly
//! allocated, each comes from the system as new pages: the allocator maps
//! them on every step (large blocks are returned to the system when freed)
//! and every page faults on first touch. At I=512 H=512 B=64 T=25 that was
//! ~11,000 page faults a training step and 20% of its time (measured,
//! BENCHMARKS.md). Buffers taken with [`zeroed`] and handed back with
//! [`recycle`] (or by dropping a [`Saved`](super::layer::Saved)) are reused
//! instead: zeroed again with a memset, no faults.
//!
//! The pool keeps at most [`POOL_MAX_BYTES`] in all, only buffers of at least
//! [`MIN_BYTES`], and hands a buffer out only for its exact length (a step's
//! sizes repeat). [`release`] frees what it holds.

use std::sync::Mutex;

/// Buffers smaller than this are allocated and freed as usual (the allocator
/// keeps small blocks itself).
pub const MIN_BYTES: usize = 256 << 10;

/// Most bytes the pool holds.
pub const POOL_MAX_BYTES: usize = 1 << 30;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<Vec<f32>>> {
    // A panic while holding the lock leaves only whole buffers behind.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `n` zeros, in a buffer from the pool when one of that length is there.
pub fn zeroed(n: usize) -> Vec<f32> {
    if let Some(mut v) = take(n) {
        v.clear();
        v.resize(n, 0.0);
        return v;
    }
    vec![0.0; n]
}

/// A pooled buffer of capacity `n`, if the pool has one (large buffers only).
fn take(n: usize) -> Option<Vec<f32>> {
    if n * 4 < MIN_BYTES {
        return None;
    }
    let mut p = pool();
    p.iter()
        .position(|v| v.capacity() == n)
        .map(|i| p.swap_remove(i))
}

/// `n` values for a buffer whose every element the caller writes before
/// reading it: a pooled buffer is handed out as it was left, without the
/// memset of [`zeroed`]. In builds with debug assertions (the tests) the
/// values are NaN instead, so a read before a write shows as NaN results.
pub fn for_overwrite(n: usize) -> Vec<f32> {
    if let Some(mut v) = take(n) {
        if cfg!(debug_assertions) {
            v.clear();
            v.resize(n, f32::NAN);
        } else if v.len() != n {
            v.resize(n, 0.0);
        }
        return v;
    }
    if cfg!(debug_assertions) {
        vec![f32::NAN; n]
    } else {
        vec![0.0; n]
    }
}

/// Hands a buffer back for [`zeroed`] to reuse (dropped instead when it is
/// small or the pool is full).
pub fn recycle(v: Vec<f32>) {
    let bytes = v.capacity() * 4;
    if bytes < MIN_BYTES {
        return;
    }
    let mut p = pool();
    let held: usize = p.iter().map(|b| b.capacity() * 4).sum();
    if held + bytes <= POOL_MAX_BYTES {
        p.push(v);
    }
}

/// Frees every buffer the pool holds.
pub fn release() {
    pool().clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_is_reused_and_comes_back_zeroed() {
        // A length no other test uses (they share the process's pool).
        let n = (MIN_BYTES / 4) + 12_345;
        let mut v = zeroed(n);
        v.iter_mut().for_each(|x| *x = 7.0);
        let ptr = v.as_ptr();
        recycle(v);
        let w = zeroed(n);
        assert_eq!(w.as_ptr(), ptr, "not reused");
        assert_eq!(w.len(), n);
        assert!(w.iter().all(|&x| x == 0.0));
        recycle(w);
    }
}
