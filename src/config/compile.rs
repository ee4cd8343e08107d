//! `compile`: raw documents → the validated [`Config`], with every problem as a diagnostic.
//!
//! This is the only place a `Config` is built, and lint, plan and serve all come through it.
//! Objects with errors are still compiled as far as they can be, so one mistake does not hide
//! the next; callers must not use a `Config` whose diagnostics hold errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::ca::read_ca_file;
use super::diagnostic::{Diagnostics, Location, Sources};
use super::load::{Doc, RawObject};
use super::model::*;
use super::raw::{self, ChannelType, MemberRole, MetricsKind, Os, ProcessMatch, Severity, SmtpTls, Sp, SpStr, WebhookFormat};
use super::suggest::did_you_mean;
use super::values::{self, Cidr, Dur};
use crate::catalog;

/// Documents sorted by kind, in the order compile needs them.
#[derive(Default)]
struct ByKind {
    users: Vec<Doc<raw::User>>,
    groups: Vec<Doc<raw::Group>>,
    projects: Vec<Doc<raw::Project>>,
    servers: Vec<Doc<raw::Server>>,
    port_monitors: Vec<Doc<raw::PortMonitor>>,
    down_checks: Vec<Doc<raw::DownCheck>>,
    alert_policies: Vec<Doc<raw::AlertPolicy>>,
    process_policies: Vec<Doc<raw::ProcessPolicy>>,
    log_policies: Vec<Doc<raw::LogPolicy>>,
    channels: Vec<Doc<raw::Channel>>,
    maintenance: Vec<Doc<raw::Maintenance>>,
}

struct Ctx<'a> {
    sources: &'a Sources,
    diags: &'a mut Diagnostics,
    /// Epoch milliseconds "now", for windows already in the past.
    now_ms: i64,
    /// Owners of `networks` (see [`network_owner`]) with a range that did not parse: the range
    /// meant is unknown, so their addresses are not checked against the rest.
    dropped_networks: BTreeSet<String>,
}

/// Who approves a project's networks: its group, or the project itself when it has none.
fn network_owner(group: Option<&str>, project: &str) -> String {
    match group {
        Some(g) => format!("group `{g}`"),
        None => format!("project `{project}`"),
    }
}

/// Compile a tree. `library` holds the built-in (or `--policies`) shared AlertPolicies;
/// a shared policy of the same name in the tree takes precedence over the library's.
pub fn compile(docs: Vec<Doc<RawObject>>, library: Vec<Doc<RawObject>>, sources: &Sources, now_ms: i64, diags: &mut Diagnostics) -> Config {
    let mut by = ByKind::default();
    // Moved, not cloned: a large tree's raw documents are most of what compile allocates.
    for Doc { file, first_line, value } in docs {
        match value {
            RawObject::User(value) => by.users.push(Doc { file, first_line, value }),
            RawObject::Group(value) => by.groups.push(Doc { file, first_line, value }),
            RawObject::Project(value) => by.projects.push(Doc { file, first_line, value }),
            RawObject::Server(value) => by.servers.push(Doc { file, first_line, value }),
            RawObject::PortMonitor(value) => by.port_monitors.push(Doc { file, first_line, value }),
            RawObject::DownCheck(value) => by.down_checks.push(Doc { file, first_line, value }),
            RawObject::AlertPolicy(value) => by.alert_policies.push(Doc { file, first_line, value }),
            RawObject::ProcessPolicy(value) => by.process_policies.push(Doc { file, first_line, value }),
            RawObject::LogPolicy(value) => by.log_policies.push(Doc { file, first_line, value }),
            RawObject::Channel(value) => by.channels.push(Doc { file, first_line, value }),
            RawObject::Maintenance(value) => by.maintenance.push(Doc { file, first_line, value }),
        }
    }
    let mut cx = Ctx { sources, diags, now_ms, dropped_networks: BTreeSet::new() };
    let mut config = Config::default();
    for doc in &by.users {
        cx.user(doc, &mut config);
    }
    for doc in &by.groups {
        cx.group(doc, &mut config);
    }
    for doc in &by.channels {
        cx.channel(doc, &mut config);
    }
    for doc in library {
        match doc.value {
            RawObject::AlertPolicy(ref p) if p.project.is_none() => {
                if let Some(policy) = cx.alert_policy(&doc.map(p.clone()), true) {
                    config.shared_policies.insert(policy.name.clone(), policy);
                }
            }
            _ => {
                cx.diags.error("bad-value", doc.start(), "the policy library may hold only shared AlertPolicy documents (no `project`)");
            }
        }
    }
    let mut shared_seen = HashMap::new();
    for doc in by.alert_policies.iter().filter(|d| d.value.project.is_none()) {
        if cx.unique(doc, &doc.value.name, &mut shared_seen, "shared policy")
            && let Some(policy) = cx.alert_policy(doc, false)
        {
            config.shared_policies.insert(policy.name.clone(), policy);
        }
    }
    for doc in &by.projects {
        cx.project(doc, &mut config);
    }
    // Project-scoped kinds: find the project first; an unknown project is reported once per object.
    let mut seen: HashMap<(String, &'static str, String), Option<Location>> = HashMap::new();
    for doc in by.alert_policies.iter().filter(|d| d.value.project.is_some()) {
        let project = doc.value.project.as_ref().expect("filtered");
        if cx.project_of(doc, project, &config)
            && cx.unique_in(doc, project, "AlertPolicy", &doc.value.name, &mut seen)
            && let Some(policy) = cx.alert_policy(doc, false)
        {
            config.projects.get_mut(&project.value).expect("checked").alert_policies.insert(policy.name.clone(), policy);
        }
    }
    for doc in &by.servers {
        if cx.project_of(doc, &doc.value.project, &config) && cx.unique_in(doc, &doc.value.project, "Server", &doc.value.name, &mut seen) {
            let server = cx.server(doc, &config);
            config.projects.get_mut(&doc.value.project.value).expect("checked").servers.insert(server.name.clone(), server);
        }
    }
    for doc in &by.servers {
        if let Some(project) = config.projects.get(&doc.value.project.value) {
            cx.server_references(doc, project, &config);
        }
    }
    for project in config.projects.values() {
        cx.dependency_cycles(project, &by.servers);
    }
    for doc in &by.port_monitors {
        if cx.project_of(doc, &doc.value.project, &config)
            && cx.unique_in(doc, &doc.value.project, "PortMonitor", &doc.value.name, &mut seen)
            && let Some(monitor) = cx.port_monitor(doc, &config)
        {
            config.projects.get_mut(&doc.value.project.value).expect("checked").port_monitors.insert(monitor.name.clone(), monitor);
        }
    }
    for doc in &by.down_checks {
        if cx.project_of(doc, &doc.value.project, &config)
            && let Some(check) = cx.down_check(doc, &config)
        {
            let name = Sp { value: check.name.clone(), line: doc.value.detector.line, col: doc.value.detector.col };
            if cx.unique_in(doc, &doc.value.project, "DownCheck", &name, &mut seen) {
                config.projects.get_mut(&doc.value.project.value).expect("checked").down_checks.insert(check.name.clone(), check);
            }
        }
    }
    for doc in &by.process_policies {
        if cx.project_of(doc, &doc.value.project, &config)
            && cx.unique_in(doc, &doc.value.project, "ProcessPolicy", &doc.value.name, &mut seen)
        {
            let policy = cx.process_policy(doc, &config);
            config.projects.get_mut(&doc.value.project.value).expect("checked").process_policies.insert(policy.name.clone(), policy);
        }
    }
    for doc in &by.log_policies {
        if cx.project_of(doc, &doc.value.project, &config) && cx.unique_in(doc, &doc.value.project, "LogPolicy", &doc.value.name, &mut seen)
        {
            let policy = cx.log_policy(doc, &config);
            config.projects.get_mut(&doc.value.project.value).expect("checked").log_policies.insert(policy.name.clone(), policy);
        }
    }
    for doc in &by.maintenance {
        if cx.project_of(doc, &doc.value.project, &config)
            && cx.unique_in(doc, &doc.value.project, "Maintenance", &doc.value.name, &mut seen)
            && let Some(window) = cx.maintenance(doc, &config)
        {
            config.projects.get_mut(&doc.value.project.value).expect("checked").maintenance.insert(window.name.clone(), window);
        }
    }
    cx.unused_policies(&by.alert_policies, &config);
    for project in config.projects.values() {
        if let Some(digest) = &project.ingest_key_sha256 {
            config.ingest_keys.entry(digest.clone()).or_default().push(project.name.clone());
        }
    }
    config
}

impl Ctx<'_> {
    fn place(&self, at: Option<Location>) -> String {
        match at {
            Some(l) => format!("{}:{}", self.sources.display(l.file), l.line),
            None => "elsewhere".into(),
        }
    }

    fn slug<T>(&mut self, doc: &Doc<T>, name: &SpStr) -> bool {
        match values::check_slug(&name.value) {
            Ok(()) => true,
            Err(e) => {
                self.diags.error("bad-slug", doc.at(name), e);
                false
            }
        }
    }

    fn unique<T>(&mut self, doc: &Doc<T>, name: &SpStr, seen: &mut HashMap<String, Option<Location>>, what: &str) -> bool {
        self.slug(doc, name);
        if let Some(first) = seen.get(&name.value) {
            let first = self.place(*first);
            self.diags
                .error("duplicate-name", doc.at(name), format!("{what} `{}` is defined twice", name.value))
                .with_hint(format!("first defined at {first}"));
            return false;
        }
        seen.insert(name.value.clone(), doc.at(name));
        true
    }

    fn unique_in<T>(
        &mut self,
        doc: &Doc<T>,
        project: &SpStr,
        kind: &'static str,
        name: &SpStr,
        seen: &mut HashMap<(String, &'static str, String), Option<Location>>,
    ) -> bool {
        if kind != "DownCheck" {
            self.slug(doc, name);
        }
        let key = (project.value.clone(), kind, name.value.clone());
        if let Some(first) = seen.get(&key) {
            let first = self.place(*first);
            self.diags
                .error("duplicate-name", doc.at(name), format!("{kind} `{}` is defined twice in project `{}`", name.value, project.value))
                .with_hint(format!("first defined at {first}"));
            return false;
        }
        seen.insert(key, doc.at(name));
        true
    }

    /// Report an unknown reference with a did-you-mean hint; true when it resolves.
    fn reference<'n, T>(&mut self, doc: &Doc<T>, name: &SpStr, what: &str, known: impl Iterator<Item = &'n str> + Clone) -> bool {
        if known.clone().any(|k| k == name.value) {
            return true;
        }
        let hint = did_you_mean(&name.value, known);
        self.diags.error("unknown-reference", doc.at(name), format!("unknown {what} `{}`", name.value)).maybe_hint(hint);
        false
    }

    /// [`Self::reference`] against the keys of a map: a lookup when it resolves, so a clean tree
    /// costs O(log n) per reference rather than a scan of every name (one project of 10 000
    /// servers would otherwise make monitor and down-check references quadratic).
    fn key_reference<T, V>(&mut self, doc: &Doc<T>, name: &SpStr, what: &str, map: &BTreeMap<String, V>) -> bool {
        map.contains_key(&name.value) || self.reference(doc, name, what, map.keys().map(String::as_str))
    }

    fn project_of<T>(&mut self, doc: &Doc<T>, project: &SpStr, config: &Config) -> bool {
        self.key_reference(doc, project, "project", &config.projects)
    }

    fn duration<T>(&mut self, doc: &Doc<T>, value: Option<&SpStr>, default: Dur) -> Dur {
        match value {
            None => default,
            Some(sp) => Dur::parse(&sp.value).unwrap_or_else(|e| {
                self.diags.error("bad-duration", doc.at(sp), e);
                default
            }),
        }
    }

    /// A `repeat:` reminder interval: a duration of at least a second (serve looks for due
    /// reminders once a second).
    fn repeat<T>(&mut self, doc: &Doc<T>, value: Option<&SpStr>) -> Option<Dur> {
        self.period(doc, value?, "repeat")
    }

    /// A duration serve's once-a-second look at firing alerts acts on: at least a second.
    fn period<T>(&mut self, doc: &Doc<T>, sp: &SpStr, what: &str) -> Option<Dur> {
        let period = match Dur::parse(&sp.value) {
            Ok(period) => period,
            Err(e) => {
                self.diags.error("bad-duration", doc.at(sp), e);
                return None;
            }
        };
        if period.0.as_millis() < 1000 {
            self.diags.error("bad-duration", doc.at(sp), format!("{what} {period} is shorter than the 1s minimum"));
            return None;
        }
        Some(period)
    }

    /// A `flapping:` setting: `off` (or `false`), or a block whose missing fields are the
    /// default. Another word is reported and read as the default.
    fn flapping<T>(&mut self, doc: &Doc<T>, value: Option<&Sp<raw::Flapping>>) -> Option<FlappingSetting> {
        let sp = value?;
        let f = match &sp.value {
            raw::Flapping::Word(w) if w == "off" || w == "false" => return Some(FlappingSetting::Off),
            raw::Flapping::Word(w) => {
                self.diags
                    .error("bad-value", doc.at(sp), format!("`flapping: {w}` is neither `off` nor a block"))
                    .with_hint("write `flapping: off` to notify every change, or `flapping: { changes: 5, within: 30m }` to tune it");
                return Some(FlappingSetting::default());
            }
            raw::Flapping::Block(f) => f,
        };
        let default = Flapping::default();
        let changes = match &f.changes {
            None => default.changes,
            Some(sp) => match u32::try_from(sp.value) {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    self.diags
                        .error("bad-count", doc.at(sp), format!("flapping `changes` must be between 1 and 100, not {}", sp.value))
                        .with_hint("to notify every change, write `flapping: off`");
                    default.changes
                }
            },
        };
        let within = f.within.as_ref().map_or(Some(default.within), |w| self.period(doc, w, "flapping within"));
        Some(FlappingSetting::On(Flapping { changes, within: within.unwrap_or(default.within) }))
    }

    /// A project's `escalation:` steps: each `after` at least a second and longer than the step
    /// before, known users, and media the project has a channel of. A step with a problem is
    /// reported and left out.
    fn escalation(&mut self, doc: &Doc<raw::Project>, config: &Config) -> Vec<EscalationStep> {
        let p = &doc.value;
        let medium_of = |name: &SpStr| config.channels.get(&name.value).map(|c| c.type_);
        let mut steps: Vec<EscalationStep> = Vec::new();
        let mut previous: Option<Dur> = None;
        for (index, step) in p.escalation.iter().enumerate() {
            let (n, step) = (index + 1, &step.value);
            let mut ok = true;
            let after = self.period(doc, &step.after, "escalation after");
            if let (Some(after), Some(before)) = (after, previous)
                && after <= before
            {
                self.diags
                    .error(
                        "escalation-order",
                        doc.at(&step.after),
                        format!("escalation step {n} comes after {after}, not later than every step before it ({before})"),
                    )
                    .with_hint("give each step a longer `after` than the one before; steps are counted from when the alert fired");
                ok = false;
            }
            previous = previous.max(after);
            let mut notify = Vec::new();
            for email in &step.notify {
                if self.email_ref(doc, email, config) {
                    notify.push(email.value.to_ascii_lowercase());
                } else {
                    ok = false;
                }
            }
            if step.notify.is_empty() {
                self.diags
                    .error("escalation-empty", doc.at(&step.after), format!("escalation step {n} notifies nobody"))
                    .with_hint("list users under `notify`");
                ok = false;
            }
            let mut media = Vec::new();
            for medium in step.media.iter().flatten() {
                if medium.value == ChannelType::Webhook {
                    self.diags.error(
                        "escalation-medium",
                        doc.at(medium),
                        format!("escalation step {n}: a step reaches people, by `email` or `sms`, not `webhook`"),
                    );
                    ok = false;
                } else if !p.channels.iter().any(|c| medium_of(c) == Some(medium.value)) {
                    self.diags
                        .error(
                            "escalation-medium",
                            doc.at(medium),
                            format!(
                                "escalation step {n} sends {} but project `{}` has no {} channel",
                                medium.value, p.name.value, medium.value
                            ),
                        )
                        .with_hint("add a channel of that type to the project's `channels`, or drop the medium");
                    ok = false;
                } else if !media.contains(&medium.value) {
                    media.push(medium.value);
                }
            }
            if step.media.is_none() {
                if p.channels.iter().any(|c| medium_of(c) == Some(ChannelType::Email)) {
                    media.push(ChannelType::Email);
                } else {
                    self.diags
                        .error(
                            "escalation-medium",
                            doc.at(&step.after),
                            format!(
                                "escalation step {n} sends email (the default `media`) but project `{}` has no email channel",
                                p.name.value
                            ),
                        )
                        .with_hint("add `media: [sms]`, or an email channel to the project's `channels`");
                    ok = false;
                }
            } else if step.media.as_ref().is_some_and(Vec::is_empty) {
                self.diags.error("escalation-medium", doc.at(&step.after), format!("escalation step {n} has no `media`"));
                ok = false;
            }
            if media.contains(&ChannelType::Sms) {
                for email in
                    step.notify.iter().filter(|e| config.users.get(&e.value.to_ascii_lowercase()).is_some_and(|u| u.phone.is_none()))
                {
                    self.diags.warning(
                        "sms-no-phone",
                        doc.at(email),
                        format!("`{}` gets SMS from escalation step {n} but has no `phone`", email.value),
                    );
                }
            }
            if let (true, Some(after)) = (ok, after) {
                steps.push(EscalationStep { after, notify, media });
            }
        }
        steps
    }

    /// `reports.at`: a time of day, 00:00 to 23:59; 08:00 when absent (or wrong, after the error).
    fn daily_email_at(&mut self, doc: &Doc<raw::Project>, p: &raw::Project) -> u16 {
        const DEFAULT: u16 = 8 * 60;
        let Some(at) = p.reports.as_ref().and_then(|r| r.at.as_ref()) else { return DEFAULT };
        match values::parse_clock(&at.value) {
            Ok(minute) if minute < 24 * 60 => minute,
            Ok(_) => {
                self.diags.error("bad-time", doc.at(at), format!("`{}` is not a time of day: the latest is 23:59", at.value));
                DEFAULT
            }
            Err(e) => {
                self.diags.error("bad-time", doc.at(at), e);
                DEFAULT
            }
        }
    }

    fn port<T>(&mut self, doc: &Doc<T>, value: &Sp<i64>) -> Option<u16> {
        match u16::try_from(value.value) {
            Ok(p) if p >= 1 => Some(p),
            _ => {
                self.diags.error("port-range", doc.at(value), format!("port {} is outside 1–65535", value.value));
                None
            }
        }
    }

    fn count<T>(&mut self, doc: &Doc<T>, value: Option<&Sp<i64>>, field: &str, default: u32) -> u32 {
        match value {
            None => default,
            Some(sp) => match u32::try_from(sp.value) {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    self.diags.error("bad-count", doc.at(sp), format!("`{field}` must be between 1 and 1000, not {}", sp.value));
                    default
                }
            },
        }
    }

    fn email_ref<T>(&mut self, doc: &Doc<T>, email: &SpStr, config: &Config) -> bool {
        self.key_reference(doc, email, "user", &config.users)
    }

    /// The `networks` of `owner` (see [`network_owner`]); a range that does not parse is
    /// reported and dropped.
    fn networks<T>(&mut self, doc: &Doc<T>, list: &[SpStr], owner: String) -> Vec<Cidr> {
        let mut ranges = Vec::new();
        for n in list {
            match Cidr::parse(&n.value) {
                Ok(c) => ranges.push(c),
                Err(e) => {
                    let why = format!(
                        "{e}; the range is dropped, so addresses are not checked against the networks of {owner} until it is fixed"
                    );
                    self.diags.error("bad-address", doc.at(n), why);
                    self.dropped_networks.insert(owner.clone());
                }
            }
        }
        ranges
    }

    /// An IP literal that will be monitored must fall inside the approved networks, if any.
    fn approved<T>(&mut self, doc: &Doc<T>, at: &SpStr, ip: IpAddr, project: &Project, config: &Config) {
        let approved = config.approved_networks(project);
        let owner = network_owner(project.group.as_deref(), &project.name);
        if approved.is_empty() || approved.iter().any(|c| c.contains(ip)) || self.dropped_networks.contains(&owner) {
            return;
        }
        let ranges: Vec<String> = approved.iter().map(ToString::to_string).collect();
        self.diags
            .error("unapproved-network", doc.at(at), format!("{ip} is outside the approved networks of {owner}"))
            .with_hint(format!("approved: {}; a new range is approved by adding it to `networks` in the {owner} file", ranges.join(", ")));
    }

    fn user(&mut self, doc: &Doc<raw::User>, config: &mut Config) {
        let u = &doc.value;
        if let Err(e) = values::check_email(&u.email.value) {
            self.diags.error("bad-email", doc.at(&u.email), e);
        }
        let key = u.email.value.to_ascii_lowercase();
        if let Some(first) = config.users.get(&key) {
            let first = self.place(first.origin);
            self.diags
                .error("duplicate-name", doc.at(&u.email), format!("user `{}` is defined twice", u.email.value))
                .with_hint(format!("first defined at {first}"));
            return;
        }
        let phone = u.phone.as_ref().and_then(|p| match values::normalize_phone(&p.value) {
            Ok(n) => Some(n),
            Err(e) => {
                self.diags.error("bad-phone", doc.at(p), e);
                None
            }
        });
        if let Some(hash) = &u.token_sha256
            && let Err(e) = values::check_sha256(&hash.value)
        {
            self.diags.error("bad-hash", doc.at(hash), e);
        }
        let mut notify = NotifyPrefs { email: true, sms: false, mobile: false, hours: None, days: vec![] };
        if let Some(n) = &u.notify {
            let p = &n.value;
            notify.email = p.email.unwrap_or(true);
            notify.sms = p.sms.as_ref().is_some_and(|s| s.value);
            notify.mobile = p.mobile.unwrap_or(false);
            notify.days = p.days.clone().unwrap_or_default();
            if let Some(h) = &p.hours {
                match values::parse_hours(&h.value) {
                    Ok(range) => notify.hours = Some(range),
                    Err(e) => {
                        self.diags.error("bad-time", doc.at(h), e);
                    }
                }
            }
            if let Some(sms) = p.sms.as_ref().filter(|s| s.value && u.phone.is_none()) {
                self.diags.warning("sms-no-phone", doc.at(sms), format!("user `{}` asks for SMS but has no `phone`", u.email.value));
            }
        }
        if notify.days.is_empty() {
            notify.days = ALL_DAYS.to_vec();
        }
        config.users.insert(
            key,
            User {
                origin: doc.start(),
                email: u.email.value.clone(),
                name: u.name.value.clone(),
                phone,
                github: u.github.as_ref().map(|g| g.value.trim_start_matches('@').to_string()),
                language: u.language.as_ref().map_or(raw::Language::En, |l| l.value),
                token_sha256: u.token_sha256.as_ref().map(|h| h.value.to_ascii_lowercase()),
                notify,
            },
        );
    }

    fn group(&mut self, doc: &Doc<raw::Group>, config: &mut Config) {
        let g = &doc.value;
        self.slug(doc, &g.name);
        if let Some(first) = config.groups.get(&g.name.value) {
            let first = self.place(first.origin);
            self.diags
                .error("duplicate-name", doc.at(&g.name), format!("group `{}` is defined twice", g.name.value))
                .with_hint(format!("first defined at {first}"));
            return;
        }
        let mut roles: HashMap<String, &'static str> = HashMap::new();
        let entries =
            std::iter::once((&g.owner, "owner")).chain(g.admins.iter().map(|a| (a, "admin"))).chain(g.users.iter().map(|u| (u, "user")));
        for (email, role) in entries {
            if !self.email_ref(doc, email, config) {
                continue;
            }
            let key = email.value.to_ascii_lowercase();
            if let Some(previous) = roles.get(&key) {
                self.diags
                    .error(
                        "role-conflict",
                        doc.at(email),
                        format!("`{}` is both {previous} and {role} of group `{}`", email.value, g.name.value),
                    )
                    .with_hint("a user has one role per group: keep the higher one");
            } else {
                roles.insert(key, role);
            }
        }
        let networks = self.networks(doc, &g.networks, network_owner(Some(&g.name.value), ""));
        let lower = |v: &[SpStr]| v.iter().map(|e| e.value.to_ascii_lowercase()).collect();
        config.groups.insert(
            g.name.value.clone(),
            Group {
                origin: doc.start(),
                name: g.name.value.clone(),
                description: g.description.clone(),
                owner: g.owner.value.to_ascii_lowercase(),
                admins: lower(&g.admins),
                users: lower(&g.users),
                networks,
            },
        );
    }

    fn inline_secret<T>(&mut self, doc: &Doc<T>, field: &str, value: &SpStr) {
        if looks_secret(field, &value.value) {
            self.diags
                .warning("inline-secret", doc.at(value), format!("`{field}` looks like a secret written inline"))
                .with_hint("write `${ENV_NAME}` and give serve the value in its environment");
        }
    }

    /// An e-mail channel's `smtp.ca_file`, resolved against the directory of the file naming it,
    /// if it holds CA certificates. This is the one file outside the tree that compiling reads.
    fn ca_file(&mut self, doc: &Doc<raw::Channel>, file: &SpStr, tls: SmtpTls) -> Option<PathBuf> {
        if tls == SmtpTls::None {
            self.diags
                .error("exclusive-fields", doc.at(file), "`ca_file` does not apply with `tls: none`")
                .with_hint("use `tls: starttls` or `tls: tls`, or remove `ca_file`");
            return None;
        }
        let written = self.sources.root.join(&self.sources.get(doc.file).path);
        let path = written.parent().unwrap_or(Path::new("")).join(&file.value);
        let path = std::path::absolute(&path).unwrap_or(path);
        match read_ca_file(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                self.diags
                    .error("bad-ca-file", doc.at(file), e)
                    .with_hint("a PEM file of CA certificates, readable where lint and serve run");
                None
            }
        }
    }

    fn channel(&mut self, doc: &Doc<raw::Channel>, config: &mut Config) {
        let c = &doc.value;
        self.slug(doc, &c.name);
        if let Some(first) = config.channels.get(&c.name.value) {
            let first = self.place(first.origin);
            self.diags
                .error("duplicate-name", doc.at(&c.name), format!("channel `{}` is defined twice", c.name.value))
                .with_hint(format!("first defined at {first}"));
            return;
        }
        let kind = c.type_.value;
        let type_name = kind.as_str();
        let incomplete = |cx: &mut Self, what: &str| {
            cx.diags.error("channel-incomplete", doc.at(&c.type_), format!("{type_name} channel `{}` needs {what}", c.name.value));
        };
        let misplaced = |cx: &mut Self, field: &str, at: Option<Location>| {
            cx.diags.error("exclusive-fields", at, format!("`{field}` does not apply to a {type_name} channel"));
        };
        let mut smtp = None;
        let mut delivery_reports = None;
        match kind {
            ChannelType::Email => {
                match c.smtp.as_ref().and_then(|s| s.value.host.as_ref().map(|h| (s, h))) {
                    Some((s, host)) => {
                        let s = &s.value;
                        let tls = s.tls.as_ref().map_or(SmtpTls::Starttls, |t| t.value);
                        let default_port = match tls {
                            SmtpTls::None => 25,
                            SmtpTls::Starttls => 587,
                            SmtpTls::Tls => 465,
                        };
                        let port = s.port.as_ref().map_or(Some(default_port), |p| self.port(doc, p));
                        if let Some(password) = &s.password {
                            self.inline_secret(doc, "password", password);
                        }
                        smtp = Some(SmtpSettings {
                            host: host.value.clone(),
                            port: port.unwrap_or(default_port),
                            tls,
                            username: s.username.as_ref().map(|u| u.value.clone()),
                            password: s.password.as_ref().map(|p| p.value.clone()),
                            ca_file: s.ca_file.as_ref().and_then(|file| self.ca_file(doc, file, tls)),
                        });
                    }
                    None => incomplete(self, "`smtp.host`"),
                }
                match &c.from {
                    None => incomplete(self, "`from`"),
                    Some(from) => {
                        let address = from.value.rsplit_once('<').map_or(from.value.as_str(), |(_, a)| a.trim_end_matches('>').trim());
                        if !from.value.contains("${")
                            && let Err(e) = values::check_email(address)
                        {
                            self.diags.error("bad-email", doc.at(from), e);
                        }
                    }
                }
                for to in &c.to {
                    if let Err(e) = values::check_email(&to.value) {
                        self.diags.error("bad-email", doc.at(to), e);
                    }
                }
                if let Some(to) = &c.read_receipt_to
                    && !to.value.contains("${")
                    && let Err(e) = values::check_email(&to.value)
                {
                    self.diags.error("bad-email", doc.at(to), e);
                }
                if let Some(path) = &c.bounces
                    && !Path::new(&path.value).is_absolute()
                {
                    self.diags.error("bad-maildir", doc.at(path), format!("`bounces: {}` is not an absolute path", path.value)).with_hint(
                        "the Maildir where this channel's bounces arrive, on the machine serve runs on, e.g. /var/mail/watchkeeper-bounces",
                    );
                }
                for (field, present) in [
                    ("url", c.url.as_ref().map(|u| doc.at(u))),
                    ("body", c.body.as_ref().map(|b| doc.at(b))),
                    ("format", c.format.as_ref().map(|f| doc.at(f))),
                    ("delivery_reports", c.delivery_reports.as_deref().map(|d| doc.at(d))),
                ] {
                    if let Some(at) = present {
                        misplaced(self, field, at);
                    }
                }
            }
            ChannelType::Sms | ChannelType::Webhook => {
                match &c.url {
                    None => incomplete(self, "`url`"),
                    Some(url) => {
                        if let Err(e) = values::check_http_url(&url.value) {
                            self.diags.error("bad-url", doc.at(url), e);
                        }
                        self.inline_secret(doc, "url", url);
                    }
                }
                for (name, value) in &c.headers {
                    self.inline_secret(doc, name, value);
                }
                if let Some(s) = &c.smtp {
                    misplaced(self, "smtp", doc.at(s));
                }
                if let Some(f) = &c.from {
                    misplaced(self, "from", doc.at(f));
                }
                for (field, present) in [
                    ("track_reads", c.track_reads.as_ref().map(|t| doc.at(t))),
                    ("read_receipt_to", c.read_receipt_to.as_ref().map(|t| doc.at(t))),
                    ("bounces", c.bounces.as_ref().map(|b| doc.at(b))),
                ] {
                    if let Some(at) = present {
                        misplaced(self, field, at);
                    }
                }
                if kind == ChannelType::Sms {
                    for to in &c.to {
                        if let Err(e) = values::normalize_phone(&to.value) {
                            self.diags.error("bad-phone", doc.at(to), e);
                        }
                    }
                    if let Some(f) = &c.format {
                        misplaced(self, "format", doc.at(f));
                    }
                    delivery_reports = c.delivery_reports.as_deref().and_then(|d| self.delivery_reports(doc, d));
                } else {
                    if let Some(d) = c.delivery_reports.as_deref() {
                        misplaced(self, "delivery_reports", doc.at(d));
                    }
                    if let Some(to) = c.to.first() {
                        misplaced(self, "to", doc.at(to));
                    }
                    if let Some(b) = &c.body {
                        misplaced(self, "body", doc.at(b));
                    }
                }
            }
        }
        config.channels.insert(
            c.name.value.clone(),
            Channel {
                origin: doc.start(),
                name: c.name.value.clone(),
                type_: kind,
                smtp,
                from: c.from.as_ref().map(|f| f.value.clone()),
                to: c.to.iter().map(|t| t.value.clone()).collect(),
                url: c.url.as_ref().map(|u| u.value.clone()),
                headers: c.headers.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect(),
                body: c.body.as_ref().map(|b| b.value.clone()).or_else(|| (kind == ChannelType::Sms).then(|| DEFAULT_SMS_BODY.to_string())),
                format: c.format.as_ref().map_or(WebhookFormat::Json, |f| f.value),
                track_reads: kind == ChannelType::Email && c.track_reads.as_ref().is_some_and(|t| t.value),
                read_receipt_to: c.read_receipt_to.as_ref().filter(|_| kind == ChannelType::Email).map(|t| t.value.clone()),
                bounces: c.bounces.as_ref().filter(|_| kind == ChannelType::Email).map(|b| PathBuf::from(&b.value)),
                delivery_reports,
            },
        );
    }

    /// An SMS channel's `delivery_reports`, if its JSON paths parse.
    fn delivery_reports(&mut self, doc: &Doc<raw::Channel>, reports: &Sp<raw::DeliveryReports>) -> Option<DeliveryReports> {
        let r = &reports.value;
        if !r.secret.value.contains("${") {
            self.diags
                .warning("inline-secret", doc.at(&r.secret), "`delivery_reports.secret` is written inline")
                .with_hint("write `${ENV_NAME}` and give serve the value in its environment");
        }
        let path = |cx: &mut Self, written: &SpStr| match values::JsonPath::parse(&written.value) {
            Ok(path) => Some(path),
            Err(e) => {
                cx.diags.error("bad-json-path", doc.at(written), e);
                None
            }
        };
        let id = path(self, &r.id);
        let status = path(self, &r.status);
        let error = r.error.as_ref().map(|e| path(self, e));
        for (a, b) in r.delivered.iter().flat_map(|d| r.failed.iter().map(move |f| (d, f))) {
            if a.value == b.value {
                self.diags.error("exclusive-fields", doc.at(b), format!("status `{}` is listed as both delivered and failed", b.value));
            }
        }
        Some(DeliveryReports {
            secret: r.secret.value.clone(),
            id: id?,
            status: status?,
            error: match error {
                None => None,
                Some(parsed) => Some(parsed?),
            },
            delivered: r.delivered.iter().map(|s| s.value.clone()).collect(),
            failed: r.failed.iter().map(|s| s.value.clone()).collect(),
        })
    }

    fn project(&mut self, doc: &Doc<raw::Project>, config: &mut Config) {
        let p = &doc.value;
        self.slug(doc, &p.name);
        if let Some(first) = config.projects.get(&p.name.value) {
            let first = self.place(first.origin);
            self.diags
                .error("duplicate-name", doc.at(&p.name), format!("project `{}` is defined twice", p.name.value))
                .with_hint(format!("first defined at {first}"));
            return;
        }
        if let Some(group) = &p.group {
            self.key_reference(doc, group, "group", &config.groups);
            if let Some(first) = p.networks.first() {
                self.diags
                    .error(
                        "project-networks",
                        doc.at(first),
                        format!("project `{}` belongs to group `{}`; its approved networks are the group's", p.name.value, group.value),
                    )
                    .with_hint("add the range to the group's `networks`");
            }
        } else if !p.members.iter().any(|m| m.value.role.value == MemberRole::Admin) {
            self.diags
                .error(
                    "project-admin",
                    doc.at(&p.name),
                    format!("project `{}` has no group, so it must list at least one admin member", p.name.value),
                )
                .with_hint("add `members: [{ user: you@example.com, role: admin }]` or a `group`");
        }
        let timezone = match &p.timezone {
            None => "UTC".to_string(),
            Some(tz) => {
                if jiff::tz::db().get(&tz.value).is_err() {
                    let hint = did_you_mean(
                        &tz.value,
                        ["Asia/Seoul", "Asia/Tokyo", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "UTC"],
                    );
                    self.diags
                        .error("unknown-timezone", doc.at(tz), format!("unknown timezone `{}`", tz.value))
                        .maybe_hint(hint.or(Some("use an IANA name such as Asia/Seoul or UTC".into())));
                }
                tz.value.clone()
            }
        };
        let mut members: Vec<Member> = Vec::new();
        for m in &p.members {
            if !self.email_ref(doc, &m.value.user, config) {
                continue;
            }
            let email = m.value.user.value.to_ascii_lowercase();
            if members.iter().any(|x| x.user == email) {
                self.diags.error(
                    "role-conflict",
                    doc.at(&m.value.user),
                    format!("`{}` is listed twice in the members of project `{}`", m.value.user.value, p.name.value),
                );
                continue;
            }
            members.push(Member { user: email, role: m.value.role.value });
        }
        if let Some(hash) = &p.ingest_key_sha256
            && let Err(e) = values::check_sha256(&hash.value)
        {
            self.diags.error("bad-hash", doc.at(hash), e);
        }
        for channel in &p.channels {
            self.key_reference(doc, channel, "channel", &config.channels);
        }
        if p.channels.is_empty() {
            self.diags
                .warning("no-channel", doc.at(&p.name), format!("project `{}` has no channel: its alerts notify nobody", p.name.value))
                .with_hint("list Channel names under `channels`");
        }
        let networks = self.networks(doc, &p.networks, network_owner(None, &p.name.value));
        let repeat = self.repeat(doc, p.repeat.as_ref());
        let escalation = self.escalation(doc, config);
        let flapping = self.flapping(doc, p.flapping.as_ref()).unwrap_or_default();
        let daily_email_at = self.daily_email_at(doc, p);
        config.projects.insert(
            p.name.value.clone(),
            Project {
                origin: doc.start(),
                name: p.name.value.clone(),
                group: p.group.as_ref().map(|g| g.value.clone()),
                description: p.description.clone(),
                timezone,
                members,
                ingest_key_sha256: p.ingest_key_sha256.as_ref().map(|h| h.value.to_ascii_lowercase()),
                channels: p.channels.iter().map(|c| c.value.clone()).collect(),
                networks,
                daily_email: p.reports.as_ref().is_some_and(|r| r.daily_email),
                daily_email_at,
                repeat,
                escalation,
                flapping,
                servers: BTreeMap::new(),
                port_monitors: BTreeMap::new(),
                down_checks: BTreeMap::new(),
                alert_policies: BTreeMap::new(),
                process_policies: BTreeMap::new(),
                log_policies: BTreeMap::new(),
                maintenance: BTreeMap::new(),
            },
        );
    }

    /// The server itself; references to other servers are checked once all are known.
    fn server(&mut self, doc: &Doc<raw::Server>, config: &Config) -> Server {
        let s = &doc.value;
        let project = &config.projects[&s.project.value];
        match values::parse_host(&s.host.value) {
            Ok(Some(ip)) => self.approved(doc, &s.host, ip, project, config),
            Ok(None) => {}
            Err(e) => {
                self.diags.error("bad-address", doc.at(&s.host), e);
            }
        }
        let private_ip = s.private_ip.as_ref().and_then(|p| match values::parse_ip(&p.value) {
            Ok(ip) => {
                self.approved(doc, p, ip, project, config);
                Some(ip)
            }
            Err(e) => {
                self.diags.error("bad-address", doc.at(p), e);
                None
            }
        });
        for tag in &s.tags {
            self.slug(doc, tag);
        }
        let policy = match &s.policy {
            None => {
                if !s.paused {
                    self.diags
                        .warning(
                            "no-policy",
                            doc.at(&s.name),
                            format!("server `{}` has no alert policy: its metrics raise no alerts", s.name.value),
                        )
                        .with_hint("set `policy:` (e.g. the built-in `linux-default`)");
                }
                None
            }
            Some(name) => {
                if project.alert_policies.contains_key(&name.value) {
                    Some(PolicyRef::Project(name.value.clone()))
                } else if config.shared_policies.contains_key(&name.value) {
                    Some(PolicyRef::Shared(name.value.clone()))
                } else {
                    let known = project.alert_policies.keys().chain(config.shared_policies.keys()).map(String::as_str);
                    self.reference(doc, name, "policy", known);
                    None
                }
            }
        };
        let (metrics, metrics_url) = match &s.metrics {
            None => (MetricsKind::Agent, None),
            Some(m) => {
                let m = &m.value;
                match (m.source.value, &m.url) {
                    (MetricsKind::NodeExporter, None) => {
                        self.diags.error("missing-field", doc.at(&m.source), "`metrics.source: node_exporter` needs `metrics.url`");
                        (MetricsKind::NodeExporter, None)
                    }
                    (MetricsKind::NodeExporter, Some(url)) => {
                        if let Err(e) = values::check_http_url(&url.value) {
                            self.diags.error("bad-url", doc.at(url), e);
                        }
                        (MetricsKind::NodeExporter, Some(url.value.clone()))
                    }
                    (MetricsKind::Agent, Some(url)) => {
                        self.diags.error("exclusive-fields", doc.at(url), "`metrics.url` is only for `source: node_exporter`");
                        (MetricsKind::Agent, None)
                    }
                    (MetricsKind::Agent, None) => (MetricsKind::Agent, None),
                }
            }
        };
        Server {
            origin: doc.start(),
            name: s.name.value.clone(),
            host: s.host.value.clone(),
            private_ip,
            os: s.os.as_ref().map_or(Os::Linux, |o| o.value),
            tags: s.tags.iter().map(|t| t.value.clone()).collect(),
            policy,
            paused: s.paused,
            depends_on: s.depends_on.iter().map(|d| d.value.clone()).collect(),
            metrics,
            metrics_url,
        }
    }

    fn server_references(&mut self, doc: &Doc<raw::Server>, project: &Project, _config: &Config) {
        for parent in &doc.value.depends_on {
            if parent.value == doc.value.name.value {
                self.diags.error("dependency-cycle", doc.at(parent), format!("server `{}` depends on itself", parent.value));
            } else {
                self.key_reference(doc, parent, "server", &project.servers);
            }
        }
    }

    /// Report each `depends_on` cycle once, at the edge that closes it.
    fn dependency_cycles(&mut self, project: &Project, docs: &[Doc<raw::Server>]) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks: HashMap<&str, Mark> = project.servers.keys().map(|k| (k.as_str(), Mark::New)).collect();
        fn visit<'a>(
            name: &'a str,
            project: &'a Project,
            marks: &mut HashMap<&'a str, Mark>,
            path: &mut Vec<&'a str>,
            found: &mut Vec<(String, String, Vec<String>)>,
        ) {
            marks.insert(name, Mark::Active);
            path.push(name);
            for parent in &project.servers[name].depends_on {
                match marks.get(parent.as_str()).copied() {
                    Some(Mark::New) => visit(parent, project, marks, path, found),
                    Some(Mark::Active) if parent != name => {
                        let start = path.iter().position(|p| p == parent).unwrap_or(0);
                        let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                        cycle.push(parent.clone());
                        found.push((name.to_string(), parent.clone(), cycle));
                    }
                    _ => {}
                }
            }
            path.pop();
            marks.insert(name, Mark::Done);
        }
        let mut found = Vec::new();
        for name in project.servers.keys() {
            if marks[name.as_str()] == Mark::New {
                visit(name, project, &mut marks, &mut Vec::new(), &mut found);
            }
        }
        for (from, to, cycle) in found {
            let Some(doc) = docs.iter().find(|d| d.value.project.value == project.name && d.value.name.value == from) else { continue };
            let Some(edge) = doc.value.depends_on.iter().find(|d| d.value == to) else { continue };
            self.diags.error("dependency-cycle", doc.at(edge), format!("depends_on forms a cycle: {}", cycle.join(" → ")));
        }
    }

    fn port_monitor(&mut self, doc: &Doc<raw::PortMonitor>, config: &Config) -> Option<PortMonitor> {
        let m = &doc.value;
        let project = &config.projects[&m.project.value];
        let host = match (&m.host, &m.server) {
            (Some(host), None) => {
                match values::parse_host(&host.value) {
                    Ok(Some(ip)) => self.approved(doc, host, ip, project, config),
                    Ok(None) => {}
                    Err(e) => {
                        self.diags.error("bad-address", doc.at(host), e);
                    }
                }
                host.value.clone()
            }
            (None, Some(server)) => {
                if !self.key_reference(doc, server, "server", &project.servers) {
                    return None;
                }
                project.servers[&server.value].host.clone()
            }
            (Some(host), Some(_)) => {
                self.diags.error("exclusive-fields", doc.at(host), "give either `host` or `server`, not both");
                return None;
            }
            (None, None) => {
                self.diags.error("exclusive-fields", doc.at(&m.name), format!("port monitor `{}` needs `host` or `server`", m.name.value));
                return None;
            }
        };
        let mut ports = Vec::new();
        if m.ports.value.is_empty() || m.ports.value.len() > 16 {
            self.diags.error("port-count", doc.at(&m.ports), format!("a port monitor checks 1 to 16 ports, not {}", m.ports.value.len()));
        }
        for p in &m.ports.value {
            if let Some(port) = self.port(doc, p) {
                if ports.contains(&port) {
                    self.diags.error("port-count", doc.at(p), format!("port {port} is listed twice"));
                } else {
                    ports.push(port);
                }
            }
        }
        let interval = self.duration(doc, m.interval.as_ref(), Dur::secs(180));
        let timeout = self.duration(doc, m.timeout.as_ref(), Dur::secs(5));
        if timeout >= interval {
            let at = m.timeout.as_ref().or(m.interval.as_ref()).and_then(|t| doc.at(t));
            self.diags.error("timeout-interval", at, format!("timeout {timeout} must be shorter than interval {interval}"));
        }
        if interval.0.as_millis() < 1000 {
            let at = m.interval.as_ref().and_then(|t| doc.at(t));
            self.diags.error("bad-duration", at, format!("interval {interval} is shorter than the 1s minimum"));
        }
        let failures = self.count(doc, m.failures.as_ref(), "failures", 3);
        let recoveries = self.count(doc, m.recoveries.as_ref(), "recoveries", 1);
        let sms = m.sms.unwrap_or(false);
        let mut notify = Vec::new();
        for email in &m.notify {
            if self.email_ref(doc, email, config) {
                let key = email.value.to_ascii_lowercase();
                if sms && config.users[&key].phone.is_none() {
                    self.diags.warning(
                        "sms-no-phone",
                        doc.at(email),
                        format!("`{}` gets SMS from this monitor but has no `phone`", email.value),
                    );
                }
                notify.push(key);
            }
        }
        Some(PortMonitor {
            origin: doc.start(),
            name: m.name.value.clone(),
            host,
            server: m.server.as_ref().map(|s| s.value.clone()),
            ports,
            interval,
            timeout,
            failures,
            recoveries,
            notify,
            email: m.email.unwrap_or(true),
            sms,
            repeat: self.repeat(doc, m.repeat.as_ref()),
            flapping: self.flapping(doc, m.flapping.as_ref()),
        })
    }

    fn down_check(&mut self, doc: &Doc<raw::DownCheck>, config: &Config) -> Option<DownCheck> {
        let d = &doc.value;
        let project = &config.projects[&d.project.value];
        let detector_ok = self.key_reference(doc, &d.detector, "detector server", &project.servers);
        let target_ok = self.key_reference(doc, &d.target, "target server", &project.servers);
        if detector_ok && d.detector.value == d.target.value {
            self.diags
                .error("downcheck-self", doc.at(&d.target), format!("server `{}` cannot check itself", d.target.value))
                .with_hint("the detector must be another server in the same private network");
        }
        if detector_ok && project.servers[&d.detector.value].paused {
            self.diags.error(
                "downcheck-paused",
                doc.at(&d.detector),
                format!("detector `{}` is paused, so nothing would run this check", d.detector.value),
            );
        }
        let port = self.port(doc, &d.port);
        let target = target_ok.then(|| &project.servers[&d.target.value]);
        let default_liveness = if target.is_some_and(|t| t.os == Os::Windows) { 3389 } else { 22 };
        let liveness = d.liveness_port.as_ref().map_or(Some(default_liveness), |p| self.port(doc, p));
        let ip = match (&d.ip, target) {
            (Some(ip), _) => {
                match values::parse_ip(&ip.value) {
                    Ok(addr) => self.approved(doc, ip, addr, project, config),
                    Err(e) => {
                        self.diags.error("bad-address", doc.at(ip), e);
                    }
                }
                ip.value.clone()
            }
            (None, Some(t)) => t.private_ip.map_or_else(|| t.host.clone(), |ip| ip.to_string()),
            (None, None) => String::new(),
        };
        let interval = self.duration(doc, d.interval.as_ref(), Dur::secs(30));
        let failures = self.count(doc, d.failures.as_ref(), "failures", 3);
        let port = port?;
        Some(DownCheck {
            origin: doc.start(),
            name: format!("{}-to-{}-{}", d.detector.value, d.target.value, port),
            detector: d.detector.value.clone(),
            target: d.target.value.clone(),
            ip,
            port,
            liveness_port: liveness.unwrap_or(default_liveness),
            interval,
            failures,
        })
    }

    /// Check a warning/fatal pair: at least one, and ordered unless `below`.
    fn thresholds<T>(&mut self, doc: &Doc<T>, at: Option<Location>, warning: Option<&Sp<f64>>, fatal: Option<&Sp<f64>>, below: bool) {
        match (warning, fatal) {
            (None, None) => {
                self.diags.error("threshold-order", at, "give at least one of `warning` and `fatal`");
            }
            (Some(w), Some(f)) if !below && w.value >= f.value => {
                self.diags
                    .error("threshold-order", doc.at(w), format!("warning {} must be below fatal {}", w.value, f.value))
                    .with_hint("for a metric where lower is worse, add `below: true`");
            }
            (Some(w), Some(f)) if below && w.value <= f.value => {
                self.diags.error(
                    "threshold-order",
                    doc.at(w),
                    format!("with `below: true`, warning {} must be above fatal {}", w.value, f.value),
                );
            }
            _ => {}
        }
    }

    fn alert_policy(&mut self, doc: &Doc<raw::AlertPolicy>, builtin: bool) -> Option<AlertPolicy> {
        let p = &doc.value;
        self.slug(doc, &p.name);
        let no_data = p.no_data.as_ref().map(|d| self.duration(doc, Some(d), Dur::secs(120)));
        let mut rules = Vec::new();
        for rule in &p.rules {
            let r = &rule.value;
            if !catalog::lookup(&r.metric.value).is_some_and(|m| m.alertable) {
                let hint = did_you_mean(&r.metric.value, catalog::alertable());
                self.diags.error("unknown-metric", doc.at(&r.metric), format!("unknown metric `{}`", r.metric.value)).maybe_hint(hint);
            }
            self.thresholds(doc, doc.at(rule), r.warning.as_ref(), r.fatal.as_ref(), r.below);
            rules.push(MetricRule {
                metric: r.metric.value.clone(),
                warning: r.warning.as_ref().map(|w| w.value),
                fatal: r.fatal.as_ref().map(|f| f.value),
                below: r.below,
                for_: self.duration(doc, r.for_.as_ref(), Dur::default()),
            });
        }
        Some(AlertPolicy {
            origin: doc.start(),
            name: p.name.value.clone(),
            description: p.description.clone(),
            builtin,
            no_data,
            restart: p.restart,
            rules,
            repeat: self.repeat(doc, p.repeat.as_ref()),
            flapping: self.flapping(doc, p.flapping.as_ref()),
        })
    }

    /// `servers` must name servers of the project; `project_wide` is the alternative.
    fn policy_servers<T>(
        &mut self,
        doc: &Doc<T>,
        name: &SpStr,
        servers: &[SpStr],
        project_wide: Option<bool>,
        project: &Project,
    ) -> Vec<String> {
        match (servers.is_empty(), project_wide) {
            (true, Some(true)) => return vec![],
            (false, Some(true)) => {
                self.diags.error("exclusive-fields", doc.at(&servers[0]), "give either `servers` or `project_wide: true`, not both");
            }
            (true, _) => {
                let what = if project_wide.is_some() { "`servers` or `project_wide: true`" } else { "`servers`" };
                self.diags.error("exclusive-fields", doc.at(name), format!("policy `{}` applies to no server: give {what}", name.value));
            }
            (false, _) => {}
        }
        servers.iter().filter(|s| self.key_reference(doc, s, "server", &project.servers)).map(|s| s.value.clone()).collect()
    }

    fn process_policy(&mut self, doc: &Doc<raw::ProcessPolicy>, config: &Config) -> ProcessPolicy {
        let p = &doc.value;
        let project = &config.projects[&p.project.value];
        let servers = self.policy_servers(doc, &p.name, &p.servers, Some(p.project_wide), project);
        let match_ = p.match_.as_ref().map_or(ProcessMatch::Exact, |m| m.value);
        let regex = match match_ {
            ProcessMatch::Exact => None,
            ProcessMatch::Regex => match regex::Regex::new(&format!("^(?:{})$", p.process.value)) {
                Ok(re) => Some(re),
                Err(e) => {
                    let first = e.to_string().lines().last().unwrap_or("invalid").trim().to_string();
                    self.diags.error("bad-regex", doc.at(&p.process), format!("`{}` is not a valid regex: {first}", p.process.value));
                    None
                }
            },
        };
        if p.count.is_none() && p.cpu.is_none() && p.memory.is_none() {
            self.diags.error(
                "missing-field",
                doc.at(&p.name),
                format!("process policy `{}` checks nothing: give `count`, `cpu` or `memory`", p.name.value),
            );
        }
        let (mut count_min, mut count_max) = (None, None);
        if let Some(count) = &p.count {
            let bound = |cx: &mut Self, v: &Option<Sp<i64>>| {
                v.as_ref().and_then(|b| match u32::try_from(b.value) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        cx.diags.error("bad-count", doc.at(b), format!("a process count cannot be {}", b.value));
                        None
                    }
                })
            };
            count_min = bound(self, &count.value.min);
            count_max = bound(self, &count.value.max);
            match (count_min, count_max) {
                (None, None) => {
                    self.diags.error("bad-count", doc.at(count), "`count` needs `min`, `max` or both");
                }
                (Some(lo), Some(hi)) if lo > hi => {
                    self.diags.error("bad-count", doc.at(count), format!("count min {lo} is above max {hi}"));
                }
                _ => {}
            }
        }
        let limits = |cx: &mut Self, t: &Option<Sp<raw::Thresholds>>| {
            t.as_ref().map(|t| {
                cx.thresholds(doc, doc.at(t), t.value.warning.as_ref(), t.value.fatal.as_ref(), false);
                Limits { warning: t.value.warning.as_ref().map(|w| w.value), fatal: t.value.fatal.as_ref().map(|f| f.value) }
            })
        };
        let cpu = limits(self, &p.cpu);
        let memory = limits(self, &p.memory);
        ProcessPolicy {
            origin: doc.start(),
            name: p.name.value.clone(),
            process: p.process.value.clone(),
            match_,
            regex,
            servers,
            project_wide: p.project_wide,
            count_min,
            count_max,
            cpu,
            memory,
            for_: self.duration(doc, p.for_.as_ref(), Dur::default()),
            severity: p.severity.as_ref().map_or(Severity::Fatal, |s| s.value),
        }
    }

    fn log_policy(&mut self, doc: &Doc<raw::LogPolicy>, config: &Config) -> LogPolicy {
        let p = &doc.value;
        let project = &config.projects[&p.project.value];
        let servers = self.policy_servers(doc, &p.name, &p.servers, None, project);
        let mut rules = Vec::new();
        if p.rules.is_empty() {
            self.diags.error("missing-field", doc.at(&p.name), format!("log policy `{}` has no rules", p.name.value));
        }
        for rule in &p.rules {
            let r = &rule.value;
            let severity = r.severity.value;
            match (&r.file, &r.keyword, &r.event_log) {
                (Some(file), Some(keyword), None) => {
                    if keyword.value.is_empty() {
                        self.diags.error("missing-field", doc.at(keyword), "`keyword` is empty");
                    }
                    rules.push(LogRule::File { file: file.value.clone(), keyword: keyword.value.clone(), severity });
                }
                (None, None, Some(event)) => {
                    for server in &servers {
                        if project.servers[server].os != Os::Windows {
                            self.diags
                                .error(
                                    "windows-only",
                                    doc.at(event),
                                    format!("event_log rules apply only to Windows servers; `{server}` is not `os: windows`"),
                                )
                                .with_hint("move this rule to a policy for Windows servers");
                        }
                    }
                    let e = &event.value;
                    rules.push(LogRule::EventLog {
                        log: e.log.clone(),
                        level: e.level.clone(),
                        source: e.source.clone(),
                        id: e.id,
                        severity,
                    });
                }
                (Some(_), None, None) => {
                    self.diags.error("missing-field", doc.at(rule), "a `file` rule needs a `keyword`");
                }
                (None, Some(_), None) => {
                    self.diags.error("missing-field", doc.at(rule), "a `keyword` rule needs a `file`");
                }
                _ => {
                    self.diags.error("exclusive-fields", doc.at(rule), "a log rule is either `file` + `keyword` or `event_log`");
                }
            }
        }
        LogPolicy { origin: doc.start(), name: p.name.value.clone(), servers, rules }
    }

    fn maintenance(&mut self, doc: &Doc<raw::Maintenance>, config: &Config) -> Option<Maintenance> {
        let m = &doc.value;
        let project = &config.projects[&m.project.value];
        let given = [!m.servers.is_empty(), !m.tags.is_empty(), m.all].iter().filter(|&&g| g).count();
        if given != 1 {
            self.diags.error(
                "exclusive-fields",
                doc.at(&m.name),
                format!("maintenance `{}` needs exactly one of `servers`, `tags` or `all: true`", m.name.value),
            );
        }
        for server in &m.servers {
            self.key_reference(doc, server, "server", &project.servers);
        }
        let tags: BTreeSet<&str> = project.servers.values().flat_map(|s| s.tags.iter().map(String::as_str)).collect();
        for tag in &m.tags {
            self.reference(doc, tag, "tag", tags.iter().copied());
        }
        let scope = if m.all {
            MaintenanceScope::All
        } else if !m.tags.is_empty() {
            MaintenanceScope::Tags(m.tags.iter().map(|t| t.value.clone()).collect())
        } else {
            MaintenanceScope::Servers(m.servers.iter().map(|s| s.value.clone()).collect())
        };
        let window = match (&m.start, &m.end, &m.schedule) {
            (Some(start), Some(end), None) => {
                let parse = |cx: &mut Self, sp: &SpStr| match sp.value.parse::<jiff::Timestamp>() {
                    Ok(t) => Some(t.as_millisecond()),
                    Err(_) => {
                        cx.diags.error(
                            "bad-time",
                            doc.at(sp),
                            format!("`{}` is not an RFC 3339 timestamp like 2026-12-01T01:00:00+09:00", sp.value),
                        );
                        None
                    }
                };
                let (start_ms, end_ms) = (parse(self, start)?, parse(self, end)?);
                if end_ms <= start_ms {
                    self.diags.error("bad-time", doc.at(end), "`end` must be after `start`");
                } else if end_ms < self.now_ms {
                    self.diags.warning(
                        "maintenance-past",
                        doc.at(end),
                        format!("maintenance `{}` ended at {}; remove it", m.name.value, end.value),
                    );
                }
                Window::Once { start_ms, end_ms }
            }
            (None, None, Some(schedule)) => {
                let s = &schedule.value;
                let clock = |cx: &mut Self, sp: &SpStr| match values::parse_clock(&sp.value) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        cx.diags.error("bad-time", doc.at(sp), e);
                        None
                    }
                };
                let (from, to) = (clock(self, &s.from)?, clock(self, &s.to)?);
                if from == to {
                    self.diags.error("bad-time", doc.at(&s.to), "the window is empty: `from` equals `to`");
                }
                if s.days.is_empty() {
                    self.diags.error("missing-field", doc.at(schedule), "`schedule.days` lists no day");
                }
                Window::Weekly { days: s.days.clone(), from, to }
            }
            (start, end, schedule) => {
                let at = start
                    .as_ref()
                    .or(end.as_ref())
                    .and_then(|s| doc.at(s))
                    .or(schedule.as_ref().and_then(|s| doc.at(s)))
                    .or(doc.at(&m.name));
                self.diags.error("exclusive-fields", at, "a maintenance window is either `start` + `end` or `schedule`");
                return None;
            }
        };
        Some(Maintenance { origin: doc.start(), name: m.name.value.clone(), scope, window, reason: m.reason.clone() })
    }

    fn unused_policies(&mut self, docs: &[Doc<raw::AlertPolicy>], config: &Config) {
        let mut used_shared = BTreeSet::new();
        let mut used_local = BTreeSet::new();
        for project in config.projects.values() {
            for server in project.servers.values() {
                match &server.policy {
                    Some(PolicyRef::Shared(name)) => {
                        used_shared.insert(name.as_str());
                    }
                    Some(PolicyRef::Project(name)) => {
                        used_local.insert((project.name.as_str(), name.as_str()));
                    }
                    None => {}
                }
            }
        }
        for doc in docs {
            let p = &doc.value;
            let used = match &p.project {
                Some(project) => used_local.contains(&(project.value.as_str(), p.name.value.as_str())),
                None => used_shared.contains(p.name.value.as_str()),
            };
            if !used {
                self.diags.warning("unused-policy", doc.at(&p.name), format!("no server uses policy `{}`", p.name.value));
            }
        }
    }
}

const ALL_DAYS: [raw::Weekday; 7] = {
    use raw::Weekday::*;
    [Mon, Tue, Wed, Thu, Fri, Sat, Sun]
};

/// Heuristic for secrets written inline: a value that is not `${…}` and looks like a
/// password, a bearer credential, a Slack hook or a long random token.
fn looks_secret(field: &str, value: &str) -> bool {
    if value.contains("${") || value.is_empty() {
        return false;
    }
    let field = field.to_ascii_lowercase();
    if field == "password" {
        return true;
    }
    let lower = value.to_ascii_lowercase();
    if lower.contains("hooks.slack.com/services/") {
        return true;
    }
    if ["token=", "key=", "secret=", "password=", "apikey="].iter().any(|k| lower.contains(k)) {
        return true;
    }
    if ["authorization", "x-api-key", "api-key", "token"].iter().any(|h| field.contains(h)) {
        return true;
    }
    // A long run of mixed letters and digits, like an API key.
    value
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .any(|word| word.len() >= 24 && word.bytes().any(|b| b.is_ascii_digit()) && word.bytes().any(|b| b.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::looks_secret;

    #[test]
    fn inline_secret_heuristic() {
        assert!(looks_secret("password", "hunter2"));
        assert!(!looks_secret("password", "${SMTP_PASSWORD}"));
        assert!(looks_secret("url", "https://hooks.slack.com/services/T000/B000/XXXX"));
        assert!(looks_secret("Authorization", "Bearer abc"));
        assert!(!looks_secret("Authorization", "Bearer ${SMS_TOKEN}"));
        assert!(looks_secret("url", "https://sms.example.com/send?key=abc"));
        assert!(!looks_secret("url", "https://sms.example.com/send"));
        assert!(!looks_secret("Content-Type", "application/json"));
    }
}
