//! A bounded load generator on loopback: starts a controller in this process (SQLite in a
//! temporary folder, or a throwaway PostgreSQL server), enrols `--hosts` agents, starts a rollout
//! (so check-ins take the offer path too), then sends `--checkins` signed check-ins from
//! `--concurrency` threads (each host only ever from one thread, in `seq` order), stopping early
//! after `--max-secs`. Prints check-ins per second and latency percentiles. With `--reports nats`
//! the reports go through a NATS JetStream server it starts on loopback (Debian's `nats-server`)
//! and the controller's aggregator; it also prints how long the aggregator took to fold them all.
//!
//! ```sh
//! cargo build --workspace --example loadgen   # docs/controlplane.md has the flags it was measured with
//! target/debug/examples/loadgen --db sqlite --hosts 1000 --checkins 10000 --concurrency 16 --max-secs 20
//! target/debug/examples/loadgen --db postgres --hosts 1000 --checkins 10000 --concurrency 16 --max-secs 20
//! target/debug/examples/loadgen --db sqlite --reports nats --hosts 1000 --checkins 10000 --concurrency 16 --max-secs 20
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rulebox_controller::SqliteSync;
use rulebox_controller::reports::{BusConfig, ReportIntake};
use rulebox_controller::testing::{
    ENROLL_SECRET, FakeAgent, OperatorClient, TestContent, TestNats, TestPostgres, labels, report,
};
use rulebox_controlplane_proto::ReportKind;

struct Args {
    db: String,
    hosts: usize,
    checkins: usize,
    concurrency: usize,
    reports: usize,
    max_secs: u64,
    sqlite_sync: SqliteSync,
    nats: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        db: "sqlite".into(),
        hosts: 2000,
        checkins: 40_000,
        concurrency: 32,
        reports: 1,
        max_secs: 120,
        sqlite_sync: SqliteSync::Full,
        nats: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--db" => a.db = value()?,
            "--hosts" => a.hosts = num(value()?)?,
            "--checkins" => a.checkins = num(value()?)?,
            "--concurrency" => a.concurrency = num(value()?)?,
            "--reports-per-checkin" => a.reports = num(value()?)?,
            "--max-secs" => a.max_secs = num(value()?)? as u64,
            "--sqlite-sync" => {
                a.sqlite_sync = match value()?.as_str() {
                    "full" => SqliteSync::Full,
                    "normal" => SqliteSync::Normal,
                    other => return Err(format!("--sqlite-sync full|normal, not {other}")),
                }
            }
            "--reports" => {
                a.nats = match value()?.as_str() {
                    "db" => false,
                    "nats" => true,
                    other => return Err(format!("--reports db|nats, not {other}")),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    // Bounded: this is a measurement, not a soak test.
    a.hosts = a.hosts.clamp(1, 100_000);
    a.checkins = a.checkins.clamp(1, 2_000_000);
    a.concurrency = a.concurrency.clamp(1, 256).min(a.hosts);
    a.reports = a
        .reports
        .min(rulebox_controlplane_proto::MAX_REPORTS_PER_CHECKIN);
    a.max_secs = a.max_secs.clamp(1, 600);
    Ok(a)
}

/// The `per_mille`/1000 quantile of `sorted` (nearest rank).
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) * per_mille + 500) / 1000;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = parse()?;
    let content = TestContent::new()?;
    let pg;
    let url = match args.db.as_str() {
        "sqlite" => content.sqlite_url("load.db"),
        "postgres" => {
            pg = TestPostgres::start(true)?
                .ok_or("no PostgreSQL server binaries on this machine")?;
            pg.url.clone()
        }
        other => return Err(format!("--db sqlite|postgres, not {other}").into()),
    };
    let office = [("office", rulebox_example_artifacts::OFFICE_SHELL.bytes)];
    content.publish_release(41, &office)?;
    content.publish_release(42, &office)?;
    let mut config = content.config(url, 1)?;
    config.sqlite_sync = args.sqlite_sync;
    config.max_connections = 32;
    config.tick_interval = Duration::from_secs(1);
    config.lease_ttl = Duration::from_secs(5);
    let nats = if args.nats {
        let nats = TestNats::start()?.ok_or("no nats-server on this machine")?;
        config.reports = ReportIntake::Bus {
            config: BusConfig::new(nats.url.clone()),
            aggregate: true,
        };
        Some(nats)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let running = rt.block_on(rulebox_controller::start(config))?;
    let base = format!("http://{}", running.addr());

    eprintln!("enrolling {} hosts...", args.hosts);
    let next = AtomicUsize::new(0);
    let enrolled: Vec<FakeAgent> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= args.hosts {
                            break;
                        }
                        let mut a =
                            FakeAgent::enroll(&base, ENROLL_SECRET, labels(&format!("h{i}")))
                                .expect("enrol")
                                .expect("enrolment refused");
                        a.state.release = Some(41);
                        let hb = a.report(ReportKind::Heartbeat);
                        a.checkin(vec![hb]).expect("check in").expect("refused");
                        mine.push(a);
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let op = OperatorClient::new(&base, &content.token);
    let plan = rulebox_rollout::RolloutPlan::standard(42, Some(41));
    let (status, body) = op.post(
        "/v1/rollouts",
        &serde_json::json!({ "plan": plan, "reason": "load run" }),
    )?;
    if status != 201 {
        return Err(format!("rollout refused: {body}").into());
    }

    // Each thread owns a slice of the hosts and checks them in, in turn.
    let mut groups: Vec<Vec<FakeAgent>> = (0..args.concurrency).map(|_| Vec::new()).collect();
    for (i, a) in enrolled.into_iter().enumerate() {
        groups[i % args.concurrency].push(a);
    }
    let sent = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    eprintln!(
        "sending {} check-ins from {} threads ({} report(s) each)...",
        args.checkins, args.concurrency, args.reports
    );
    let start = Instant::now();
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = groups
            .into_iter()
            .map(|mut agents| {
                let sent = Arc::clone(&sent);
                let reports = args.reports;
                let total = args.checkins;
                s.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    let mut i = 0;
                    while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < total
                    {
                        let n = agents.len();
                        let a = &mut agents[i % n];
                        i += 1;
                        let batch = (0..reports)
                            .map(|_| report(ReportKind::Heartbeat, a.state.release, 0))
                            .collect();
                        let t = Instant::now();
                        match a.checkin(batch) {
                            Ok(Ok(_)) => latencies.push(t.elapsed()),
                            _ => errors += 1,
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let elapsed = start.elapsed();
    let errors: usize = results.iter().map(|(_, e)| e).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|(l, _)| l).collect();
    all.sort_unstable();
    let ok = all.len();
    // On the bus path: until the aggregator folded every accepted check-in (the enrolment round's
    // too), bounded.
    let folded = nats.as_ref().map(|_| {
        let stats = std::sync::Arc::clone(&running.service().aggregator);
        let want = (ok + args.hosts) as u64;
        let limit = Instant::now() + Duration::from_secs(args.max_secs);
        while stats.figures().checkins < want && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
        (stats.figures(), start.elapsed())
    });
    println!(
        "{}{} ({}): {} hosts, {} check-ins ok, {} failed, {} report(s) each, {} threads, {:.1} s: {:.0} check-ins/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.db,
        if args.nats { " via nats" } else { "" },
        match (args.db.as_str(), args.sqlite_sync) {
            ("sqlite", SqliteSync::Full) => "synchronous=FULL",
            ("sqlite", SqliteSync::Normal) => "synchronous=NORMAL",
            _ => "fsync on",
        },
        args.hosts,
        ok,
        errors,
        args.reports,
        args.concurrency,
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        percentile(&all, 500).as_secs_f64() * 1e3,
        percentile(&all, 900).as_secs_f64() * 1e3,
        percentile(&all, 990).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    if let Some((figures, at)) = folded {
        println!(
            "aggregator: {} check-ins ({} reports) folded {:.1} s after the first check-in ({:.0} check-ins/s end to end), {} duplicates, {} malformed, {} failed batches",
            figures.checkins,
            figures.reports,
            at.as_secs_f64(),
            figures.checkins.saturating_sub(args.hosts as u64) as f64 / at.as_secs_f64(),
            figures.duplicates,
            figures.malformed,
            figures.failed_batches
        );
    }
    rt.block_on(running.shutdown());
    drop(nats);
    Ok(())
}
