//! IEEE 754 half precision (binary16) by hand: the host side of the opt-in
//! f16 copy of the recurrent weights ([`GpuContext::set_f16_weights`](super::GpuContext::set_f16_weights)).
//!
//! `shaders/half.wgsl` does the same conversions with the same integer
//! operations, so the GPU's copy of W_hh is bit for bit what
//! [`round_to_f16`] gives on the host: round to nearest, ties to even,
//! subnormals kept, overflow to ±infinity. (WGSL's `pack2x16float` leaves the
//! rounding direction to the implementation and may flush subnormals, which is
//! why the shaders do not use it.) No `half` crate: these few lines are all
//! the crate needs, and the tests check them against every f16 value.

/// The binary16 bits nearest to `x` (ties to even). NaN stays NaN (quiet),
/// values at or above 65520 in magnitude become infinity, values below 2^-24
/// become subnormals or zero.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7fff_ffff;
    if a >= 0x7f80_0000 {
        // Infinity, or NaN (kept quiet and non-zero).
        return sign | 0x7c00 | if a > 0x7f80_0000 { 0x0200 } else { 0 };
    }
    if a >= 0x477f_f000 {
        // 65520 = halfway between 65504 (the largest f16) and 65536: rounds up, to infinity.
        return sign | 0x7c00;
    }
    if a < 0x3880_0000 {
        // Below 2^-14, the smallest normal f16: a multiple of 2^-24 (subnormal).
        if a < 0x3300_0000 {
            // Below 2^-25 (half the smallest subnormal): zero. 2^-25 itself ties to even, zero.
            return sign;
        }
        let e = a >> 23; // 102..=112
        let m = (a & 0x007f_ffff) | 0x0080_0000;
        // a = m · 2^(e - 150) = (m >> shift) · 2^-24 with shift = 126 - e (14..=24).
        let shift = 126 - e;
        let q = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        let r = q + u32::from(rem > half || (rem == half && q & 1 == 1));
        return sign | r as u16;
    }
    // Normal: rebias the exponent (127 → 15) and round away 13 mantissa bits;
    // a carry out of the mantissa correctly bumps the exponent.
    let r = a - 0x3800_0000;
    let h = r >> 13;
    let rem = r & 0x1fff;
    let h = h + u32::from(rem > 0x1000 || (rem == 0x1000 && h & 1 == 1));
    sign | h as u16
}

/// The f32 value of binary16 bits `h` (exact: every f16 is an f32).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let e = (h >> 10) & 0x1f;
    let m = h & 0x3ff;
    if e == 0 {
        // Zero or subnormal: m · 2^-24, exact in f32.
        let v = m as f32 * f32::from_bits(0x3380_0000);
        return f32::from_bits(v.to_bits() | sign);
    }
    if e == 31 {
        return f32::from_bits(sign | 0x7f80_0000 | (m << 13));
    }
    f32::from_bits(sign | ((e + 112) << 23) | (m << 13))
}

/// `x` rounded to the nearest f16 and back: the value the f16 step kernels
/// use for a weight `x` of W_hh.
pub fn round_to_f16(x: f32) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(f32_to_f16_bits(0.0), 0x0000);
        assert_eq!(f32_to_f16_bits(-0.0), 0x8000);
        assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
        assert_eq!(f32_to_f16_bits(-2.0), 0xc000);
        assert_eq!(f32_to_f16_bits(0.5), 0x3800);
        assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
        assert_eq!(f32_to_f16_bits(65519.996), 0x7bff);
        assert_eq!(f32_to_f16_bits(65520.0), 0x7c00);
        assert_eq!(f32_to_f16_bits(1e6), 0x7c00);
        assert_eq!(f32_to_f16_bits(f32::INFINITY), 0x7c00);
        assert_eq!(f32_to_f16_bits(f32::NEG_INFINITY), 0xfc00);
        assert!(f16_bits_to_f32(f32_to_f16_bits(f32::NAN)).is_nan());
        // 1/3 = 0x3555 (0.333251953125, the nearest f16).
        assert_eq!(f32_to_f16_bits(1.0 / 3.0), 0x3555);
        // Smallest normal and subnormals.
        assert_eq!(f32_to_f16_bits(2f32.powi(-14)), 0x0400);
        assert_eq!(f32_to_f16_bits(2f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16_bits(2f32.powi(-25)), 0x0000); // tie to even
        assert_eq!(f32_to_f16_bits(1.5 * 2f32.powi(-24)), 0x0002); // tie to even
        assert_eq!(f32_to_f16_bits(2.5 * 2f32.powi(-24)), 0x0002); // tie to even
        assert_eq!(f32_to_f16_bits(-3.0 * 2f32.powi(-24)), 0x8003);
        assert_eq!(f32_to_f16_bits(1e-10), 0x0000);
        // Ties between normals: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10.
        assert_eq!(f32_to_f16_bits(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f16_bits_to_f32(0x3c01), 1.0 + 2f32.powi(-10));
        assert_eq!(f16_bits_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_bits_to_f32(0x83ff), -1023.0 * 2f32.powi(-24));
        assert_eq!(f16_bits_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_bits_to_f32(0xfc00), f32::NEG_INFINITY);
        assert_eq!(f16_bits_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    /// Every finite f16 survives f16 → f32 → f16, and every f32 between two
    /// neighbouring f16 values goes to the nearer one (the even one at the
    /// midpoint): checked at the midpoint and one f32 ulp either side of it.
    #[test]
    fn every_f16_round_trips_and_midpoints_round_to_nearest_even() {
        for h in 0u16..=0xffff {
            let x = f16_bits_to_f32(h);
            if x.is_nan() {
                assert!(f16_bits_to_f32(f32_to_f16_bits(x)).is_nan());
                continue;
            }
            assert_eq!(f32_to_f16_bits(x), h, "{h:#06x} = {x:e}");
            // The next f16 away from zero (skip the largest finite and infinities).
            if h & 0x7fff >= 0x7bff {
                continue;
            }
            let next = h + 1;
            let y = f16_bits_to_f32(next);
            let mid = (x as f64 + y as f64) / 2.0;
            let mid32 = mid as f32;
            assert_eq!(mid32 as f64, mid, "midpoints are f32 values");
            let even = if h & 1 == 0 { h } else { next };
            assert_eq!(f32_to_f16_bits(mid32), even, "midpoint of {h:#06x}");
            let toward_x = f32::from_bits(mid32.to_bits() - 1);
            let toward_y = f32::from_bits(mid32.to_bits() + 1);
            // For positive h, bits - 1 moves toward zero (x); for negative, also toward x.
            assert_eq!(
                f32_to_f16_bits(toward_x),
                h,
                "below the midpoint of {h:#06x}"
            );
            assert_eq!(
                f32_to_f16_bits(toward_y),
                next,
                "above the midpoint of {h:#06x}"
            );
        }
    }

    #[test]
    fn rounding_error_is_at_most_half_an_ulp() {
        let mut x = 1e-3f32;
        while x < 6e4 {
            let r = round_to_f16(x);
            assert!((r - x).abs() <= x * 2f32.powi(-11), "{x} -> {r}");
            assert_eq!(round_to_f16(-x), -r);
            x *= 1.0007;
        }
    }
}
