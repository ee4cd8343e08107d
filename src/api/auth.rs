//! Bearer tokens and scopes: who is asking, which projects they may see, and with which role.
//!
//! The operator token (`WATCHKEEPER_TOKEN`, given to serve as its SHA-256) sees every
//! project. A user token is matched against every User's `token_sha256`; its scope is the
//! projects of the user's groups (as owner, admin or user) and the projects naming the user as a
//! member. Roles decide what is shown: contact details and delivery logs need admin or more.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Serialize;

use super::{ApiError, ApiState};
use crate::config::Config;
use crate::config::model::Project;
use crate::config::raw::{Language, MemberRole};

/// The caller's role on one project, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only view; no contact details, no delivery logs.
    User,
    Admin,
    /// The project's group owner.
    Owner,
    /// The operator token: every project, everything.
    Operator,
}

impl Role {
    /// May this caller see e-mail addresses, phone numbers and delivery logs?
    pub fn sees_contacts(self) -> bool {
        self >= Role::Admin
    }
}

#[derive(Debug, Clone)]
enum Caller {
    Operator,
    /// A user, by e-mail (their identity in the configuration).
    User(String),
}

/// An authenticated request: the configuration snapshot it reads and who is asking.
/// Extracting it answers 401 (with `WWW-Authenticate: Bearer`) when the token is missing,
/// malformed or unknown.
pub struct Access {
    pub config: Arc<Config>,
    caller: Caller,
}

impl FromRequestParts<ApiState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Access, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>`"))?;
        let token = bearer(header.to_str().unwrap_or_default())
            .ok_or_else(|| ApiError::unauthorized("malformed Authorization header: expected `Bearer <token>`"))?;
        Access::of_digest(state, &crate::token::sha256_hex(token)).ok_or_else(|| ApiError::unauthorized("unknown token"))
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235).
pub(super) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
}

/// Who the token with SHA-256 `digest` belongs to. The digest is compared with every candidate
/// hash in constant time; no comparison stops early on the first differing byte.
fn identify(config: &Config, admin_sha256: Option<&str>, digest: &str) -> Option<Caller> {
    if admin_sha256.is_some_and(|expected| crate::token::digest_matches(digest, expected)) {
        return Some(Caller::Operator);
    }
    let mut found = None;
    for user in config.users.values() {
        if let Some(expected) = &user.token_sha256
            && crate::token::digest_matches(digest, expected)
            && found.is_none()
        {
            found = Some(Caller::User(user.email.clone()));
        }
    }
    found
}

impl Access {
    /// Who is asking, as recorded with what they write: the user's e-mail, or `operator`.
    pub fn who(&self) -> &str {
        match &self.caller {
            Caller::Operator => "operator",
            Caller::User(email) => email,
        }
    }

    /// The caller whose token has SHA-256 `digest`, reading the configuration applied now; `None`
    /// for a token the configuration (or the operator token) does not hold. The dashboard's
    /// sessions keep the digest and ask again on every request, so a token removed from the
    /// configuration ends its sessions.
    pub fn of_digest(state: &ApiState, digest: &str) -> Option<Access> {
        // One snapshot per request; the borrow ends here, before any `.await`.
        let config = state.config.borrow().clone();
        let caller = identify(&config, state.admin_token_sha256.as_deref(), digest)?;
        Some(Access { config, caller })
    }

    /// The language the caller's User reads (`language` in the configuration); `None` for the
    /// operator token, which belongs to no User.
    pub fn language(&self) -> Option<Language> {
        match &self.caller {
            Caller::Operator => None,
            Caller::User(email) => self.config.users.values().find(|u| u.email.eq_ignore_ascii_case(email)).map(|u| u.language),
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self.caller, Caller::Operator)
    }

    /// The caller's role on `project`, or `None` when it is outside their scope.
    pub fn role(&self, project: &Project) -> Option<Role> {
        let email = match &self.caller {
            Caller::Operator => return Some(Role::Operator),
            Caller::User(email) => email,
        };
        let same = |other: &String| other.eq_ignore_ascii_case(email);
        let from_group = project.group.as_ref().and_then(|g| self.config.groups.get(g)).and_then(|group| {
            if same(&group.owner) {
                Some(Role::Owner)
            } else if group.admins.iter().any(same) {
                Some(Role::Admin)
            } else if group.users.iter().any(same) {
                Some(Role::User)
            } else {
                None
            }
        });
        let from_members = project
            .members
            .iter()
            .filter(|m| same(&m.user))
            .map(|m| match m.role {
                MemberRole::Admin => Role::Admin,
                MemberRole::User => Role::User,
            })
            .max();
        from_group.max(from_members)
    }

    /// A project in scope, with the caller's role; 404 both when it does not exist and when it
    /// is outside the scope, so a token cannot probe for other teams' project names.
    pub fn project(&self, name: &str) -> Result<(&Project, Role), ApiError> {
        self.config
            .projects
            .get(name)
            .and_then(|p| self.role(p).map(|role| (p, role)))
            .ok_or_else(|| ApiError::not_found(format!("project `{name}` not found")))
    }

    /// Every project in scope, by name.
    pub fn projects(&self) -> impl Iterator<Item = (&Project, Role)> {
        self.config.projects.values().filter_map(|p| self.role(p).map(|role| (p, role)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer("Bearer wk_abc"), Some("wk_abc"));
        assert_eq!(bearer("bearer  wk_abc "), Some("wk_abc"));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert_eq!(bearer("wk_abc"), None);
    }
}
