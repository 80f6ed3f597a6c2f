//! IDX files (the MNIST format), plain or gzipped, and MNIST as a [`Dataset`].
//!
//! An IDX file is a big-endian header — two zero bytes, a dtype byte
//! (`0x08` = u8), the number of dimensions — then one u32 per dimension, then
//! the values. Gzip is recognised by its magic bytes (`1f 8b`), not by the
//! file name, so `train-images-idx3-ubyte` and `train-images-idx3-ubyte.gz`
//! both load. Only u8 payloads are read (every MNIST-style file is u8).

use crate::data::{Dataset, Inputs, Targets};
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The dtype byte of u8 payloads.
const IDX_U8: u8 = 0x08;
/// Gzip's magic number.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A u8 array read from an IDX file.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    /// Row-major values, `dims.iter().product()` of them.
    pub data: Vec<u8>,
}

/// Reads an IDX file, gzipped or not.
pub fn read(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, &path.display().to_string())
}

/// Parses IDX bytes, gzipped or not (`name` names the source in errors).
pub fn parse(bytes: &[u8], name: &str) -> Result<IdxArray> {
    let bad = |reason: String| Error::Data {
        path: name.into(),
        reason,
    };
    let raw;
    let bytes = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| {
                bad(format!(
                    "the gzip stream is truncated or corrupt ({e}); download the file again"
                ))
            })?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes is too short for an IDX header (4 bytes of magic number)",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "wrong magic number {:02x} {:02x} {:02x} {:02x}: an IDX file starts with 00 00, a dtype byte and a dimension count (MNIST images: 00 00 08 03, labels: 00 00 08 01)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[2] != IDX_U8 {
        return Err(bad(format!(
            "IDX dtype 0x{:02x} is not supported: only u8 (0x08) payloads, as in MNIST, are read",
            bytes[2]
        )));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(bad("the IDX header declares 0 dimensions".into()));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad(format!(
            "truncated header: {ndim} dimensions need {header} header bytes, the file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|k| {
            u32::from_be_bytes(bytes[4 + 4 * k..8 + 4 * k].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let payload = bytes.len() - header;
    if payload != count {
        return Err(bad(format!(
            "header says dimensions {dims:?} ({count} values) but the file holds {payload} bytes after the header; the file is truncated or not the one named"
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Writes a u8 IDX file atomically, gzipped when `gzip` is set.
pub fn write(path: impl AsRef<Path>, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    let path = path.as_ref();
    let count: usize = dims.iter().product();
    if dims.is_empty()
        || dims.len() > 255
        || count != data.len()
        || dims.iter().any(|&d| d > u32::MAX as usize)
    {
        return Err(Error::shape(
            "IDX data",
            format!("{dims:?} ({count} values, 1 to 255 dimensions of at most 2^32-1)"),
            &[data.len()],
        ));
    }
    let mut bytes = vec![0, 0, IDX_U8, dims.len() as u8];
    for &d in dims {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(data);
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&bytes)
            .and_then(|_| enc.finish().map(|b| bytes = b))
            .map_err(|e| Error::io(path, e))?;
    }
    super::st::write_atomic(path, &bytes)
}

/// Which half of an MNIST folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`.
    Train,
    /// `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`.
    Test,
}

/// Loads MNIST-style images and labels: `x [N, rows, cols]` f32 in `[0, 1]`
/// (pixel / 255; each image row is one time step), `y [N]` class indices.
pub fn load_mnist(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset> {
    let (ip, lp) = (images.as_ref(), labels.as_ref());
    let img = read(ip)?;
    let lab = read(lp)?;
    mnist_dataset(
        img,
        lab,
        &ip.display().to_string(),
        &lp.display().to_string(),
    )
}

/// Loads a split from a folder holding the standard file names, gzipped or
/// not: the bundled `data/mnist-10k` or the full 60k/10k MNIST files.
pub fn load_mnist_dir(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    let dir = dir.as_ref();
    let stem = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let find = |name: String| -> Result<PathBuf> {
        for cand in [dir.join(format!("{name}.gz")), dir.join(&name)] {
            if cand.is_file() {
                return Ok(cand);
            }
        }
        Err(Error::Data {
            path: dir.display().to_string(),
            reason: format!("neither {name} nor {name}.gz is in this folder; point to a folder with the MNIST files (e.g. data/mnist-10k)"),
        })
    };
    load_mnist(
        find(format!("{stem}-images-idx3-ubyte"))?,
        find(format!("{stem}-labels-idx1-ubyte"))?,
    )
}

/// Builds the data set from parsed images `[N, rows, cols]` and labels `[N]`.
pub fn mnist_dataset(img: IdxArray, lab: IdxArray, images: &str, labels: &str) -> Result<Dataset> {
    if img.dims.len() != 3 {
        return Err(Error::Data { path: images.into(), reason: format!("images must be 3-D [N, rows, cols], the file has dimensions {:?}; are images and labels swapped?", img.dims) });
    }
    if lab.dims.len() != 1 {
        return Err(Error::Data { path: labels.into(), reason: format!("labels must be 1-D [N], the file has dimensions {:?}; are images and labels swapped?", lab.dims) });
    }
    let (n, rows, cols) = (img.dims[0], img.dims[1], img.dims[2]);
    if lab.dims[0] != n {
        return Err(Error::Data {
            path: labels.into(),
            reason: format!(
                "{} labels for {n} images in {images}; use the labels file of the same split",
                lab.dims[0]
            ),
        });
    }
    let x: Vec<f32> = img.data.iter().map(|&p| p as f32 / 255.0).collect();
    let y: Vec<i64> = lab.data.iter().map(|&c| c as i64).collect();
    Ok(Dataset::new(
        Inputs::features(x, n, rows, cols)?,
        Some(Targets::Classes {
            data: y,
            shape: vec![n],
        }),
        None,
    ))
}
