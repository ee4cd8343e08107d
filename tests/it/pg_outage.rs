//! A PostgreSQL outage during a port outage: serve on a PostgreSQL cluster of the test's own,
//! which the test stops for 20 s while the monitored port is down. Afterwards every check of the
//! outage is stored once, the alert fired once and started at the first failure, and the fired
//! and resolved mails went out once each (real aiosmtpd).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};

use crate::support::free_port;
use crate::support::serve::{Listener, OPERATOR, Serve};
use crate::support::smtp::SmtpServer;

/// The PostgreSQL server programs (initdb, pg_ctl), newest version first.
fn pg_bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("initdb").is_file()).collect())
        .unwrap_or_default();
    dirs.sort_by_key(|d| d.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    dirs.pop().expect("PostgreSQL's server programs under /usr/lib/postgresql/*/bin (run the tests with `bash scripts/test.sh`)")
}

/// A PostgreSQL cluster of this test's own on a free port, run by the `postgres` user as
/// scripts/test.sh runs its cluster (initdb refuses root); stopped on drop.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::Builder::new().prefix("wk-pg-outage").tempdir_in("/var/tmp").unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let cluster = Cluster { bin: pg_bindir(), port: free_port(), dir };
        let status = Command::new("chown").args(["-R", "postgres:"]).arg(cluster.dir.path()).status().unwrap();
        assert!(status.success(), "chown the cluster's directory to postgres");
        let initdb = cluster.bin.join("initdb");
        cluster.as_postgres(&[
            initdb.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]);
        let conf = "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n";
        let mut text = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(conf);
        fs::write(data.join("postgresql.conf"), text).unwrap();
        cluster.pg_ctl("start");
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Run a program as the postgres user, from `/`, and insist that it succeeds.
    fn as_postgres(&self, args: &[&str]) {
        let out = Command::new("runuser").args(["-u", "postgres", "--"]).args(args).current_dir("/").output().expect("runuser");
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// `pg_ctl start` (waiting until it accepts connections) or `pg_ctl stop -m fast`.
    fn pg_ctl(&self, action: &str) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let port = format!("-p {}", self.port);
        let mut args = vec![pg_ctl.to_str().unwrap(), "-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-t", "60"];
        match action {
            "start" => args.extend(["-o", &port, "start"]),
            _ => args.extend(["-m", "fast", "stop"]),
        }
        self.as_postgres(&args);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_ctl)
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "stop"])
            .current_dir("/")
            .output();
    }
}

/// One user, one e-mail channel to aiosmtpd, and the `web` monitor on `port` (1 s interval),
/// which fires on the `failures`-th failed check in a row.
pub(crate) fn write_tree(dir: &Path, smtp: u16, port: u16, failures: u32) {
    fs::create_dir_all(dir).unwrap();
    let token_hash = watchkeeper::token::sha256_hex(OPERATOR);
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {token_hash}\nnotify: {{ email: true }}\n---\n\
             kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {smtp}, tls: none }}\nfrom: \"watchkeeper <alerts@example.com>\"\n---\n\
             kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\nchannels: [mail]\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nhost: 127.0.0.1\nports: [{port}]\ninterval: 1s\ntimeout: 500ms\nfailures: {failures}\n"
        ),
    )
    .unwrap();
}

/// Checks of the `web` monitor this serve made that succeeded (`ok`) or failed (`failed`: refused,
/// or timed out on a machine too loaded to see the refusal within the timeout).
fn checks(serve: &Serve, outcome: &str) -> f64 {
    let prefix = r#"watchkeeper_probes_total{project="shop",monitor="web",result=""#;
    let metrics = serve.text("/metrics");
    let results = metrics.lines().filter_map(|l| l.strip_prefix(prefix)?.split_once("\"} "));
    results.filter(|(result, _)| (*result == "ok") == (outcome == "ok")).map(|(_, n)| n.trim().parse::<f64>().expect("a number")).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_during_a_port_outage_loses_no_check_and_mails_once_each_way() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let web = Listener::open(free_port());
    let port = web.port;
    write_tree(&work.path().join("tree"), smtp.port, port, 3);
    let args: Vec<String> = vec!["--config".into(), work.path().join("tree").display().to_string(), "--db".into(), cluster.url()];
    let serve = Serve::start(&args, &[], &work.path().join("serve.log"));
    serve.wait_until("the port is checked up", Duration::from_secs(60), || checks(&serve, "ok") >= 2.0);

    // The port goes down, and the database with it for 20 s.
    web.close();
    let failed_before = checks(&serve, "failed");
    assert_eq!(failed_before, 0.0);
    cluster.pg_ctl("stop");
    thread::sleep(Duration::from_secs(20));
    let failed_while_down = checks(&serve, "failed");
    assert!(failed_while_down >= 10.0, "checks went on while the database was down: {failed_while_down}\n{}", serve.log());
    cluster.pg_ctl("start");
    serve.wait_until("the alert fires", Duration::from_secs(90), || serve.firing().len() == 1);
    smtp.wait_for(1, Duration::from_secs(60));

    // The port comes back; the alert resolves.
    let web = Listener::open(port);
    serve.wait_until("the alert resolves", Duration::from_secs(60), || serve.firing().is_empty());
    smtp.wait_for(2, Duration::from_secs(60));
    serve.wait_until("nothing waits", Duration::from_secs(60), || {
        serve.metric("watchkeeper_probe_results_waiting") == Some(0.0) && serve.metric("watchkeeper_outbox_depth") == Some(0.0)
    });
    drop(web);
    let failed = checks(&serve, "failed");
    let total = failed + checks(&serve, "ok");
    let log = serve.log();
    assert!(log.contains("could not record probe results"), "the store was down while checks came in:\n{log}");
    assert_eq!(serve.metric("watchkeeper_probe_results_dropped_total"), Some(0.0));

    // Every check is stored, once: each failure as an event, every check in its hour's count.
    let mut db = PgConnection::connect(&cluster.url()).await.unwrap();
    let events = sqlx::query("SELECT e.at_ms FROM probe_events e JOIN probe_targets t ON t.id = e.target WHERE t.monitor = 'web' AND e.reason IS NOT NULL ORDER BY e.at_ms")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let failures: Vec<i64> = events.iter().map(|r| r.get("at_ms")).collect();
    assert_eq!(failures.len() as f64, failed, "every failed check stored once: {failures:?}\n{log}");
    let stored: i64 =
        sqlx::query("SELECT SUM(h.checks)::BIGINT AS n FROM probe_hours h JOIN probe_targets t ON t.id = h.target WHERE t.monitor = 'web'")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get("n");
    assert_eq!(stored as f64, total, "every check counted once");

    // One alert, started at the first failure; one mail each way.
    let alerts = serve.get("/api/v1/projects/shop/alerts")["alerts"].as_array().cloned().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["started_at_ms"].as_i64(), failures.first().copied(), "{alerts:#?}");
    assert_eq!(alerts[0]["status"], "resolved", "{alerts:#?}");
    let mails = smtp.messages();
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects[0].contains("Alert fired") && subjects[1].contains("Resolved"), "{subjects:?}");
}
