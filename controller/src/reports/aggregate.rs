//! The aggregator: reads the report log through a durable consumer and folds each check-in's
//! reports into the `reports` table the tick reads, a batch per transaction, acknowledging the
//! messages only after that transaction committed.
//!
//! Stopped anywhere, it loses nothing and counts nothing twice: a message not yet acknowledged is
//! delivered again after the consumer's ack wait, and a check-in already folded (its
//! `(host_id, seq)` is in the `intake` table, written in the same transaction as its reports) is
//! skipped. A message that is not a check-in's reports is counted, logged and terminated (never
//! delivered again), and the batch goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::bus::{Bus, IntakeMessage};
use crate::clock::Clock;
use crate::error::{BusError, StoreError};
use crate::store::{Store, TxKind, hosts, intake};

/// How long one fetch waits for messages.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// How often the `intake` table is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What the aggregator did, since it started.
#[derive(Debug, Default)]
pub struct AggregatorStats {
    /// Check-ins whose reports were folded.
    pub checkins: AtomicU64,
    /// Reports folded.
    pub reports: AtomicU64,
    /// Messages of check-ins already folded (delivered again, or published twice).
    pub duplicates: AtomicU64,
    /// Messages that were not a check-in's reports (dropped, each logged).
    pub malformed: AtomicU64,
    /// Batches whose transaction failed (their messages come again).
    pub failed_batches: AtomicU64,
}

/// A snapshot of [`AggregatorStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatorFigures {
    /// Check-ins whose reports were folded.
    pub checkins: u64,
    /// Reports folded.
    pub reports: u64,
    /// Messages of check-ins already folded.
    pub duplicates: u64,
    /// Messages that were not a check-in's reports.
    pub malformed: u64,
    /// Batches whose transaction failed.
    pub failed_batches: u64,
}

impl AggregatorStats {
    /// The figures now.
    pub fn figures(&self) -> AggregatorFigures {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AggregatorFigures {
            checkins: get(&self.checkins),
            reports: get(&self.reports),
            duplicates: get(&self.duplicates),
            malformed: get(&self.malformed),
            failed_batches: get(&self.failed_batches),
        }
    }
}

/// A batch folded and committed, whose messages are still to be acknowledged.
#[derive(Debug)]
#[must_use = "a folded batch is acknowledged, or comes again after the ack wait"]
pub struct Folded {
    messages: Vec<(jetstream::Message, AckKind)>,
}

impl Folded {
    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the batch was empty.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// The aggregator (see the module docs).
#[derive(Debug)]
pub struct Aggregator {
    bus: Bus,
    store: Store,
    clock: Clock,
    consumer: jetstream::consumer::PullConsumer,
    stats: Arc<AggregatorStats>,
    last_prune: Option<Instant>,
}

impl Aggregator {
    /// Creates (or opens) the durable consumer on the bus's stream.
    pub async fn new(
        bus: Bus,
        store: Store,
        clock: Clock,
        stats: Arc<AggregatorStats>,
    ) -> Result<Aggregator, BusError> {
        let config = bus.config().clone();
        let stream = bus
            .jetstream()
            .get_stream(&config.stream)
            .await
            .map_err(|e| BusError::Stream(e.to_string()))?;
        let consumer = stream
            .get_or_create_consumer(
                &config.consumer,
                pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_ack_pending: i64::try_from(config.batch.saturating_mul(4))
                        .unwrap_or(i64::MAX),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| BusError::Consumer(e.to_string()))?;
        Ok(Aggregator {
            bus,
            store,
            clock,
            consumer,
            stats,
            last_prune: None,
        })
    }

    /// Its figures.
    pub fn stats(&self) -> &Arc<AggregatorStats> {
        &self.stats
    }

    /// Takes up to a batch of messages, waiting a little for the first.
    pub async fn take(&self) -> Result<Vec<jetstream::Message>, BusError> {
        let mut batch = self
            .consumer
            .batch()
            .max_messages(self.bus.config().batch)
            .expires(FETCH_WAIT)
            .messages()
            .await
            .map_err(|e| BusError::Consumer(e.to_string()))?;
        let mut messages = Vec::new();
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => messages.push(m),
                Err(e) => {
                    if messages.is_empty() {
                        return Err(BusError::Consumer(e.to_string()));
                    }
                    break;
                }
            }
        }
        Ok(messages)
    }

    /// Folds `messages` into the `reports` table in one transaction and commits it. Nothing is
    /// acknowledged yet.
    pub async fn fold(&mut self, messages: Vec<jetstream::Message>) -> Result<Folded, BusError> {
        match self.fold_in_tx(messages).await {
            Ok(folded) => Ok(folded),
            Err(e) => {
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    async fn fold_in_tx(&mut self, messages: Vec<jetstream::Message>) -> Result<Folded, BusError> {
        let mut tx = self.store.begin(TxKind::Write).await?;
        let mut out = Vec::with_capacity(messages.len());
        let mut figures = AggregatorFigures::default();
        for m in messages {
            let parsed = IntakeMessage::parse(&m.payload);
            let msg = match parsed {
                Ok(msg) => msg,
                Err(why) => {
                    let stream_seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
                    tracing::error!(
                        subject = %m.subject.as_str().escape_debug(),
                        stream_seq,
                        why = %why.escape_debug(),
                        "a message on the report stream is not a check-in's reports: dropped"
                    );
                    figures.malformed += 1;
                    out.push((m, AckKind::Term));
                    continue;
                }
            };
            if intake::claim(&mut tx, &msg.host_id, msg.seq, msg.received_at).await? {
                let rows: Vec<(u64, String)> = msg
                    .reports
                    .iter()
                    .map(|r| serde_json::to_string(&r.report).map(|j| (r.host_unix, j)))
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::from)?;
                hosts::insert_reports(&mut tx, &msg.host_id, msg.seq, msg.received_at, &rows)
                    .await?;
                figures.checkins += 1;
                figures.reports += rows.len() as u64;
            } else {
                figures.duplicates += 1;
            }
            out.push((m, AckKind::Ack));
        }
        if self.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            // A message older than the stream's age limit is gone: its id cannot come again. Kept
            // twice as long, in controller time.
            let keep = self
                .bus
                .config()
                .max_age
                .as_secs()
                .saturating_mul(u64::from(self.clock.scale()))
                .saturating_mul(2);
            intake::prune(&mut tx, self.clock.now().saturating_sub(keep)).await?;
            self.last_prune = Some(Instant::now());
        }
        tx.commit().await.map_err(StoreError::from)?;
        let s = &self.stats;
        s.checkins.fetch_add(figures.checkins, Ordering::Relaxed);
        s.reports.fetch_add(figures.reports, Ordering::Relaxed);
        s.duplicates
            .fetch_add(figures.duplicates, Ordering::Relaxed);
        s.malformed.fetch_add(figures.malformed, Ordering::Relaxed);
        Ok(Folded { messages: out })
    }

    /// Acknowledges a committed batch (a lost acknowledgement only means the batch comes again and
    /// is skipped).
    pub async fn acknowledge(&self, folded: Folded) -> Result<(), BusError> {
        for (m, kind) in folded.messages {
            m.ack_with(kind)
                .await
                .map_err(|e| BusError::Consumer(format!("acknowledgement: {e}")))?;
        }
        self.bus
            .client()
            .flush()
            .await
            .map_err(|e| BusError::Consumer(format!("acknowledgement: {e}")))
    }

    /// One round: take, fold, commit, acknowledge. Returns the messages handled.
    pub async fn step(&mut self) -> Result<usize, BusError> {
        let messages = self.take().await?;
        if messages.is_empty() {
            return Ok(0);
        }
        let folded = self.fold(messages).await?;
        let n = folded.len();
        self.acknowledge(folded).await?;
        Ok(n)
    }

    /// Runs until `stop` turns true; a failure is logged and retried after a second.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let result = tokio::select! {
                r = self.step() => r,
                _ = stop.changed() => break,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "aggregating reports failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}
