//! Typed readers of the result files that xtask writes and reads back (`--report`).
//!
//! Each file has one set of serde types here, and every report is rendered from them, never
//! from a walk over untyped JSON. The rules of every reader:
//!
//! - a field the writer always writes is required: a file without it, or with a value of
//!   another type, is an error naming the field and the place in the file;
//! - a field the writer may write as `null` (a figure it could not take, a non-finite number,
//!   which `serde_json` writes as `null`) is an `Option` that must still be there
//!   ([`nullable`]);
//! - a section that a run writes only when it gets that far is an `Option` that may be absent;
//!   where the writer says the run went to its end, a check after parsing requires it;
//! - fields the reports do not use may be in the file and are not read.
pub mod scale;
pub mod stress;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::path::Path;

/// A field that must be present and may be `null`: `#[serde(deserialize_with = "nullable")]`
/// on an `Option` field (serde lets a plain `Option` field be absent).
pub fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Parses `text` as `T`; the error says what was read.
pub fn parse<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).with_context(|| format!("{what} is not a valid result file"))
}

/// Reads and parses the file at `path`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    parse(&path.display().to_string(), &crate::util::read(path)?)
}
