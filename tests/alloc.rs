//! The CPU path allocates nothing inside its time loops: a layer's forward and
//! backward make the same number of heap allocations for a sequence nine
//! times as long (up to the few that the GEMM crate and rayon vary by).
//! Counted by a global allocator wrapping the system's, on a two-thread pool
//! so that the threaded paths (batch split, units split) run. Only the
//! allocations of the counting test's own pool are counted: the test
//! harness's thread reports the other test's result meanwhile (14
//! allocations, enough to fail a bound, seen on CI when both tests ran at once).

use recurrent::cpu::dims::Dims;
use recurrent::cpu::layer::{backward, forward, GradsOut, Weights};
use recurrent::{Cell, Nonlinearity};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell as StdCell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Those of at least `recurrent::cpu::scratch::MIN_BYTES`.
static LARGE: AtomicUsize = AtomicUsize::new(0);

/// The pool whose threads' allocations are counted (0: none).
static COUNTED_POOL: AtomicUsize = AtomicUsize::new(0);
/// Pools made so far (each gets the next number).
static POOLS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The pool this thread belongs to (0: none); no allocation to read or set.
    static POOL: StdCell<usize> = const { StdCell::new(0) };
}

fn count(layout: &Layout) {
    let pool = POOL.with(|p| p.get());
    if pool == 0 || pool != COUNTED_POOL.load(Ordering::Relaxed) {
        return;
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if layout.size() >= recurrent::cpu::scratch::MIN_BYTES {
        LARGE.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&layout);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&layout);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(&Layout::from_size_align(new_size, layout.align()).unwrap());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counters are global: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn val(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|k| (((k * 7919 + seed) % 1000) as f32 / 1000.0 - 0.5) * 0.4)
        .collect()
}

/// Heap allocations (all, and large) made by one forward and one backward of
/// `d`, with its inputs and outputs allocated before counting starts.
fn counts(d: &Dims, lengths: bool) -> (usize, usize) {
    let gw = d.gh();
    let (w_ih, w_hh, b_ih, b_hh) = (val(gw * d.i, 1), val(gw * d.h, 2), val(gw, 3), val(gw, 4));
    let w = Weights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
        h_mask: None,
    };
    let x = val(d.t * d.b * d.i, 5);
    let dy = val(d.t * d.b * d.h, 6);
    let lens: Vec<usize> = (0..d.b).map(|r| 1 + r % d.t).collect();
    let lengths = lengths.then_some(&lens[..]);
    let mut g = [
        vec![0.0; gw * d.i],
        vec![0.0; gw * d.h],
        vec![0.0; gw],
        vec![0.0; gw],
    ];
    let mut dx = vec![0.0; d.t * d.b * d.i];
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let large_before = LARGE.load(Ordering::SeqCst);
    let s = forward(d, w, &x, lengths, None, None);
    let [g0, g1, g2, g3] = &mut g;
    let out = GradsOut {
        w_ih: g0,
        w_hh: g1,
        b_ih: g2,
        b_hh: g3,
    };
    let r = backward(d, w, &x, &s, lengths, &dy, None, None, out, Some(&mut dx));
    let n = ALLOCATIONS.load(Ordering::SeqCst) - before;
    let large = LARGE.load(Ordering::SeqCst) - large_before;
    std::hint::black_box((s, r, g, dx));
    (n, large)
}

fn allocations(d: &Dims, lengths: bool) -> usize {
    counts(d, lengths).0
}

/// One tanh layer-direction.
fn dims(cell: Cell, i: usize, h: usize, b: usize, t: usize, reverse: bool) -> Dims {
    Dims {
        cell,
        act: Nonlinearity::Tanh,
        t,
        b,
        i,
        h,
        reverse,
    }
}

/// Runs `f` on a two-thread pool (so the threaded paths run), while no other
/// test of this file counts (the counters are global); only that pool's
/// threads are counted.
fn on_two_threads(f: impl FnOnce() + Send) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let id = POOLS.fetch_add(1, Ordering::SeqCst) + 1;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .start_handler(move |_| POOL.with(|p| p.set(id)))
        .build()
        .unwrap();
    COUNTED_POOL.store(id, Ordering::SeqCst);
    pool.install(f);
    COUNTED_POOL.store(0, Ordering::SeqCst);
}

/// The large buffers of a step (input projections, saved gates, states, gate
/// gradients, packed weights) come from `cpu::scratch`'s pool from the second
/// step on, so no new pages fault in (BENCHMARKS.md). What is still allocated
/// is the `gemm` crate's own packing space, which it takes per call when its
/// blocking (derived from the machine's cache sizes) says to pack: at most
/// one block per GEMM of the layer-direction's step — the input projection,
/// `dW_ih`, `dW_hh` and `dX`, four here. Measured with the same code: 2 (LSTM)
/// and 0 (GRU) on an Intel CI machine, 4 and 4 on a 2-core AMD EPYC (64 KiB
/// L1d, 1 MiB L2). A step whose own buffers were not pooled allocates 13
/// (LSTM) or 8 (GRU), above the bound.
#[test]
fn a_repeated_step_allocates_no_large_buffer_of_its_own() {
    on_two_threads(|| {
        // Sizes no other test here uses (the tests share the process's pool).
        for (cell, i, h, b, t, most) in [
            (Cell::Lstm, 64, 400, 32, 12, 4),
            (Cell::Gru, 64, 136, 64, 20, 4),
        ] {
            let d = dims(cell, i, h, b, t, false);
            let (_, first) = counts(&d, true);
            let (_, second) = counts(&d, true);
            assert!(
                first > most,
                "{cell:?}: {first} large buffers in the first step: the test proves nothing"
            );
            assert!(
                second <= most,
                "{cell:?}: {second} large buffers allocated again (first step: {first})"
            );
        }
    });
}

#[test]
fn a_longer_sequence_makes_no_more_allocations() {
    on_two_threads(|| {
        // (cell, input, hidden, batch): LSTM with the input projection folded
        // into each step (small weights) and apart with the units split across
        // the threads (packed W_hhᵀ over 2 MiB: H = 384), GRU, RNN.
        let cases = [
            (Cell::Lstm, 3, 8, 5),
            (Cell::Lstm, 4, 384, 3),
            (Cell::Gru, 3, 16, 5),
            (Cell::Rnn, 3, 16, 5),
        ];
        for (cell, i, h, b) in cases {
            for reverse in [false, true] {
                for lengths in [false, true] {
                    let dims = |t| dims(cell, i, h, b, t, reverse);
                    // Warm up: the thread pool's and the GEMM's first-use
                    // allocations, and cpu::scratch's pool with both lengths' buffers.
                    allocations(&dims(4), lengths);
                    allocations(&dims(36), lengths);
                    let (short, long) = (
                        allocations(&dims(4), lengths),
                        allocations(&dims(36), lengths),
                    );
                    assert!(
                        short > 0,
                        "the counting allocator saw nothing: the test would prove nothing"
                    );
                    // One allocation a step would add 32; the GEMM crate's and
                    // rayon's own buffers vary by one or two from call to call.
                    assert!(
                        long <= short + 4,
                        "{cell:?} I={i} H={h} B={b} reverse={reverse} lengths={lengths}: \
                         {short} allocations for 4 steps, {long} for 36"
                    );
                }
            }
        }
    });
}
