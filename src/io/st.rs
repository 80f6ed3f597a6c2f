//! safetensors files: reading tensors with dtype conversion, and atomic writes.

use crate::error::{Error, Result};
use crate::gpu::half::f16_bits_to_f32;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Values of one tensor read from a file.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One tensor read from a file, with its stored dtype.
#[derive(Clone, Debug)]
pub struct Read {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub values: Values,
}

impl Read {
    /// Float values (integers are refused: they are ids or labels, not features).
    pub fn floats(&self, path: &str, name: &str) -> Result<Vec<f32>> {
        match &self.values {
            Values::F32(v) => Ok(v.clone()),
            Values::I64(_) => Err(Error::Data {
                path: path.into(),
                reason: format!(
                    "tensor `{name}` has dtype {:?}; a float dtype (F32) is needed here",
                    self.dtype
                ),
            }),
        }
    }
}

/// A whole file: tensors by name, and the header metadata.
pub struct File {
    pub tensors: BTreeMap<String, Read>,
    pub metadata: HashMap<String, String>,
}

fn convert(dtype: Dtype, b: &[u8]) -> Option<Values> {
    macro_rules! le {
        ($t:ty, $n:expr) => {
            b.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap()))
        };
    }
    Some(match dtype {
        Dtype::F32 => Values::F32(le!(f32, 4).collect()),
        Dtype::F64 => Values::F32(le!(f64, 8).map(|v| v as f32).collect()),
        Dtype::F16 => Values::F32(le!(u16, 2).map(f16_bits_to_f32).collect()),
        Dtype::BF16 => Values::F32(
            le!(u16, 2)
                .map(|v| f32::from_bits((v as u32) << 16))
                .collect(),
        ),
        Dtype::I64 => Values::I64(le!(i64, 8).collect()),
        Dtype::I32 => Values::I64(le!(i32, 4).map(|v| v as i64).collect()),
        Dtype::I16 => Values::I64(le!(i16, 2).map(|v| v as i64).collect()),
        Dtype::I8 => Values::I64(b.iter().map(|&v| v as i8 as i64).collect()),
        Dtype::U8 => Values::I64(b.iter().map(|&v| v as i64).collect()),
        Dtype::U16 => Values::I64(le!(u16, 2).map(|v| v as i64).collect()),
        Dtype::U32 => Values::I64(le!(u32, 4).map(|v| v as i64).collect()),
        _ => return None,
    })
}

/// Parses safetensors bytes (`path` only names the source in errors).
pub fn parse(bytes: &[u8], path: &str) -> Result<File> {
    let bad = |reason: String| Error::Data {
        path: path.into(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        bad(format!(
            "not a valid safetensors file ({e}); was it truncated or written by another tool?"
        ))
    })?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("unreadable safetensors header ({e})")))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.iter() {
        let values = convert(view.dtype(), view.data()).ok_or_else(|| {
            bad(format!(
                "tensor `{name}` has unsupported dtype {:?}",
                view.dtype()
            ))
        })?;
        tensors.insert(
            name.to_string(),
            Read {
                shape: view.shape().to_vec(),
                dtype: view.dtype(),
                values,
            },
        );
    }
    Ok(File {
        tensors,
        metadata: meta.metadata().clone().unwrap_or_default(),
    })
}

/// The header metadata of a safetensors file (`__metadata__`), reading only
/// the header: what a file is can be told without reading its tensors.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let bad = |reason: String| Error::Data {
        path: path.display().to_string(),
        reason,
    };
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| bad("shorter than a safetensors header".into()))?;
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 {
        return Err(bad(format!("header of {n} bytes: not a safetensors file")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad("the header runs past the end of the file".into()))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("the header is not JSON ({e})")))?;
    Ok(json
        .get("__metadata__")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default())
}

/// Reads and parses a safetensors file.
pub fn read(path: &Path) -> Result<File> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, &path.display().to_string())
}

/// A tensor to write.
pub enum Write_<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// Serialises tensors (name, shape, values) with header metadata.
pub fn serialize(
    tensors: &[(String, Vec<usize>, Write_)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, w)| match w {
            Write_::F32(v) => (
                n.clone(),
                Dtype::F32,
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Write_::I64(v) => (
                n.clone(),
                Dtype::I64,
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bufs
        .iter()
        .map(|(n, d, s, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v))
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Argument(format!("cannot serialise tensors: {e}")))?;
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata)
    };
    safetensors::serialize(views, meta)
        .map_err(|e| Error::Argument(format!("cannot serialise tensors: {e}")))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over `path`. A crash leaves either the old
/// file or the new one, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes)?;
    rename_durable(&tmp, path)
}

/// The first half of [`write_atomic`]: writes `bytes` to a hidden temporary
/// file next to `path` (`.NAME.tmp-PID`), flushed to disk; returns its path.
/// [`rename_durable`] puts it in place.
pub fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Argument(format!("{} is not a file path", path.display())))?;
    let tmp = dir_of(path).join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })?;
    Ok(tmp)
}

/// Renames `from` over `to` (same folder) and makes the rename durable.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        let _ = std::fs::remove_file(from);
        Error::io(to, e)
    })?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir_of(to)) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::f16_bits_to_f32 as half_to_f32;

    #[test]
    fn half_conversion_covers_normal_subnormal_and_special() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 5.960_464_5e-8);
        assert!(half_to_f32(0x7c00).is_infinite());
        assert!(half_to_f32(0x7e00).is_nan());
    }
}
