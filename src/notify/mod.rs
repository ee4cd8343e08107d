//! Notifications: recipients and templates (en, ko), e-mail / SMS / webhook senders, the outbox worker.
