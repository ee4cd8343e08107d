//! `codeowners`: a CODEOWNERS file derived from group and project roles, so the people who
//! own a part of the monitoring tree are the ones asked to review changes to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::config::model::{Config, Origin};
use crate::config::raw::MemberRole;
use crate::config::{Location, Sources};

pub struct Codeowners {
    /// The CODEOWNERS text.
    pub text: String,
    /// Users who should own something but have no `github` handle.
    pub missing_handles: BTreeSet<String>,
    /// The catch-all has nobody: no default owner given and no group owner with a handle.
    pub no_default_owner: bool,
}

/// A set of owners: `@handle`s, `@org/team`s or e-mail addresses.
type Owners = BTreeSet<String>;

/// Build CODEOWNERS so that every file of the tree has an owner. GitHub and GitLab let the last
/// matching line win, so the lines go from general to specific:
///
/// 1. a catch-all for the whole tree, owned by `default_owners`, or else by every group's owner
///    and the admins of projects in no group (users, channels and shared policies are nobody's
///    project, and hold contact details and token hashes);
/// 2. each project's folder (the one holding its Project document, when not the tree root), owned
///    by the project's admin members and its group's owner and admins — so a file added there
///    later is theirs too;
/// 3. each file whose objects are owned otherwise than its folder (or the catch-all) says: a
///    group's file by the group's owner and admins; a project's objects by the project's owners,
///    wherever the file sits. A file holding objects of several owners is owned by those who own
///    all of them, or by the default owners when nobody does.
///
/// `prefix` is the tree's path inside the repository (`git rev-parse --show-prefix`), so patterns
/// are rooted at the repository.
pub fn generate(config: &Config, sources: &Sources, prefix: &str, default_owners: &[String]) -> Codeowners {
    let mut handles = Handles { config, missing: BTreeSet::new() };
    let defaults: Owners = if default_owners.is_empty() {
        // The top of each chain of ownership: the groups' owners, and the admins of projects
        // in no group.
        let ungrouped = config.projects.values().filter(|p| p.group.is_none());
        let ungrouped_admins = ungrouped.flat_map(|p| p.members.iter().filter(|m| m.role == MemberRole::Admin).map(|m| &m.user));
        handles.of(config.groups.values().map(|g| &g.owner).chain(ungrouped_admins))
    } else {
        default_owners.iter().map(|o| if o.contains('@') { o.clone() } else { format!("@{o}") }).collect()
    };

    // The tree file each object was defined in, and who owns that object.
    let tree_file = |origin: Origin| -> Option<PathBuf> {
        origin.filter(|l: &Location| (l.file.0 as usize) < sources.tree_files).map(|l| sources.get(l.file).path.clone())
    };
    // Per file: who owns every object in it, and whether any object is a group's or project's.
    let mut files: BTreeMap<PathBuf, (Owners, bool)> = BTreeMap::new();
    let mut claim = |origin: Origin, owners: &Owners, scoped: bool| {
        if let Some(path) = tree_file(origin) {
            let (common, any_scoped) = files.entry(path).or_insert_with(|| (owners.clone(), false));
            common.retain(|h| owners.contains(h));
            *any_scoped |= scoped;
        }
    };
    for user in config.users.values() {
        claim(user.origin, &defaults, false);
    }
    for channel in config.channels.values() {
        claim(channel.origin, &defaults, false);
    }
    for policy in config.shared_policies.values() {
        claim(policy.origin, &defaults, false);
    }
    for group in config.groups.values() {
        claim(group.origin, &handles.of(std::iter::once(&group.owner).chain(&group.admins)), true);
    }
    let mut folders: BTreeMap<PathBuf, Owners> = BTreeMap::new();
    for project in config.projects.values() {
        let admins = project.members.iter().filter(|m| m.role == MemberRole::Admin).map(|m| &m.user);
        let group = project.group.as_deref().and_then(|g| config.groups.get(g));
        let owners = handles.of(admins.chain(group.into_iter().flat_map(|g| std::iter::once(&g.owner).chain(&g.admins))));
        let origins = std::iter::once(project.origin)
            .chain(project.servers.values().map(|o| o.origin))
            .chain(project.port_monitors.values().map(|o| o.origin))
            .chain(project.down_checks.values().map(|o| o.origin))
            .chain(project.alert_policies.values().map(|o| o.origin))
            .chain(project.process_policies.values().map(|o| o.origin))
            .chain(project.log_policies.values().map(|o| o.origin))
            .chain(project.maintenance.values().map(|o| o.origin));
        for origin in origins {
            claim(origin, &owners, true);
        }
        let folder = tree_file(project.origin).and_then(|p| p.parent().map(Path::to_path_buf));
        if let Some(folder) = folder.filter(|f| !f.as_os_str().is_empty()) {
            folders.entry(folder).and_modify(|o| o.retain(|h| owners.contains(h))).or_insert(owners);
        }
    }

    let mut text = String::from("# Generated by `watchkeeper codeowners` from group and project roles; do not edit by hand.\n");
    let catch_all = if prefix.is_empty() { "*".to_string() } else { escape(&format!("/{prefix}")) };
    line(&mut text, &catch_all, &defaults, "give --default-owner");
    // Folders before files (a file's line must come after its folder's), parents before children.
    for (folder, owners) in &folders {
        line(&mut text, &format!("{}/", pattern(prefix, folder)), owners, "the catch-all's owners own it");
    }
    // A file gets its own line unless its folder's line already names its owners; a group's or
    // project's file outside any project folder always does, so it does not change with the
    // catch-all.
    for (file, (owners, scoped)) in &files {
        let folder = folders.iter().filter(|(f, _)| file.starts_with(f)).max_by_key(|(f, _)| f.components().count());
        let owners = if owners.is_empty() { &defaults } else { owners };
        let said = match folder {
            Some((_, inherited)) => inherited == owners,
            None => !scoped && owners == &defaults,
        };
        if !said {
            line(&mut text, &pattern(prefix, file), owners, "the catch-all's owners own it");
        }
    }
    Codeowners { text, missing_handles: handles.missing, no_default_owner: defaults.is_empty() }
}

/// Users' `github` handles, noting who has none.
struct Handles<'a> {
    config: &'a Config,
    missing: BTreeSet<String>,
}

impl Handles<'_> {
    fn of<'e>(&mut self, emails: impl IntoIterator<Item = &'e String>) -> Owners {
        let mut owners = Owners::new();
        for email in emails {
            match self.config.users.get(email).and_then(|u| u.github.as_deref()) {
                Some(handle) => owners.insert(format!("@{}", handle.trim_start_matches('@'))),
                None => self.missing.insert(email.clone()),
            };
        }
        owners
    }
}

/// One CODEOWNERS line, or a comment saying why there is none.
fn line(text: &mut String, pattern: &str, owners: &Owners, otherwise: &str) {
    if owners.is_empty() {
        text.push_str(&format!("# {pattern} has no owner with a github handle; {otherwise}\n"));
    } else {
        text.push_str(&format!("{pattern} {}\n", owners.iter().cloned().collect::<Vec<_>>().join(" ")));
    }
}

fn pattern(prefix: &str, path: &Path) -> String {
    escape(&format!("/{prefix}{}", path.display()))
}

fn escape(pattern: &str) -> String {
    pattern.replace(' ', "\\ ")
}
