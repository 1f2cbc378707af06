//! Report intake: the check-in handler's [`ReportSink`] (straight into the database, or onto a
//! NATS JetStream stream, [`bus`]) and the [`Aggregator`] that folds the stream into the rows the
//! tick reads. Whichever path carried them, the tick folds the same rows into the hosts' tracks and
//! the gates compute the cohorts' figures with the one `cohort_metrics`. The design and the
//! measured rates: `docs/controlplane.md` "Report intake on NATS JetStream".

pub mod aggregate;
pub mod bus;
mod sink;

pub use aggregate::{Aggregator, AggregatorFigures, AggregatorStats, Folded};
pub use bus::{Bus, BusConfig, IntakeMessage, IntakeReport};
pub use sink::{Pending, ReportIntake, ReportSink};
