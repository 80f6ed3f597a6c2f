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
    // Threads only pay off once a product is big enough to split (measured:
    // below ~1 MFLOP, waking the pool costs more than it saves).
    let par = if m * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let lda = if ta { m } else { k };
    strided(m, n, k, a, lda, ta, b, tb, c, beta, par);
}

/// [`gemm`] on rows `0..m` of `op(A)` whose row `i` starts at `a[i·lda]`
/// (`ta`: `A` is `[k×lda]`, and row `i` of `Aᵀ` is its column `i`, at `a[i]`
/// with stride `lda`). `C` is `[m×n]` contiguous; `B` as in [`gemm`].
#[allow(clippy::too_many_arguments)]
fn strided(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
    beta: f32,
    par: gemm::Parallelism,
) {
    let (rsa, csa) = if ta { (1, lda) } else { (lda, 1) };
    // The last element each operand's strides reach.
    assert!(
        m > 0 && n > 0 && k > 0,
        "gemm: empty products are handled by the caller"
    );
    assert!(
        (m - 1) * rsa + (k - 1) * csa < a.len() && k * n <= b.len() && m * n <= c.len(),
        "gemm: operand shorter than its shape"
    );
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the strides above address elements within the lengths asserted.
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
            csa as isize,
            rsa as isize,
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

/// One `C[m×n] += op(A)·op(B)` of a [`gemm_batch`], operands as in [`gemm`].
pub struct Product<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: &'a [f32],
    pub ta: bool,
    pub b: &'a [f32],
    pub tb: bool,
    pub c: &'a mut [f32],
}

/// Fewest rows of a piece of a product in [`gemm_batch`]: the `gemm` crate
/// blocks `k` the same way for any number of rows above 64 (below, when `n`
/// is 64 or less too, it takes another path with other blocks, so other
/// roundings), so every piece of a product sums in the same order as the
/// whole and results do not depend on the number of threads.
const PIECE_MIN_ROWS: usize = 65;

/// Independent products, accumulated (`C += op(A)·op(B)`), run together: each
/// product's rows are cut into pieces (one per thread, fewer where a product
/// has too few rows), the pieces dealt to the threads largest first, each to
/// the least loaded, and every thread runs its pieces one after the other,
/// single-threaded. Where there are fewer pieces than threads, each product
/// runs on its own with the `gemm` crate's threading instead. For the backward's weight and input gradients at small
/// sizes this beats threading each product on its own (measured at the MNIST
/// layer, BENCHMARKS.md: the pool woken and drained once, not three times).
/// Each output element gets the same arithmetic as from [`gemm`] alone.
pub fn gemm_batch(products: Vec<Product>) {
    let macs: usize = products.iter().map(|p| p.m * p.n * p.k).sum();
    let threads = rayon::current_num_threads();
    // Pieces of a product: one per thread, each of at least PIECE_MIN_ROWS rows.
    let parts_of = |m: usize| {
        if m < 2 * PIECE_MIN_ROWS {
            1
        } else {
            threads.min(m / PIECE_MIN_ROWS)
        }
    };
    let pieces_in_all: usize = products
        .iter()
        .filter(|p| p.m > 0 && p.n > 0)
        .map(|p| parts_of(p.m))
        .sum();
    // Too little work to split, or too few rows to give every thread a piece
    // (many threads, small products): each product threaded on its own, as
    // `gemm` does.
    if threads == 1 || macs < PARALLEL_MIN_MACS || pieces_in_all < threads {
        for p in products {
            gemm(p.m, p.n, p.k, p.a, p.ta, p.b, p.tb, p.c, 1.0);
        }
        return;
    }
    // Rows `r0..r0+m` of product `p`, with their rows of C.
    struct Piece<'a> {
        p: usize,
        r0: usize,
        m: usize,
        c: &'a mut [f32],
    }
    let mut pieces: Vec<Piece> = Vec::new();
    let mut shapes = Vec::with_capacity(products.len());
    for (i, p) in products.into_iter().enumerate() {
        let Product { m, n, c, .. } = p;
        shapes.push(Product { c: &mut [], ..p });
        if m == 0 || n == 0 {
            continue;
        }
        let parts = parts_of(m);
        let mut rest = &mut c[..m * n];
        let mut r0 = 0;
        for q in 0..parts {
            let r1 = (q + 1) * m / parts;
            let (head, tail) = std::mem::take(&mut rest).split_at_mut((r1 - r0) * n);
            pieces.push(Piece {
                p: i,
                r0,
                m: r1 - r0,
                c: head,
            });
            rest = tail;
            r0 = r1;
        }
    }
    let macs_of = |x: &Piece| x.m * shapes[x.p].n * shapes[x.p].k;
    // Largest first, each to the least loaded thread.
    pieces.sort_by_key(|x| std::cmp::Reverse(macs_of(x)));
    let mut lists: Vec<(usize, Vec<Piece>)> = (0..threads).map(|_| (0, Vec::new())).collect();
    for x in pieces {
        let least = lists.iter_mut().min_by_key(|l| l.0).unwrap();
        least.0 += macs_of(&x);
        least.1.push(x);
    }
    let lists: Vec<Vec<Piece>> = lists
        .into_iter()
        .map(|l| l.1)
        .filter(|l| !l.is_empty())
        .collect();
    let shapes = &shapes;
    crate::cpu::threads::for_parts(lists, |list| {
        for x in list {
            let p = &shapes[x.p];
            if p.k == 0 {
                continue; // C += nothing
            }
            // Row r0 of op(A): of A (row-major [m×k]) at r0·k, of Aᵀ ([k×m]) at r0.
            let (a, lda) = if p.ta {
                (&p.a[x.r0..], p.m)
            } else {
                (&p.a[x.r0 * p.k..], p.k)
            };
            strided(
                x.m,
                p.n,
                p.k,
                a,
                lda,
                p.ta,
                p.b,
                p.tb,
                x.c,
                1.0,
                gemm::Parallelism::None,
            );
        }
    });
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
    fn a_batch_gives_the_bits_of_its_products_alone_on_any_number_of_threads() {
        // (m, n, k, ta, tb): k above 512 so the crate blocks k; n at most 64
        // with m above it; rows that split unevenly; one product too small to split.
        let shapes = [
            (400, 20, 1100, true, false),
            (400, 100, 1100, true, false),
            (276, 20, 400, false, false),
            (131, 64, 700, false, true),
            (40, 8, 30, true, true),
        ];
        let val = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + seed) % 1013) as f32 / 1013.0 - 0.5)
                .collect()
        };
        let ops: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = shapes
            .iter()
            .enumerate()
            .map(|(s, &(m, n, k, _, _))| (val(m * k, s), val(k * n, s + 7), val(m * n, s + 13)))
            .collect();
        let mut want = Vec::new();
        for (&(m, n, k, ta, tb), (a, b, c)) in shapes.iter().zip(&ops) {
            let mut c = c.clone();
            gemm(m, n, k, a, ta, b, tb, &mut c, 1.0);
            want.push(c);
        }
        for threads in [1, 2, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            // All five (15 pieces on 4 threads); the last two alone (3 pieces:
            // fewer than 4 threads, so each product is threaded on its own).
            for first in [0, 3] {
                let mut got: Vec<Vec<f32>> = ops[first..].iter().map(|o| o.2.clone()).collect();
                let products = shapes[first..]
                    .iter()
                    .zip(&ops[first..])
                    .zip(got.iter_mut())
                    .map(|((&(m, n, k, ta, tb), (a, b, _)), c)| Product {
                        m,
                        n,
                        k,
                        a,
                        ta,
                        b,
                        tb,
                        c,
                    })
                    .collect();
                pool.install(|| gemm_batch(products));
                for (s, (g, w)) in got.iter().zip(&want[first..]).enumerate() {
                    assert!(
                        g.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "product {} of the batch from {first} on {threads} threads",
                        first + s
                    );
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
