//! Where a check-in's reports go: straight into the `reports` table in the check-in's own
//! transaction (the direct path), or onto the report log after that transaction commits (the bus
//! path), for the aggregator to fold into the same table. Either way the tick folds the same rows
//! into the hosts' tracks and computes the cohorts' figures with the one gate implementation.
//!
//! On the bus path the check-in is answered only after the stream confirmed the publish: a bus that
//! is down or slow turns the check-in into `503 unavailable`, the host keeps its reports in its
//! spool and sends them again with its next check-in (a new `seq`). Nothing accepted is dropped,
//! and nothing refused is counted: the check-in's transaction stores no report on this path.

use rulebox_controlplane_proto::{ErrorCode, HealthReport};

use super::bus::{Bus, BusConfig, INTAKE_FORMAT, IntakeMessage, IntakeReport};
use crate::error::{ApiError, BusError};
use crate::store::{Dialect, Tx, hosts, rollouts};

/// How the controller takes reports in (`--reports`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportIntake {
    /// One row per report, written by the check-in's transaction.
    #[default]
    Direct,
    /// Through a NATS JetStream stream.
    Bus {
        /// The stream.
        config: BusConfig,
        /// Whether this process also runs the aggregator (any number of controllers may: they
        /// share one durable consumer).
        aggregate: bool,
    },
}

/// The check-in handler's report sink (see the module docs).
#[derive(Debug, Clone)]
pub enum ReportSink {
    /// Rows in the check-in's transaction.
    Direct,
    /// The report log.
    Bus(Box<Bus>),
}

/// What is left to do with a check-in's reports once its transaction committed.
#[derive(Debug)]
#[must_use = "the reports of a check-in on the bus path are published after its commit"]
pub enum Pending<'a> {
    /// Nothing: the rows were written in the transaction.
    Done,
    /// Publish this message on this subject.
    Publish {
        /// The bus.
        bus: &'a Bus,
        /// The cohort's subject.
        subject: String,
        /// The message.
        message: IntakeMessage,
    },
}

impl ReportSink {
    /// Refuses a check-in at once (`503`) when its reports could not be recorded now.
    pub fn ready(&self) -> Result<(), ApiError> {
        match self {
            ReportSink::Bus(bus) if !bus.connected() => Err(BusError::Disconnected.into()),
            _ => Ok(()),
        }
    }

    /// Takes check-in `(host_id, seq)`'s reports (each with the host's own time, and stamped with
    /// the controller's receive time `now`) inside the check-in's transaction. `replay` is a retry
    /// of an accepted check-in: the direct path stored its reports then; the bus path publishes
    /// them again under the same message id (a duplicate the stream drops, unless the first publish
    /// never arrived).
    #[allow(clippy::too_many_arguments, reason = "one check-in's fields")]
    pub async fn stage(
        &self,
        tx: &mut Tx,
        dialect: Dialect,
        host_id: &str,
        seq: u64,
        now: u64,
        reports: &[(u64, HealthReport)],
        replay: bool,
    ) -> Result<Pending<'_>, ApiError> {
        match self {
            ReportSink::Direct => {
                if !replay {
                    let rows: Vec<(u64, String)> = reports
                        .iter()
                        .map(|(host_unix, r)| serde_json::to_string(r).map(|j| (*host_unix, j)))
                        .collect::<Result<_, _>>()
                        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
                    hosts::insert_reports(tx, host_id, seq, now, &rows).await?;
                }
                Ok(Pending::Done)
            }
            ReportSink::Bus(bus) => {
                let current = rollouts::current(tx, dialect, false).await?;
                let ring = match &current {
                    Some(r) => rollouts::ring_of(tx, r.id, host_id).await?,
                    None => None,
                };
                Ok(Pending::Publish {
                    bus,
                    subject: bus.config().subject(current.map(|r| r.id), ring),
                    message: IntakeMessage {
                        format: INTAKE_FORMAT,
                        host_id: host_id.to_owned(),
                        seq,
                        received_at: now,
                        reports: reports
                            .iter()
                            .map(|(host_unix, report)| IntakeReport {
                                host_unix: *host_unix,
                                report: report.clone(),
                            })
                            .collect(),
                    },
                })
            }
        }
    }
}

impl Pending<'_> {
    /// Publishes what is left (after the check-in's commit); a failure is a `503` to the host.
    pub async fn finish(self) -> Result<(), ApiError> {
        match self {
            Pending::Done => Ok(()),
            Pending::Publish {
                bus,
                subject,
                message,
            } => {
                let duplicate = bus.publish(subject, &message).await?;
                if duplicate {
                    tracing::debug!(id = %message.message_id(), "the stream already had this check-in's reports");
                }
                Ok(())
            }
        }
    }
}
