//! Sequence to sequence: encoder–decoder models with Luong et al. (2015)
//! global attention (no input feeding), as the reference in
//! `tests/seq2seq/generate.py` (its docstring is the specification).
//!
//! A source embedding feeds the encoder stack; a target embedding feeds the
//! decoder stack, started from the encoder's final states (directions
//! concatenated); attention (`general`, `dot` or `none`) over the encoder's
//! top-layer outputs, masked by the source lengths; `tanh(combine([context;
//! decoder output]))`; a linear head over the target vocabulary. Trained
//! with teacher forcing and a mean cross-entropy; decoded one token at a time.
//!
//! ```
//! use recurrent::seq2seq::{decode, Attention, Seq2Seq, Seq2SeqConfig, Seq2SeqData, Source};
//! use recurrent::{Cell, Optimizer};
//! // Learn to copy two-token sources: bos = 1, eos = 2, tokens 3..6.
//! let cfg = Seq2SeqConfig::new(Cell::Gru, 6, 6, 8, 16).attention(Attention::Dot);
//! let mut model = Seq2Seq::new(cfg, 7)?;
//! let pairs = [[3, 4], [4, 5], [5, 3], [3, 3]];
//! let src: Vec<i64> = pairs.iter().flatten().copied().collect();
//! let tgt_in: Vec<i64> = pairs.iter().flat_map(|p| [1, p[0], p[1]]).collect();
//! let tgt_out: Vec<i64> = pairs.iter().flat_map(|p| [p[0], p[1], 2]).collect();
//! let data = Seq2SeqData::new(Source::new(src, [4, 2], None)?, tgt_in, tgt_out, 3)?;
//! let mut opt = Optimizer::adam(0.05);
//! for _ in 0..150 {
//!     model.train_step(&data, &mut opt, Some(1.0))?;
//! }
//! let out = decode::greedy(&model, &data.src, 4)?;
//! assert_eq!(out.row(2, 2), &[5, 3]);
//! # Ok::<(), recurrent::Error>(())
//! ```

pub mod attention;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod decode;
pub mod fit;
pub mod model;
pub mod text;

pub use backend::Backend;
pub use config::{Attention, Seq2SeqConfig, Seq2SeqLayout};
pub use data::{Seq2SeqData, Source};
pub use model::{Evaluation, Seq2Seq};
