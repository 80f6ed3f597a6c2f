// part: binary16 conversions for step_common.wgsl and whh_f16.wgsl
// IEEE binary16 by integer arithmetic, the same operations as src/gpu/half.rs,
// so the GPU's f16 copy of W_hh is bit for bit the host's rounding: nearest,
// ties to even, subnormals kept. (pack2x16float would leave the rounding
// direction to the implementation and unpack2x16float may flush subnormals.)
// Two halves share a u32: element e of a block is bits 16*(e%2).. of word e/2.

// The binary16 bits nearest to x, in the low 16 bits.
fn f16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if a >= 0x7f800000u {
        return sign | 0x7c00u | select(0u, 0x200u, a > 0x7f800000u);
    }
    if a >= 0x477ff000u {
        return sign | 0x7c00u;
    }
    if a < 0x38800000u {
        if a < 0x33000000u {
            return sign;
        }
        let e = a >> 23u;
        let m = (a & 0x7fffffu) | 0x800000u;
        let shift = 126u - e;
        let q = m >> shift;
        let rem = m & ((1u << shift) - 1u);
        let half = 1u << (shift - 1u);
        return sign | (q + select(0u, 1u, rem > half || (rem == half && (q & 1u) == 1u)));
    }
    let r = a - 0x38000000u;
    let h = r >> 13u;
    let rem = r & 0x1fffu;
    return sign | (h + select(0u, 1u, rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)));
}

// The f32 value of the binary16 bits in the low 16 bits of h (exact).
fn f16_value(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if e == 0u {
        // m * 2^-24: exact, and a normal f32 unless zero.
        return bitcast<f32>(bitcast<u32>(f32(m) * bitcast<f32>(0x33800000u)) | sign);
    }
    if e == 31u {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}
