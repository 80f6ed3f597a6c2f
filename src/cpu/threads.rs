//! How the CPU path shares work among rayon's threads: row blocks of a
//! batch, slots split by those blocks, and running parts in parallel.

/// Row blocks for the threads: boundaries `[0, .., b]`, as even as can be; one
/// block when the work is too small to split.
pub fn row_blocks(b: usize, macs: usize) -> Vec<usize> {
    // Below ~2 M multiply-adds for the whole sequence, waking a second thread
    // costs more than it saves.
    const PARALLEL_MIN_MACS: usize = 1 << 21;
    let threads = rayon::current_num_threads();
    let parts = if macs < PARALLEL_MIN_MACS {
        1
    } else {
        threads.min(b).max(1)
    };
    (0..=parts).map(|p| p * b / parts).collect()
}

/// Splits every `slot`-long slot of `buf` into the row blocks of `bounds`
/// (`width` values per row): `result[part][slot]`. An empty `buf` gives empty parts.
pub fn split_slots<'a>(
    buf: &'a mut [f32],
    slot: usize,
    bounds: &[usize],
    width: usize,
) -> Vec<Vec<&'a mut [f32]>> {
    let slots = buf.len().checked_div(slot).unwrap_or(0);
    let mut out: Vec<Vec<&'a mut [f32]>> = (1..bounds.len())
        .map(|_| Vec::with_capacity(slots))
        .collect();
    if buf.is_empty() || slot == 0 {
        return out;
    }
    for s in buf.chunks_exact_mut(slot) {
        let mut rest = s;
        for (p, w) in bounds.windows(2).enumerate() {
            let (head, tail) = rest.split_at_mut((w[1] - w[0]) * width);
            out[p].push(head);
            rest = tail;
        }
    }
    out
}

/// Runs `f` on every part, in parallel when there is more than one.
pub fn for_parts<P: Send, R: Send>(parts: Vec<P>, f: impl Fn(P) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    if parts.len() == 1 {
        return parts.into_iter().map(f).collect();
    }
    parts.into_par_iter().map(f).collect()
}

/// Runs `f` on every item, in parallel, by halving joins (no allocation,
/// unlike a parallel iterator's job list).
pub fn join_all<T: Send>(items: &mut [T], f: &(impl Fn(&mut T) + Sync)) {
    match items.len() {
        0 => {}
        1 => f(&mut items[0]),
        len => {
            let (lo, hi) = items.split_at_mut(len / 2);
            rayon::join(|| join_all(lo, f), || join_all(hi, f));
        }
    }
}
