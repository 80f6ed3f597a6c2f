//! Matrix products for the CPU path, through the `gemm` crate (packed SIMD
//! kernels up to AVX-512, threads through rayon). Transposes are expressed as
//! strides: nothing is copied.

/// `C[m×n] = beta·C + A·B` where `A` is `[m×k]` row-major, or `[k×m]` when
/// `ta` (so `Aᵀ` is used), and `B` is `[k×n]`, or `[n×k]` when `tb`.
/// All three are contiguous. `beta = 0` overwrites `C` (NaN in it is not propagated).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
    beta: f32,
) {
    debug_assert!(
        a.len() >= m * k,
        "gemm: A has {} values, needs {}",
        a.len(),
        m * k
    );
    debug_assert!(
        b.len() >= k * n,
        "gemm: B has {} values, needs {}",
        b.len(),
        k * n
    );
    debug_assert!(
        c.len() >= m * n,
        "gemm: C has {} values, needs {}",
        c.len(),
        m * n
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        let c = &mut c[..m * n];
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.iter_mut().for_each(|v| *v *= beta);
        }
        return;
    }
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // Threads only pay off once a product is big enough to split (measured:
    // below ~1 MFLOP, waking the pool costs more than it saves).
    let par = if m * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the strides above address exactly the m×k, k×n and m×n
    // row-major (or transposed) blocks whose lengths are checked above.
    // `gemm` computes dst = alpha·dst + beta·lhs·rhs; alpha is only read when read_dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            csb,
            rsb,
            beta,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Smallest product (m·n·k multiply-adds) that is split across threads.
const PARALLEL_MIN_MACS: usize = 1 << 19;

/// `out[j] += Σ_rows m[row, j]` for a row-major `[rows × cols]` matrix.
pub fn add_column_sums(m: &[f32], cols: usize, out: &mut [f32]) {
    for row in m.chunks_exact(cols) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av * bv;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn every_transpose_matches_naive_product() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for ta in [false, true] {
            for tb in [false, true] {
                let mut c = vec![1.0; m * n];
                gemm(m, n, k, &a, ta, &b, tb, &mut c, 0.0);
                let want = naive(m, n, k, &a, ta, &b, tb);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5, "ta={ta} tb={tb}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn beta_one_accumulates_and_k_zero_scales() {
        let a = [1.0, 2.0];
        let b = [3.0, 4.0];
        let mut c = [10.0];
        gemm(1, 1, 2, &a, false, &b, false, &mut c, 1.0);
        assert_eq!(c[0], 21.0);
        gemm(1, 1, 0, &a, false, &b, false, &mut c, 0.5);
        assert_eq!(c[0], 10.5);
    }
}
