//! A time series from one CSV column, scaled and cut into sliding windows for
//! next-value forecasting.
//!
//! - The column is chosen by header name or by 0-based index. The first line
//!   is a header when a name is asked for, or when its field in that column
//!   is not a number. Fields may be double-quoted (`"YEAR","SUNACTIVITY"`).
//! - Missing values are empty fields and `NA`, `N/A`, `NaN`, `null`, `?`
//!   (any case). [`Missing::Skip`] drops those rows; [`Missing::Interpolate`]
//!   fills each gap linearly between its known neighbours (by row position)
//!   and drops gaps at the very start or end, which have no neighbour on one
//!   side. Any other non-numeric field is an error naming its line.
//! - [`split_windows`] fits the scaling on the training part of the series
//!   only, so no statistic of the test part leaks into training.

use crate::data::{Dataset, Inputs, Targets};
use crate::error::{Error, Result};
use std::path::Path;

/// Which column holds the series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// By header name (quotes stripped, case-insensitive).
    Name(String),
    /// By 0-based position.
    Index(usize),
}

/// What to do with missing values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Missing {
    /// Drop the rows.
    Skip,
    /// Linear interpolation between the neighbours; leading and trailing gaps are dropped.
    #[default]
    Interpolate,
}

/// Reads one column of a CSV file as a series.
pub fn read_column(path: impl AsRef<Path>, column: &Column, missing: Missing) -> Result<Vec<f32>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let name = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| Error::Data {
        path: name.clone(),
        reason: format!(
            "not UTF-8 text (byte {}); save the CSV as UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })?;
    parse_column(&text, &name, column, missing)
}

/// Splits a CSV line into fields, honouring double quotes (`""` is a quote inside quotes).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

fn is_missing(f: &str) -> bool {
    matches!(
        f.to_ascii_lowercase().as_str(),
        "" | "na" | "n/a" | "nan" | "null" | "?"
    )
}

/// Parses one column of CSV text (`name` names the source in errors).
pub fn parse_column(text: &str, name: &str, column: &Column, missing: Missing) -> Result<Vec<f32>> {
    let bad = |reason: String| Error::Data {
        path: name.into(),
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let (first_no, first) = lines
        .peek()
        .map(|&(i, l)| (i, fields(l)))
        .ok_or_else(|| Error::Empty(format!("CSV {name}")))?;
    let (col, has_header) = match column {
        Column::Name(want) => {
            let pos = first
                .iter()
                .position(|h| h.eq_ignore_ascii_case(want))
                .ok_or_else(|| bad(format!("no column named '{want}' in the header {first:?}")))?;
            (pos, true)
        }
        Column::Index(i) => {
            let f = first.get(*i).ok_or_else(|| bad(format!("column {i} does not exist: line {} has {} field(s) (columns are counted from 0)", first_no + 1, first.len())))?;
            (*i, !is_missing(f) && f.parse::<f64>().is_err())
        }
    };
    if has_header {
        lines.next();
    }
    let mut values: Vec<Option<f32>> = Vec::new();
    for (no, line) in lines {
        let f = fields(line);
        let field = f.get(col).ok_or_else(|| {
            bad(format!(
                "line {} has {} field(s), column {col} is missing",
                no + 1,
                f.len()
            ))
        })?;
        if is_missing(field) {
            values.push(None);
            continue;
        }
        let v: f64 = field.parse().map_err(|_| bad(format!("line {}: field '{field}' in column {col} is not a number (missing values may be empty or NA)", no + 1)))?;
        if !v.is_finite() || v.abs() > f32::MAX as f64 {
            return Err(bad(format!(
                "line {}: value '{field}' is not a finite f32",
                no + 1
            )));
        }
        values.push(Some(v as f32));
    }
    let out = match missing {
        Missing::Skip => values.into_iter().flatten().collect(),
        Missing::Interpolate => interpolate(&values),
    };
    if out.is_empty() {
        return Err(bad(format!("column {col} holds no values")));
    }
    Ok(out)
}

/// Fills interior gaps linearly; drops leading and trailing gaps.
pub fn interpolate(values: &[Option<f32>]) -> Vec<f32> {
    let known: Vec<usize> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|_| i))
        .collect();
    let (Some(&lo), Some(&hi)) = (known.first(), known.last()) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(hi - lo + 1);
    for w in known.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (va, vb) = (
            values[a].expect("known") as f64,
            values[b].expect("known") as f64,
        );
        for i in a..b {
            out.push((va + (vb - va) * (i - a) as f64 / (b - a) as f64) as f32);
        }
    }
    out.push(values[hi].expect("known"));
    out
}

/// How to scale a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scaling {
    None,
    /// To `[0, 1]` over the fitted values: `(v - min) / (max - min)`.
    MinMax,
    /// To zero mean and unit (population) standard deviation.
    #[default]
    ZScore,
}

/// A fitted scaling `v' = (v - offset) / scale` and its inverse.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaler {
    pub kind: Scaling,
    pub offset: f32,
    /// Never 0 (a constant series gets scale 1).
    pub scale: f32,
}

impl Scaler {
    /// Fits `kind` on `values`.
    pub fn fit(kind: Scaling, values: &[f32]) -> Result<Scaler> {
        if values.is_empty() {
            return Err(Error::Empty("the values to fit a scaling on".into()));
        }
        let n = values.len() as f64;
        let (offset, scale) = match kind {
            Scaling::None => (0.0, 1.0),
            Scaling::MinMax => {
                let lo = values.iter().fold(f32::INFINITY, |a, &b| a.min(b)) as f64;
                let hi = values.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                (lo, hi - lo)
            }
            Scaling::ZScore => {
                let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = values
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n;
                (mean, var.sqrt())
            }
        };
        let scale = if scale > 0.0 && scale.is_finite() {
            scale as f32
        } else {
            1.0
        };
        Ok(Scaler {
            kind,
            offset: offset as f32,
            scale,
        })
    }
    pub fn transform(&self, v: f32) -> f32 {
        (v - self.offset) / self.scale
    }
    pub fn inverse(&self, v: f32) -> f32 {
        v * self.scale + self.offset
    }
    pub fn transform_all(&self, v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| self.transform(x)).collect()
    }
    pub fn inverse_all(&self, v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| self.inverse(x)).collect()
    }
}

/// Every window of `window` consecutive values with the next value as target:
/// `x [N, window, 1]`, `y [N, 1]`, N = `series.len() - window`.
pub fn windows(series: &[f32], window: usize) -> Result<Dataset> {
    if window == 0 {
        return Err(Error::Argument("window length must be at least 1".into()));
    }
    if series.len() <= window {
        return Err(Error::Argument(format!(
            "a series of {} values has no window of {window} plus a target; use a shorter window",
            series.len()
        )));
    }
    windows_with_targets(series, window, window..series.len())
}

/// Windows whose target index lies in `targets` (each `>= window`).
fn windows_with_targets(
    series: &[f32],
    window: usize,
    targets: std::ops::Range<usize>,
) -> Result<Dataset> {
    let n = targets.len();
    let mut x = Vec::with_capacity(n * window);
    let mut y = Vec::with_capacity(n);
    for t in targets {
        x.extend_from_slice(&series[t - window..t]);
        y.push(series[t]);
    }
    Ok(Dataset::new(
        Inputs::features(x, n, window, 1)?,
        Some(Targets::Values {
            data: y,
            shape: vec![n, 1],
        }),
        None,
    ))
}

/// A series cut into training and test windows, scaled.
#[derive(Clone, Debug)]
pub struct SeriesSplit {
    /// Windows whose target lies in the first `split` values.
    pub train: Dataset,
    /// Windows whose target lies at or after `split` (their inputs may reach back into the training part).
    pub test: Dataset,
    /// Fitted on `series[..split]` only; `scaler.inverse` brings outputs back to the series' units.
    pub scaler: Scaler,
    /// Index of the first test target in the series.
    pub split: usize,
}

/// Scales `series` with `scaling` fitted on its first `train_fraction` and cuts
/// it into windows of `window` values with next-value targets (see [`SeriesSplit`]).
pub fn split_windows(
    series: &[f32],
    window: usize,
    train_fraction: f32,
    scaling: Scaling,
) -> Result<SeriesSplit> {
    if !(train_fraction > 0.0 && train_fraction < 1.0) {
        return Err(Error::Argument(format!(
            "train fraction {train_fraction} must be between 0 and 1 (e.g. 0.8)"
        )));
    }
    if window == 0 {
        return Err(Error::Argument("window length must be at least 1".into()));
    }
    let split = (series.len() as f64 * train_fraction as f64).round() as usize;
    if split <= window || split >= series.len() {
        return Err(Error::Argument(format!(
            "a series of {} values split at {split} leaves no training window of {window} values plus a target, or no test value; use a shorter window or another fraction",
            series.len()
        )));
    }
    let scaler = Scaler::fit(scaling, &series[..split])?;
    let z = scaler.transform_all(series);
    Ok(SeriesSplit {
        train: windows_with_targets(&z, window, window..split)?,
        test: windows_with_targets(&z, window, split..series.len())?,
        scaler,
        split,
    })
}

/// A CSV file with a header line: column names and rows of text fields
/// (double quotes honoured, fields trimmed, one record per line, blank lines skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses CSV text whose first non-blank line is the header; every row must
    /// have as many fields as the header (`name` names the source in errors).
    pub fn parse(text: &str, name: &str) -> Result<Table> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines
            .next()
            .ok_or_else(|| Error::Empty(format!("CSV {name}")))?;
        let header = fields(first);
        let mut rows = Vec::new();
        for (no, line) in lines {
            let f = fields(line);
            if f.len() != header.len() {
                return Err(Error::Data {
                    path: name.into(),
                    reason: format!(
                        "line {} has {} fields but the header has {} ({}); quote fields that contain commas",
                        no + 1,
                        f.len(),
                        header.len(),
                        header.join(",")
                    ),
                });
            }
            rows.push(f);
        }
        Ok(Table { header, rows })
    }

    /// Reads a UTF-8 CSV file.
    pub fn read(path: impl AsRef<Path>) -> Result<Table> {
        let path = path.as_ref();
        let text = crate::io::text::read_text(path)?;
        Table::parse(&text, &path.display().to_string())
    }

    /// The position of the column named `name` (quotes stripped, case-insensitive).
    pub fn column(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::Argument(format!(
                    "no column '{name}' in the CSV header [{}]",
                    self.header.join(", ")
                ))
            })
    }

    /// All fields of the column named `name`, in row order.
    pub fn values(&self, name: &str) -> Result<Vec<&str>> {
        let col = self.column(name)?;
        Ok(self.rows.iter().map(|r| r[col].as_str()).collect())
    }
}
