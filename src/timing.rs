//! The one median every timing in the crate takes (benches, the GPU tuner).

/// The median of `v`: its middle value in the total order of `f64` (the upper
/// of the two middle values for an even count; NaN sorts last, so a failed
/// timing cannot panic the sort), or `None` for no values.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    Some(s[s.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_middle_value_upper_for_even_counts_nan_last() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(median(&[f64::NAN, 1.0, 2.0]), Some(2.0));
    }
}
