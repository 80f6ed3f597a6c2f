//! Parameters in one flat buffer, laid out in PyTorch `state_dict` order and
//! shapes, so that checkpoints map one to one and optimizers see one vector.

use super::config::{Cell, ModelConfig};
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::ops::Range;

/// One named tensor inside the flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// PyTorch name, e.g. `rnn.weight_ih_l0_reverse`.
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl Entry {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Offsets of one recurrent layer-direction's four tensors.
#[derive(Clone, Debug)]
pub struct LayerSlots {
    /// `weight_ih [G*H, I_k]`
    pub w_ih: Range<usize>,
    /// `weight_hh [G*H, H]`
    pub w_hh: Range<usize>,
    /// `bias_ih [G*H]`
    pub b_ih: Range<usize>,
    /// `bias_hh [G*H]`
    pub b_hh: Range<usize>,
}

/// The layout of every parameter of a model.
#[derive(Clone, Debug)]
pub struct Layout {
    pub entries: Vec<Entry>,
    /// Index `layer * directions + direction`.
    pub layers: Vec<LayerSlots>,
    /// `embed.weight [V, I]`
    pub embed: Option<Range<usize>>,
    /// `head.weight [out, D]`
    pub head_w: Range<usize>,
    /// `head.bias [out]`
    pub head_b: Range<usize>,
    pub total: usize,
}

impl Layout {
    pub fn new(cfg: &ModelConfig) -> Layout {
        let mut entries = Vec::new();
        let mut total = 0;
        let mut push = |name: String, shape: Vec<usize>| {
            let e = Entry {
                name,
                shape,
                offset: total,
            };
            total += e.len();
            let r = e.range();
            entries.push(e);
            r
        };
        let embed = cfg
            .vocab
            .map(|v| push("embed.weight".into(), vec![v, cfg.input]));
        let gh = cfg.cell.gates() * cfg.hidden;
        let mut layers = Vec::new();
        for k in 0..cfg.layers {
            for d in 0..cfg.directions() {
                let sfx = if d == 1 { "_reverse" } else { "" };
                let w_ih = push(
                    format!("rnn.weight_ih_l{k}{sfx}"),
                    vec![gh, cfg.layer_input(k)],
                );
                let w_hh = push(format!("rnn.weight_hh_l{k}{sfx}"), vec![gh, cfg.hidden]);
                let b_ih = push(format!("rnn.bias_ih_l{k}{sfx}"), vec![gh]);
                let b_hh = push(format!("rnn.bias_hh_l{k}{sfx}"), vec![gh]);
                layers.push(LayerSlots {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                });
            }
        }
        let head_w = push(
            "head.weight".into(),
            vec![cfg.out_features, cfg.top_width()],
        );
        let head_b = push("head.bias".into(), vec![cfg.out_features]);
        Layout {
            entries,
            layers,
            embed,
            head_w,
            head_b,
            total,
        }
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The same layout `by` elements further into a larger flat vector
    /// (`total` then counts to its end): a stack's place inside a
    /// sequence-to-sequence model's parameters.
    pub fn shifted(mut self, by: usize) -> Layout {
        let mv = |r: &mut Range<usize>| *r = r.start + by..r.end + by;
        for e in &mut self.entries {
            e.offset += by;
        }
        for l in &mut self.layers {
            for r in [&mut l.w_ih, &mut l.w_hh, &mut l.b_ih, &mut l.b_hh] {
                mv(r);
            }
        }
        if let Some(r) = &mut self.embed {
            mv(r);
        }
        mv(&mut self.head_w);
        mv(&mut self.head_b);
        self.total += by;
        self
    }
}

/// How to initialise a new model.
#[derive(Clone, Debug, Default)]
pub struct Init {
    pub seed: u64,
    /// Orthogonal recurrent weights, one orthogonal `[H, H]` block per gate (Keras' default).
    pub orthogonal: bool,
    /// LSTM forget-gate bias 1 (in `bias_ih`; `bias_hh` stays as drawn), Keras' `unit_forget_bias`.
    pub forget_bias_one: bool,
}

impl Init {
    pub fn seed(seed: u64) -> Self {
        Init {
            seed,
            ..Default::default()
        }
    }
}

/// Fills `data` (laid out by `layout`) as PyTorch's default initialisation does:
/// recurrent tensors U(±1/√H), head U(±1/√D) (kaiming-uniform with a=√5),
/// embedding N(0, 1); then the options of `init`.
pub fn initialise(cfg: &ModelConfig, layout: &Layout, init: &Init) -> Vec<f32> {
    let mut data = vec![0.0f32; layout.total];
    let mut rng = Rng::new(init.seed);
    if let Some(r) = &layout.embed {
        for v in &mut data[r.clone()] {
            *v = rng.normal() as f32;
        }
    }
    let k = 1.0 / (cfg.hidden as f32).sqrt();
    for slots in &layout.layers {
        for r in [&slots.w_ih, &slots.w_hh, &slots.b_ih, &slots.b_hh] {
            for v in &mut data[r.clone()] {
                *v = rng.uniform(-k, k);
            }
        }
        if init.orthogonal {
            let h = cfg.hidden;
            for g in 0..cfg.cell.gates() {
                let q = orthogonal(h, &mut rng);
                let start = slots.w_hh.start + g * h * h;
                data[start..start + h * h].copy_from_slice(&q);
            }
        }
        if init.forget_bias_one && cfg.cell == Cell::Lstm {
            let h = cfg.hidden;
            data[slots.b_ih.start + h..slots.b_ih.start + 2 * h].fill(1.0);
            data[slots.b_hh.start + h..slots.b_hh.start + 2 * h].fill(0.0);
        }
    }
    let kh = 1.0 / (cfg.top_width() as f32).sqrt();
    for r in [&layout.head_w, &layout.head_b] {
        for v in &mut data[r.clone()] {
            *v = rng.uniform(-kh, kh);
        }
    }
    data
}

/// A random orthogonal `[n, n]` matrix: modified Gram–Schmidt on a Gaussian
/// matrix in f64, rows normalised (the sign convention of QR with positive R diagonal).
fn orthogonal(n: usize, rng: &mut Rng) -> Vec<f32> {
    let mut m: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    for i in 0..n {
        for j in 0..i {
            let dot: f64 = (0..n).map(|c| m[i * n + c] * m[j * n + c]).sum();
            for c in 0..n {
                m[i * n + c] -= dot * m[j * n + c];
            }
        }
        let norm: f64 = (0..n).map(|c| m[i * n + c].powi(2)).sum::<f64>().sqrt();
        let norm = if norm > 1e-12 { norm } else { 1.0 };
        for c in 0..n {
            m[i * n + c] /= norm;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// Checks that every value of a parameter buffer is finite.
pub fn check_finite(layout: &Layout, data: &[f32], what: &str) -> Result<()> {
    for e in &layout.entries {
        if let Some((i, v)) = data[e.range()]
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(Error::NonFinite {
                what: format!("{what} {}", e.name),
                index: i,
                value: *v,
            });
        }
    }
    Ok(())
}
