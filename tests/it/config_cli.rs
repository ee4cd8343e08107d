//! The commands around the configuration tree, run as a user would: schema, examples,
//! plan between git commits, codeowners, token.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{copy_tree, git};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_watchkeeper"))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        fs::read_dir(repo_root().join("examples")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

#[test]
fn committed_schema_matches_the_types() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin().args(["schema", "--out"]).arg(tmp.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let committed = repo_root().join("schema");
    let mut generated: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    generated.sort();
    let mut existing: Vec<_> = fs::read_dir(&committed).unwrap().map(|e| e.unwrap().file_name()).collect();
    existing.sort();
    assert_eq!(generated, existing, "schema/ has other files than `watchkeeper schema` writes");
    for name in generated {
        let fresh = fs::read_to_string(tmp.path().join(&name)).unwrap();
        let old = fs::read_to_string(committed.join(&name)).unwrap();
        assert!(fresh == old, "schema/{} is stale: run `cargo run -- schema --out schema`", name.to_string_lossy());
    }
}

fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.file_name().and_then(|n| n.to_str()).is_some_and(watchkeeper::config::load::is_config_file) {
            out.push(path);
        }
    }
}

fn combined_schema() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(repo_root().join("schema/watchkeeper.json")).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn examples_lint_clean_and_validate_against_the_schema() {
    let validator = combined_schema();
    let dirs = examples();
    assert!(dirs.len() >= 3, "expected quickstart, hosting and organisation");
    for dir in dirs {
        let out = bin().arg("lint").arg(&dir).arg("--deny-warnings").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}:\n{}", dir.display(), stdout(&out));
        let mut files = Vec::new();
        yaml_files(&dir, &mut files);
        for file in files {
            for doc in yaml_documents(&file) {
                let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{} does not match schema/watchkeeper.json: {errors:?}", file.display());
            }
        }
    }
    let mut policies = Vec::new();
    yaml_files(&repo_root().join("policies"), &mut policies);
    for file in policies {
        for doc in yaml_documents(&file) {
            assert!(validator.is_valid(&doc), "{}", file.display());
        }
    }
}

#[test]
fn schema_rejects_unknown_fields_and_kinds_like_lint() {
    let validator = combined_schema();
    let server = serde_json::json!({ "kind": "Server", "name": "web-01", "project": "shop", "host": "10.0.0.1" });
    assert!(validator.is_valid(&server));
    let mut typo = server.clone();
    typo["polcy"] = serde_json::json!("linux-default");
    assert!(!validator.is_valid(&typo));
    let mut unknown = server.clone();
    unknown["kind"] = serde_json::json!("Sever");
    assert!(!validator.is_valid(&unknown));
}

fn quickstart_repo() -> (tempfile::TempDir, PathBuf) {
    let repo = tempfile::tempdir().unwrap();
    let tree = repo.path().join("monitoring");
    copy_tree(&repo_root().join("examples/quickstart"), &tree);
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "base"]);
    (repo, tree)
}

#[test]
fn plan_between_two_git_commits_lists_added_changed_and_removed() {
    let (repo, tree) = quickstart_repo();
    let project = tree.join("project.yaml");
    let text = fs::read_to_string(&project).unwrap();
    let text = text.replace("interval: 1m", "interval: 5m");
    let text = format!("{text}---\nkind: Server\nname: web-02\nproject: shop\nhost: 203.0.113.11\npolicy: web-server\n");
    fs::write(&project, text).unwrap();
    fs::write(tree.join("people.yaml"), fs::read_to_string(tree.join("people.yaml")).unwrap().replace("name: Bob Lee", "name: Robert Lee"))
        .unwrap();
    git(repo.path(), &["commit", "-qam", "change"]);

    let out = bin().args(["plan", "--base", "HEAD~1"]).arg(&tree).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Plan: 1 to add, 2 to change, 0 to remove.\n"), "{text}");
    assert!(text.contains("project shop\n"), "{text}");
    assert!(text.contains("  ~ PortMonitor web-01-ports\n      interval: \"1m\" → \"5m\"\n"), "{text}");
    assert!(text.contains("  + Server web-02\n"), "{text}");
    assert!(text.contains("  ~ User bob@example.com\n      name: \"Bob Lee\" → \"Robert Lee\"\n"), "{text}");

    // The working tree against itself: nothing to do.
    let out = bin().args(["plan", "--base", "HEAD"]).arg(&tree).output().unwrap();
    assert!(stdout(&out).contains("Plan: 0 to add, 0 to change, 0 to remove."), "{}", stdout(&out));

    // JSON, and a directory as the base (removal the other way round).
    let base = tempfile::tempdir().unwrap();
    copy_tree(&tree, base.path());
    fs::write(base.path().join("extra.yaml"), "kind: User\nemail: eve@example.com\nname: Eve\n").unwrap();
    let out = bin().args(["plan", "--format", "json", "--base"]).arg(base.path()).arg(&tree).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["removed"], 1);
    assert_eq!(v["changes"][0]["kind"], "User");
    assert_eq!(v["changes"][0]["name"], "eve@example.com");
    assert_eq!(v["changes"][0]["change"], "removed");
}

#[test]
fn plan_refuses_a_broken_tree_and_an_unknown_revision() {
    let (repo, tree) = quickstart_repo();
    let project = tree.join("project.yaml");
    fs::write(&project, fs::read_to_string(&project).unwrap().replace("policy: database", "policy: databse")).unwrap();
    let out = bin().args(["plan", "--base", "HEAD"]).arg(&tree).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown policy `databse`"), "{}", stderr(&out));
    assert!(stderr(&out).contains("did you mean `database`?"), "{}", stderr(&out));

    let out = bin().args(["plan", "--base", "no-such-branch"]).arg(&tree).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no-such-branch"), "{}", stderr(&out));
    drop(repo);
}

#[test]
fn codeowners_from_group_and_project_roles() {
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    fs::create_dir_all(root.join("groups")).unwrap();
    fs::create_dir_all(root.join("projects/shop")).unwrap();
    fs::write(
        root.join("users.yaml"),
        "kind: User\nemail: alice@example.com\nname: Alice\ngithub: alice\n---\nkind: User\nemail: bob@example.com\nname: Bob\n---\n\
         kind: User\nemail: dave@example.com\nname: Dave\ngithub: '@dave'\n---\nkind: User\nemail: carol@example.com\nname: Carol\ngithub: carol\n",
    )
    .unwrap();
    fs::write(
        root.join("groups/platform.yaml"),
        "kind: Group\nname: platform\nowner: alice@example.com\nadmins: [bob@example.com]\nusers: [carol@example.com]\n",
    )
    .unwrap();
    fs::write(
        root.join("projects/shop/project.yaml"),
        "kind: Project\nname: shop\ngroup: platform\nchannels: []\nmembers:\n  - { user: dave@example.com, role: admin }\n  - { user: carol@example.com, role: user }\n",
    )
    .unwrap();
    let out = bin().arg("codeowners").arg(root).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\n/groups/platform.yaml @alice\n"), "{text}");
    assert!(text.contains("\n/projects/shop/ @alice @dave\n"), "{text}");
    assert!(!text.contains("carol"), "a role of user owns nothing: {text}");
    assert!(stderr(&out).contains("bob@example.com"), "users without a handle are named: {}", stderr(&out));
}

#[test]
fn token_prints_a_token_and_its_sha256_line() {
    let out = bin().arg("token").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let mut lines = text.lines();
    let token = lines.next().unwrap();
    let hash = lines.next().unwrap().strip_prefix("token_sha256: ").unwrap();
    assert!(token.starts_with("wk_") && token.len() > 40, "{token}");
    assert_eq!(hash, watchkeeper::token::sha256_hex(token));
    let again = stdout(&bin().arg("token").output().unwrap());
    assert_ne!(again.lines().next().unwrap(), token, "tokens are random");
}

#[test]
fn readme_documents_every_lint_rule() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    for rule in watchkeeper::config::diagnostic::RULES {
        let row = format!("| `{}` | {} |", rule.id, rule.level.as_str());
        assert!(readme.contains(&row), "README.md's rule table lacks `{row}`");
    }
}

#[test]
fn a_parse_cache_gives_the_same_result_as_a_fresh_load() {
    use watchkeeper::config::{self, Library, diff, load::ParseCache};
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/organisation"), tmp.path());
    let mut cache = ParseCache::default();
    let first = config::load_dir_cached(tmp.path(), &Library::Builtin, &mut cache);
    assert!(!first.has_errors());
    // Break one file, delete another, add a third: the cached load must match a fresh one.
    let servers = tmp.path().join("projects/shop/servers.yaml");
    fs::write(&servers, fs::read_to_string(&servers).unwrap().replacen("policy: ", "policy: no-such-", 1)).unwrap();
    fs::remove_file(tmp.path().join("projects/shop/maintenance.yaml")).unwrap();
    fs::write(tmp.path().join("extra.yaml"), "kind: User\nemail: zed@example.com\nname: Zed\n").unwrap();
    let cached = config::load_dir_cached(tmp.path(), &Library::Builtin, &mut cache);
    let fresh = config::load_dir(tmp.path(), &Library::Builtin);
    assert!(cached.has_errors());
    assert_eq!(cached.diagnostics, fresh.diagnostics);
    assert!(diff::diff(&cached.config, &fresh.config).is_empty());
    assert!(cached.config.users.contains_key("zed@example.com"));
}

/// `plan --base REV .` exactly as the README and the CI templates run it: from the tree's own
/// directory, with the tree at the repository root, one folder down and two folders down, and
/// the base named as a branch, a tag and a remote-tracking branch (`origin/main` in a pull
/// request). A regression: at the root, the empty path prefix reached git as a pathspec.
#[test]
fn plan_base_reads_a_git_revision_at_the_root_and_in_subfolders() {
    for depth in ["", "monitoring", "infra/monitoring"] {
        let repo = tempfile::tempdir().unwrap();
        let tree = repo.path().join(depth);
        copy_tree(&repo_root().join("examples/quickstart"), &tree);
        git(repo.path(), &["init", "-q", "-b", "main"]);
        git(repo.path(), &["add", "-A"]);
        git(repo.path(), &["commit", "-qm", "base"]);
        git(repo.path(), &["tag", "v1"]);
        git(repo.path(), &["update-ref", "refs/remotes/origin/main", "HEAD"]);
        git(repo.path(), &["checkout", "-qb", "change"]);
        let project = tree.join("project.yaml");
        let text = fs::read_to_string(&project).unwrap();
        fs::write(&project, format!("{text}---\nkind: Server\nname: web-02\nproject: shop\nhost: 203.0.113.11\npolicy: web-server\n"))
            .unwrap();
        git(repo.path(), &["commit", "-qam", "add web-02"]);

        for base in ["main", "v1", "origin/main"] {
            let out = bin().args(["plan", "--base", base, "."]).current_dir(&tree).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "tree at `{depth}`, --base {base}: {}", stderr(&out));
            assert!(
                stdout(&out).starts_with("Plan: 1 to add, 0 to change, 0 to remove.\n"),
                "tree at `{depth}`, --base {base}: {}",
                stdout(&out)
            );
            assert!(stdout(&out).contains("  + Server web-02\n"), "{}", stdout(&out));
        }
        // The same tree named from outside it.
        let out = bin().args(["plan", "--base", "main"]).arg(&tree).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "tree at `{depth}` from outside: {}", stderr(&out));
        assert!(stdout(&out).contains("  + Server web-02\n"), "{}", stdout(&out));
    }
}

/// `schema` with no flag prints the combined schema and writes nothing where it runs.
#[test]
fn schema_without_out_prints_the_combined_schema_and_writes_no_files() {
    let cwd = tempfile::tempdir().unwrap();
    let out = bin().arg("schema").current_dir(cwd.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), fs::read_to_string(repo_root().join("schema/watchkeeper.json")).unwrap());
    assert_eq!(fs::read_dir(cwd.path()).unwrap().count(), 0, "nothing is written to the working directory");
}

/// The owners GitHub would ask for `file`: the last matching line wins. Handles the three pattern
/// forms `codeowners` writes: `*`, `/dir/` and `/file`.
fn owners_of<'a>(codeowners: &'a str, file: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    for line in codeowners.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let pattern = words.next().unwrap();
        let matches = match pattern {
            "*" => true,
            p if p.ends_with('/') => format!("/{file}").starts_with(p),
            p => format!("/{file}") == p,
        };
        if matches {
            found = words.collect();
        }
    }
    found
}

/// Every file of the tree has an owner: users and channels (contacts, token hashes) fall to a
/// catch-all owned by the top owners or `--default-owner`, and a file is owned by the objects
/// it holds — a project's policies in a file outside its folder belong to that project's admins.
#[test]
fn codeowners_owns_every_file_by_what_it_holds() {
    for prefix in ["", "monitoring/"] {
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q", "-b", "main"]);
        let root = repo.path().join(prefix);
        for dir in ["users", "channels", "groups", "projects/shop"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let user = |email: &str, handle: &str| format!("kind: User\nemail: {email}@example.com\nname: {email}\ngithub: {handle}\n");
        fs::write(
            root.join("users/people.yaml"),
            [user("alice", "alice"), user("bob", "bob"), user("carol", "carol"), user("dave", "dave"), user("erin", "erin")].join("---\n"),
        )
        .unwrap();
        fs::write(
            root.join("channels/mail.yaml"),
            "kind: Channel\nname: mail\ntype: email\nsmtp: { host: smtp.example.com }\nfrom: alerts@example.com\n",
        )
        .unwrap();
        fs::write(root.join("groups/platform.yaml"), "kind: Group\nname: platform\nowner: alice@example.com\nadmins: [bob@example.com]\n")
            .unwrap();
        fs::write(
            root.join("projects/shop/project.yaml"),
            "kind: Project\nname: shop\ngroup: platform\nchannels: [mail]\nmembers: [{ user: dave@example.com, role: admin }]\n---\n\
             kind: Server\nname: web-01\nproject: shop\nhost: 203.0.113.10\npolicy: shop-hosts\n",
        )
        .unwrap();
        // The quickstart's layout: a project's policy in a file of its own at the root.
        fs::write(
            root.join("host-policies.yaml"),
            "kind: AlertPolicy\nname: shop-hosts\nproject: shop\nrules:\n  - { metric: cpu.usage, warning: 80, fatal: 95, for: 5m }\n",
        )
        .unwrap();
        // A project without a group, at the root.
        fs::write(
            root.join("blog.yaml"),
            "kind: Project\nname: blog\nchannels: [mail]\nmembers: [{ user: carol@example.com, role: admin }]\n",
        )
        .unwrap();

        // Objects of two projects whose owners share nobody: the catch-all's owners.
        fs::write(
            root.join("mixed.yaml"),
            "kind: PortMonitor\nname: blog-web\nproject: blog\nhost: 203.0.113.20\nports: [80]\n---\n\
             kind: PortMonitor\nname: shop-web\nproject: shop\nhost: 203.0.113.21\nports: [80]\n",
        )
        .unwrap();

        let out = bin().arg("codeowners").arg(&root).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let at = |file: &str| owners_of(&text, &format!("{prefix}{file}"));
        // The catch-all: the group's owner and the admin of the project in no group.
        assert_eq!(at("users/people.yaml"), ["@alice", "@carol"], "users belong to the top owners:\n{text}");
        assert_eq!(at("channels/mail.yaml"), ["@alice", "@carol"], "{text}");
        assert_eq!(at("README.md"), ["@alice", "@carol"], "the catch-all covers every other file:\n{text}");
        assert_eq!(at("groups/platform.yaml"), ["@alice", "@bob"], "{text}");
        assert_eq!(at("projects/shop/project.yaml"), ["@alice", "@bob", "@dave"], "{text}");
        assert_eq!(at("projects/shop/new-file.yaml"), ["@alice", "@bob", "@dave"], "a new file in the project's folder:\n{text}");
        assert_eq!(at("host-policies.yaml"), ["@alice", "@bob", "@dave"], "a project's policies outside its folder:\n{text}");
        assert_eq!(at("blog.yaml"), ["@carol"], "{text}");
        assert_eq!(at("mixed.yaml"), ["@alice", "@carol"], "{text}");
        if !prefix.is_empty() {
            assert_eq!(owners_of(&text, "other-team/x.yaml"), Vec::<&str>::new(), "only the tree is claimed:\n{text}");
        }

        // An explicit default owner for the catch-all.
        let out = bin().args(["codeowners", "--default-owner", "@example/sre"]).arg(&root).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(owners_of(&text, &format!("{prefix}users/people.yaml")), ["@example/sre"], "{text}");
        assert_eq!(owners_of(&text, &format!("{prefix}host-policies.yaml")), ["@alice", "@bob", "@dave"], "{text}");
    }
}

/// A path that does not exist is named as such, not as "not a directory" (and a file is).
#[test]
fn commands_say_when_the_tree_does_not_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-tree");
    for command in ["lint", "test", "codeowners"] {
        let out = bin().arg(command).arg(&missing).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert_eq!(stderr(&out), format!("error: {} does not exist\n", missing.display()), "{command}");
    }
    let file = tmp.path().join("file.yaml");
    fs::write(&file, "kind: User\n").unwrap();
    let out = bin().arg("lint").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), format!("error: {} is not a directory\n", file.display()));
}

/// serve's usage line shows which flags are needed (a source) and that the rest are optional.
#[test]
fn serve_usage_shows_the_source_as_required_and_listen_as_optional() {
    let help = bin().args(["serve", "--help"]).output().unwrap();
    let usage = stdout(&help).lines().find(|l| l.starts_with("Usage:")).unwrap_or_default().to_string();
    assert!(usage.contains("<--config <DIR>|--git <URL>>"), "{usage}");
    assert!(usage.contains("[--listen <ADDR>]"), "{usage}");
    let out = bin().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--config <DIR>|--git <URL>"), "{}", stderr(&out));
}
