//! Servers' newest reports for the replica that decides on them: an agent's report is stored
//! by whichever replica it reaches, and the replica holding the server's shard reads it here.

use super::super::rows::Columns;
use super::super::{Result, Store};
use super::ServerStateRow;

impl Store {
    /// The servers whose newest report is newer than `since_ms` (`last_report_ms`), without
    /// their reports: cheap enough to ask every second.
    pub async fn servers_reported_since(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>> {
        const SINCE: &str = "SELECT project, server, last_report_ms FROM server_states WHERE last_report_ms > $1";
        on_pool!(self, pool => {
            let rows = sqlx::query(SINCE).bind(since_ms).fetch_all(pool).await?;
            rows.iter().map(|r| Ok((r.col("project")?, r.col("server")?, r.col("last_report_ms")?))).collect()
        })
    }

    /// The newest report of one server, if it has one that decodes.
    pub async fn server_state(&self, project: &str, server: &str) -> Result<Option<ServerStateRow>> {
        const ONE: &str = "SELECT last_report_ms, latest FROM server_states WHERE project = $1 AND server = $2";
        let found: Option<(i64, String)> = on_pool!(self, pool => {
            let row = sqlx::query(ONE).bind(project).bind(server).fetch_optional(pool).await?;
            match row {
                Some(r) => Some((r.col("last_report_ms")?, r.col("latest")?)),
                None => None,
            }
        });
        Ok(found.and_then(|(last_report_ms, latest)| {
            let report = serde_json::from_str(&latest).ok()?;
            Some(ServerStateRow { project: project.to_string(), server: server.to_string(), last_report_ms, report })
        }))
    }
}
