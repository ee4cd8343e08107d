//! The CI templates in `ci/`, run as their CI would run them: each template's shell steps are
//! taken from its YAML and run in order by bash, with the CI's variables, in a clone of a
//! fixture monitoring repository (a bare origin with `main`, a pull-request branch on top),
//! with the watchkeeper built here.
//!
//! One stand-in: the install step's `cargo`. Building watchkeeper from source again would take
//! minutes per run, so a `cargo` script first on PATH records the arguments it was given
//! (asserted below: the pinned tag of this version) and installs the binary built here where
//! cargo would put it. Every later step then runs that installed copy for real.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{bin_path, copy_tree, git, repo_root};

/// The URL a user writes into the template's one setting.
const SOURCE_URL: &str = "https://git.example.com/watchkeeper.git";

/// A monitoring repository as CI checks it out, a home directory and a stand-in `cargo`.
struct Fixture {
    _work: tempfile::TempDir,
    checkout: PathBuf,
    home: PathBuf,
    /// Holds the stand-in `cargo`.
    tools: PathBuf,
    /// Where the stand-in writes its arguments, one a line.
    cargo_args: PathBuf,
}

impl Fixture {
    /// `main` holds the quickstart tree at the repository root (`broken_base`: with a typo
    /// that this pull request fixes); the pull-request branch adds a server.
    fn new(broken_base: bool) -> Fixture {
        let work = tempfile::tempdir().unwrap();
        let seed = work.path().join("seed");
        copy_tree(&repo_root().join("examples/quickstart"), &seed);
        let project = seed.join("project.yaml");
        let good = fs::read_to_string(&project).unwrap();
        if broken_base {
            fs::write(&project, good.replace("policy: database", "policy: databse")).unwrap();
        }
        git(&seed, &["init", "-q", "-b", "main"]);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-qm", "base"]);
        let origin = work.path().join("origin.git");
        git(work.path(), &["clone", "-q", "--bare", seed.to_str().unwrap(), origin.to_str().unwrap()]);
        let checkout = work.path().join("checkout");
        git(work.path(), &["clone", "-q", origin.to_str().unwrap(), checkout.to_str().unwrap()]);
        git(&checkout, &["checkout", "-qb", "add-web-02"]);
        let server = "---\nkind: Server\nname: web-02\nproject: shop\nhost: 203.0.113.11\npolicy: web-server\n";
        fs::write(checkout.join("project.yaml"), format!("{good}{server}")).unwrap();
        git(&checkout, &["commit", "-qam", "add web-02"]);

        let home = work.path().join("home");
        fs::create_dir_all(&home).unwrap();
        let tools = work.path().join("tools");
        fs::create_dir_all(&tools).unwrap();
        let cargo_args = work.path().join("cargo-args");
        let stand_in = format!(
            "#!/bin/sh\n# Stands in for `cargo install`: records its arguments, installs the binary built here.\n\
             [ \"$1\" = install ] || {{ echo \"stand-in cargo: only install is supported\" >&2; exit 101; }}\n\
             printf '%s\\n' \"$@\" > '{}'\n\
             bin=\"${{CARGO_HOME:-$HOME/.cargo}}/bin\"\nmkdir -p \"$bin\"\ncp '{}' \"$bin/watchkeeper\"\n",
            cargo_args.display(),
            bin_path().display()
        );
        let cargo = tools.join("cargo");
        fs::write(&cargo, stand_in).unwrap();
        fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
        Fixture { _work: work, checkout, home, tools, cargo_args }
    }

    /// What a CI machine's PATH looks like before the install step: cargo, git and a shell, no
    /// watchkeeper. `~/.cargo/bin` comes first, as on GitHub's runners.
    fn path(&self, cargo_home_bin: &Path) -> String {
        format!("{}:{}:/usr/local/bin:/usr/bin:/bin", cargo_home_bin.display(), self.tools.display())
    }

    fn cargo_args(&self) -> Vec<String> {
        fs::read_to_string(&self.cargo_args).map(|t| t.lines().map(str::to_string).collect()).unwrap_or_default()
    }
}

fn template(name: &str) -> String {
    fs::read_to_string(repo_root().join("ci").join(name)).unwrap()
}

/// The template with its one setting filled in, as a user copying it would.
fn configured(text: &str) -> String {
    let unset = "WATCHKEEPER_GIT: \"\"";
    assert!(text.contains(unset), "the template should have its source URL as one variable, `{unset}`:\n{text}");
    text.replacen(unset, &format!("WATCHKEEPER_GIT: \"{SOURCE_URL}\""), 1)
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("template is not YAML: {e}"))
}

/// A YAML mapping of variables as strings.
fn vars(value: &Value) -> BTreeMap<String, String> {
    let Some(map) = value.as_object() else { return BTreeMap::new() };
    map.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// The arguments cargo must get: this version's tag, from the configured source, locked.
fn expected_install() -> Vec<String> {
    let tag = format!("v{}", env!("CARGO_PKG_VERSION"));
    ["install", "--locked", "--git", SOURCE_URL, "--tag", &tag, "watchkeeper"].map(str::to_string).to_vec()
}

#[derive(Debug)]
struct StepRun {
    name: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl StepRun {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// What it printed, for failure messages.
    fn text(&self) -> String {
        format!("--- `{}`: exit {:?}\n{}{}", self.name, self.code, self.stdout, self.stderr)
    }
}

fn report(runs: &[StepRun]) -> String {
    runs.iter().map(StepRun::text).collect::<Vec<_>>().join("\n")
}

fn run_script(script: &str, shell: &[&str], env: &BTreeMap<String, String>, cwd: &Path, file: &Path) -> (Option<i32>, String, String) {
    fs::write(file, script).unwrap();
    let out = Command::new(shell[0]).args(&shell[1..]).arg(file).current_dir(cwd).env_clear().envs(env).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Expand the `${{ … }}` expressions GitHub would replace before the shell sees the script.
fn expand(script: &str, env: &BTreeMap<String, String>, base_ref: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").map(|e| start + e).expect("an expression ends with }}");
        let expression = rest[start + 3..end].trim();
        let value = match expression.strip_prefix("env.") {
            Some(name) => env.get(name).cloned().unwrap_or_default(),
            None if expression == "github.base_ref" => base_ref.to_string(),
            None => panic!("an expression this test does not know: {expression}"),
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Run a GitHub Actions workflow's `check` job on a pull request into `base_ref`, as the
/// runner does: `run` steps in order, each in `bash -e` (`bash --noprofile --norc -eo pipefail`
/// with `shell: bash`), with the workflow's, job's and step's `env`; the first failing step
/// ends the job. Returns the steps run and the job summary.
fn run_github(text: &str, fx: &Fixture, base_ref: &str) -> (Vec<StepRun>, String) {
    let workflow = yaml(text);
    let job = &workflow["jobs"]["check"];
    let summary = fx.home.join("step-summary.md");
    let temp = fx.home.join("runner-temp");
    fs::create_dir_all(&temp).unwrap();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("HOME".into(), fx.home.display().to_string());
    env.insert("PATH".into(), fx.path(&fx.home.join(".cargo/bin")));
    env.insert("CI".into(), "true".into());
    env.insert("GITHUB_ACTIONS".into(), "true".into());
    env.insert("GITHUB_BASE_REF".into(), base_ref.into());
    env.insert("GITHUB_HEAD_REF".into(), "add-web-02".into());
    env.insert("GITHUB_WORKSPACE".into(), fx.checkout.display().to_string());
    env.insert("GITHUB_STEP_SUMMARY".into(), summary.display().to_string());
    env.insert("RUNNER_TEMP".into(), temp.display().to_string());
    env.extend(vars(&workflow["env"]));
    env.extend(vars(&job["env"]));

    let mut runs = Vec::new();
    for (i, step) in job["steps"].as_array().expect("jobs.check.steps").iter().enumerate() {
        if let Some(action) = step["uses"].as_str() {
            // The checkout is the fixture's clone; it must fetch the whole history for plan.
            if action.starts_with("actions/checkout@") {
                assert_eq!(step["with"]["fetch-depth"], 0, "checkout must fetch the base branch's history");
            } else {
                assert!(action.starts_with("actions/cache@"), "an action this test cannot stand for: {action}");
            }
            continue;
        }
        let script = step["run"].as_str().unwrap_or_else(|| panic!("step {i} has neither `uses` nor `run`"));
        let name = step["name"].as_str().unwrap_or(script).to_string();
        assert!(step["if"].is_null(), "step `{name}` has an `if:` this test cannot evaluate; put the condition in the shell");
        let script = &expand(script, &env, base_ref);
        let shell: &[&str] = match step["shell"].as_str() {
            None => &["bash", "-e"],
            Some("bash") => &["bash", "--noprofile", "--norc", "-eo", "pipefail"],
            Some(other) => panic!("step `{name}`: a shell this test does not run: {other}"),
        };
        let mut step_env = env.clone();
        step_env.extend(vars(&step["env"]));
        let (code, stdout, stderr) = run_script(script, shell, &step_env, &fx.checkout, &temp.join(format!("step-{i}.sh")));
        let run = StepRun { name, code, stdout, stderr };
        let failed = !run.ok();
        runs.push(run);
        if failed {
            break;
        }
    }
    (runs, fs::read_to_string(&summary).unwrap_or_default())
}

/// Run a GitLab CI job in a merge-request pipeline into `target`, as the runner's bash shell
/// does: `before_script` and `script` lines in one `set -eo pipefail` shell, with the job's
/// `variables` and the predefined CI variables.
fn run_gitlab(text: &str, fx: &Fixture, target: &str) -> StepRun {
    let pipeline = yaml(text);
    let job = &pipeline["watchkeeper"];
    let rule = job["rules"][0]["if"].as_str().unwrap_or_default();
    assert!(rule.contains("merge_request_event"), "the job should run in merge request pipelines: {rule}");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("HOME".into(), fx.home.display().to_string());
    env.insert("PATH".into(), fx.path(&fx.home.join(".cargo/bin")));
    env.insert("CI".into(), "true".into());
    env.insert("GITLAB_CI".into(), "true".into());
    env.insert("CI_PROJECT_DIR".into(), fx.checkout.display().to_string());
    env.insert("CI_PIPELINE_SOURCE".into(), "merge_request_event".into());
    env.insert("CI_MERGE_REQUEST_TARGET_BRANCH_NAME".into(), target.into());
    env.insert("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME".into(), "add-web-02".into());
    env.extend(vars(&pipeline["variables"]));
    env.extend(vars(&job["variables"]));
    let mut script = String::from("set -eo pipefail\n");
    for part in ["before_script", "script"] {
        for line in job[part].as_array().map(Vec::as_slice).unwrap_or_default() {
            script.push_str(line.as_str().expect("script lines are strings"));
            script.push('\n');
        }
    }
    let (code, stdout, stderr) = run_script(&script, &["bash"], &env, &fx.checkout, &fx.home.join("job.sh"));
    StepRun { name: "watchkeeper".into(), code, stdout, stderr }
}

#[test]
fn github_actions_template_checks_a_pull_request_at_the_repository_root() {
    let fx = Fixture::new(false);
    let (runs, summary) = run_github(&configured(&template("github-actions.yml")), &fx, "main");
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Install watchkeeper", "Lint", "Policy tests", "Plan"], "{}", report(&runs));
    assert!(runs.iter().all(StepRun::ok), "{}", report(&runs));
    assert_eq!(fx.cargo_args(), expected_install(), "the install step's cargo command");
    assert!(!runs[1].stdout.contains("::"), "a clean tree gives no annotations: {}", runs[1].stdout);
    assert!(runs[2].stdout.contains(" passed, 0 failed"), "{}", report(&runs));
    assert!(runs[3].stdout.starts_with("Plan: 1 to add, 0 to change, 0 to remove.\n"), "{}", report(&runs));
    assert!(summary.starts_with("## watchkeeper plan\n\n```\nPlan: 1 to add"), "{summary}");
    assert!(summary.contains("  + Server web-02\n"), "{summary}");
    assert!(summary.ends_with("\n```\n"), "the summary's code block is closed: {summary}");
}

#[test]
fn github_actions_template_fails_the_plan_step_and_shows_why_in_the_summary() {
    let fx = Fixture::new(false);
    // A base branch the checkout does not have (as with a shallow checkout): plan exits 2.
    let (runs, summary) = run_github(&configured(&template("github-actions.yml")), &fx, "release");
    let plan = runs.last().unwrap();
    assert_eq!(plan.name, "Plan", "{}", report(&runs));
    assert_eq!(plan.code, Some(2), "the step fails with plan's exit code\n{}", report(&runs));
    assert!(plan.stdout.contains("reading revision `origin/release`"), "the log says why: {}", report(&runs));
    assert!(summary.contains("reading revision `origin/release`"), "the summary says why: {summary}");
    assert_eq!(summary.matches("```\n").count(), 2, "the summary's code block is closed: {summary}");
}

#[test]
fn github_actions_template_says_which_setting_is_missing() {
    let fx = Fixture::new(false);
    let (runs, _) = run_github(&template("github-actions.yml"), &fx, "main");
    assert_eq!(runs.len(), 1, "the job stops at the install step: {}", report(&runs));
    assert!(!runs[0].ok());
    assert!(runs[0].stdout.contains("::error::set WATCHKEEPER_GIT"), "{}", report(&runs));
}

#[test]
fn gitlab_template_checks_a_merge_request_at_the_repository_root() {
    let fx = Fixture::new(false);
    let job = run_gitlab(&configured(&template("gitlab-ci.yml")), &fx, "main");
    assert!(job.ok(), "{}", job.text());
    assert_eq!(fx.cargo_args(), expected_install(), "the install step's cargo command");
    let lint: Value = serde_json::from_str(&fs::read_to_string(fx.checkout.join("watchkeeper-lint.json")).unwrap()).unwrap();
    assert_eq!(lint["errors"], 0, "{lint}");
    let plan = fs::read_to_string(fx.checkout.join("watchkeeper-plan.txt")).unwrap();
    assert!(plan.starts_with("Plan: 1 to add, 0 to change, 0 to remove.\n"), "{plan}");
    assert!(job.stdout.contains(" passed, 0 failed"), "policy tests ran: {}", job.text());

    // Left as shipped, the job says what to set.
    let fx = Fixture::new(false);
    let job = run_gitlab(&template("gitlab-ci.yml"), &fx, "main");
    assert!(!job.ok());
    assert!(job.stdout.contains("set WATCHKEEPER_GIT"), "{}", job.text());
}

#[test]
fn gitlab_template_fails_the_job_when_plan_fails_and_keeps_the_reason() {
    // main has an error this merge request fixes: lint passes, plan cannot compile the base.
    let fx = Fixture::new(true);
    let job = run_gitlab(&configured(&template("gitlab-ci.yml")), &fx, "main");
    assert_eq!(job.code, Some(1), "{}", job.text());
    let plan = fs::read_to_string(fx.checkout.join("watchkeeper-plan.txt")).unwrap();
    assert!(plan.contains("the base tree has errors"), "{plan}");
    assert!(plan.contains("unknown policy `databse`"), "{plan}");
}

#[test]
fn pre_commit_hook_lints_the_whole_tree() {
    let config = yaml(&template("pre-commit-config.yaml"));
    let hook = &config["repos"][0]["hooks"][0];
    assert_eq!(hook["pass_filenames"], false, "references span files: the hook lints the whole tree");
    let entry = hook["entry"].as_str().unwrap();
    let fx = Fixture::new(false);
    let path = format!("{}:{}", bin_path().parent().unwrap().display(), fx.path(&fx.home.join(".cargo/bin")));
    let run = |dir: &Path| Command::new("bash").arg("-c").arg(entry).current_dir(dir).env("PATH", &path).output().unwrap();
    let out = run(&fx.checkout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    fs::write(fx.checkout.join("people.yaml"), "kind: User\nemail: not-an-address\nname: X\n").unwrap();
    let out = run(&fx.checkout);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("people.yaml:2:8: error[bad-email]"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Every install line in `ci/` names this release's tag, so templates and serve stay in step.
#[test]
fn ci_templates_pin_this_release() {
    let tag = format!("v{}", env!("CARGO_PKG_VERSION"));
    for entry in fs::read_dir(repo_root().join("ci")).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| l.contains("--tag") || l.contains("WATCHKEEPER_TAG:")) {
            let named: Vec<&str> =
                line.split(|c: char| c.is_whitespace() || c == '"').filter(|w| w.starts_with("v0.") || w.starts_with("v1.")).collect();
            for word in named {
                assert_eq!(word, tag, "{}: `{line}` names another release", path.display());
            }
        }
    }
}
