//! A generator of realistic configuration trees for benchmarks.
//!
//! The tree is laid out like a real monitoring repository (README, "The configuration tree"):
//!
//! ```text
//! groups/<group>.yaml                 kind: Group
//! users/people.yaml                   kind: User (many documents)
//! channels/{mail,sms,slack}.yaml      kind: Channel
//! projects/<p>/project.yaml           kind: Project
//! projects/<p>/servers.yaml           kind: Server (many)
//! projects/<p>/checks.yaml            kind: PortMonitor, DownCheck
//! projects/<p>/policies.yaml          kind: AlertPolicy, ProcessPolicy, LogPolicy
//! projects/<p>/maintenance.yaml       kind: Maintenance
//! ```
//!
//! The generated tree is meant to lint clean (no errors, no warnings): every IP literal lies in
//! its group's `networks`, every AlertPolicy is used by some server, SMS only goes to users
//! with a phone, no detector is paused, and so on. The bench asserts that before timing.
//!
//! [`generate`] writes realistic public and private addresses and DNS names, fine for benches
//! that only read the tree. Benches that run the prober or the outbox use [`generate_with`] and
//! [`Options::loopback`], so that nothing in the tree points off this machine.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

/// How big a tree to generate.
#[derive(Debug, Clone)]
pub struct Size {
    pub servers: usize,
    pub monitors: usize,
    /// AlertPolicy documents, all project-local.
    pub policies: usize,
    pub projects: usize,
    /// 1–5.
    pub groups: usize,
    pub users: usize,
    pub down_checks: usize,
}

impl Size {
    /// The target size: 10 000 servers, 10 000 port monitors, 1 000 policies.
    pub fn spec() -> Size {
        Size { servers: 10_000, monitors: 10_000, policies: 1_000, projects: 100, groups: 4, users: 200, down_checks: 1_000 }
    }
}

/// What the tree points at; the default is what [`generate`] writes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Every address in the tree is 127.0.0.1 — servers, private IPs, port monitors (no DNS names),
    /// down-checks, node_exporter URLs — and every channel endpoint is 127.0.0.1 port 9, where
    /// nothing listens; 127.0.0.0/8 is approved in every group. For benches that run the prober
    /// or the outbox: they must never send traffic off loopback.
    pub loopback: bool,
    /// When not empty, PortMonitor `i` checks `ports[i % ports.len()]` instead of ports chosen by
    /// its server's role (with `loopback`, so that probes reach the bench's own listeners).
    pub ports: Vec<Vec<u16>>,
    /// Every PortMonitor's `(interval, timeout)`, e.g. `("30s", "5s")`, instead of a 1m/3m/5m mix.
    pub interval: Option<(String, String)>,
}

/// Where [`Options::loopback`] trees point channels: the discard port, closed on these machines.
const LOOPBACK_SINK: &str = "127.0.0.1:9";

/// What was written.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub files: usize,
    pub documents: usize,
    pub bytes: u64,
    pub servers: usize,
    pub monitors: usize,
    pub alert_policies: usize,
    pub down_checks: usize,
    pub process_policies: usize,
    pub log_policies: usize,
}

const GROUPS: [&str; 5] = ["platform", "commerce", "data", "edge", "corp"];
const PROJECT_WORDS: [&str; 20] = [
    "shop", "billing", "search", "auth", "payments", "catalog", "checkout", "ledger", "media", "mail", "chat", "maps", "ads", "metrics",
    "backup", "wiki", "crm", "erp", "cdn", "vpn",
];
const ROLES: [&str; 8] = ["web", "api", "db", "cache", "queue", "worker", "lb", "batch"];
const FIRST: [&str; 16] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "nina", "oscar", "peggy", "sybil",
    "trent",
];
const LAST: [&str; 8] = ["Kim", "Lee", "Park", "Choi", "Smith", "Jones", "Müller", "García"];
const TIMEZONES: [&str; 5] = ["Asia/Seoul", "Europe/Berlin", "UTC", "America/New_York", "Asia/Tokyo"];
const POLICY_FLAVOURS: [&str; 10] = ["web", "api", "database", "cache", "queue", "worker", "balancer", "batch", "strict", "relaxed"];

/// `(p + 1) * total / parts - p * total / parts`: an even split of `total` into `parts`.
fn share(total: usize, parts: usize, p: usize) -> (usize, usize) {
    let start = p * total / parts;
    (start, (p + 1) * total / parts - start)
}

fn email(u: usize) -> String {
    format!("{}{u:03}@example.com", FIRST[u % FIRST.len()])
}

/// Users with an even index have a phone (and so may receive SMS).
fn has_phone(u: usize) -> bool {
    u.is_multiple_of(2)
}

fn project_name(p: usize) -> String {
    let word = PROJECT_WORDS[p % PROJECT_WORDS.len()];
    match p / PROJECT_WORDS.len() {
        0 => word.to_string(),
        n => format!("{word}-{}", n + 1),
    }
}

fn server_name(j: usize) -> String {
    format!("{}-{j:03}", ROLES[j % ROLES.len()])
}

fn is_paused(j: usize) -> bool {
    j % 50 == 25
}

fn is_windows(j: usize) -> bool {
    j % 10 == 9
}

/// Hosts of group `g` live in 10.(32g).0.0/12, private addresses in 10.(32g+16).0.0/12.
fn group_ip(g: usize, l: usize, private: bool) -> String {
    assert!(l < 1 << 20, "more than 1 048 576 servers in one group");
    let second = g * 32 + if private { 16 } else { 0 } + (l >> 16);
    format!("10.{second}.{}.{}", (l >> 8) & 255, l & 255)
}

/// A fake but well-formed SHA-256 hex digest.
fn fake_sha256(seed: usize) -> String {
    let mut x = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = write!(out, "{x:016x}");
    }
    out
}

/// Writes files and counts what went into them.
struct Writer<'a> {
    root: &'a Path,
    stats: Stats,
}

impl Writer<'_> {
    fn file(&mut self, rel: &str, docs: &[String]) -> io::Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        // The editor hint real repositories carry on their first line (README, `watchkeeper schema`).
        let mut text = format!("# yaml-language-server: $schema={}schema/watchkeeper.json\n", "../".repeat(rel.matches('/').count()));
        for (i, doc) in docs.iter().enumerate() {
            if i > 0 {
                text.push_str("---\n");
            }
            text.push_str(doc);
        }
        fs::write(&path, &text)?;
        self.stats.files += 1;
        self.stats.documents += docs.len();
        self.stats.bytes += text.len() as u64;
        Ok(())
    }
}

/// Write a tree of `size` under `root` (which should be empty).
pub fn generate(root: &Path, size: &Size) -> io::Result<Stats> {
    generate_with(root, size, &Options::default())
}

/// [`generate`], with the addresses, ports and intervals `options` asks for.
pub fn generate_with(root: &Path, size: &Size, options: &Options) -> io::Result<Stats> {
    let groups = size.groups.clamp(1, GROUPS.len());
    let projects = size.projects.max(1);
    assert!(size.users >= 4 * groups + 4, "need at least {} users for {groups} groups", 4 * groups + 4);
    assert!(size.policies <= size.servers, "every AlertPolicy must be used by a server: policies ≤ servers");
    let mut w = Writer { root, stats: Stats::default() };

    // Users: a few with SMS notifications (only those with a phone), some in Korean.
    let mut docs = Vec::with_capacity(size.users);
    for u in 0..size.users {
        let mut d = format!("kind: User\nemail: {}\nname: {} {}\n", email(u), capitalise(FIRST[u % FIRST.len()]), LAST[u % LAST.len()]);
        if has_phone(u) {
            let _ = writeln!(d, "phone: \"+82-10-{:04}-{:04}\"", 1000 + u / 10_000 % 9000, u % 10_000);
        }
        if u % 3 == 0 {
            let _ = writeln!(d, "github: {}{u}", FIRST[u % FIRST.len()]);
        }
        let _ = writeln!(d, "language: {}", if u % 4 == 1 { "ko" } else { "en" });
        if u % 5 == 0 {
            let _ = writeln!(d, "token_sha256: {}", fake_sha256(u));
        }
        if u % 6 == 0 {
            let _ =
                writeln!(d, "notify:\n  email: true\n  sms: {}\n  hours: \"08:00-23:00\"\n  days: [mon, tue, wed, thu, fri]", has_phone(u));
        }
        docs.push(d);
    }
    w.file("users/people.yaml", &docs)?;

    // Groups: user g owns group g; admins and read-only users come from further up, never twice.
    for (g, name) in GROUPS.iter().enumerate().take(groups) {
        let d = format!(
            "kind: Group\nname: {name}\ndescription: The {name} team\nowner: {}\nadmins: [{}]\nusers: [{}, {}]\n\
             networks: [10.{}.0.0/12, 10.{}.0.0/12, 203.0.113.{}/27{}]\n",
            email(g),
            email(groups + g),
            email(2 * groups + g),
            email(3 * groups + g),
            g * 32,
            g * 32 + 16,
            g * 32,
            if options.loopback { ", 127.0.0.0/8" } else { "" },
        );
        w.file(&format!("groups/{name}.yaml"), &[d])?;
    }

    // Channels: one mail and one SMS transport shared by everyone, a Slack webhook per group.
    let (smtp, sms_url) = if options.loopback {
        let (host, port) = LOOPBACK_SINK.split_once(':').expect("host:port");
        (format!("{{ host: {host}, port: {port}, tls: none }}"), format!("http://{LOOPBACK_SINK}/send"))
    } else {
        (
            "{ host: smtp.example.com, port: 587, tls: starttls, username: alerts, password: \"${SMTP_PASSWORD}\" }".to_string(),
            "https://sms.example.com/send".to_string(),
        )
    };
    w.file(
        "channels/mail.yaml",
        &[format!(
            "kind: Channel\nname: ops-mail\ntype: email\nsmtp: {smtp}\nfrom: \"watchkeeper <alerts@example.com>\"\nto: [noc@example.com]\n"
        )],
    )?;
    w.file(
        "channels/sms.yaml",
        &[format!(
            "kind: Channel\nname: ops-sms\ntype: sms\nurl: {sms_url}\n\
             headers: {{ Authorization: \"Bearer ${{SMS_TOKEN}}\" }}\nbody: '{{\"to\":\"{{{{phone}}}}\",\"text\":\"{{{{text}}}}\"}}'\n"
        )],
    )?;
    let slack: Vec<String> = GROUPS
        .iter()
        .take(groups)
        .map(|g| {
            let url =
                if options.loopback { format!("http://{LOOPBACK_SINK}/{g}") } else { format!("${{SLACK_WEBHOOK_{}}}", g.to_uppercase()) };
            format!("kind: Channel\nname: {g}-slack\ntype: webhook\nurl: \"{url}\"\nformat: slack\n")
        })
        .collect();
    w.file("channels/slack.yaml", &slack)?;

    // Which project each AlertPolicy belongs to: policy k is "anchored" at server k·N/K and lives
    // in that server's project. k ↦ k·N/K is injective when K ≤ N, so no project gets more
    // policies than servers, and server j of a project can use local policy j mod n: all used.
    let mut policies_of: Vec<Vec<usize>> = vec![Vec::new(); projects];
    for k in 0..size.policies {
        let anchor = k * size.servers / size.policies;
        // The project p with p·N/P ≤ anchor < (p+1)·N/P.
        let mut p = anchor * projects / size.servers.max(1);
        while p > 0 && share(size.servers, projects, p).0 > anchor {
            p -= 1;
        }
        while p + 1 < projects && share(size.servers, projects, p + 1).0 <= anchor {
            p += 1;
        }
        policies_of[p].push(k);
    }

    let mut in_group = vec![0usize; groups]; // servers placed so far in each group
    for p in 0..projects {
        let name = project_name(p);
        let g = p * groups / projects;
        let group = GROUPS[g];
        let dir = format!("projects/{name}");
        let (_, n_servers) = share(size.servers, projects, p);
        let (_, n_monitors) = share(size.monitors, projects, p);
        let (_, n_checks) = share(size.down_checks, projects, p);
        let local_policies = &policies_of[p];

        // Project: two members not otherwise holding a group role.
        let member = |i: usize| 4 * groups + (2 * p + i) % (size.users - 4 * groups);
        let project = format!(
            "kind: Project\nname: {name}\ngroup: {group}\ndescription: The {name} service\ntimezone: {}\nmembers:\n\
             \x20 - {{ user: {}, role: admin }}\n  - {{ user: {}, role: user }}\ningest_key_sha256: {}\n\
             channels: [ops-mail, ops-sms, {group}-slack]\nreports: {{ daily_email: {} }}\n",
            TIMEZONES[p % TIMEZONES.len()],
            email(member(0)),
            email(member(1)),
            fake_sha256(1_000_000 + p),
            p % 2 == 0,
        );
        w.file(&format!("{dir}/project.yaml"), &[project])?;

        // Servers.
        let base = in_group[g];
        in_group[g] += n_servers;
        let host = |j: usize| -> String {
            if options.loopback {
                "127.0.0.1".to_string()
            } else if j % 7 == 3 {
                format!("{}.{name}.example.net", server_name(j))
            } else {
                group_ip(g, base + j, false)
            }
        };
        let private_ip = |j: usize| if options.loopback { "127.0.0.1".to_string() } else { group_ip(g, base + j, true) };
        let mut docs = Vec::with_capacity(n_servers);
        for j in 0..n_servers {
            let role = ROLES[j % ROLES.len()];
            let env = if j % 3 == 2 { "staging" } else { "prod" };
            let mut d = format!(
                "kind: Server\nname: {}\nproject: {name}\nhost: {}\nprivate_ip: {}\nos: {}\ntags: [{role}, {env}]\n",
                server_name(j),
                host(j),
                private_ip(j),
                if is_windows(j) { "windows" } else { "linux" },
            );
            match local_policies.len() {
                0 => d.push_str(if is_windows(j) { "policy: windows-default\n" } else { "policy: linux-default\n" }),
                n => {
                    let _ = writeln!(d, "policy: {}", policy_name(local_policies[j % n]));
                }
            }
            if is_paused(j) {
                d.push_str("paused: true\n");
            }
            if j >= 8 && j % 4 == 0 {
                let _ = writeln!(d, "depends_on: [{}]", server_name(j - 8));
            }
            if j % 10 == 4 {
                let _ = writeln!(d, "metrics:\n  source: node_exporter\n  url: http://{}:9100/metrics", private_ip(j));
            }
            docs.push(d);
        }
        w.file(&format!("{dir}/servers.yaml"), &docs)?;
        w.stats.servers += n_servers;

        // Port monitors, then down-checks.
        let ports_of = |i: usize, default: &str| -> String {
            match options.ports.len() {
                0 => default.to_string(),
                n => format!("{:?}", options.ports[i % n]),
            }
        };
        let mut docs = Vec::with_capacity(n_monitors + n_checks);
        for i in 0..n_monitors {
            let mut d = String::from("kind: PortMonitor\n");
            if n_servers > 0 && i % 10 != 9 {
                let j = i % n_servers;
                let server = server_name(j);
                match i / n_servers {
                    0 => {
                        let _ = writeln!(d, "name: {server}-ports");
                    }
                    round => {
                        let _ = writeln!(d, "name: {server}-ports-{}", round + 1);
                    }
                }
                let role_ports = match ROLES[j % ROLES.len()] {
                    "web" | "lb" => "[22, 80, 443]",
                    "api" => "[22, 8080, 8443]",
                    "db" => "[22, 5432]",
                    "cache" => "[22, 6379]",
                    "queue" => "[22, 5672, 15672]",
                    _ if is_windows(j) => "[3389]",
                    _ => "[22]",
                };
                let _ = write!(d, "project: {name}\nserver: {server}\nports: {}\n", ports_of(i, role_ports));
            } else if i % 20 == 9 {
                let host = if options.loopback { "127.0.0.1".to_string() } else { format!("203.0.113.{}", g * 32 + 1 + i % 30) };
                let _ = write!(d, "name: vip-{i:04}\nproject: {name}\nhost: {host}\nports: {}\n", ports_of(i, "[443]"));
            } else {
                let host = if options.loopback { "127.0.0.1".to_string() } else { format!("svc-{i}.{name}.example.com") };
                let _ = write!(d, "name: ext-{i:04}\nproject: {name}\nhost: {host}\nports: {}\n", ports_of(i, "[80, 443]"));
            }
            let (interval, timeout) = match &options.interval {
                Some((interval, timeout)) => (interval.as_str(), timeout.as_str()),
                None => [("1m", "5s"), ("3m", "5s"), ("5m", "10s")][i % 3],
            };
            let _ = write!(d, "interval: {interval}\ntimeout: {timeout}\nfailures: {}\n", 2 + i % 3);
            if i % 4 == 0 {
                d.push_str("recoveries: 2\n");
            }
            if i % 5 == 0 {
                // SMS only to members with a phone.
                let mut u = member(i % 2);
                if !has_phone(u) {
                    u = (0..size.users).find(|&u| has_phone(u)).expect("someone has a phone");
                }
                let _ = write!(d, "notify: [{}]\nsms: true\n", email(u));
            } else if i % 5 == 1 {
                let _ = writeln!(d, "notify: [{}, {}]", email(member(0)), email(member(1)));
            }
            docs.push(d);
        }
        if n_servers >= 2 {
            for i in 0..n_checks {
                let mut det = (10 * i) % n_servers;
                if is_paused(det) {
                    det = (det + 1) % n_servers;
                }
                let round = 10 * i / n_servers;
                let mut target = (det + 1 + round) % n_servers;
                if target == det {
                    target = (det + 1) % n_servers;
                }
                let port = [5432, 80, 6379, 443, 8080][round % 5];
                let mut d = format!(
                    "kind: DownCheck\nproject: {name}\ndetector: {}\ntarget: {}\nport: {port}\n",
                    server_name(det),
                    server_name(target)
                );
                if i % 3 == 0 {
                    let _ = writeln!(d, "ip: {}", private_ip(target));
                }
                if i % 4 == 0 {
                    let _ = writeln!(d, "liveness_port: {}", if is_windows(target) { 3389 } else { 22 });
                }
                if i % 2 == 0 {
                    d.push_str("interval: 30s\nfailures: 3\n");
                }
                docs.push(d);
                w.stats.down_checks += 1;
            }
        }
        w.file(&format!("{dir}/checks.yaml"), &docs)?;
        w.stats.monitors += n_monitors;

        // Policies: the project's AlertPolicies, then process and log policies.
        let mut docs = Vec::new();
        for &k in local_policies {
            docs.push(alert_policy(k, &name));
        }
        w.stats.alert_policies += local_policies.len();
        if n_servers > 0 {
            let pick = |f: &dyn Fn(usize) -> bool, max: usize| -> Vec<String> {
                (0..n_servers).filter(|&j| f(j)).take(max).map(server_name).collect()
            };
            let or_first = |v: Vec<String>| if v.is_empty() { vec![server_name(0)] } else { v };
            docs.push(format!(
                "kind: ProcessPolicy\nname: sshd\nproject: {name}\nprocess: sshd\nproject_wide: true\ncount: {{ min: 1 }}\nseverity: warning\n"
            ));
            let web = or_first(pick(&|j| ROLES[j % ROLES.len()] == "web", 10));
            docs.push(format!(
                "kind: ProcessPolicy\nname: nginx\nproject: {name}\nprocess: nginx\nservers: [{}]\ncount: {{ min: 1, max: 64 }}\n\
                 cpu: {{ warning: 50, fatal: 90 }}\nmemory: {{ warning: 20, fatal: 40 }}\nfor: 1m\n",
                web.join(", ")
            ));
            let apps = or_first(pick(&|j| matches!(ROLES[j % ROLES.len()], "api" | "worker"), 10));
            docs.push(format!(
                "kind: ProcessPolicy\nname: java-apps\nproject: {name}\nprocess: \"^java(-[a-z]+)?$\"\nmatch: regex\nservers: [{}]\n\
                 memory: {{ warning: 60, fatal: 85 }}\nfor: 5m\nseverity: warning\n",
                apps.join(", ")
            ));
            w.stats.process_policies += 3;
            let linux = or_first(pick(&|j| !is_windows(j), 5));
            docs.push(format!(
                "kind: LogPolicy\nname: app-errors\nproject: {name}\nservers: [{}]\nrules:\n\
                 \x20 - {{ file: /var/log/app/error.log, keyword: OutOfMemoryError, severity: fatal }}\n\
                 \x20 - {{ file: \"/var/log/nginx/*.log\", keyword: \" 502 \", severity: warning }}\n",
                linux.join(", ")
            ));
            w.stats.log_policies += 1;
            let windows = pick(&is_windows, 5);
            if !windows.is_empty() {
                docs.push(format!(
                    "kind: LogPolicy\nname: windows-disk\nproject: {name}\nservers: [{}]\nrules:\n\
                     \x20 - {{ event_log: {{ log: System, level: error, source: disk, id: 7 }}, severity: fatal }}\n",
                    windows.join(", ")
                ));
                w.stats.log_policies += 1;
            }
        }
        w.file(&format!("{dir}/policies.yaml"), &docs)?;

        // A weekly patch window for the first server's role.
        if n_servers > 0 {
            let d = format!(
                "kind: Maintenance\nname: weekly-patch\nproject: {name}\ntags: [{}]\nschedule: {{ days: [sun], from: \"03:00\", to: \"04:00\" }}\n\
                 reason: OS patches\n",
                ROLES[0]
            );
            w.file(&format!("{dir}/maintenance.yaml"), &[d])?;
        }
    }
    Ok(w.stats)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn policy_name(k: usize) -> String {
    format!("{}-{}", POLICY_FLAVOURS[k % POLICY_FLAVOURS.len()], k / POLICY_FLAVOURS.len() + 1)
}

/// An AlertPolicy with 4–8 rules, thresholds ordered, one `below: true` rule on some.
fn alert_policy(k: usize, project: &str) -> String {
    let mut d = format!("kind: AlertPolicy\nname: {}\nproject: {project}\n", policy_name(k));
    if k.is_multiple_of(2) {
        let _ = writeln!(d, "description: Thresholds for {} servers", POLICY_FLAVOURS[k % POLICY_FLAVOURS.len()]);
    }
    let _ = write!(d, "no_data: {}\nrestart: {}\nrules:\n", ["2m", "5m", "90s"][k % 3], k % 3 != 2);
    let strict = k % 5;
    let rules = [
        format!("{{ metric: cpu.usage, warning: {}, fatal: 95, for: 5m }}", 70 + strict * 4),
        format!("{{ metric: memory.usage, warning: {}, fatal: 95, for: 5m }}", 75 + strict * 3),
        "{ metric: disk.usage, warning: 80, fatal: 90 }".to_string(),
        "{ metric: swap.usage, warning: 50, fatal: 80, for: 10m }".to_string(),
        "{ metric: disk.io, warning: 80, fatal: 95, for: 5m }".to_string(),
        "{ metric: memory.available, warning: 15, fatal: 5, below: true, for: 2m }".to_string(),
        format!("{{ metric: network.in_bps, warning: {}, for: 1m }}", 100_000_000 * (1 + strict)),
        "{ metric: load.5, warning: 8, fatal: 16, for: 10m }".to_string(),
    ];
    for rule in rules.iter().take(4 + k % 5) {
        let _ = writeln!(d, "  - {rule}");
    }
    d
}
