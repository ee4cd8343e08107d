//! Agents and the collector end to end, with real parts only: the real `watchkeeper serve` and
//! `watchkeeper agent` binaries on loopback, this machine's real /proc, a CPU-burning child
//! process, a real log file, real TCP listeners for down-checks, aiosmtpd receiving mail.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::agent::{Agent, KEY};
use crate::support::serve::{Listener, Serve};
use crate::support::smtp::SmtpServer;
use crate::support::{free_port, install_crypto};

/// Processes named `wk-burner` spinning on the CPU (copies of /bin/sh, so the name is ours).
/// Several, because a ProcessPolicy sums the CPU of every process of its name, and on a machine
/// loaded by other builds one spinning process may get only a few % of a core.
struct Burner(Vec<Child>);

impl Burner {
    const PROCESSES: usize = 4;

    fn start(work: &Path) -> Burner {
        let exe = work.join("wk-burner");
        if !exe.exists() {
            fs::copy("/bin/sh", &exe).unwrap();
        }
        Burner(
            (0..Self::PROCESSES)
                .map(|_| Command::new(&exe).args(["-c", "while :; do :; done"]).spawn().expect("spawn the burner"))
                .collect(),
        )
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Tree {
    smtp: u16,
    service: u16,
    liveness: u16,
    log_file: PathBuf,
}

fn write_tree(dir: &Path, t: &Tree) {
    let key_hash = watchkeeper::token::sha256_hex(KEY);
    let operator_hash = watchkeeper::token::sha256_hex(crate::support::serve::OPERATOR);
    let files = [
        ("users.yaml", format!("kind: User\nemail: alice@example.com\nname: Alice\nlanguage: en\ntoken_sha256: {operator_hash}\n")),
        (
            "channels.yaml",
            format!(
                "kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {}, tls: none }}\nfrom: \"wk <alerts@example.com>\"\n",
                t.smtp
            ),
        ),
        (
            "project.yaml",
            format!(
                "kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\nchannels: [mail]\n\
                 ingest_key_sha256: {key_hash}\n---\n\
                 kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\npolicy: host\n---\n\
                 kind: Server\nname: db-01\nproject: shop\nhost: 127.0.0.1\nprivate_ip: 127.0.0.1\n---\n\
                 kind: AlertPolicy\nname: host\nproject: shop\nno_data: 4s\nrestart: true\n\
                 rules:\n  - {{ metric: disk.usage, fatal: 100 }}\n---\n\
                 kind: ProcessPolicy\nname: burner\nproject: shop\nprocess: wk-burner\nservers: [web-01]\n\
                 cpu: {{ warning: 2 }}\nfor: 2s\n---\n\
                 kind: LogPolicy\nname: app-errors\nproject: shop\nservers: [web-01]\n\
                 rules:\n  - {{ file: {}, keyword: OutOfMemoryError, severity: fatal }}\n---\n\
                 kind: DownCheck\nproject: shop\ndetector: web-01\ntarget: db-01\nip: 127.0.0.1\nport: {}\nliveness_port: {}\n\
                 interval: 1s\nfailures: 2\n",
                t.log_file.display(),
                t.service,
                t.liveness
            ),
        ),
    ];
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
}

fn serve_args(dir: &Path, work: &Path) -> Vec<String> {
    vec!["--config".into(), dir.display().to_string(), "--db".into(), format!("sqlite://{}", work.join("wk.db").display())]
}

/// The tree with nothing listening on its mail and down-check ports; serve's arguments for it.
fn quiet_tree(work: &Path) -> (Vec<String>, Tree) {
    let dir = work.join("tree");
    fs::create_dir_all(&dir).unwrap();
    let tree = Tree { smtp: free_port(), service: free_port(), liveness: free_port(), log_file: work.join("none.log") };
    write_tree(&dir, &tree);
    (serve_args(&dir, work), tree)
}

/// serve on `args`, once it has applied the tree.
fn start_serve(args: &[String], work: &Path) -> Serve {
    install_crypto();
    let serve = Serve::start(args, &[], &work.join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    serve
}

fn alerts(serve: &Serve) -> Vec<Value> {
    serve.get("/api/v1/projects/shop/alerts")["alerts"].as_array().cloned().unwrap_or_default()
}

fn alert_with_rule(serve: &Serve, rule: &str, status: &str) -> Option<Value> {
    alerts(serve).into_iter().find(|a| a["rule"] == rule && a["status"] == status)
}

fn down_check(serve: &Serve) -> Value {
    serve.get("/api/v1/projects/shop/monitors")["down_checks"][0].clone()
}

/// /proc/meminfo's `MemTotal` in bytes and `memory.usage` as the agent defines it.
fn proc_memory() -> (u64, f64) {
    let text = fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    let (total, available) = (field("MemTotal"), field("MemAvailable"));
    (total, 100.0 * (1.0 - available as f64 / total as f64))
}

/// The lowest and highest `memory.usage` /proc shows while it runs: read every 20 ms by a
/// thread of its own.
struct MemoryWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<(f64, f64)>,
}

impl MemoryWatch {
    fn start() -> MemoryWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let (mut least, mut most) = (f64::MAX, f64::MIN);
            loop {
                let usage = proc_memory().1;
                (least, most) = (least.min(usage), most.max(usage));
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return (least, most);
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        MemoryWatch { stop, thread }
    }

    fn stop(self) -> (f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the memory watch")
    }
}

fn proc_boot_time() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap();
    stat.lines().find_map(|l| l.strip_prefix("btime ")).unwrap().trim().parse().unwrap()
}

fn wait(serve: &Serve, agent: &Agent, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting until {what}\n--- serve log ---\n{}\n--- agent log ---\n{}",
                serve.log(),
                agent.log()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reports_this_machine_and_its_policies_fire_and_resolve() {
    install_crypto();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let dir = work.join("tree");
    fs::create_dir_all(&dir).unwrap();
    let smtp = SmtpServer::start();
    let service = Listener::open(free_port());
    let liveness = Listener::open(free_port());
    let log_file = work.join("app.log");
    fs::write(&log_file, "an old line with OutOfMemoryError, before the agent started\n").unwrap();
    let tree = Tree { smtp: smtp.port, service: service.port, liveness: liveness.port, log_file: log_file.clone() };
    write_tree(&dir, &tree);
    let serve = Serve::start(&serve_args(&dir, work), &[], &work.join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(60), || serve.applied().is_some());
    let memory = MemoryWatch::start();
    let mut agent = Agent::start(&serve, "web-01", work, &["--interval", "1s"]);

    // 1. This machine's own numbers arrive, and agree with /proc.
    wait(&serve, &agent, "web-01 reports", Duration::from_secs(60), || {
        serve.get("/api/v1/projects/shop/servers/web-01")["facts"]["boot_time"].as_u64().is_some()
    });
    let detail = serve.get("/api/v1/projects/shop/servers/web-01");
    assert_eq!(detail["facts"]["ram_total_bytes"].as_u64(), Some(proc_memory().0), "{detail:#}");
    assert_eq!(detail["facts"]["boot_time"].as_u64(), Some(proc_boot_time()));
    assert_eq!(detail["facts"]["cpu_count"].as_u64(), Some(crate::common::proc_stat_cpu_count() as u64));
    let reported = serve.get("/api/v1/projects/shop/servers/web-01/metrics?name=memory.usage")["points"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["avg"].as_f64())
        .expect("a memory.usage point");
    // Other programs' memory comes and goes: the agent's reading lies within what /proc showed
    // while it ran (half a point for rounding and for a change between two of our reads).
    let (least, most) = memory.stop();
    assert!(least - 0.5 <= reported && reported <= most + 0.5, "memory.usage {reported}, /proc showed {least:.1}–{most:.1}");
    wait(&serve, &agent, "cpu.usage has points", Duration::from_secs(60), || {
        serve.get("/api/v1/projects/shop/servers/web-01/metrics?name=cpu.usage")["points"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x["avg"].as_f64().is_some_and(|v| (0.0..=100.0).contains(&v))))
    });
    let list = serve.get("/api/v1/projects/shop/servers");
    let row = list["servers"].as_array().unwrap().iter().find(|s| s["name"] == "web-01").unwrap().clone();
    assert!(row["cpu_percent"].as_f64().is_some() && row["memory_percent"].as_f64().is_some(), "server list columns: {row:#}");

    // 2. CPU-burning processes fire the ProcessPolicy (cpu ≥ 2 % for 2 s: what they get however
    //    busy the machine is) and resolve when they stop; the alert keeps a snapshot of the
    //    busiest processes.
    let burner = Burner::start(work);
    wait(&serve, &agent, "the process cpu alert fires", Duration::from_secs(90), || {
        alert_with_rule(&serve, "process:burner:cpu", "firing").is_some()
    });
    let fired = alert_with_rule(&serve, "process:burner:cpu", "firing").unwrap();
    let detail = serve.get(&format!("/api/v1/projects/shop/alerts/{}", fired["id"]));
    let top = &detail["top_processes"]["cpu"];
    // Other builds may outrun the burners, so the snapshot's list is held to its order, not to them.
    let cpu: Vec<f64> = top.as_array().unwrap().iter().map(|p| p["cpu"].as_f64().unwrap_or(0.0)).collect();
    assert!(!cpu.is_empty() && cpu.windows(2).all(|w| w[0] >= w[1]), "snapshot: {detail:#}");
    assert!(fired["message"].as_str().unwrap_or_default().contains("wk-burner"), "{fired:#}");
    drop(burner);
    wait(&serve, &agent, "the process cpu alert resolves", Duration::from_secs(90), || {
        alert_with_rule(&serve, "process:burner:cpu", "resolved").is_some_and(|a| a["id"] == fired["id"])
    });
    smtp.wait_for(2, Duration::from_secs(60));

    // 3. A log line with the keyword raises an event (the old line is not re-read).
    let mut f = fs::OpenOptions::new().append(true).open(&log_file).unwrap();
    writeln!(f, "2026-11-22 java.lang.OutOfMemoryError: Java heap space").unwrap();
    drop(f);
    wait(&serve, &agent, "the log event is recorded", Duration::from_secs(60), || {
        alerts(&serve).iter().any(|a| a["rule"] == "log:app-errors:0")
    });
    let events: Vec<Value> = alerts(&serve).into_iter().filter(|a| a["rule"] == "log:app-errors:0").collect();
    assert_eq!(events.len(), 1, "one event, not the old line too: {events:#?}");
    assert!(events[0]["message"].as_str().unwrap().contains("Java heap space"), "{events:#?}");

    // 4. Down-check: service port closed → service_down (warning); both closed → host_down (fatal).
    wait(&serve, &agent, "the down-check says up", Duration::from_secs(60), || down_check(&serve)["verdict"] == "up");
    let service_port = service.close();
    let rule = format!("downcheck:web-01-to-db-01-{service_port}");
    wait(&serve, &agent, "service_down fires as a warning", Duration::from_secs(60), || alert_with_rule(&serve, &rule, "firing").is_some());
    assert_eq!(down_check(&serve)["verdict"], "service_down");
    let firing = alert_with_rule(&serve, &rule, "firing").unwrap();
    assert_eq!(firing["severity"], "warning");
    assert_eq!(firing["subject"], service_port.to_string());
    assert_eq!(firing["server"], "db-01", "the alert is on the target");
    let liveness_port = liveness.close();
    wait(&serve, &agent, "host_down escalates to fatal", Duration::from_secs(60), || {
        alert_with_rule(&serve, &rule, "firing").is_some_and(|a| a["severity"] == "fatal")
    });
    assert_eq!(down_check(&serve)["verdict"], "host_down");
    let service = Listener::open(service_port);
    let liveness = Listener::open(liveness_port);
    wait(&serve, &agent, "the down-check resolves", Duration::from_secs(60), || alert_with_rule(&serve, &rule, "firing").is_none());
    let downcheck_alerts = alerts(&serve).into_iter().filter(|a| a["rule"] == rule).count();

    // 5. The detector stops: its verdict is unknown and no alert is raised on the target even
    //    though the service port is closed now; "no data" fires on the detector itself.
    agent.stop();
    drop(service);
    wait(&serve, &agent, "no data fires for the silent agent", Duration::from_secs(60), || {
        alert_with_rule(&serve, "nodata", "firing").is_some()
    });
    let silent = alert_with_rule(&serve, "nodata", "firing").unwrap();
    wait(&serve, &agent, "the down-check verdict is unknown", Duration::from_secs(60), || down_check(&serve)["verdict"] == "unknown");
    thread::sleep(Duration::from_secs(3)); // three check intervals with the service port closed
    let now = alerts(&serve).into_iter().filter(|a| a["rule"] == rule).count();
    assert_eq!(now, downcheck_alerts, "nothing new on the target while its detector is silent");
    drop(liveness);

    // 6. The agent returns: its no-data alert resolves.
    let agent = Agent::start(&serve, "web-01", work, &["--interval", "1s"]);
    wait(&serve, &agent, "no data resolves", Duration::from_secs(60), || {
        alert_with_rule(&serve, "nodata", "resolved").is_some_and(|a| a["id"] == silent["id"])
    });
    let mails = smtp.messages();
    assert!(mails.iter().any(|m| m.subject.contains("no data")), "{:#?}", mails.iter().map(|m| &m.subject).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_survive_a_serve_restart_within_the_agents_backlog() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (args, _) = quiet_tree(work);
    let mut serve = start_serve(&args, work);
    let agent = Agent::start(&serve, "web-01", work, &["--interval", "250ms", "--backlog", "1000"]);
    wait(&serve, &agent, "reports arrive", Duration::from_secs(30), || {
        serve.get("/api/v1/projects/shop/servers/web-01")["facts"]["boot_time"].as_u64().is_some()
    });
    let port = serve.port;
    serve.kill();
    let killed_at = watchkeeper::clock::now_ms();
    let outage = Duration::from_secs(4);
    thread::sleep(outage); // ~16 reports wait in the agent's backlog
    let mut serve = Serve::start_on(&args, &[], &work.join("serve.log"), port);
    // The status shows the revision the store recorded before the restart until the new process
    // has read the tree (once it has settled): wait for the server itself.
    let auth = format!("Bearer {}", crate::support::serve::OPERATOR);
    serve.wait_until("web-01 is known again", Duration::from_secs(60), || {
        serve.request("GET", "/api/v1/projects/shop/servers/web-01", &[("Authorization", &auth)], b"").0 == 200
    });
    let restarted_at = watchkeeper::clock::now_ms();
    wait(&serve, &agent, "reports from after the restart arrive", Duration::from_secs(60), || {
        serve.get("/api/v1/projects/shop/servers/web-01/metrics?name=memory.usage")["points"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x["at_ms"].as_i64().is_some_and(|t| t > restarted_at + 1_000)))
    });
    drop(agent);
    serve.terminate();

    // Every 250 ms a report, and serve was away for more than `outage`: the reports sampled
    // meanwhile were stored. A loaded machine may delay a sample, so the bound is not the interval
    // but the outage: losing the backlog leaves a gap at least as long as serve was away.
    let store = watchkeeper::store::Store::connect(&format!("sqlite://{}", work.join("wk.db").display())).await.unwrap();
    let rows = store.raw_samples("shop", "web-01", 0, i64::MAX).await.unwrap();
    let during = rows.iter().filter(|(at, _)| (killed_at..restarted_at).contains(at)).count();
    assert!(during >= 2, "{during} of the reports sampled while serve was down were stored ({} in all)", rows.len());
    let times: Vec<i64> = rows.iter().map(|(at, _)| *at).collect();
    let worst = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        worst < outage.as_millis() as i64,
        "a gap of {worst} ms in the stored reports, as long as serve was away: the backlog was lost across the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ingest_requests_get_clear_errors_and_store_nothing() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (args, tree) = quiet_tree(work);
    let serve = start_serve(&args, work);
    let now = watchkeeper::clock::now_ms();
    let report = |server: &str| {
        json!({
            "project": "shop",
            "server": server,
            "reports": [{
                "facts": { "os": "Debian", "kernel": "6.1", "cpu_vendor": "x", "cpu_model": "y", "cpu_count": 2,
                           "ram_total_bytes": 1024, "boot_time": 1, "uptime_secs": 1, "ips": [] },
                "metrics": [{ "name": "cpu.usage", "value": 12.5 }],
                "processes": [], "process_counts": {}, "at_ms": now,
            }],
        })
        .to_string()
    };
    let post = |key: Option<&str>, body: &[u8]| {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        serve.request("POST", "/ingest/v1/report", &headers, body)
    };

    let (status, body) = post(None, report("web-01").as_bytes());
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(Some("wrong-key"), report("web-01").as_bytes());
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not valid for any project"), "{body}");
    let (status, body) = post(Some(KEY), b"{\"project\": \"shop\", \"server\": ");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("malformed report"), "{body}");
    let (status, body) = post(Some(KEY), report("web-01").replace("cpu.usage", "cpu.usagee").as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown metric `cpu.usagee`"), "{body}");
    let (status, body) = post(Some(KEY), report("web-99").as_bytes());
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown server `web-99`"), "{body}");
    let huge = vec![b' '; watchkeeper::protocol::MAX_BODY_BYTES + 1];
    let (status, body) = post(Some(KEY), &huge);
    assert_eq!(status, 413, "{body}");
    let stale = report("web-01").replace(&now.to_string(), "1000");
    let (status, body) = post(Some(KEY), stale.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at_ms"), "{body}");
    let (status, _) = serve.request("GET", "/ingest/v1/report", &[], b"");
    assert_eq!(status, 405);

    // Nothing of the above reached the store or the live view.
    assert!(serve.get("/api/v1/projects/shop/servers/web-01")["facts"].is_null());
    let metrics = serve.text("/metrics");
    for reason in ["unauthorized", "malformed", "unknown_server", "too_large", "invalid"] {
        assert!(metrics.contains(&format!("watchkeeper_ingest_rejected_total{{reason=\"{reason}\"}}")), "{reason}:\n{metrics}");
    }

    // A good one is stored and answered with the server's assignments.
    let (status, body) = post(Some(KEY), report("web-01").as_bytes());
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["assignments"]["down_checks"][0]["port"], tree.service);
    assert_eq!(answer["assignments"]["log_rules"][0]["keyword"], "OutOfMemoryError");
    let detail = serve.get("/api/v1/projects/shop/servers/web-01");
    assert_eq!(detail["facts"]["os"], "Debian", "{detail:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_exporter_server_is_scraped_stored_and_alerted_on_like_an_agent() {
    install_crypto();
    let Some(binary) = crate::support::exporter::required() else { return };
    let exporter = crate::support::exporter::start(&reqwest::Client::new(), &binary).await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let dir = work.join("tree");
    fs::create_dir_all(&dir).unwrap();
    let operator_hash = watchkeeper::token::sha256_hex(crate::support::serve::OPERATOR);
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {operator_hash}\n---\n\
             kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\n---\n\
             kind: Server\nname: metal-01\nproject: shop\nhost: 127.0.0.1\npolicy: scraped\n\
             metrics: {{ source: node_exporter, url: \"{}\" }}\n---\n\
             kind: AlertPolicy\nname: scraped\nproject: shop\nrestart: true\n\
             rules:\n  - {{ metric: memory.usage, warning: 0.1 }}\n",
            exporter.url
        ),
    )
    .unwrap();
    let env = [("WATCHKEEPER_SCRAPE_INTERVAL_MS", "500".to_string())];
    let serve = Serve::start(&serve_args(&dir, work), &env, &work.join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    serve.wait_until("metal-01 is scraped", Duration::from_secs(30), || {
        serve.get("/api/v1/projects/shop/servers/metal-01")["facts"]["boot_time"].as_u64() == Some(proc_boot_time())
    });
    // Rates need two scrapes; then the chart has cpu.usage points from node_exporter's counters.
    serve.wait_until("cpu.usage is charted", Duration::from_secs(30), || {
        serve.get("/api/v1/projects/shop/servers/metal-01/metrics?name=cpu.usage")["points"].as_array().is_some_and(|p| !p.is_empty())
    });
    let (_, mem_usage) = proc_memory();
    let reported = serve.get("/api/v1/projects/shop/servers/metal-01/metrics?name=memory.usage")["points"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["avg"].as_f64())
        .expect("a memory.usage point");
    assert!((reported - mem_usage).abs() < 5.0, "memory.usage {reported} vs /proc {mem_usage}");
    // The policy applies to scraped values as to pushed ones.
    serve.wait_until("the memory rule fires", Duration::from_secs(30), || {
        alert_with_rule(&serve, "metric:memory.usage", "firing").is_some()
    });
    let metrics = serve.text("/metrics");
    assert!(metrics.contains("watchkeeper_ingest_reports_total{source=\"node_exporter\"}"), "{metrics}");
}
