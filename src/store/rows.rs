//! Reading rows of either backend: one column accessor for both, and the conversions every
//! table needs (enum words, JSON text, narrowed integers).

use std::str::FromStr;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Postgres, Row, Sqlite, Type};

use super::{Result, StoreError};
use crate::errors::UnknownWord;

/// A Rust type both backends can decode a column into.
pub(super) trait Column: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

impl<T> Column for T where T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

/// Read a named column from a row of either backend, so each conversion below is written once.
pub(super) trait Columns {
    fn col<T: Column>(&self, name: &str) -> Result<T>;
}

impl Columns for SqliteRow {
    fn col<T: Column>(&self, name: &str) -> Result<T> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for PgRow {
    fn col<T: Column>(&self, name: &str) -> Result<T> {
        Ok(self.try_get(name)?)
    }
}

/// An enum column stored as its word (see the `words!` macro).
pub(super) fn text<T: FromStr<Err = UnknownWord>>(row: &impl Columns, name: &str) -> Result<T> {
    row.col::<String>(name)?.parse().map_err(|e: UnknownWord| StoreError::Corrupt(e.to_string()))
}

/// A JSON column (stored as text on both backends).
pub(super) fn json<T: serde::de::DeserializeOwned>(row: &impl Columns, name: &str) -> Result<T> {
    let raw: String = row.col(name)?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
}

/// An integer column narrowed to the type the API uses (ports, latencies, counts).
pub(super) fn narrow<T: TryFrom<i64>>(row: &impl Columns, name: &str) -> Result<T> {
    let wide: i64 = row.col(name)?;
    T::try_from(wide).map_err(|_| StoreError::Corrupt(format!("{name} {wide} is out of range")))
}
