//! Report intake through NATS JetStream, on a real `nats-server` the test starts on a loopback
//! port in a temporary folder (without the Debian package `nats-server` the tests say they
//! skipped): the same recorded reports give the same gate verdicts through the bus as through the
//! database, tick by tick; a check-in is counted once however often it comes; a stopped
//! aggregator loses and double-counts nothing; a bus that is down turns check-ins into `503`.

use std::sync::Arc;

use rulebox_controller::reports::{
    Aggregator, AggregatorStats, Bus, BusConfig, IntakeMessage, IntakeReport, ReportIntake,
    ReportSink,
};
use rulebox_controller::store::{CheckinRecord, NewHost, TxKind, hosts, intake, lease, rollouts};
use rulebox_controller::testing::TestNats;
use rulebox_controller::{Service, ticker};
use rulebox_controlplane_proto::HostContentState;
use rulebox_rollout::{HARD_MIN_BAKE_SECS, Phase};
use sqlx::Row;

use super::*;

fn nats() -> Option<TestNats> {
    let n = TestNats::start().unwrap();
    if n.is_none() {
        eprintln!("SKIPPED: no nats-server on this machine (Debian package `nats-server`)");
    }
    n
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn bus_config(nats: &TestNats) -> BusConfig {
    let mut c = BusConfig::new(nats.url.clone());
    c.ack_wait = Duration::from_secs(1);
    c
}

/// A controller over its own content and SQLite database.
struct Side {
    content: TestContent,
    running: Option<RunningController>,
    op: OperatorClient,
    base: String,
}

impl Side {
    fn svc(&self) -> &Arc<Service> {
        self.running.as_ref().unwrap().service()
    }
}

/// Starts a controller taking reports through `reports`. With `manual`, the test ticks: the
/// ticker takes the lease and then sleeps for an hour.
fn side(rt: &tokio::runtime::Runtime, reports: ReportIntake, manual: bool) -> Side {
    let content = TestContent::new().unwrap();
    let old = [("office", rulebox_example_artifacts::OFFICE_SHELL.bytes)];
    let new = [
        ("office", rulebox_example_artifacts::OFFICE_SHELL.bytes),
        ("lsass", rulebox_example_artifacts::LSASS_ACCESS.bytes),
    ];
    content.publish_release(41, &old).unwrap();
    content.publish_release(42, &new).unwrap();
    let scale = if manual { 1 } else { SCALE };
    let mut config = content
        .config(content.sqlite_url("controller.db"), scale)
        .unwrap();
    config.sqlite_sync = SqliteSync::Normal;
    config.reports = reports;
    config.bake_floor_secs = HARD_MIN_BAKE_SECS;
    if manual {
        config.tick_interval = Duration::from_secs(3600);
        config.lease_ttl = Duration::from_secs(4 * 3600);
    }
    let running = rt.block_on(rulebox_controller::start(config)).unwrap();
    let base = format!("http://{}", running.addr());
    if manual {
        let svc = Arc::clone(running.service());
        let start = Instant::now();
        while !rt.block_on(async {
            let mut conn = svc.store.pool().acquire().await.unwrap();
            lease::holds(&mut conn, &svc.holder, rulebox_controller::Clock::real_ms())
                .await
                .unwrap()
        }) {
            assert!(start.elapsed() < Duration::from_secs(20), "no lease");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Side {
        op: OperatorClient::new(&base, &content.token),
        content,
        running: Some(running),
        base,
    }
}

fn shutdown(rt: &tokio::runtime::Runtime, side: &mut Side) {
    if let Some(r) = side.running.take() {
        rt.block_on(r.shutdown());
    }
}

/// Enrols hosts with fixed ids (so both controllers assign the same rings), each seen now on
/// release 41.
async fn seed_hosts(svc: &Service, n: usize) -> Vec<String> {
    let now = svc.clock.now();
    let mut tx = svc.store.begin(TxKind::Write).await.unwrap();
    let state = HostContentState {
        release: Some(41),
        last_known_good: Some(41),
        ..HostContentState::default()
    };
    let mut ids = Vec::new();
    for i in 0..n {
        let host_id = format!("{:032x}", i + 1);
        hosts::enroll(
            &mut tx,
            &NewHost {
                host_id: host_id.clone(),
                public_key: format!("{:064x}", i + 1),
                labels: labels(&format!("ws-{i:03}")),
                enrolled_at: now,
            },
        )
        .await
        .unwrap();
        hosts::record_checkin(
            &mut tx,
            &CheckinRecord {
                host_id: &host_id,
                seq: 0,
                body_sha256: "",
                response: "",
                state: &state,
                now,
                dropped: 0,
            },
        )
        .await
        .unwrap();
        ids.push(host_id);
    }
    tx.commit().await.unwrap();
    ids
}

/// Feeds one check-in's reports through the controller's sink, as the check-in handler does.
async fn feed(svc: &Service, host_id: &str, seq: u64, now: u64, reports: &[HealthReport]) {
    let stamped: Vec<(u64, HealthReport)> = reports
        .iter()
        .map(|r| {
            (
                r.at_unix,
                HealthReport {
                    at_unix: now,
                    ..r.clone()
                },
            )
        })
        .collect();
    let mut tx = svc.store.begin(TxKind::Write).await.unwrap();
    let pending = svc
        .reports
        .stage(
            &mut tx,
            svc.store.dialect(),
            host_id,
            seq,
            now,
            &stamped,
            false,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    pending.finish().await.unwrap();
}

fn bus_of(svc: &Service) -> &Bus {
    match &svc.reports {
        ReportSink::Bus(bus) => bus,
        ReportSink::Direct => panic!("not on the bus path"),
    }
}

async fn reports_stored(svc: &Service) -> i64 {
    let mut conn = svc.store.pool().acquire().await.unwrap();
    sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM reports")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// Rows per `(host_id, seq)` in `reports`.
async fn rows_per_checkin(svc: &Service) -> std::collections::BTreeMap<(String, i64), i64> {
    let mut conn = svc.store.pool().acquire().await.unwrap();
    sqlx::query("SELECT host_id, seq, CAST(COUNT(*) AS BIGINT) FROM reports GROUP BY host_id, seq")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                (r.try_get(0).unwrap(), r.try_get(1).unwrap()),
                r.try_get(2).unwrap(),
            )
        })
        .collect()
}

/// The current rollout's phase and the ring of each host.
async fn phase_and_rings(svc: &Service, ids: &[String]) -> (Phase, Vec<usize>) {
    let mut conn = svc.store.pool().acquire().await.unwrap();
    let row = rollouts::current(&mut conn, svc.store.dialect(), false)
        .await
        .unwrap()
        .unwrap();
    let mut rings = Vec::new();
    for id in ids {
        rings.push(
            rollouts::ring_of(&mut conn, row.id, id)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    (row.core.phase, rings)
}

/// Removes what depends on when each controller started its rollout (ring 0's start, hence
/// seconds left to bake); the instants of later rings are the ticks', the same on both.
fn without_bake_left(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.remove("remaining_secs");
            if map.get("ring") == Some(&Value::from(0)) {
                map.remove("since");
            }
            for (_, x) in map.iter_mut() {
                *x = without_bake_left(x.take());
            }
        }
        Value::Array(items) => {
            for x in items.iter_mut() {
                *x = without_bake_left(x.take());
            }
        }
        _ => {}
    }
    v
}

fn evaluations(side: &Side, id: i64) -> Vec<Value> {
    let (status, body) = side
        .op
        .get(&format!(
            "/v1/audit?rollout={id}&kind=gate_evaluation&limit=10000"
        ))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let mut records: Vec<Value> = body["records"]
        .as_array()
        .or_else(|| body.as_array())
        .cloned()
        .unwrap_or_default();
    records.sort_by_key(|r| r["id"].as_i64());
    records
        .into_iter()
        .map(|r| without_bake_left(r["detail"].clone()))
        .collect()
}

fn start(side: &Side) -> i64 {
    let ring = |percent| RingPlan {
        percent,
        bake_secs: 1_200,
    };
    let plan = RolloutPlan {
        release: 42,
        previous: Some(41),
        rings: vec![ring(5.0), ring(25.0), ring(50.0), ring(100.0)],
        gates: GateConfig::default(),
        emergency: false,
        region_order: Vec::new(),
    };
    let (status, body) = side
        .op
        .post(
            "/v1/rollouts",
            &json!({ "plan": plan, "reason": "weekly content" }),
        )
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

#[test]
fn the_bus_path_gives_the_same_gate_verdicts_as_the_direct_path_tick_by_tick() {
    let Some(nats) = nats() else { return };
    let rt = runtime();
    let mut direct = side(&rt, ReportIntake::Direct, true);
    let mut on_bus = side(
        &rt,
        ReportIntake::Bus {
            config: bus_config(&nats),
            aggregate: false,
        },
        true,
    );
    const HOSTS: usize = 40;
    let ids = rt.block_on(seed_hosts(direct.svc(), HOSTS));
    assert_eq!(rt.block_on(seed_hosts(on_bus.svc(), HOSTS)), ids);
    let id_direct = start(&direct);
    let id_bus = start(&on_bus);
    let stats = Arc::new(AggregatorStats::default());
    let svc_b = Arc::clone(on_bus.svc());
    let mut aggregator = rt
        .block_on(Aggregator::new(
            bus_of(&svc_b).clone(),
            svc_b.store.clone(),
            svc_b.clock,
            Arc::clone(&stats),
        ))
        .unwrap();

    // The recorded fleet: ring 0 healthy; from ring 1 on, hosts that take the release quarantine
    // a rule. Every host checks in every two minutes (controller time), from 30 s after the start.
    let t0 = direct.svc().clock.now().max(on_bus.svc().clock.now()) + 30;
    let mut took = [false; HOSTS];
    let mut seq = [1u64; HOSTS];
    let mut fed = 0u64;
    let mut phases = Vec::new();
    let mut republished = 0;
    for step in 0..60usize {
        let now = t0 + 120 * step as u64;
        let (phase_a, rings) = rt.block_on(phase_and_rings(direct.svc(), &ids));
        let (phase_b, rings_b) = rt.block_on(phase_and_rings(on_bus.svc(), &ids));
        assert_eq!(rings, rings_b, "the same hosts are in the same rings");
        assert_eq!(
            without_bake_left(serde_json::to_value(&phase_a).unwrap()),
            without_bake_left(serde_json::to_value(&phase_b).unwrap()),
            "phase before step {step}"
        );
        phases.push(serde_json::to_value(&phase_a).unwrap());
        let open = match phase_a {
            Phase::Rolling { ring, .. } => Some(ring),
            Phase::Complete { .. } => Some(usize::MAX),
            _ => None,
        };
        if step > 0 && open.is_none() {
            break;
        }
        for (i, host) in ids.iter().enumerate() {
            let reports = if !took[i] && open.is_some_and(|o| rings[i] <= o) {
                took[i] = true;
                vec![
                    report(ReportKind::Installing { release: 42 }, Some(41), 0),
                    report(ReportKind::Good { release: 42 }, Some(42), 0),
                ]
            } else if took[i] {
                let q = u32::from(rings[i] >= 1);
                vec![report(ReportKind::Heartbeat, Some(42), q)]
            } else {
                vec![report(ReportKind::Heartbeat, Some(41), 0)]
            };
            rt.block_on(feed(direct.svc(), host, seq[i], now, &reports));
            rt.block_on(feed(&svc_b, host, seq[i], now, &reports));
            fed += 1;
            if (i + step).is_multiple_of(7) {
                // The same check-in published again: the stream drops it (its id is in the
                // window), and one published under another id is dropped by the aggregator.
                let message = IntakeMessage {
                    format: 1,
                    host_id: host.clone(),
                    seq: seq[i],
                    received_at: now,
                    reports: reports
                        .iter()
                        .map(|r| IntakeReport {
                            host_unix: r.at_unix,
                            report: HealthReport {
                                at_unix: now,
                                ..r.clone()
                            },
                        })
                        .collect(),
                };
                let bus = bus_of(&svc_b);
                let subject = bus.config().subject(Some(id_bus), Some(rings[i]));
                assert!(rt.block_on(bus.publish(subject.clone(), &message)).unwrap());
                rt.block_on(async {
                    bus.jetstream()
                        .send_publish(
                            subject,
                            async_nats::jetstream::message::PublishMessage::build()
                                .payload(serde_json::to_vec(&message).unwrap().into())
                                .message_id(format!("another-id-{}", message.message_id())),
                        )
                        .await
                        .unwrap()
                        .await
                        .unwrap()
                });
                republished += 1;
            }
            seq[i] += 1;
        }
        // The aggregator catches up with the stream, then both controllers tick at the same
        // instant.
        let deadline = Instant::now() + Duration::from_secs(30);
        while stats.figures().checkins < fed {
            rt.block_on(aggregator.step()).unwrap();
            assert!(Instant::now() < deadline, "{:?}", stats.figures());
        }
        rt.block_on(ticker::tick_at(direct.svc(), now)).unwrap();
        rt.block_on(ticker::tick_at(&svc_b, now)).unwrap();
        let a = evaluations(&direct, id_direct);
        let b = evaluations(&on_bus, id_bus);
        assert_eq!(a, b, "gate evaluations after step {step}");
        assert_eq!(a.len(), step + 1, "one evaluation per tick");
    }
    // Drain what is left (the duplicates published under other ids) and check it changed nothing.
    while rt.block_on(aggregator.step()).unwrap() > 0 {}
    let f = stats.figures();
    assert_eq!(f.checkins, fed, "{f:?}");
    assert_eq!(f.duplicates, republished, "{f:?}");
    assert_eq!(f.malformed, 0);
    let direct_rows = rt.block_on(rows_per_checkin(direct.svc()));
    assert_eq!(rt.block_on(rows_per_checkin(&svc_b)), direct_rows);

    // The run covered a ring opening and a halt on the quarantine gate, on both sides alike.
    let a = evaluations(&direct, id_direct);
    assert!(
        a.iter().any(|e| e["ring"] == 1),
        "ring 1 opened: {phases:#?}"
    );
    let last = a.last().unwrap();
    assert!(
        last["failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x.get("quarantine").is_some())),
        "{last:#}"
    );
    assert_eq!(phase(&view_of(&direct, id_direct)), "halted");
    assert_eq!(phase(&view_of(&on_bus, id_bus)), "halted");
    drop(aggregator);
    shutdown(&rt, &mut direct);
    shutdown(&rt, &mut on_bus);
}

fn view_of(side: &Side, id: i64) -> Value {
    let (status, body) = side.op.get(&format!("/v1/rollouts/{id}")).unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn an_aggregator_stopped_anywhere_loses_and_double_counts_nothing() {
    let Some(nats) = nats() else { return };
    let rt = runtime();
    let mut side = side(
        &rt,
        ReportIntake::Bus {
            config: bus_config(&nats),
            aggregate: false,
        },
        true,
    );
    let svc = Arc::clone(side.svc());
    let ids = rt.block_on(seed_hosts(&svc, 20));
    let stats = Arc::new(AggregatorStats::default());
    let new_aggregator = || {
        rt.block_on(Aggregator::new(
            bus_of(&svc).clone(),
            svc.store.clone(),
            svc.clock,
            Arc::clone(&stats),
        ))
        .unwrap()
    };
    let now = svc.clock.now();
    let mut expected = std::collections::BTreeMap::new();
    let checkin = |host: usize, seq: u64| -> Vec<HealthReport> {
        (0..1 + (host + usize::try_from(seq).unwrap()) % 3)
            .map(|_| report(ReportKind::Heartbeat, Some(41), 0))
            .collect()
    };
    for seq in 1..=5u64 {
        for (i, host) in ids.iter().enumerate() {
            let reports = checkin(i, seq);
            rt.block_on(feed(&svc, host, seq, now, &reports));
            expected.insert((host.clone(), seq as i64), reports.len() as i64);
        }
    }
    // Something on the stream that is not a check-in's reports.
    rt.block_on(async {
        bus_of(&svc)
            .jetstream()
            .publish("rulebox.reports.none.none", "not a report".into())
            .await
            .unwrap()
            .await
            .unwrap()
    });

    // Stopped between its commit and its acknowledgement: the batch comes again after the ack
    // wait, and is skipped.
    let mut first = new_aggregator();
    let taken = rt.block_on(first.take()).unwrap();
    assert!(!taken.is_empty());
    let folded = rt.block_on(first.fold(taken)).unwrap();
    let unacknowledged = folded.len() as u64;
    drop(folded);
    drop(first);
    let after_first = stats.figures();
    assert!(after_first.checkins > 0);

    // Killed at random moments while check-ins keep coming.
    let feeder = {
        let svc = Arc::clone(&svc);
        let ids = ids.clone();
        let mut more = Vec::new();
        for seq in 6..=15u64 {
            for (i, host) in ids.iter().enumerate() {
                let reports = checkin(i, seq);
                expected.insert((host.clone(), seq as i64), reports.len() as i64);
                more.push((host.clone(), seq, reports));
            }
        }
        rt.spawn(async move {
            for (host, seq, reports) in more {
                feed(&svc, &host, seq, now, &reports).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for kill in 0..6u64 {
        let aggregator = new_aggregator();
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = rt.spawn(aggregator.run(stop_rx));
        std::thread::sleep(Duration::from_millis(40 + 53 * kill));
        task.abort();
        let _ = rt.block_on(task);
    }
    rt.block_on(feeder).unwrap();

    // A last aggregator runs until the stream is drained and nothing waits for an ack.
    let mut last = new_aggregator();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = rt.block_on(last.step()).unwrap();
        let info = rt.block_on(async {
            let stream = bus_of(&svc)
                .jetstream()
                .get_stream(&bus_of(&svc).config().stream)
                .await
                .unwrap();
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
                .get_consumer(&bus_of(&svc).config().consumer)
                .await
                .unwrap();
            consumer.info().await.unwrap().clone()
        });
        if n == 0 && info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {info:?}");
    }
    let f = stats.figures();
    assert_eq!(rt.block_on(rows_per_checkin(&svc)), expected, "{f:?}");
    // (A commit the kill interrupted after it reached the database is counted as a duplicate
    // when its batch comes again: the figures may undercount folds, the table never.)
    assert!(f.checkins <= expected.len() as u64, "{f:?}");
    // The first batch held the malformed message too; it is counted at each delivery.
    assert!(
        f.duplicates + 1 >= unacknowledged,
        "the unacknowledged batch came again: {f:?}"
    );
    assert!(f.malformed >= 1, "{f:?}");
    let folded = rt.block_on(async {
        let mut conn = svc.store.pool().acquire().await.unwrap();
        intake::count(&mut conn).await.unwrap()
    });
    assert_eq!(folded, expected.len() as u64);
    shutdown(&rt, &mut side);
}

#[test]
fn with_the_bus_down_a_checkin_is_refused_with_503_and_nothing_is_counted_until_it_is_back() {
    let Some(mut nats) = nats() else { return };
    let rt = runtime();
    let mut side = side(
        &rt,
        ReportIntake::Bus {
            config: bus_config(&nats),
            aggregate: true,
        },
        false,
    );
    let svc = Arc::clone(side.svc());
    let mut agent = FakeAgent::enroll(&side.base, ENROLL_SECRET, labels("ws-001"))
        .unwrap()
        .unwrap();
    agent.state.release = Some(41);
    let hb = agent.report(ReportKind::Heartbeat);
    agent.checkin(vec![hb.clone(), hb]).unwrap().unwrap();
    let wait_for = |n: i64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while rt.block_on(reports_stored(&svc)) != n {
            assert!(Instant::now() < deadline, "{:?}", svc.aggregator.figures());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(2);

    nats.stop();
    // The same reports, kept by the host, sent while the bus is down: every attempt is refused
    // with 503 (retry later), none is counted.
    let kept = vec![
        agent.report(ReportKind::Heartbeat),
        agent.report(ReportKind::Installing { release: 42 }),
        agent.report(ReportKind::Heartbeat),
    ];
    for _ in 0..3 {
        let refusal = agent.checkin(kept.clone()).unwrap().unwrap_err();
        assert_eq!(refusal.status, 503, "{refusal:?}");
        assert_eq!(refusal.body.error, ErrorCode::Unavailable, "{refusal:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rt.block_on(reports_stored(&svc)), 2);

    // Back: the next attempt is accepted once the client reconnected, and its reports are
    // counted exactly once.
    nats.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match agent.checkin(kept.clone()).unwrap() {
            Ok(_) => break,
            Err(refusal) => {
                assert_eq!(refusal.status, 503, "{refusal:?}");
                assert!(Instant::now() < deadline, "the bus did not come back");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    wait_for(5);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rt.block_on(reports_stored(&svc)), 5);
    shutdown(&rt, &mut side);
    drop(side.content);
}
