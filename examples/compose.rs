//! The recurrent stack as an op inside a model of the application's own: a
//! causal 1-D convolution front end, a GRU stack, and a readout with a
//! custom loss, all but the stack written here. The task: read a noisy sine
//! wave and say its frequency. Trained with the library's Adam on one flat
//! parameter vector; `--device gpu` runs the stack as [`GpuStack`] (the
//! convolution and the loss stay on the host).
//!
//! ```text
//! cargo run --release --example compose -- --device cpu --steps 300
//! ```
//!
//! `tests/stack_op.rs` checks this composition's gradients by finite
//! differences on both paths, through the functions below.

use clap::Parser;
use recurrent::gpu::{GpuStack, StackHandle};
use recurrent::rng::Rng;
use recurrent::{Cell, Error, Optimizer, RecurrentStack, StackForward, Tensor};

/// Input channels, convolution width and channels out (the stack's input).
pub const C_IN: usize = 2;
pub const K: usize = 3;
pub const C_OUT: usize = 6;

/// Where the stack runs.
pub enum Path {
    Cpu(RecurrentStack),
    Gpu(Box<GpuStack>),
}

/// What the stack's forward left for its backward.
pub enum Saved {
    Cpu(StackForward),
    Gpu(StackHandle),
}

/// The composition: convolution → stack → readout.
pub struct Net {
    pub stack: RecurrentStack,
}

impl Net {
    pub fn new(hidden: usize, layers: usize) -> Net {
        Net {
            stack: RecurrentStack::new(Cell::Gru, C_OUT, hidden).layers(layers),
        }
    }
    /// Flat parameters: the stack's, the convolution's `w [C_OUT, C_IN, K]`
    /// and `b [C_OUT]`, the readout's `w [D]` and `b [1]`.
    pub fn num_params(&self) -> usize {
        self.stack.num_params() + C_OUT * C_IN * K + C_OUT + self.stack.output_width() + 1
    }
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut p = self.stack.init(seed);
        let mut rng = Rng::new(seed + 1);
        let rest = self.num_params() - p.len();
        p.extend((0..rest).map(|_| rng.uniform(-0.3, 0.3)));
        p
    }

    /// Mean squared error of the predicted frequencies and the gradient of
    /// every parameter; `x [T, B, C_IN]` time-major, `target [B]`.
    pub fn loss_and_grad(
        &self,
        path: &mut Path,
        params: &[f32],
        x: &[f32],
        t: usize,
        b: usize,
        target: &[f32],
    ) -> Result<(f32, Vec<f32>), Error> {
        let ps = self.stack.num_params();
        let d = self.stack.output_width();
        let (sp, rest) = params.split_at(ps);
        let (cw, rest) = rest.split_at(C_OUT * C_IN * K);
        let (cb, rest) = rest.split_at(C_OUT);
        let (rw, rb) = rest.split_at(d);
        // Causal convolution, tanh: u[t,b,o] = tanh(cb[o] + Σ_c,k cw[o,c,k]·x[t-K+1+k, b, c]).
        let xat = |ti: isize, bi: usize, c: usize| -> f32 {
            if ti < 0 {
                0.0
            } else {
                x[(ti as usize * b + bi) * C_IN + c]
            }
        };
        let mut u = vec![0.0f32; t * b * C_OUT];
        for ti in 0..t {
            for bi in 0..b {
                for o in 0..C_OUT {
                    let mut z = cb[o];
                    for c in 0..C_IN {
                        for k in 0..K {
                            z += cw[(o * C_IN + c) * K + k]
                                * xat(ti as isize - (K - 1 - k) as isize, bi, c);
                        }
                    }
                    u[(ti * b + bi) * C_OUT + o] = z.tanh();
                }
            }
        }
        let ut = Tensor::new(vec![t, b, C_OUT], u.clone());
        let (y, saved) = match path {
            Path::Cpu(op) => {
                let f = op.forward(sp, &ut, None, None, None)?;
                (f.y.clone(), Saved::Cpu(f))
            }
            Path::Gpu(op) => {
                let (y, _, _, h) = op.forward(&ut, None, None, None)?;
                (y, Saved::Gpu(h))
            }
        };
        // Readout on the last step and the loss.
        let last = &y.data[(t - 1) * b * d..];
        let mut loss = 0.0f32;
        let mut dy = vec![0.0f32; t * b * d];
        let mut g_rw = vec![0.0f32; d];
        let mut g_rb = 0.0f32;
        for bi in 0..b {
            let hrow = &last[bi * d..(bi + 1) * d];
            let pred = rb[0] + hrow.iter().zip(rw).map(|(h, w)| h * w).sum::<f32>();
            let e = pred - target[bi];
            loss += e * e / b as f32;
            let dpred = 2.0 * e / b as f32;
            g_rb += dpred;
            for j in 0..d {
                g_rw[j] += dpred * hrow[j];
                dy[((t - 1) * b + bi) * d + j] = dpred * rw[j];
            }
        }
        let dy = Tensor::new(vec![t, b, d], dy);
        let g = match (path, saved) {
            (Path::Cpu(op), Saved::Cpu(f)) => op.backward(sp, &f, &dy, None, None)?,
            (Path::Gpu(op), Saved::Gpu(h)) => op.backward(h, &dy, None, None)?,
            _ => unreachable!("a path's forward saves its own kind"),
        };
        // Back through the tanh and the convolution.
        let mut g_cw = vec![0.0f32; C_OUT * C_IN * K];
        let mut g_cb = vec![0.0f32; C_OUT];
        for ti in 0..t {
            for bi in 0..b {
                for o in 0..C_OUT {
                    let at = (ti * b + bi) * C_OUT + o;
                    let dz = g.dx.data[at] * (1.0 - u[at] * u[at]);
                    g_cb[o] += dz;
                    for c in 0..C_IN {
                        for k in 0..K {
                            g_cw[(o * C_IN + c) * K + k] +=
                                dz * xat(ti as isize - (K - 1 - k) as isize, bi, c);
                        }
                    }
                }
            }
        }
        let mut grads = g.dparams;
        grads.extend(g_cw);
        grads.extend(g_cb);
        grads.extend(g_rw);
        grads.push(g_rb);
        Ok((loss, grads))
    }
}

/// `n` noisy sine waves of `t` steps, time-major `[t, n, C_IN]` (channel 0
/// the wave, channel 1 noise), and their frequencies (cycles per step).
pub fn waves(n: usize, t: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let freqs: Vec<f32> = (0..n).map(|_| rng.uniform(0.05, 0.25)).collect();
    let phases: Vec<f32> = (0..n).map(|_| rng.uniform(0.0, 6.28)).collect();
    let mut x = vec![0.0f32; t * n * C_IN];
    for ti in 0..t {
        for i in 0..n {
            let at = (ti * n + i) * C_IN;
            x[at] =
                (6.2832 * freqs[i] * ti as f32 + phases[i]).sin() + 0.1 * rng.uniform(-1.0, 1.0);
            x[at + 1] = 0.5 * rng.uniform(-1.0, 1.0);
        }
    }
    (x, freqs)
}

#[derive(Parser)]
#[command(about = "A 1-D convolution, the recurrent stack op and a custom loss, trained together")]
struct Args {
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 30)]
    seq_len: usize,
}

#[allow(dead_code)] // the tests use the functions above, not main
fn main() -> Result<(), Error> {
    let a = Args::parse();
    let net = Net::new(a.hidden, 1);
    let mut params = net.init(3);
    let mut path = match a.device.as_str() {
        "cpu" => Path::Cpu(net.stack.clone()),
        "gpu" => {
            let ctx = recurrent::gpu::try_context()?;
            eprintln!("stack on {}", ctx.describe());
            Path::Gpu(Box::new(GpuStack::new(
                ctx,
                &net.stack,
                &params[..net.stack.num_params()],
            )?))
        }
        other => return Err(Error::Argument(format!("--device {other}: cpu or gpu"))),
    };
    let mut opt = Optimizer::adam(1e-2);
    let (vx, vy) = waves(256, a.seq_len, 999);
    let mut first = None;
    for step in 0..a.steps {
        let (x, y) = waves(a.batch, a.seq_len, step as u64);
        if let Path::Gpu(op) = &mut path {
            op.set_params(&params[..net.stack.num_params()])?;
        }
        let (loss, grads) = net.loss_and_grad(&mut path, &params, &x, a.seq_len, a.batch, &y)?;
        opt.update(&mut params, &grads);
        first.get_or_insert(loss);
        if step % 50 == 0 || step + 1 == a.steps {
            eprintln!("step {step:4}  loss {loss:.5}");
        }
    }
    if let Path::Gpu(op) = &mut path {
        op.set_params(&params[..net.stack.num_params()])?;
    }
    let (val, _) = net.loss_and_grad(&mut path, &params, &vx, a.seq_len, 256, &vy)?;
    let spread = {
        let m = vy.iter().sum::<f32>() / vy.len() as f32;
        vy.iter().map(|f| (f - m).powi(2)).sum::<f32>() / vy.len() as f32
    };
    println!(
        "validation mse {val:.6} (predicting the mean: {spread:.6}); first batch loss {:.5}",
        first.unwrap_or(0.0)
    );
    Ok(())
}
