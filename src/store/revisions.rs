//! Revisions serve applied, rejected or held, with their diagnostics.

use serde::Serialize;

use super::rows::{Columns, json};
use super::{Result, Store, to_json};

/// A configuration revision serve applied, rejected or held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevisionRecord {
    /// A git commit, or `sha256:<hex>` of a directory's content.
    pub revision: String,
    pub at_ms: i64,
    pub applied: bool,
    /// The diagnostics (lint's JSON form) that rejected it, or warnings of an applied or held one.
    pub diagnostics: serde_json::Value,
    /// Set on a revision not applied because it removes too many objects at once: when it will
    /// be, unless a newer revision replaces it first.
    pub held_until_ms: Option<i64>,
}

impl Store {
    pub async fn record_revision(&self, rec: &RevisionRecord) -> Result<()> {
        let diagnostics = to_json(&rec.diagnostics)?;
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO revisions (revision, at_ms, applied, diagnostics, held_until_ms) VALUES ($1, $2, $3, $4, $5)")
                .bind(&rec.revision)
                .bind(rec.at_ms)
                .bind(rec.applied)
                .bind(&diagnostics)
                .bind(rec.held_until_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The last applied and the last rejected revision.
    pub async fn latest_revisions(&self) -> Result<(Option<RevisionRecord>, Option<RevisionRecord>)> {
        const LATEST: &str = "SELECT revision, at_ms, applied, diagnostics, held_until_ms FROM revisions
             WHERE applied = $1 AND held_until_ms IS NULL ORDER BY at_ms DESC, id DESC LIMIT 1";
        on_pool!(self, pool => {
            let applied = sqlx::query(LATEST).bind(true).fetch_optional(pool).await?;
            let rejected = sqlx::query(LATEST).bind(false).fetch_optional(pool).await?;
            Ok((applied.as_ref().map(revision_of).transpose()?, rejected.as_ref().map(revision_of).transpose()?))
        })
    }

    /// The newest record of `revision` applied (by this replica or another on the database).
    pub async fn applied_revision(&self, revision: &str) -> Result<Option<RevisionRecord>> {
        const ONE: &str = "SELECT revision, at_ms, applied, diagnostics, held_until_ms FROM revisions
             WHERE revision = $1 AND applied = $2 AND held_until_ms IS NULL ORDER BY at_ms DESC, id DESC LIMIT 1";
        on_pool!(self, pool => {
            let row = sqlx::query(ONE).bind(revision).bind(true).fetch_optional(pool).await?;
            row.as_ref().map(revision_of).transpose()
        })
    }

    /// The last revision held back for removing too much at once.
    pub async fn latest_held_revision(&self) -> Result<Option<RevisionRecord>> {
        const LATEST: &str = "SELECT revision, at_ms, applied, diagnostics, held_until_ms FROM revisions
             WHERE held_until_ms IS NOT NULL ORDER BY at_ms DESC, id DESC LIMIT 1";
        on_pool!(self, pool => {
            let held = sqlx::query(LATEST).fetch_optional(pool).await?;
            held.as_ref().map(revision_of).transpose()
        })
    }
}

fn revision_of(row: &impl Columns) -> Result<RevisionRecord> {
    Ok(RevisionRecord {
        revision: row.col("revision")?,
        at_ms: row.col("at_ms")?,
        applied: row.col("applied")?,
        diagnostics: json(row, "diagnostics")?,
        held_until_ms: row.col("held_until_ms")?,
    })
}
