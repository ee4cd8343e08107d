//! The `watchkeeper` command line: parse arguments, read the environment, install the TLS
//! provider, call the library, map to exit codes (0 clean, 1 problems found, 2 usage or I/O
//! error).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use watchkeeper::reconcile::MassRemoval;
use watchkeeper::reconcile::source::SourceSpec;

use watchkeeper::config::values::Dur;
use watchkeeper::config::{self, Library, Loaded, load};
use watchkeeper::lint::{self, Format};
use watchkeeper::serve::http::HttpLimits;
use watchkeeper::store::ProbeRetention;
use watchkeeper::{codeowners, plan, report, token};

#[derive(Parser)]
#[command(name = "watchkeeper", version, about = "Infrastructure monitoring as code")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct LibraryArgs {
    /// A directory of shared AlertPolicy files to use instead of the built-in library.
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
}

impl LibraryArgs {
    fn library(&self) -> Library {
        self.policies.clone().map_or(Library::Builtin, Library::Dir)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration tree: schema, references and policy rules.
    Lint {
        /// The tree to check.
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        /// Print every rule id with its level and what it checks, then exit.
        #[arg(long)]
        list_rules: bool,
        #[command(flatten)]
        library: LibraryArgs,
    },
    /// Show what changes between two trees, object by object; or between a running serve and a tree.
    #[command(group(clap::ArgGroup::new("before").required(true).args(["base", "against"])))]
    Plan {
        /// The tree before the change: a directory, or a git revision of the repository holding DIR.
        #[arg(long, value_name = "REV|DIR")]
        base: Option<String>,
        /// Compare with the configuration a running serve applied (its status API, e.g.
        /// http://127.0.0.1:8080) and list the firing alerts the change would drop.
        #[arg(long, value_name = "URL")]
        against: Option<String>,
        /// The status API token for --against (the operator's or a user's; ignored with --base).
        /// WATCHKEEPER_ADMIN_TOKEN, its old name, is read too.
        #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
        token: Option<String>,
        /// The tree after the change.
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: PlanFormat,
        #[command(flatten)]
        library: LibraryArgs,
    },
    /// Run policy unit tests: the `*.test.yaml` files under DIR against the tree in DIR.
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        library: LibraryArgs,
    },
    /// Print the JSON Schema that accepts any document; with --out, write one file per kind too.
    Schema {
        /// Write `watchkeeper.json` and one schema per kind into this directory instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print a CODEOWNERS file derived from group and project roles.
    Codeowners {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Who owns what no project or group does (users, channels, shared policies, other files):
        /// a @handle, @org/team or e-mail; repeatable. Default: every group's owner.
        #[arg(long, value_name = "OWNER")]
        default_owner: Vec<String>,
        #[command(flatten)]
        library: LibraryArgs,
    },
    /// Make a new random API or ingest token and print its sha256 line for the YAML.
    Token,
    /// Run the service: follow the configuration, probe, alert, notify, serve the status API.
    Serve(Box<ServeArgs>),
    /// Print or export a daily, weekly or monthly report from the database serve writes.
    Report(ReportArgs),
    /// Run on a monitored server: report host metrics to serve, run assigned down-checks and log rules.
    Agent(AgentArgs),
    /// Print shell completions, e.g. `watchkeeper completions bash > /etc/bash_completion.d/watchkeeper`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `watchkeeper man > watchkeeper.1`, `watchkeeper man serve > watchkeeper-serve.1`.
    Man {
        /// A command's own page, with all its options.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// daily, weekly or monthly.
    #[arg(value_parser = word::<report::Period>)]
    period: report::Period,
    /// The database serve writes: sqlite://PATH or postgres://… (read only).
    #[arg(long, value_name = "URL", env = "WATCHKEEPER_DB", default_value = DEFAULT_DB)]
    db: String,
    /// The configuration tree, for the projects' names, servers and timezones.
    #[arg(long, value_name = "DIR", default_value = ".")]
    config: PathBuf,
    /// The project to report on. Default: every project of the tree.
    #[arg(long, value_name = "P")]
    project: Option<String>,
    /// The period's first day, YYYY-MM-DD in the project's timezone. Default: the last complete
    /// period (yesterday; last week, Monday to Sunday; last month).
    #[arg(long, value_name = "YYYY-MM-DD")]
    date: Option<String>,
    /// summary, disk or app.
    #[arg(long, default_value = "summary", value_parser = word::<report::Kind>)]
    kind: report::Kind,
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    library: LibraryArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    Csv,
}

/// A word of one of the library's fixed vocabularies.
fn word<T: std::str::FromStr<Err = watchkeeper::errors::UnknownWord>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: watchkeeper::errors::UnknownWord| e.to_string())
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The collector: the base URL where serve listens, e.g. https://watch.example.com.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The project's ingest key. Prefer the environment variable: arguments show in `ps`.
    #[arg(long, env = "WATCHKEEPER_INGEST_KEY", hide_env_values = true)]
    key: String,
    /// The project this server belongs to.
    #[arg(long, value_name = "P", value_parser = slug)]
    project: String,
    /// This server's name in the project.
    #[arg(long, value_name = "S", value_parser = slug)]
    name: String,
    /// How often host metrics are sampled and sent.
    #[arg(long, default_value_t = Dur(watchkeeper::agent::run::DEFAULT_INTERVAL), value_parser = duration)]
    interval: Dur,
    /// Reports kept while the collector is unreachable (720 = one hour at 5s); the oldest go first.
    #[arg(long, value_name = "N", default_value_t = watchkeeper::agent::run::DEFAULT_BACKLOG)]
    backlog: usize,
    /// Where log tail offsets are kept, so lines are not reported again after a restart.
    /// Default: watchkeeper-agent-<project>-<name>.state in the current directory.
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

#[derive(clap::Args)]
#[command(
    group(clap::ArgGroup::new("source").required(true).args(["config", "git"])),
    override_usage = "watchkeeper serve <--config <DIR>|--git <URL>> [--listen <ADDR>] [--db <URL>] [OPTIONS]"
)]
struct ServeArgs {
    /// Follow a local directory (watched, plus a periodic rescan).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Follow a git repository (URL, file:// or a local path), polled.
    #[arg(long, value_name = "URL")]
    git: Option<String>,
    #[arg(long, default_value = "main", requires = "git")]
    branch: String,
    /// The tree's folder inside the git repository.
    #[arg(long, value_name = "DIR", requires = "git")]
    path: Option<PathBuf>,
    /// Where the git checkout is kept.
    #[arg(long, value_name = "DIR", default_value = "data/checkout")]
    workdir: PathBuf,
    /// How often to fetch the git branch.
    #[arg(long, default_value = "30s", value_parser = duration)]
    poll: Dur,
    /// How often to rescan the directory even without change events.
    #[arg(long, default_value = "30s", value_parser = duration)]
    rescan: Dur,
    /// How long the directory must be left alone (no change, every file's size and time the
    /// same) before it is read as a revision: a file half-way written is never applied.
    #[arg(long, default_value = "1s", value_parser = duration)]
    settle: Dur,
    /// A valid revision that removes more than this percentage of the running objects at once
    /// is held rather than applied (100: never).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100), value_name = "PERCENT")]
    mass_removal_share: u8,
    /// How long a held revision must stay the newest before it is applied.
    #[arg(long, default_value = "5m", value_parser = duration)]
    mass_removal_hold: Dur,
    /// Apply a revision that removes more than --mass-removal-share at once without holding it.
    #[arg(long)]
    allow_mass_removal: bool,
    /// How many probe results wait for the database while it is unreachable; beyond, the
    /// oldest are dropped (and counted).
    #[arg(long, default_value_t = watchkeeper::engine::PROBE_BUFFER, value_name = "RESULTS")]
    probe_buffer: usize,
    /// sqlite://PATH (created on first run, with its directory) or postgres://…
    #[arg(long, value_name = "URL", env = "WATCHKEEPER_DB", default_value = DEFAULT_DB)]
    db: String,
    /// This replica's id among the serves on one database (its heartbeat row, its outbox
    /// leases); unique per replica. Default: hostname-pid.
    #[arg(long, value_name = "ID", value_parser = replica_id)]
    replica_id: Option<String>,
    /// How long a replica's heartbeat keeps it alive; it heartbeats every third of it, and a
    /// replica silent for longer is dropped from the live ones.
    #[arg(long, default_value = "15s", value_parser = lease_ttl)]
    lease_ttl: Dur,
    /// Where the status API and the agents' ingest endpoint listen.
    #[arg(long, value_name = "ADDR", env = "WATCHKEEPER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Cap on TCP connects in flight.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Cap on open HTTP connections (status API, dashboard, ingest); more are reset right after
    /// accept. Lowered at start if the open-files limit leaves less room.
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().max_connections, value_parser = at_least_one)]
    max_connections: usize,
    /// Cap on open HTTP connections from one client address.
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().max_connections_per_client, value_parser = at_least_one)]
    max_connections_per_client: usize,
    /// How long a client has to send a request head, from connecting (or from its first byte
    /// after an idle spell); then the connection is closed.
    #[arg(long, value_name = "DURATION", default_value_t = Dur(HttpLimits::default().header_timeout), value_parser = timeout)]
    header_timeout: Dur,
    /// How long a client has to send a request body, from the end of its head; then the request
    /// fails (400) and the connection is closed.
    #[arg(long, value_name = "DURATION", default_value_t = Dur(HttpLimits::default().body_timeout), value_parser = timeout)]
    body_timeout: Dur,
    /// How long a kept-alive HTTP connection may wait for its next request.
    #[arg(long, value_name = "DURATION", default_value_t = Dur(HttpLimits::default().idle_timeout), value_parser = timeout)]
    idle_timeout: Dur,
    /// How long port failures and recoveries (the monitors' disconnect log) are kept: 30d, 5y, …
    #[arg(long, default_value = "5y", value_parser = retention, value_name = "AGE")]
    retention_events: Duration,
    /// How long hourly probe rollups (with their 5-minute counts) are kept.
    #[arg(long, alias = "retention", default_value = "35d", value_parser = retention, value_name = "AGE")]
    retention_hours: Duration,
    /// How long daily probe rollups are kept.
    #[arg(long, default_value = "5y", value_parser = retention, value_name = "AGE")]
    retention_days: Duration,
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// How long a dashboard sign-in lasts.
    #[arg(long, default_value = "12h", value_parser = duration)]
    session_ttl: Dur,
    /// The address users open the dashboard at, e.g. https://watch.example.com; with https the
    /// session cookie is marked Secure. Read-receipt images in mails (`track_reads`) point here.
    #[arg(long, value_name = "URL", env = "WATCHKEEPER_PUBLIC_URL", value_parser = public_url)]
    public_url: Option<String>,
    /// How often e-mail channels' `bounces` Maildirs are scanned.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = timeout)]
    bounce_interval: Dur,
    /// Storm control: how many alerts of one project that fire (or resolve, escalate, remind)
    /// within `--storm-window` are told one by one; the rest reach each recipient as one digest.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    storm_limit: u32,
    /// The window of `--storm-limit`, and how long a digest collects before it goes out.
    #[arg(long, default_value = "5m", value_parser = duration)]
    storm_window: Dur,
    /// The most mount points one server may report; values of further ones are dropped.
    #[arg(long, default_value_t = 256)]
    max_mounts: usize,
    /// The most block devices one server may report.
    #[arg(long, default_value_t = 256)]
    max_devices: usize,
    /// The most network interfaces one server may report.
    #[arg(long, default_value_t = 256)]
    max_interfaces: usize,
    /// The most process names one server may report (`process_counts` and processes).
    #[arg(long, default_value_t = 1024)]
    max_process_names: usize,
    #[command(flatten)]
    library: LibraryArgs,
    /// The operator token: reads every project through the status API (serve keeps only its
    /// SHA-256). Make one with `watchkeeper token`. Prefer the environment variable: arguments
    /// show in `ps`. WATCHKEEPER_ADMIN_TOKEN, its old name, is read too.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
}

/// Where serve keeps its database unless told otherwise; `report` reads the same.
const DEFAULT_DB: &str = "sqlite://data/watchkeeper.db";

/// The one name of the status API token, for serve (the operator token) and `plan --against`.
const TOKEN_ENV: &str = "WATCHKEEPER_TOKEN";
/// Its old name, still read when [`TOKEN_ENV`] is not set.
const TOKEN_ENV_ALIAS: &str = "WATCHKEEPER_ADMIN_TOKEN";

/// The token given with `--token` or [`TOKEN_ENV`], else the one in [`TOKEN_ENV_ALIAS`].
fn api_token(given: Option<String>) -> Option<String> {
    let set = |t: &String| !t.is_empty();
    given.filter(set).or_else(|| std::env::var(TOKEN_ENV_ALIAS).ok().filter(set))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn duration(s: &str) -> Result<Dur, String> {
    Dur::parse(s)
}

/// A duration longer than zero.
fn public_url(s: &str) -> Result<String, String> {
    watchkeeper::config::values::check_http_url(s).map(|()| s.to_string())
}

fn timeout(s: &str) -> Result<Dur, String> {
    Dur::parse(s).and_then(|d| if d.0.is_zero() { Err(format!("`{s}`: a timeout must be longer than zero")) } else { Ok(d) })
}

/// A lease TTL: at least 3 s, so the heartbeat every third of it is at least a second apart,
/// and at most an hour.
fn lease_ttl(s: &str) -> Result<Dur, String> {
    Dur::parse(s).and_then(|d| {
        if (Duration::from_secs(3)..=Duration::from_secs(3600)).contains(&d.0) {
            Ok(d)
        } else {
            Err(format!("`{s}`: the lease TTL is from 3s to 1h"))
        }
    })
}

/// A replica id: 1 to 128 characters, none of them a control character.
fn replica_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().count() > 128 || s.chars().any(char::is_control) {
        Err(format!("`{}`: a replica id is 1 to 128 characters, without control characters", s.escape_debug()))
    } else {
        Ok(s.to_string())
    }
}

/// A whole number of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number of at least 1")),
    }
}

/// A retention: a whole number of hours (`h`), days (`d`) or years of 365 days (`y`), at least
/// an hour and at most 100 years.
fn retention(s: &str) -> Result<Duration, String> {
    let err = || format!("`{s}` is not a retention like 36h, 35d or 5y");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let hours = match unit {
        "h" => 1,
        "d" => 24,
        "y" => 365 * 24,
        _ => return Err(err()),
    };
    match n.checked_mul(hours) {
        Some(0) => Err(format!("`{s}`: a retention is at least 1h")),
        Some(h) if h <= 100 * 365 * 24 => Ok(Duration::from_secs(h * 3600)),
        _ => Err(format!("`{s}` is longer than 100 years")),
    }
}

fn slug(s: &str) -> Result<String, String> {
    config::values::check_slug(s).map(|()| s.to_string())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PlanFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every TLS client in the process (SMTP, HTTP, PostgreSQL); reqwest
    // is built without one and would panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn require_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{} does not exist", dir.display()),
        Err(e) => bail!("cannot read {}: {e}", dir.display()),
    }
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Lint { list_rules: true, .. } => {
            let rules: String =
                config::diagnostic::RULES.iter().map(|r| format!("{:<20} {:<8} {}\n", r.id, r.level.as_str(), r.summary)).collect();
            out(&rules);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lint { dir, format, deny_warnings, library, .. } => {
            require_dir(&dir)?;
            let loaded = config::load_dir(&dir, &library.library());
            out(&lint::render(&loaded.diagnostics, &loaded.sources, loaded.sources.tree_files, format));
            let (errors, warnings) = lint::counts(&loaded.diagnostics);
            Ok(if errors > 0 || (deny_warnings && warnings > 0) { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Cmd::Plan { base: None, against: Some(url), token, dir, format, library } => {
            require_dir(&dir)?;
            let new = config::load_dir(&dir, &library.library());
            if report_errors("change", &new) {
                return Ok(ExitCode::from(1));
            }
            let token = api_token(token).context("--against needs a status API token: give --token or set WATCHKEEPER_TOKEN")?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
            let running = runtime.block_on(plan::against::fetch(&url, &token))?;
            if let Some(scope) = &running.scope {
                eprintln!(
                    "note: the token sees {} project(s) ({}); other projects and shared objects are not compared",
                    scope.len(),
                    scope.join(", ")
                );
            }
            eprintln!("comparing with the running configuration (revision {})", running.revision.as_deref().unwrap_or("none applied yet"));
            let (entries, dropped) = running.plan(&new.config);
            match format {
                PlanFormat::Human => out(&plan::human(&entries, Some(&dropped))),
                PlanFormat::Json => out(&plan::json(&entries, Some(&dropped))),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plan { base, dir, format, library, .. } => {
            let base = base.context("give --base REV|DIR or --against URL")?;
            require_dir(&dir)?;
            let library = library.library();
            let new = config::load_dir(&dir, &library);
            let old = if Path::new(&base).is_dir() {
                config::load_dir(Path::new(&base), &library)
            } else {
                let mut diags = config::Diagnostics::default();
                let sources = load::read_git(&dir, &base, &mut diags).with_context(|| format!("reading revision `{base}`"))?;
                config::finish(sources, &library, diags)
            };
            if report_errors("base", &old) | report_errors("change", &new) {
                return Ok(ExitCode::from(1));
            }
            let entries = config::diff::diff(&old.config, &new.config);
            match format {
                PlanFormat::Human => out(&plan::human(&entries, None)),
                PlanFormat::Json => out(&plan::json(&entries, None)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Schema { out: None } => {
            let files = config::schema::files();
            let combined = files.iter().find(|(name, _)| name == config::schema::COMBINED).map(|(_, text)| text.as_str());
            out(combined.context("the combined schema is missing")?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Schema { out: Some(out) } => {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for (name, text) in config::schema::files() {
                let path = out.join(&name);
                std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("wrote JSON Schema for every kind to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Codeowners { dir, default_owner, library } => {
            require_dir(&dir)?;
            let loaded = config::load_dir(&dir, &library.library());
            if report_errors("tree", &loaded) {
                return Ok(ExitCode::from(1));
            }
            let prefix = git_prefix(&dir);
            let owners = codeowners::generate(&loaded.config, &loaded.sources, &prefix, &default_owner);
            out(&owners.text);
            if owners.no_default_owner {
                eprintln!("warning: no group owner has a `github` handle; give --default-owner so every file has an owner");
            }
            if !owners.missing_handles.is_empty() {
                let names: Vec<_> = owners.missing_handles.into_iter().collect();
                eprintln!("warning: no `github` handle for {}; they own files but cannot be named in CODEOWNERS", names.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Serve(args) => serve(*args),
        Cmd::Report(args) => report(args),
        Cmd::Agent(args) => agent(args),
        Cmd::Test { dir, library } => {
            require_dir(&dir)?;
            let loaded = config::load_dir(&dir, &library.library());
            if report_errors("tree", &loaded) {
                return Ok(ExitCode::from(1));
            }
            let report = watchkeeper::policy_test::run(&dir, &loaded.config);
            out(&report.text);
            Ok(if report.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Cmd::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "watchkeeper", &mut text);
            out(&String::from_utf8_lossy(&text));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { command } => {
            let cli = Cli::command();
            let (man, environment) = match command {
                None => (clap_mangen::Man::new(cli.clone()), man_environment(&cli)),
                Some(name) => {
                    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
                    let sub = cli.find_subcommand(&name).with_context(|| format!("no command `{name}`; commands: {}", names.join(", ")))?;
                    let page = format!("watchkeeper-{name}");
                    let environment = man_environment(sub);
                    let sub =
                        sub.clone().bin_name(format!("watchkeeper {name}")).display_name(page.clone()).version(env!("CARGO_PKG_VERSION"));
                    (clap_mangen::Man::new(sub).title(page), environment)
                }
            };
            let mut text = Vec::new();
            man.render(&mut text).context("rendering the man page")?;
            out(&String::from_utf8_lossy(&text));
            out(&environment);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token => {
            let token = token::generate().context("reading the system's random source")?;
            out(&format!("{token}\ntoken_sha256: {}\n", token::sha256_hex(&token)));
            eprintln!("Give the first line to the user or agent; it is shown once and stored nowhere.");
            eprintln!("Paste the second into the User (as ingest_key_sha256 for a Project's agents).");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report(args: ReportArgs) -> Result<ExitCode> {
    require_dir(&args.config)?;
    let loaded = config::load_dir(&args.config, &args.library.library());
    if report_errors("tree", &loaded) {
        return Ok(ExitCode::from(1));
    }
    let projects: Vec<&config::model::Project> =
        match &args.project {
            Some(name) => {
                let known: Vec<&str> = loaded.config.projects.keys().map(String::as_str).collect();
                vec![loaded.config.projects.get(name).with_context(|| {
                    format!("unknown project `{name}`: the tree in {} has {}", args.config.display(), list_or_none(&known))
                })?]
            }
            None => loaded.config.projects.values().collect(),
        };
    if projects.is_empty() {
        bail!("the tree in {} has no project", args.config.display());
    }
    if args.format == ReportFormat::Csv && args.project.is_none() {
        bail!("--format csv makes one file per project: give --project");
    }
    let date = args.date.as_deref().map(report::parse_date).transpose()?;
    if let Some(path) = watchkeeper::store::sqlite_file(&args.db).filter(|path| !path.exists()) {
        bail!("there is no database at {}: give --db with the URL serve uses (or run where serve keeps data/)", path.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let reports = runtime.block_on(async {
        let store = watchkeeper::store::Store::connect(&args.db).await?;
        if !store.holds_data().await? {
            bail!("the database holds no host metrics and no alerts yet: is it the one serve writes, and have agents reported?");
        }
        let mut reports = Vec::new();
        let now_ms = watchkeeper::clock::now_ms();
        for project in projects {
            let request = report::Request { project, period: args.period, kind: args.kind, date, now_ms };
            reports.push(report::build(&store, request).await.with_context(|| format!("project `{}`", project.name))?);
        }
        store.close().await;
        Ok(reports)
    })?;
    let text = match args.format {
        ReportFormat::Text => reports.iter().map(report::render::to_text).collect::<Vec<_>>().join("\n"),
        ReportFormat::Csv => reports.iter().map(report::render::to_csv).collect(),
        ReportFormat::Json if args.project.is_some() => format!("{}\n", serde_json::to_string_pretty(&reports[0])?),
        ReportFormat::Json => format!("{}\n", serde_json::to_string_pretty(&reports)?),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => out(&text),
    }
    Ok(ExitCode::SUCCESS)
}

/// `a, b` or `no projects`.
fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "no projects".to_string() } else { format!("projects {}", names.join(", ")) }
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    init_tracing(args.log_format);
    let source = match (args.config, args.git) {
        (Some(dir), _) => {
            require_dir(&dir)?;
            SourceSpec::Dir { dir, rescan: args.rescan.0, settle: args.settle.0 }
        }
        (None, Some(url)) => SourceSpec::Git { url, branch: args.branch, workdir: args.workdir, subdir: args.path, poll: args.poll.0 },
        (None, None) => bail!("give --config DIR or --git URL"),
    };
    let admin_token_sha256 = api_token(args.token).map(|t| token::sha256_hex(&t));
    let replica_id = args.replica_id.unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let options = watchkeeper::serve::ServeOptions {
        source,
        library: args.library.library(),
        db_url: args.db,
        listen: args.listen,
        max_in_flight: args.max_in_flight.max(1),
        probe_retention: ProbeRetention {
            events_ms: args.retention_events.as_millis() as i64,
            hours_ms: args.retention_hours.as_millis() as i64,
            days_ms: args.retention_days.as_millis() as i64,
        },
        admin_token_sha256,
        replica_id,
        lease_ttl: args.lease_ttl.0,
        scrape_interval: watchkeeper::collect::scrape::interval_from(
            std::env::var(watchkeeper::collect::scrape::INTERVAL_ENV).ok().as_deref(),
        ),
        session_ttl: args.session_ttl.0,
        public_url: args.public_url,
        bounce_interval: args.bounce_interval.0,
        http: HttpLimits {
            header_timeout: args.header_timeout.0,
            body_timeout: args.body_timeout.0,
            idle_timeout: args.idle_timeout.0,
            max_connections: args.max_connections,
            max_connections_per_client: args.max_connections_per_client,
        },
        storm: watchkeeper::notification::storm::StormSettings {
            limit: args.storm_limit as usize,
            window_ms: i64::try_from(args.storm_window.0.as_millis()).unwrap_or(i64::MAX),
        },
        mass_removal: MassRemoval {
            share_percent: args.mass_removal_share,
            hold: args.mass_removal_hold.0,
            allow: args.allow_mass_removal,
        },
        probe_buffer: args.probe_buffer,
        subject_caps: watchkeeper::collect::caps::SubjectCaps {
            mounts: args.max_mounts,
            devices: args.max_devices,
            interfaces: args.max_interfaces,
            process_names: args.max_process_names,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            signals.cancel();
        });
        watchkeeper::serve::run(options, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn agent(args: AgentArgs) -> Result<ExitCode> {
    init_tracing(args.log_format);
    let state_file = args.state_file.unwrap_or_else(|| PathBuf::from(format!("watchkeeper-agent-{}-{}.state", args.project, args.name)));
    let options = watchkeeper::agent::run::AgentOptions {
        server: args.server,
        key: args.key,
        project: args.project,
        name: args.name,
        interval: args.interval.0,
        backlog: args.backlog,
        state_file: Some(state_file),
    };
    // One thread: the agent must stay light on the server it watches.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            signals.cancel();
        });
        watchkeeper::agent::run::run(options, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "watchkeeper".into())
}

/// Logs go to stderr: human-readable by default, JSON lines with `--log-format json`.
/// `WATCHKEEPER_LOG` (e.g. `debug`, `watchkeeper=debug`) sets the filter; default `info`.
/// Colour only on a terminal, and not when `NO_COLOR` is set (to anything but "").
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("WATCHKEEPER_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A man page's ENVIRONMENT section: every variable an option of `command` (or of its
/// subcommands) reads, and the logging ones for the commands that log.
fn man_environment(command: &clap::Command) -> String {
    fn collect(command: &clap::Command, vars: &mut std::collections::BTreeMap<String, String>, logs: &mut bool) {
        *logs |= matches!(command.get_name(), "serve" | "agent");
        for arg in command.get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                vars.insert(env.to_string_lossy().into_owned(), format!("the --{long} option"));
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, vars, logs);
        }
    }
    let mut vars = std::collections::BTreeMap::new();
    let mut logs = false;
    collect(command, &mut vars, &mut logs);
    if vars.contains_key(TOKEN_ENV) {
        vars.insert(TOKEN_ENV_ALIAS.to_string(), format!("the old name of {TOKEN_ENV}, read when that is not set"));
    }
    if logs {
        vars.insert("WATCHKEEPER_LOG".into(), "the log filter, e.g. debug or watchkeeper=debug (default info)".into());
        vars.insert(
            "NO_COLOR".into(),
            "set to anything but the empty string: no colour in logs (colour is only used on a terminal)".into(),
        );
    }
    if vars.is_empty() {
        return String::new();
    }
    let roff = |s: &str| s.replace('\\', "\\\\").replace('-', "\\-");
    let mut text = String::from(".SH ENVIRONMENT\n");
    for (name, meaning) in vars {
        text.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(&name), roff(&meaning)));
    }
    text
}

/// Write to stdout; a closed pipe (`watchkeeper lint | head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Print a tree's errors to stderr; true when it has any.
fn report_errors(which: &str, loaded: &Loaded) -> bool {
    if !loaded.has_errors() {
        return false;
    }
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.level == config::Level::Error).cloned().collect();
    eprintln!("the {which} tree has errors; run `watchkeeper lint` on it:");
    eprint!("{}", lint::render(&errors, &loaded.sources, loaded.sources.tree_files, Format::Human));
    true
}

/// The tree's path inside its git repository ("" when it is the root or not in git).
fn git_prefix(dir: &Path) -> String {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-prefix"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
