//! Benchmark: `watchkeeper lint` on a target-sized tree (10 000 servers, 10 000 port monitors,
//! 1 000 AlertPolicies), against the target of ≤ 1 s and ≤ 200 MB on a 2-core machine.
//!
//! Run with `cargo bench --bench lint`. It prints figures; it asserts nothing about time, only
//! that the generated tree lints clean (otherwise it would be timing error reporting).
//!
//! Steps:
//! 1. generate a realistic tree into a temporary directory (`treegen`);
//! 2. lint it once in-process through the library (`config::load_dir`) and require zero
//!    diagnostics; print a read / parse / compile breakdown measured in-process;
//! 3. build the release binary (`cargo build --release --bin watchkeeper`) and time
//!    `watchkeeper lint DIR` as a child process: one warm-up, then `WK_BENCH_RUNS` runs,
//!    reporting min / median / max wall time, CPU time and the child's peak RSS (measured from
//!    a small helper process, see `measure`).
//!
//! Environment (defaults are the target size):
//! `WK_BENCH_SERVERS` (10000), `WK_BENCH_MONITORS` (10000), `WK_BENCH_POLICIES` (1000),
//! `WK_BENCH_PROJECTS` (100), `WK_BENCH_GROUPS` (4), `WK_BENCH_USERS` (200),
//! `WK_BENCH_DOWNCHECKS` (servers / 10), `WK_BENCH_SCALE` (a factor applied to servers, monitors,
//! policies and down-checks before the explicit overrides), `WK_BENCH_RUNS` (5),
//! `WK_BENCH_BIN` (a prebuilt `watchkeeper` binary: skips the cargo build),
//! `WK_BENCH_KEEP` (set: keep the generated tree and print its path).

mod common;
mod treegen;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use watchkeeper::config::diagnostic::SourceFile;
use watchkeeper::config::{self, Diagnostics, Library, Sources, compile, load};

/// The targets for lint.
const TARGET_SECONDS: f64 = 1.0;
const TARGET_MB: f64 = 200.0;

fn env_usize(name: &str) -> Option<usize> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().replace('_', "").parse().unwrap_or_else(|_| panic!("{name}={value}: not a whole number")))
}

fn size_from_env() -> treegen::Size {
    let mut size = treegen::Size::spec();
    if let Ok(scale) = std::env::var("WK_BENCH_SCALE") {
        let f: f64 = scale.trim().parse().unwrap_or_else(|_| panic!("WK_BENCH_SCALE={scale}: not a number"));
        let scaled = |n: usize| ((n as f64 * f).round() as usize).max(1);
        size.servers = scaled(size.servers);
        size.monitors = scaled(size.monitors);
        size.policies = scaled(size.policies);
        size.down_checks = scaled(size.down_checks);
    }
    if let Some(n) = env_usize("WK_BENCH_SERVERS") {
        size.servers = n;
        if env_usize("WK_BENCH_DOWNCHECKS").is_none() {
            size.down_checks = n / 10;
        }
    }
    size.monitors = env_usize("WK_BENCH_MONITORS").unwrap_or(size.monitors);
    size.policies = env_usize("WK_BENCH_POLICIES").unwrap_or(size.policies);
    size.projects = env_usize("WK_BENCH_PROJECTS").unwrap_or(size.projects);
    size.groups = env_usize("WK_BENCH_GROUPS").unwrap_or(size.groups);
    size.users = env_usize("WK_BENCH_USERS").unwrap_or(size.users);
    size.down_checks = env_usize("WK_BENCH_DOWNCHECKS").unwrap_or(size.down_checks);
    size
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// First argument of the bench binary re-run as a measuring helper (see [`measure`]).
const MEASURE: &str = "--wk-bench-measure";

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 5 && args[1] == MEASURE {
        let run = run_lint(Path::new(&args[2]), Path::new(&args[3]), Path::new(&args[4]));
        println!("{} {} {} {}", run.wall.as_nanos(), run.cpu.as_nanos(), run.max_rss_kib, run.exit.unwrap_or(-1));
        return;
    }
    // Any other arguments (`cargo bench` passes `--bench`, perhaps a filter) are ignored.
    let size = size_from_env();
    let runs = env_usize("WK_BENCH_RUNS").unwrap_or(5).max(1);

    let tmp = tempfile::Builder::new().prefix("wk-bench-lint-").tempdir().expect("temporary directory");
    let dir = tmp.path().to_path_buf();
    let started = Instant::now();
    let stats = treegen::generate(&dir, &size).expect("writing the tree");
    println!(
        "tree: {} servers, {} port monitors, {} alert policies, {} down-checks, {} process + {} log policies, \
         {} projects in {} groups, {} users",
        stats.servers,
        stats.monitors,
        stats.alert_policies,
        stats.down_checks,
        stats.process_policies,
        stats.log_policies,
        size.projects,
        size.groups.clamp(1, 5),
        size.users
    );
    println!(
        "tree: {} files, {} documents, {:.1} MB ({} bytes), generated in {}",
        stats.files,
        stats.documents,
        stats.bytes as f64 / 1e6,
        stats.bytes,
        ms(started.elapsed())
    );

    // 1. The library's lint path, once: the tree must be clean.
    let started = Instant::now();
    let loaded = config::load_dir(&dir, &Library::Builtin);
    let in_process = started.elapsed();
    if !loaded.diagnostics.is_empty() {
        let (errors, warnings) = watchkeeper::lint::counts(&loaded.diagnostics);
        let report = watchkeeper::lint::render(
            &loaded.diagnostics[..loaded.diagnostics.len().min(20)],
            &loaded.sources,
            0,
            watchkeeper::lint::Format::Human,
        );
        panic!("the generated tree must lint clean, but has {errors} errors and {warnings} warnings; the first:\n{report}");
    }
    assert_eq!(loaded.sources.tree_files, stats.files, "lint read a different number of files than were written");
    let servers: usize = loaded.config.projects.values().map(|p| p.servers.len()).sum();
    let monitors: usize = loaded.config.projects.values().map(|p| p.port_monitors.len()).sum();
    let policies: usize = loaded.config.projects.values().map(|p| p.alert_policies.len()).sum();
    assert_eq!((servers, monitors, policies), (stats.servers, stats.monitors, stats.alert_policies), "compiled model size");
    println!("in-process load_dir: {} — 0 errors, 0 warnings, {} files", ms(in_process), loaded.sources.tree_files);
    drop(loaded);

    // 2. Where the time goes, in-process (best of 3 each).
    phase_breakdown(&dir);

    // 3. The real binary, as CI runs it.
    let bin = common::release_binary();
    println!("binary: {}", bin.display());
    // Hidden and not *.yaml: lint does not read it.
    let out = dir.join(".lint-output");
    let warm = measure(&bin, &dir, &out);
    check_clean(&warm, &out);
    let mut samples: Vec<Run> = (0..runs)
        .map(|_| {
            let run = measure(&bin, &dir, &out);
            check_clean(&run, &out);
            run
        })
        .collect();
    let mut cpu: Vec<Duration> = samples.iter().map(|r| r.cpu).collect();
    cpu.sort();
    samples.sort_by_key(|r| r.wall);
    let median = samples[samples.len() / 2].wall;
    let peak_kib = samples.iter().map(|r| r.max_rss_kib).max().unwrap_or(0);
    let peak_mb = peak_kib as f64 * 1024.0 / 1e6;
    println!(
        "wall over {runs} runs (after 1 warm-up): min {:.3} s, median {:.3} s, max {:.3} s; peak RSS {:.1} MB (max over runs; warm-up {:.1} MB)",
        secs(samples[0].wall),
        secs(median),
        secs(samples[samples.len() - 1].wall),
        peak_mb,
        warm.max_rss_kib as f64 * 1024.0 / 1e6,
    );
    println!(
        "cpu (user + sys) over {runs} runs: min {:.3} s, median {:.3} s, max {:.3} s",
        secs(cpu[0]),
        secs(cpu[cpu.len() / 2]),
        secs(cpu[cpu.len() - 1])
    );
    let verdict = |ok: bool| if ok { "ok" } else { "OVER TARGET" };
    println!(
        "lint {} servers / {} monitors / {} policies: median {:.3} s (target ≤ {TARGET_SECONDS} s: {}), peak RSS {:.0} MB (target ≤ {TARGET_MB} MB: {})",
        stats.servers,
        stats.monitors,
        stats.alert_policies,
        secs(median),
        verdict(secs(median) <= TARGET_SECONDS),
        peak_mb,
        verdict(peak_mb <= TARGET_MB),
    );
    let spec = treegen::Size::spec();
    if (stats.servers, stats.monitors, stats.alert_policies) != (spec.servers, spec.monitors, spec.policies) {
        println!("note: the targets are for {} / {} / {}; this run is scaled", spec.servers, spec.monitors, spec.policies);
    }
    if std::env::var_os("WK_BENCH_KEEP").is_some() {
        println!("tree kept at {}", tmp.keep().display());
    }
}

/// Read, parse and compile timed separately through the library's own steps (what
/// `config::load_dir` does; the built-in policy library is parsed once, outside the timings).
/// Warm figures (best of 3 in one process, heap already grown): a fresh `watchkeeper lint`
/// also pays page faults and allocator growth, so compare proportions, not sums, with its wall time.
fn phase_breakdown(dir: &Path) {
    let best = |f: &mut dyn FnMut() -> Duration| (0..3).map(|_| f()).min().expect("three runs");
    let mut diags = Diagnostics::default();
    let read = best(&mut || {
        let t = Instant::now();
        let sources = load::read_dir(dir, &mut Diagnostics::default());
        let d = t.elapsed();
        drop(sources);
        d
    });
    let sources = load::read_dir(dir, &mut diags);
    let parse = best(&mut || {
        let t = Instant::now();
        let docs = load::parse(&sources, &mut Diagnostics::default());
        let d = t.elapsed();
        drop(docs);
        d
    });
    // The built-in policies, for servers of projects too small to get a local one.
    let mut builtin = Sources::default();
    for (name, text) in config::BUILTIN_POLICIES {
        builtin.add(SourceFile { path: name.into(), text: text.to_string() });
    }
    let library = load::parse(&builtin, &mut Diagnostics::default());
    let now_ms = 0;
    let compile = best(&mut || {
        let docs = load::parse(&sources, &mut Diagnostics::default());
        let mut diags = Diagnostics::default();
        let t = Instant::now();
        let config = compile::compile(docs, library.clone(), &sources, now_ms, &mut diags);
        let d = t.elapsed();
        assert!(diags.items.is_empty(), "compile alone reported problems that load_dir did not");
        drop(config);
        d
    });
    // What-if: the same parse split over two threads (the target machine has 2 cores), files
    // divided into two halves of about equal size. Only timed; the result is dropped.
    let bytes: usize = sources.files.iter().map(|f| f.text.len()).sum();
    let mut halves = [Sources::default(), Sources::default()];
    let mut seen = 0;
    for file in &sources.files {
        halves[usize::from(seen >= bytes / 2)].files.push(file.clone());
        seen += file.text.len();
    }
    let parallel = best(&mut || {
        let t = Instant::now();
        std::thread::scope(|s| {
            let workers: Vec<_> = halves.iter().map(|half| s.spawn(|| load::parse(half, &mut Diagnostics::default()).len())).collect();
            workers.into_iter().map(|w| w.join().expect("parse thread")).sum::<usize>()
        });
        t.elapsed()
    });
    let total = read + parse + compile;
    let pct = |d: Duration| 100.0 * secs(d) / secs(total).max(f64::MIN_POSITIVE);
    println!(
        "phases (in-process, best of 3): read_dir {} ({:.0}%), parse {} ({:.0}%, {:.0} MB/s), compile {} ({:.0}%), sum {}",
        ms(read),
        pct(read),
        ms(parse),
        pct(parse),
        bytes as f64 / 1e6 / secs(parse),
        ms(compile),
        pct(compile),
        ms(total)
    );
    println!("what-if: parse on 2 threads {} (vs {} on one)", ms(parallel), ms(parse));
}

struct Run {
    wall: Duration,
    /// User + system CPU time of the child: steadier than wall time on a busy machine.
    cpu: Duration,
    /// Peak resident set of the child, KiB.
    max_rss_kib: u64,
    exit: Option<i32>,
}

/// [`run_lint`], run from a fresh, small helper process: this bench binary re-executed with
/// [`MEASURE`], printing `wall_ns cpu_ns max_rss_kib exit` for the parent to read.
///
/// Why a helper: Linux carries the *parent's* memory high-water mark into a child's
/// `ru_maxrss`. A spawned child starts as a copy of (fork) or a sharer of (vfork/posix_spawn)
/// its parent's address space, and at `execve` the kernel folds that old address space's
/// peak RSS into the process's `maxrss` (`setmax_mm_hiwater_rss` in `exec_mmap`). Spawned
/// from this process, which has just held a whole parsed 10 000-server tree, `watchkeeper lint`
/// would be reported at this process's peak (seen: 82 MB against a true 45 MB). The helper's
/// own peak is a few MB, far below what it measures.
fn measure(bin: &Path, dir: &Path, out: &Path) -> Run {
    let exe = std::env::current_exe().expect("path of this bench binary");
    let output = Command::new(exe).arg(MEASURE).arg(bin).arg(dir).arg(out).stderr(Stdio::inherit()).output().expect("measuring helper");
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<i128> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let [wall, cpu, rss, exit] = fields[..] else { panic!("measuring helper printed {text:?} ({})", output.status) };
    Run {
        wall: Duration::from_nanos(wall as u64),
        cpu: Duration::from_nanos(cpu as u64),
        max_rss_kib: rss as u64,
        exit: (exit >= 0).then_some(exit as i32),
    }
}

/// Run `bin lint dir` with stdout and stderr in `out`; wall time, CPU time and peak RSS of
/// that one child. Call it through [`measure`] (see there why).
///
/// Peak RSS comes from `wait4(pid, …, &mut rusage)`: the kernel's high-water mark of the child's
/// resident set (`ru_maxrss`, KiB on Linux), reported for exactly that process when it is reaped.
/// `getrusage(RUSAGE_CHILDREN)` would be wrong: it is the maximum over *all* reaped children,
/// including the `cargo build` above, so it never goes down. Reading `VmHWM` from
/// `/proc/<pid>/status` is racy: it has to happen after the work is done but before the exit.
fn run_lint(bin: &Path, dir: &Path, out: &Path) -> Run {
    let stdout = File::create(out).expect("output file");
    let stderr = stdout.try_clone().expect("output file");
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("lint")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed `rusage` is a valid value of that plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; `status` and `usage` are valid for writes.
        // We reap it here, so `child.wait()` must not be called (dropping `Child` does not wait).
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(err.kind(), std::io::ErrorKind::Interrupted, "wait4: {err}");
    }
    let wall = started.elapsed();
    drop(child);
    // ru_maxrss is in KiB on Linux and the BSDs, in bytes on macOS.
    let max_rss_kib = if cfg!(target_os = "macos") { usage.ru_maxrss as u64 / 1024 } else { usage.ru_maxrss as u64 };
    let exit = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Run { wall, cpu, max_rss_kib, exit }
}

fn check_clean(run: &Run, out: &Path) {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    assert!(
        run.exit == Some(0) && text.contains("0 errors, 0 warnings"),
        "watchkeeper lint did not pass cleanly ({:?}):\n{text}",
        run.exit
    );
}
