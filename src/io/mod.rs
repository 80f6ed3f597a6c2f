//! Files: checkpoints and data sets in safetensors (and, for data, IDX, CSV and text).

pub mod checkpoint;
pub mod csv;
pub mod dataset;
pub mod idx;
pub mod optim_state;
pub mod st;
pub mod text;
