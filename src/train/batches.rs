//! Which rows make up each batch of an epoch.

use crate::rng::Rng;

/// Row indices of each batch of one epoch over `n` rows.
///
/// - `shuffle = None`: rows in file order, `ceil(n / batch_size)` batches, the
///   last one partial (a PyTorch `DataLoader` with `shuffle=False`);
/// - `shuffle = Some(rng)`: a fresh Fisher–Yates permutation of `0..n` drawn
///   from `rng` (which moves on, so each epoch gets its own order), then cut
///   the same way.
///
/// With `drop_last`, a final batch shorter than `batch_size` is left out.
/// `batch_size` must be at least 1.
pub fn batch_indices(
    n: usize,
    batch_size: usize,
    shuffle: Option<&mut Rng>,
    drop_last: bool,
) -> Vec<Vec<usize>> {
    assert!(
        batch_size > 0,
        "batch_size must be at least 1 (checked by FitConfig::validate)"
    );
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(rng) = shuffle {
        rng.shuffle(&mut order);
    }
    order
        .chunks(batch_size)
        .filter(|c| !drop_last || c.len() == batch_size)
        .map(|c| c.to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_order_has_partial_last_batch() {
        let b = batch_indices(7, 3, None, false);
        assert_eq!(b, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(batch_indices(7, 3, None, true).len(), 2);
    }

    #[test]
    fn shuffled_batches_are_a_permutation_and_differ_per_epoch() {
        let mut rng = Rng::new(5);
        let e1: Vec<usize> = batch_indices(50, 8, Some(&mut rng), false).concat();
        let e2: Vec<usize> = batch_indices(50, 8, Some(&mut rng), false).concat();
        let mut s = e1.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(e1, e2);
        assert_ne!(e1, (0..50).collect::<Vec<_>>());
        let mut again = Rng::new(5);
        assert_eq!(batch_indices(50, 8, Some(&mut again), false).concat(), e1);
    }
}
