//! Servers' newest reports for the other replicas: an agent's report is stored by whichever
//! replica it reaches, and every other replica reads it here — into its live view, and into its
//! alert engine when it holds the server's shard.

use super::super::rows::Columns;
use super::super::{Backend, Result, Store};
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

    /// The newest reports of `servers` (project, server) that have one that decodes; one query
    /// on PostgreSQL, however many servers.
    pub async fn server_states_of(&self, servers: &[(String, String)]) -> Result<Vec<ServerStateRow>> {
        let found: Vec<(String, String, i64, String)> = match &self.backend {
            Backend::Postgres(pool) => {
                const MANY: &str = "SELECT s.project, s.server, s.last_report_ms, s.latest FROM server_states s
                    JOIN unnest($1::text[], $2::text[]) AS k(project, server) ON s.project = k.project AND s.server = k.server";
                let (projects, names): (Vec<&str>, Vec<&str>) = servers.iter().map(|(p, s)| (p.as_str(), s.as_str())).unzip();
                let rows = sqlx::query(MANY).bind(&projects).bind(&names).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| Ok((r.col("project")?, r.col("server")?, r.col("last_report_ms")?, r.col("latest")?)))
                    .collect::<Result<_>>()?
            }
            Backend::Sqlite(pool) => {
                const ONE: &str = "SELECT last_report_ms, latest FROM server_states WHERE project = $1 AND server = $2";
                let mut found = Vec::with_capacity(servers.len());
                for (project, server) in servers {
                    if let Some(r) = sqlx::query(ONE).bind(project).bind(server).fetch_optional(pool).await? {
                        found.push((project.clone(), server.clone(), r.col("last_report_ms")?, r.col("latest")?));
                    }
                }
                found
            }
        };
        Ok(found
            .into_iter()
            .filter_map(|(project, server, last_report_ms, latest)| {
                let report = serde_json::from_str(&latest).ok()?;
                Some(ServerStateRow { project, server, last_report_ms, report })
            })
            .collect())
    }
}
