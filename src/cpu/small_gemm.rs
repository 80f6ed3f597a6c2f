//! The per-step recurrent products of the CPU path: `C[m×n] += A[m×k]·B[k×n]`
//! with a small `m` (the batch), row-major, `B` read in `k` order. A register
//! block of 4 rows × 64 columns stays in vector registers across the whole
//! `k` loop, so each element of `B` is loaded once per 4 rows. Compiled three
//! times (AVX-512, AVX2+FMA, baseline) and chosen at run time.
//!
//! General GEMM libraries pack both operands on every call, which dominates
//! at these shapes (m = 32, k = 128, n = 512 for the MNIST layer: 2 M
//! multiply-adds, called 56 times per training step).

const MR: usize = 4;
const NR: usize = 64;

#[inline(always)]
fn kernel<const FMA: bool>(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    let madd = |acc: f32, x: f32, y: f32| if FMA { x.mul_add(y, acc) } else { acc + x * y };
    let mut i0 = 0;
    while i0 < m {
        let mr = MR.min(m - i0);
        let mut j0 = 0;
        while j0 < n {
            let nr = NR.min(n - j0);
            if mr == MR && nr == NR {
                let mut acc = [[0.0f32; NR]; MR];
                for p in 0..k {
                    let brow: &[f32; NR] = b[p * n + j0..p * n + j0 + NR].try_into().unwrap();
                    for (i, row) in acc.iter_mut().enumerate() {
                        let av = a[(i0 + i) * k + p];
                        for j in 0..NR {
                            row[j] = madd(row[j], av, brow[j]);
                        }
                    }
                }
                for (i, row) in acc.iter().enumerate() {
                    let out = &mut c[(i0 + i) * n + j0..(i0 + i) * n + j0 + NR];
                    for j in 0..NR {
                        out[j] += row[j];
                    }
                }
            } else {
                for i in i0..i0 + mr {
                    let out = &mut c[i * n + j0..i * n + j0 + nr];
                    for p in 0..k {
                        let av = a[i * k + p];
                        let brow = &b[p * n + j0..p * n + j0 + nr];
                        for j in 0..nr {
                            out[j] = madd(out[j], av, brow[j]);
                        }
                    }
                }
            }
            j0 += NR;
        }
        i0 += MR;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn kernel_avx512(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    kernel::<true>(m, n, k, a, b, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    kernel::<true>(m, n, k, a, b, c)
}

/// Smallest product (m·n·k multiply-adds) split across threads by rows: below it,
/// waking the pool costs more than it saves (a wake-up is ~5-20 µs; 1 M
/// multiply-adds take ~10 µs on one AVX-512 core).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Largest product (m·n·k multiply-adds) for which this kernel beats the packed
/// GEMM: measured on the H200 machine's Xeon (2 cores, AVX-512), the MNIST layer's
/// 2 M (32×512×128) is ~7% faster here, the 67 M of H=512, B=64 (64×2048×512)
/// 20% slower (`benches/results/2026-11-27-h200-run2`).
pub const SMALL_MAX_MACS: usize = 1 << 23;

/// `c[m×n] += a[m×k]·b[k×n]`, all row-major and contiguous; rows split across
/// rayon's threads when the product is large enough.
pub fn gemm_acc(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm_acc: operands too short"
    );
    let threads = rayon::current_num_threads();
    if threads > 1 && m >= 2 * MR && m * n * k >= PARALLEL_MIN_MACS {
        use rayon::prelude::*;
        // Row blocks that are whole multiples of the register block.
        let rows = m.div_ceil(threads).div_ceil(MR) * MR;
        c[..m * n]
            .par_chunks_mut(rows * n)
            .zip(a[..m * k].par_chunks(rows * k))
            .for_each(|(c, a)| {
                let mr = a.len() / k;
                gemm_serial(mr, n, k, a, b, c)
            });
        return;
    }
    gemm_serial(m, n, k, a, b, c)
}

fn gemm_serial(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { kernel_avx512(m, n, k, a, b, c) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { kernel_avx2(m, n, k, a, b, c) };
        }
    }
    kernel::<false>(m, n, k, a, b, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_packed_gemm_on_edge_shapes() {
        for (m, n, k) in [
            (1, 1, 1),
            (4, 64, 3),
            (5, 67, 13),
            (32, 512, 128),
            (9, 130, 7),
            (37, 600, 300),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1)
                .collect();
            let mut want = vec![0.5f32; m * n];
            crate::cpu::gemm::gemm(m, n, k, &a, false, &b, false, &mut want, 1.0);
            let mut got = vec![0.5f32; m * n];
            gemm_acc(m, n, k, &a, &b, &mut got);
            for (x, y) in got.iter().zip(&want) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{m}x{n}x{k}: {x} vs {y}"
                );
            }
        }
    }
}
