//! TCP checks on schedule: jittered timers, a cap on connects in flight, results as observations (I/O only; no storage, no alert logic).
