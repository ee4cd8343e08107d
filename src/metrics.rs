//! Prometheus metrics serve exposes on /metrics: probes, alerts firing, reconcile status, outbox depth.
