-- Alerts of one server, newest first (server detail, ?server= on the alert list). Keep in step
-- with ../sqlite/0004_alerts_by_server.sql (the same text). Without it, a server's recent alerts
-- were found by reading the project's whole history through alerts_project_started.
CREATE INDEX alerts_project_server_started ON alerts (project, server, started_at_ms);
