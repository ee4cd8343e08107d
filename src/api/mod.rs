//! The read-only status API (axum): token auth and scopes, JSON endpoints, /healthz, /metrics.
