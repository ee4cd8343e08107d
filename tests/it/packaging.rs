//! What an operator installs besides the binary: shell completions, man pages, the systemd unit
//! with its environment file, and the container image's Dockerfile.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{bin_path, repo_root, run};
use crate::support::free_port;
use crate::support::serve::Serve;

/// What bash offers after `words` (the last one being completed), from the generated script.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = format!(
        "source <('{}' completions bash)\n\
         COMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         _watchkeeper watchkeeper \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        bin_path().display(),
        words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        words.len() - 1
    );
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn completions_complete_commands_and_options_in_bash_and_are_made_for_zsh_and_fish() {
    let commands = bash_completes(&["watchkeeper", "se"]);
    assert!(commands.contains(&"serve".to_string()), "{commands:?}");
    let options = bash_completes(&["watchkeeper", "serve", "--li"]);
    assert_eq!(options, ["--listen"]);
    let formats = bash_completes(&["watchkeeper", "lint", "--format", ""]);
    assert_eq!(formats, ["human", "json", "github"]);

    for (shell, marker) in [("zsh", "#compdef watchkeeper"), ("fish", "complete -c watchkeeper")] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{}", out.output());
        assert!(out.stdout.contains(marker) && out.stdout.contains("serve"), "{shell}:\n{}", out.stdout);
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.code, Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_pages_render_with_every_option_and_the_environment() {
    let top = run(&["man"]);
    assert_eq!(top.code, Some(0), "{}", top.output());
    assert!(top.stdout.contains(".TH watchkeeper 1"), "{}", top.stdout);
    assert!(top.stdout.contains("watchkeeper\\-serve(1)"), "the main page lists the commands' pages");
    let serve = run(&["man", "serve"]);
    assert_eq!(serve.code, Some(0), "{}", serve.output());
    assert!(serve.stdout.contains(".TH watchkeeper-serve 1"), "{}", serve.stdout);
    for text in ["\\-\\-listen", "\\-\\-token", ".SH ENVIRONMENT", "WATCHKEEPER_TOKEN", "WATCHKEEPER_ADMIN_TOKEN", "NO_COLOR"] {
        assert!(serve.stdout.contains(text), "watchkeeper-serve(1) lacks `{text}`:\n{}", serve.stdout);
    }
    let unknown = run(&["man", "serv"]);
    assert_eq!(unknown.code, Some(2));
    assert!(unknown.stderr.contains("no command `serv`"), "{}", unknown.stderr);

    // Rendered as a reader sees it, where man is installed.
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let mut man =
            Command::new("man").args(["-l", "-"]).env("MANWIDTH", "100").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut man.stdin.take().unwrap(), serve.stdout.as_bytes()).unwrap();
        let shown = String::from_utf8_lossy(&man.wait_with_output().unwrap().stdout).into_owned();
        assert!(shown.contains("watchkeeper serve <--config <DIR>|--git <URL>>"), "{shown}");
        assert!(shown.contains("WATCHKEEPER_TOKEN"), "{shown}");
    }
}

/// `KEY=VALUE` lines of a systemd environment file.
fn environment_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The `[Service]` settings of a unit file (a key given twice keeps its lines in order).
fn service_section(unit: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.is_empty() && !line.starts_with('#') {
            let (k, v) = line.split_once('=').unwrap();
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

/// systemd's expansion of an ExecStart line: `$VAR` becomes the value's words, `${VAR}` one word.
fn exec_start(line: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    for word in line.split_whitespace() {
        if let Some(name) = word.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            words.extend(env.get(name).map(String::as_str).unwrap_or_default().split_whitespace().map(str::to_string));
        } else {
            let mut word = word.to_string();
            for (name, value) in env {
                word = word.replace(&format!("${{{name}}}"), value);
            }
            words.push(word);
        }
    }
    words
}

#[test]
fn systemd_unit_verifies_and_runs_serve_with_the_example_environment() {
    let unit = fs::read_to_string(repo_root().join("dist/watchkeeper.service")).unwrap();
    let env_text = fs::read_to_string(repo_root().join("dist/watchkeeper.env")).unwrap();
    let work = tempfile::tempdir().unwrap();

    // The example environment file names every variable serve reads.
    let help = run(&["serve", "--help"]).stdout;
    for var in help.split("[env: ").skip(1).filter_map(|rest| rest.split(['=', ']']).next()) {
        assert!(env_text.contains(var), "dist/watchkeeper.env does not mention {var}");
    }

    // systemd's own check, with the binary built here in place of the installed one.
    let installed = "/usr/local/bin/watchkeeper";
    assert!(unit.contains(&format!("ExecStart={installed} serve")), "{unit}");
    let local_unit = work.path().join("watchkeeper.service");
    let env_file = work.path().join("watchkeeper.env");
    fs::write(
        &local_unit,
        unit.replace(installed, &bin_path().display().to_string())
            .replace("/etc/watchkeeper/watchkeeper.env", &env_file.display().to_string()),
    )
    .unwrap();
    fs::write(&env_file, &env_text).unwrap();
    match Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&local_unit).output() {
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
        }
        Err(e) => panic!("systemd-analyze (Debian package systemd) is needed to check the unit: {e}"),
    }

    // Run ExecStart as systemd would: the environment file (edited as its comments say), the
    // unit's Environment=, the state directory as the working directory.
    let service = service_section(&unit);
    let setting = |key: &str| service.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {key}="));
    let state = work.path().join("var-lib-watchkeeper");
    fs::create_dir_all(&state).unwrap();
    assert_eq!(setting("WorkingDirectory"), "/var/lib/watchkeeper");
    assert_eq!(setting("StateDirectory"), "watchkeeper");
    let tree = work.path().join("monitoring");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("people.yaml"), "kind: User\nemail: alice@example.com\nname: Alice\n").unwrap();
    let port = free_port();
    let edited = env_text
        .replace(
            "WATCHKEEPER_SOURCE=--git https://git.example.com/monitoring.git --branch main",
            &format!("WATCHKEEPER_SOURCE=--config {}", tree.display()),
        )
        .replace("WATCHKEEPER_TOKEN=\n", "WATCHKEEPER_TOKEN=the-operator-token\n")
        .replace("WATCHKEEPER_LISTEN=127.0.0.1:8080", &format!("WATCHKEEPER_LISTEN=127.0.0.1:{port}"));
    let mut env = environment_file(&edited);
    for (_, value) in service.iter().filter(|(k, _)| k == "Environment") {
        let (k, v) = value.split_once('=').unwrap();
        env.insert(k.to_string(), if v == "/var/lib/watchkeeper" { state.display().to_string() } else { v.to_string() });
    }
    let argv = exec_start(&setting("ExecStart").replace(installed, &bin_path().display().to_string()), &env);
    let log = work.path().join("journal.log");
    let args: Vec<String> = argv[1..].to_vec();
    assert_eq!(argv[1], "serve");
    let mut serve = Serve::run_exact(&argv[0], &args, &env, &state, &log, port);
    serve.wait_until("the tree is applied", Duration::from_secs(30), || {
        serve.request("GET", "/api/v1/status", &[("Authorization", "Bearer the-operator-token")], b"").1.contains("\"applied\":{")
    });
    assert!(serve.log().contains(&format!("status API at http://127.0.0.1:{port}/api/v1/status")), "{}", serve.log());
    assert!(!serve.log().contains('\u{1b}'), "the journal gets no colour codes");
    assert!(state.join("data/watchkeeper.db").is_file(), "the database is in the state directory");
    // `systemctl stop`: SIGTERM, and serve is gone well within TimeoutStopSec.
    assert_eq!(setting("TimeoutStopSec"), "30s");
    let status = serve.terminate();
    assert!(status.success(), "{status}\n{}", serve.log());
    let mut left: Vec<_> = fs::read_dir(state.join("data")).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["watchkeeper.db", "watchkeeper.db.lock"], "the database and the lock file that keeps a second serve off it");
}

/// The instructions of a Dockerfile, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (part, more) = match line.strip_suffix('\\') {
            Some(p) => (p.trim(), true),
            None => (line, false),
        };
        current.push_str(part);
        current.push(' ');
        if !more {
            out.push(current.trim().to_string());
            current.clear();
        }
    }
    out
}

/// Docker cannot build here (no engine), so the Dockerfile is read, not built: a multi-stage
/// build of the locked release binary, a slim runtime with git, a user without privileges.
#[test]
fn dockerfile_builds_the_locked_release_into_a_slim_image_run_by_a_user_without_privileges() {
    let text = fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let steps = instructions(&text);
    let stages: Vec<usize> = steps.iter().enumerate().filter(|(_, s)| s.starts_with("FROM ")).map(|(i, _)| i).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage: {steps:#?}");
    let (build, runtime) = (&steps[stages[0]..stages[1]], &steps[stages[1]..]);

    // The build stage's Rust is at least the crate's rust-version, and builds with Cargo.lock.
    let manifest = fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let rust_version = manifest.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"').to_string();
    assert_eq!(build[0], format!("FROM rust:{rust_version}-slim-bookworm AS build"));
    assert!(build.iter().any(|s| s.starts_with("RUN ") && s.contains("cargo build --release --locked")), "{build:#?}");

    assert!(runtime[0].starts_with("FROM debian:") && runtime[0].ends_with("-slim"), "{}", runtime[0]);
    let installs = runtime.iter().find(|s| s.contains("apt-get install")).expect("the runtime installs packages");
    assert!(installs.contains(" git") && installs.contains("ca-certificates"), "git for serve --git and plan --base: {installs}");
    assert!(installs.contains("--no-install-recommends") && installs.contains("rm -rf /var/lib/apt/lists"), "{installs}");
    let copy = runtime.iter().find(|s| s.starts_with("COPY ")).unwrap();
    assert!(copy.starts_with("COPY --from=build ") && copy.ends_with(" /usr/local/bin/watchkeeper"), "only the binary: {copy}");
    let user = runtime.iter().rev().find_map(|s| s.strip_prefix("USER ")).expect("a USER");
    assert!(!["root", "0", "0:0"].contains(&user) && !user.starts_with("0:"), "{user}");
    assert!(runtime.iter().any(|s| s == "WORKDIR /var/lib/watchkeeper"), "state under data/ in the working directory");
    assert!(runtime.iter().any(|s| s == "ENV WATCHKEEPER_LISTEN=0.0.0.0:8080"), "reachable through a published port");
    assert!(runtime.iter().any(|s| s == "ENTRYPOINT [\"watchkeeper\"]"), "{runtime:#?}");

    let ignore = fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    for path in ["target/", "data/"] {
        assert!(ignore.lines().any(|l| l == path), ".dockerignore keeps {path} out of the build context");
    }
    // What the build stage copies must be enough to build: every target Cargo.toml names.
    for path in manifest.lines().filter_map(|l| l.strip_prefix("path = ")) {
        let path = path.trim_matches('"');
        assert!(Path::new(&repo_root().join(path)).exists(), "{path}");
        assert!(!ignore.lines().any(|l| path.starts_with(l.trim_end_matches('/'))), "{path} is ignored but needed");
    }
}

/// docs/replicas.md, the operator's guide to replicas, names only what exists: every `--flag` is
/// one of `watchkeeper serve`'s (but the few of other tools it quotes), every `WATCHKEEPER_*`
/// variable is one serve reads, every `watchkeeper_*` metric is registered, every file it links
/// to is there, and the README links to it.
#[test]
fn the_replicas_guide_names_only_flags_variables_metrics_and_files_that_exist() {
    let root = repo_root();
    let guide = fs::read_to_string(root.join("docs/replicas.md")).unwrap();
    assert!(fs::read_to_string(root.join("README.md")).unwrap().contains("(docs/replicas.md)"), "README links to the guide");
    let help = Command::new(bin_path()).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let env = fs::read_to_string(root.join("dist/watchkeeper.env")).unwrap();
    let metrics = fs::read_to_string(root.join("src/metrics.rs")).unwrap();
    // Words made of `prefix` and [a-z0-9_-], as written in the guide.
    let words = |prefix: &str, chars: fn(char) -> bool| -> Vec<String> {
        let mut found: Vec<String> = guide
            .match_indices(prefix)
            .filter(|(at, _)| !guide[..*at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map(|(at, _)| guide[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || chars(*c)).collect())
            .filter(|w: &String| w.len() > prefix.len())
            .collect();
        found.sort();
        found.dedup();
        found
    };
    let others = ["--scale", "--test", "--nocapture"]; // docker compose's and cargo test's
    let mut flags = words("--", |c| c == '-');
    flags.retain(|f| f[2..].starts_with(|c: char| c.is_ascii_lowercase()));
    assert!(flags.contains(&"--replica-id".to_string()) && flags.contains(&"--lease-ttl".to_string()), "{flags:?}");
    for flag in flags.iter().filter(|f| !others.contains(&f.as_str())) {
        assert!(help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")), "`{flag}` is not a flag of `watchkeeper serve`");
    }
    for var in words("WATCHKEEPER_", |c| c == '_') {
        assert!(help.contains(&var) || env.contains(&format!("{var}=")), "serve does not read `{var}`");
    }
    for metric in words("watchkeeper_", |c| c == '_') {
        let name = metric.strip_suffix("_total").unwrap_or(&metric);
        assert!(metrics.contains(&format!("\"{name}\"")), "`{metric}` is not one of serve's metrics");
    }
    for link in guide.split("](").skip(1).filter_map(|rest| rest.split(')').next()).filter(|l| !l.starts_with("http")) {
        assert!(root.join("docs").join(link).exists(), "the guide links to `{link}`, which is not there");
    }
}
