//! Storm control end to end: the real serve binary, one ingest request opening 500 alerts, and
//! aiosmtpd counting the mails that reach the one recipient.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::agent::KEY;
use crate::support::serve::{OPERATOR, Serve};
use crate::support::smtp::{Mail, SmtpServer};

const MOUNTS: usize = 500;

/// One report of web-01 with every mount's `disk.usage` at `percent`.
fn disks(percent: f64) -> Value {
    web01_disks(MOUNTS, percent)
}

/// One report of shop's web-01, timed now, with `mounts` mounts (`/mnt/d000`…) at `percent`
/// disk usage.
pub(crate) fn web01_disks(mounts: usize, percent: f64) -> Value {
    let metrics: Vec<Value> =
        (0..mounts).map(|i| json!({ "name": "disk.usage", "subject": format!("/mnt/d{i:03}"), "value": percent })).collect();
    json!({
        "project": "shop",
        "server": "web-01",
        "reports": [{
            "facts": { "os": "Debian", "kernel": "6.1", "cpu_vendor": "x", "cpu_model": "y", "cpu_count": 2,
                       "ram_total_bytes": 1024, "boot_time": 1, "uptime_secs": 1, "ips": [] },
            "metrics": metrics, "processes": [], "process_counts": {}, "at_ms": watchkeeper::clock::now_ms(),
        }],
    })
}

/// A tree with shop's web-01 under a policy firing at 90 % disk usage, mailing alice through the
/// SMTP server on `smtp_port`, with the operator token and the test agents' ingest key.
pub(crate) fn write_disks_tree(dir: &std::path::Path, smtp_port: u16) {
    let (operator, key) = (watchkeeper::token::sha256_hex(OPERATOR), watchkeeper::token::sha256_hex(KEY));
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {operator}\n---\n\
             kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {}, tls: none }}\nfrom: \"wk <alerts@example.com>\"\n---\n\
             kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\nchannels: [mail]\ningest_key_sha256: {key}\n---\n\
             kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\npolicy: disks\n---\n\
             kind: AlertPolicy\nname: disks\nproject: shop\nrules:\n  - {{ metric: disk.usage, fatal: 90 }}\n",
            smtp_port
        ),
    )
    .unwrap();
}

/// The mounts (`d000`…) a mail names, in its subject and body.
fn mounts_named(mail: &Mail) -> BTreeSet<String> {
    let text = format!("{}\n{}", mail.subject, mail.body);
    (0..MOUNTS).map(|i| format!("/mnt/d{i:03}")).filter(|m| text.contains(m.as_str())).collect()
}

#[test]
fn one_request_opening_500_alerts_sends_ten_mails_and_one_digest_listing_the_rest_and_likewise_on_resolve() {
    crate::support::install_crypto();
    let smtp = SmtpServer::start();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let dir = work.join("tree");
    fs::create_dir_all(&dir).unwrap();
    write_disks_tree(&dir, smtp.port);
    // A window far longer than 500 alerts take to process, so they all fall into one; room for
    // 1 000 mounts, so all 500 open an alert.
    let args: Vec<String> = [
        "--config",
        &dir.display().to_string(),
        "--db",
        &format!("sqlite://{}", work.join("wk.db").display()),
        // Long enough that 500 transitions fall in one window on a loaded machine (20 s was
        // not: a second window opened and told ten more one by one).
        "--storm-window",
        "60s",
        "--max-mounts",
        "1000",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let serve = Serve::start(&args, &[], &work.join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    let firing = || serve.metric("watchkeeper_alerts_firing{severity=\"fatal\"}");

    let (status, text) = serve.ingest(KEY, &disks(95.0));
    assert_eq!(status, 200, "{text}");
    serve.wait_until("500 alerts fire", Duration::from_secs(120), || firing() == Some(MOUNTS as f64));
    let (status, text) = serve.ingest(KEY, &disks(10.0));
    assert_eq!(status, 200, "{text}");
    serve.wait_until("every alert resolves", Duration::from_secs(120), || firing() == Some(0.0));

    // 10 fired one by one, one digest of the other 490; the same for the resolves.
    smtp.wait_for(22, Duration::from_secs(240));
    serve.wait_until("the outbox is empty", Duration::from_secs(30), || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    let mails = smtp.messages();
    assert_eq!(mails.len(), 22, "{:#?}", mails.iter().map(|m| &m.subject).collect::<Vec<_>>());
    for (kind, word) in [("fired", "FATAL"), ("resolved", "RESOLVED")] {
        let digest_subject = format!("[watchkeeper] 490 more alerts {kind} in shop");
        let digests: Vec<&Mail> = mails.iter().filter(|m| m.subject == digest_subject).collect();
        assert_eq!(digests.len(), 1, "one {kind} digest: {:#?}", mails.iter().map(|m| &m.subject).collect::<Vec<_>>());
        let singles: Vec<&Mail> =
            mails.iter().filter(|m| m.subject != digest_subject && m.subject.to_ascii_uppercase().contains(word)).collect();
        assert_eq!(singles.len(), 10, "{kind}: {:#?}", singles.iter().map(|m| &m.subject).collect::<Vec<_>>());
        // Every alert is told exactly once: one by one, or on its own line of the digest.
        let listed = mounts_named(digests[0]);
        assert_eq!(digests[0].body.lines().filter(|l| l.starts_with("- ")).count(), 490, "{}", digests[0].body);
        assert_eq!(listed.len(), 490);
        let single: BTreeSet<String> = singles.iter().flat_map(|m| mounts_named(m)).collect();
        assert_eq!(single.len(), 10);
        assert!(single.is_disjoint(&listed));
        assert_eq!(single.len() + listed.len(), MOUNTS);
    }
}
