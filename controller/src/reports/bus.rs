//! The report log on NATS JetStream: the stream (created idempotently), what a message is, and
//! publishing one with `(host_id, seq)` as its message id.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use rulebox_controlplane_proto::{HealthReport, MAX_REPORTS_PER_CHECKIN};
use serde::{Deserialize, Serialize};

use crate::error::BusError;

/// The format of an [`IntakeMessage`].
pub const INTAKE_FORMAT: u32 = 1;

/// Where check-in servers append reports and where the aggregator reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// The server, `nats://HOST:PORT` (credentials, if any, as `nats://USER:PASSWORD@HOST:PORT`).
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// Subjects are `PREFIX.<rollout>.<ring>`; the stream holds `PREFIX.>`.
    pub subject_prefix: String,
    /// The aggregator's durable consumer.
    pub consumer: String,
    /// JetStream keeps message ids this long to drop a second publish of the same `(host_id, seq)`.
    pub duplicate_window: Duration,
    /// A report not aggregated within this time is removed from the stream (the hosts it came from
    /// then count as silent in the gates, which is what an outage of that length should look like).
    pub max_age: Duration,
    /// A message the aggregator took and did not acknowledge within this time is delivered again.
    pub ack_wait: Duration,
    /// How long a check-in waits for the stream to confirm a publish before it is refused with 503.
    pub publish_timeout: Duration,
    /// Messages the aggregator folds in one database transaction, at most.
    pub batch: usize,
}

impl BusConfig {
    /// The defaults for a server at `url`: stream `RULEBOX_REPORTS` on `rulebox.reports.>`,
    /// consumer `aggregator`, a 10-minute duplicate window, reports kept a week, redelivery after
    /// 30 s, publishes confirmed within 2 s, 500 messages a transaction.
    pub fn new(url: impl Into<String>) -> BusConfig {
        BusConfig {
            url: url.into(),
            stream: "RULEBOX_REPORTS".to_owned(),
            subject_prefix: "rulebox.reports".to_owned(),
            consumer: "aggregator".to_owned(),
            duplicate_window: Duration::from_secs(600),
            max_age: Duration::from_secs(7 * 86_400),
            ack_wait: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(2),
            batch: 500,
        }
    }

    /// Checks the settings: a `nats://` URL, names and a prefix NATS accepts, nonzero durations.
    pub fn check(&self) -> Result<(), BusError> {
        let bad = |m: String| Err(BusError::Config(m));
        if !self.url.starts_with("nats://") || self.url.len() <= "nats://".len() {
            return bad(format!(
                "the report bus is `nats://HOST:PORT`, not `{}`",
                self.url.escape_debug()
            ));
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !name_ok(&self.stream) || !name_ok(&self.consumer) {
            return bad(
                "the stream and consumer names are 1 to 64 letters, digits, `_` or `-`".to_owned(),
            );
        }
        let prefix_ok = !self.subject_prefix.is_empty()
            && self.subject_prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !prefix_ok {
            return bad(
                "the subject prefix is dot-separated tokens of letters, digits, `_` or `-`"
                    .to_owned(),
            );
        }
        if self.duplicate_window.is_zero()
            || self.max_age < self.duplicate_window
            || self.ack_wait.is_zero()
            || self.publish_timeout.is_zero()
            || self.batch == 0
        {
            return bad(
                "the duplicate window, ack wait, publish timeout and batch are above 0, and \
                 reports are kept at least as long as the duplicate window"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The subject of a report from a host in `ring` of rollout `rollout` (`none` for either when
    /// there is no current rollout or the host is not in it).
    pub fn subject(&self, rollout: Option<i64>, ring: Option<usize>) -> String {
        let part = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
        format!(
            "{}.{}.{}",
            self.subject_prefix,
            part(rollout.map(|r| format!("rollout-{r}"))),
            part(ring.map(|r| format!("ring-{r}")))
        )
    }
}

/// One report as the log carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeReport {
    /// The host's own time of the report.
    pub host_unix: u64,
    /// The report, stamped with the controller's receive time.
    pub report: HealthReport,
}

/// One accepted check-in's reports: the body of one message, whose id is `host_id:seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeMessage {
    /// [`INTAKE_FORMAT`].
    pub format: u32,
    /// The host.
    pub host_id: String,
    /// The check-in's `seq`.
    pub seq: u64,
    /// When the check-in was received (controller time).
    pub received_at: u64,
    /// Its reports.
    pub reports: Vec<IntakeReport>,
}

impl IntakeMessage {
    /// The JetStream message id: `(host_id, seq)`.
    pub fn message_id(&self) -> String {
        format!("{}:{}", self.host_id, self.seq)
    }

    /// Parses and checks a message read from the log: the format, a host id of 32 hex digits, a
    /// `seq` and times a database stores, at most a check-in's worth of reports.
    pub fn parse(payload: &[u8]) -> Result<IntakeMessage, String> {
        let m: IntakeMessage =
            serde_json::from_slice(payload).map_err(|e| format!("does not parse: {e}"))?;
        if m.format != INTAKE_FORMAT {
            return Err(format!(
                "format {} (this build reads {INTAKE_FORMAT})",
                m.format
            ));
        }
        if m.host_id.len() != crate::agent_api::HOST_ID_LEN
            || !m.host_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err("the host id is not 32 hex digits".to_owned());
        }
        let limit = i64::MAX as u64;
        if m.seq > limit || m.received_at > limit || m.reports.iter().any(|r| r.host_unix > limit) {
            return Err("a seq or time is above 2^63 - 1".to_owned());
        }
        if m.reports.len() > MAX_REPORTS_PER_CHECKIN {
            return Err(format!(
                "{} reports; a check-in carries at most {MAX_REPORTS_PER_CHECKIN}",
                m.reports.len()
            ));
        }
        Ok(m)
    }
}

/// A connection to the report log, with its stream in place.
#[derive(Debug, Clone)]
pub struct Bus {
    config: BusConfig,
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Bus {
    /// Connects to the server and creates the stream if it is not there (an existing stream is
    /// used as it is, if it holds the prefix's subjects). The client reconnects on its own after a
    /// connection is lost.
    pub async fn connect(config: &BusConfig) -> Result<Bus, BusError> {
        config.check()?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(config.publish_timeout))
            .connect(config.url.as_str())
            .await
            .map_err(|e| BusError::Connect {
                url: redact(&config.url),
                message: e.to_string(),
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.publish_timeout);
        let wanted = format!("{}.>", config.subject_prefix);
        let mut stream = js
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![wanted.clone()],
                // Only what is not yet aggregated stays: an acknowledged message is removed.
                retention: stream::RetentionPolicy::WorkQueue,
                // At a limit, a publish is refused (the check-in gets 503 and the host keeps its
                // reports) rather than old, unaggregated reports dropped.
                discard: stream::DiscardPolicy::New,
                storage: stream::StorageType::File,
                duplicate_window: config.duplicate_window,
                max_age: config.max_age,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::Stream(e.to_string()))?;
        let info = stream
            .info()
            .await
            .map_err(|e| BusError::Stream(e.to_string()))?;
        if !info.config.subjects.contains(&wanted) {
            return Err(BusError::Stream(format!(
                "stream {} exists without the subjects {wanted}",
                config.stream
            )));
        }
        Ok(Bus {
            config: config.clone(),
            client,
            js,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Whether the connection is up now (a check-in is refused at once when it is not).
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Appends `message` on `subject` and waits until the stream has stored it (or found it a
    /// duplicate of its id within the window). Returns whether it was a duplicate.
    pub async fn publish(
        &self,
        subject: String,
        message: &IntakeMessage,
    ) -> Result<bool, BusError> {
        let payload = serde_json::to_vec(message).map_err(|e| BusError::Publish(e.to_string()))?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(message.message_id());
        let ack = tokio::time::timeout(self.config.publish_timeout, async {
            self.js
                .send_publish(subject, publish)
                .await
                .map_err(|e| BusError::Publish(e.to_string()))?
                .await
                .map_err(|e| BusError::Publish(e.to_string()))
        })
        .await
        .map_err(|_| {
            BusError::Publish(format!(
                "not confirmed within {} ms",
                self.config.publish_timeout.as_millis()
            ))
        })??;
        Ok(ack.duplicate)
    }
}

/// The URL without its credentials, for messages.
fn redact(url: &str) -> String {
    let shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    };
    shown.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bus_config_refuses_other_schemes_bad_names_and_zero_durations() {
        assert!(BusConfig::new("nats://127.0.0.1:4222").check().is_ok());
        assert!(BusConfig::new("http://127.0.0.1:4222").check().is_err());
        assert!(BusConfig::new("nats://").check().is_err());
        let mut c = BusConfig::new("nats://127.0.0.1:4222");
        c.stream = "a.b".to_owned();
        assert!(c.check().is_err());
        let mut c = BusConfig::new("nats://127.0.0.1:4222");
        c.subject_prefix = "a..b".to_owned();
        assert!(c.check().is_err());
        let mut c = BusConfig::new("nats://127.0.0.1:4222");
        c.ack_wait = Duration::ZERO;
        assert!(c.check().is_err());
        assert_eq!(
            c.subject(Some(3), Some(0)),
            "rulebox.reports.rollout-3.ring-0"
        );
        assert_eq!(c.subject(None, None), "rulebox.reports.none.none");
    }

    #[test]
    fn a_message_from_the_log_is_checked_before_it_is_folded() {
        let good = IntakeMessage {
            format: INTAKE_FORMAT,
            host_id: "0".repeat(32),
            seq: 4,
            received_at: 10,
            reports: Vec::new(),
        };
        let bytes = serde_json::to_vec(&good).unwrap();
        assert_eq!(IntakeMessage::parse(&bytes).unwrap(), good);
        assert_eq!(good.message_id(), format!("{}:4", "0".repeat(32)));
        for bad in [
            IntakeMessage {
                format: 2,
                ..good.clone()
            },
            IntakeMessage {
                host_id: "../x".to_owned(),
                ..good.clone()
            },
            IntakeMessage {
                seq: u64::MAX,
                ..good.clone()
            },
        ] {
            assert!(IntakeMessage::parse(&serde_json::to_vec(&bad).unwrap()).is_err());
        }
        assert!(IntakeMessage::parse(b"{\"format\":1}").is_err());
        assert!(IntakeMessage::parse(b"\xff").is_err());
    }

    #[test]
    fn credentials_never_appear_in_a_connection_error() {
        assert_eq!(
            redact("nats://u:secret@127.0.0.1:1"),
            "nats://***@127.0.0.1:1"
        );
        assert_eq!(redact("nats://127.0.0.1:1"), "nats://127.0.0.1:1");
    }
}
