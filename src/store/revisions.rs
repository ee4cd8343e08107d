//! Revisions serve applied or rejected, with their diagnostics.

use serde::Serialize;

use super::rows::{Columns, json};
use super::{Result, Store, to_json};

/// A configuration revision serve applied or rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevisionRecord {
    /// A git commit, or `sha256:<hex>` of a directory's content.
    pub revision: String,
    pub at_ms: i64,
    pub applied: bool,
    /// The diagnostics (lint's JSON form) that rejected it, or warnings of an applied one.
    pub diagnostics: serde_json::Value,
}

impl Store {
    pub async fn record_revision(&self, rec: &RevisionRecord) -> Result<()> {
        let diagnostics = to_json(&rec.diagnostics)?;
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO revisions (revision, at_ms, applied, diagnostics) VALUES ($1, $2, $3, $4)")
                .bind(&rec.revision)
                .bind(rec.at_ms)
                .bind(rec.applied)
                .bind(&diagnostics)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The last applied and the last rejected revision.
    pub async fn latest_revisions(&self) -> Result<(Option<RevisionRecord>, Option<RevisionRecord>)> {
        const LATEST: &str =
            "SELECT revision, at_ms, applied, diagnostics FROM revisions WHERE applied = $1 ORDER BY at_ms DESC, id DESC LIMIT 1";
        on_pool!(self, pool => {
            let applied = sqlx::query(LATEST).bind(true).fetch_optional(pool).await?;
            let rejected = sqlx::query(LATEST).bind(false).fetch_optional(pool).await?;
            Ok((applied.as_ref().map(revision).transpose()?, rejected.as_ref().map(revision).transpose()?))
        })
    }
}

fn revision(row: &impl Columns) -> Result<RevisionRecord> {
    Ok(RevisionRecord {
        revision: row.col("revision")?,
        at_ms: row.col("at_ms")?,
        applied: row.col("applied")?,
        diagnostics: json(row, "diagnostics")?,
    })
}
