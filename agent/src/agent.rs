//! [`Agent`]: the running agent, and [`AgentOutput`], its stream of [`AgentEvent`]s.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rulebox_runtime::content::{ContentStore, Inbox, StoreLayout};
use rulebox_runtime::{Content, ModuleCache, Runtime};

use crate::config::AgentConfig;
use crate::control::Control;
use crate::error::AgentError;
use crate::event::AgentEvent;
use crate::lifecycle::AgentSummary;
use crate::sender::{Counters, EventSender};
use crate::transport::Transport;
use crate::worker::{ControlMsg, Worker};

/// The endpoint agent: a content store, its boot guard, a rule set on a sandbox thread, updates
/// from the store's inbox, and the health window, behind one type.
///
/// Threads (plain ones; no async runtime): the **sandbox thread** owns the rule set and takes
/// events and content updates from one bounded queue in order, so an update lands between two
/// events and none is lost or processed twice; the **control thread** owns the store: the inbox,
/// installs, reverts, the health window, and the persistence of quarantines. Events come in through
/// [`EventSender`]s; everything the agent reports comes out of [`AgentOutput`].
#[derive(Debug)]
pub struct Agent {
    sender: EventSender,
    control: Sender<ControlMsg>,
    thread: Option<JoinHandle<Result<AgentSummary, AgentError>>>,
    inbox: Option<Inbox>,
}

/// The agent's output: every [`AgentEvent`], in order, until the agent has stopped (then the
/// iterator ends). Read it on a thread of its own: the agent waits when the output queue is full.
#[derive(Debug)]
pub struct AgentOutput {
    rx: Receiver<AgentEvent>,
}

impl Iterator for AgentOutput {
    type Item = AgentEvent;

    fn next(&mut self) -> Option<AgentEvent> {
        self.rx.recv().ok()
    }
}

impl AgentOutput {
    /// The next event, waiting at most `timeout`: `Ok(None)` if none came in time, `Err` once the
    /// agent has stopped and every event was read.
    pub fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<AgentEvent>, crate::AgentStopped> {
        match self.rx.recv_timeout(timeout) {
            Ok(event) => Ok(Some(event)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(crate::AgentStopped),
        }
    }
}

impl Agent {
    /// Starts an agent: opens the store (taking its lock), compiles the baseline, lets the boot
    /// guard decide what to run (recording STARTING durably before anything runs), compiles that,
    /// and starts the threads. Returns once the content is queued for activation: events sent from
    /// now on are evaluated by it.
    ///
    /// The agent never runs nothing: a store that cannot be opened (locked by another process,
    /// refused as unsafe, damaged, on a failing disk) or a STARTING record that cannot be written (a
    /// full disk) makes it run the baseline (or, for the latter, a release that reached GOOD on this
    /// host), raise an alert, and try again every few seconds. Only an unusable runtime
    /// configuration, a baseline module that does not compile or a thread that cannot start is an
    /// error.
    pub fn start(config: AgentConfig) -> Result<(Agent, AgentOutput), AgentError> {
        Self::start_inner(config, None)
    }

    /// [`start`](Self::start) with a content transport (a fetcher) polled before every inbox scan.
    pub fn start_with_transport(
        config: AgentConfig,
        transport: Box<dyn Transport>,
    ) -> Result<(Agent, AgentOutput), AgentError> {
        Self::start_inner(config, Some(transport))
    }

    fn start_inner(
        config: AgentConfig,
        transport: Option<Box<dyn Transport>>,
    ) -> Result<(Agent, AgentOutput), AgentError> {
        let runtime = Runtime::new(config.runtime.clone())?;
        // A store that cannot be opened does not stop the agent: it runs the baseline, alerts, and
        // tries again (the control thread).
        let (store, store_error) = match &config.store {
            None => (None, None),
            Some(dir) => match ContentStore::open(dir) {
                Ok(store) => (Some(store), None),
                Err(e) => (None, Some(e)),
            },
        };
        // Machine code this host generated earlier for the same modules (the trust boundary is in
        // the module cache's docs): a restart or an update that keeps most rules compiles only the
        // new ones.
        let cache = store.as_ref().map(|s| ModuleCache::open(&s.cache_dir()));
        let baseline = Content::from_modules(&runtime, cache.as_ref(), config.baseline.modules())
            .map_err(|(module, source)| AgentError::Baseline { module, source })?;
        let inbox = config
            .store
            .as_ref()
            .map(|dir| Inbox::new(StoreLayout::new(dir).inbox()));

        // The built-in fetcher, when configured and there is a store to deliver to.
        let transport = match (transport, &config.fetch, &config.store) {
            (Some(t), _, _) => Some(t),
            (None, Some(fetch), Some(dir)) => Some(Box::new(
                crate::fetch::Fetcher::start(fetch.clone(), dir).map_err(|source| {
                    AgentError::Thread {
                        what: "fetch",
                        source,
                    }
                })?,
            ) as Box<dyn Transport>),
            (None, _, _) => None,
        };
        let counters = Arc::new(Counters::default());
        let (work_tx, work_rx) = mpsc::sync_channel(config.queue.max(1));
        let (output_tx, output_rx) = mpsc::sync_channel(config.output_queue.max(1));
        let (control_tx, control_rx) = mpsc::channel();
        let mut control = Control::new(
            runtime.clone(),
            store,
            cache,
            baseline,
            &config,
            work_tx.clone(),
            output_tx.clone(),
            counters.clone(),
            transport,
        );
        let (content, generation, boot_events) = control.boot(store_error);
        #[cfg(feature = "fault-injection")]
        crate::testing::crash_if_asked(&content);

        // The sandbox thread reports the boot decision and activates its content before it takes
        // any event.
        let worker = Worker::new(&runtime, output_tx, control_tx.clone(), counters.clone());
        let reported = boot_events.clone();
        let worker = runtime
            .spawn_sandbox_thread("rulebox-sandbox", move |thread| {
                let mut worker = worker;
                for event in reported {
                    worker.emit(event);
                }
                worker.activate(thread, &content, generation);
                worker.run(thread, work_rx)
            })
            .map_err(|source| AgentError::Thread {
                what: "sandbox",
                source,
            })?;
        let thread = std::thread::Builder::new()
            .name("rulebox-control".to_owned())
            .spawn(move || control.run(boot_events, control_rx, worker))
            .map_err(|source| AgentError::Thread {
                what: "control",
                source,
            })?;
        Ok((
            Agent {
                sender: EventSender::new(work_tx, counters),
                control: control_tx,
                thread: Some(thread),
                inbox,
            },
            AgentOutput { rx: output_rx },
        ))
    }

    /// A handle to put events into the agent (clone it for each source).
    pub fn sender(&self) -> EventSender {
        self.sender.clone()
    }

    /// The store's inbox, where bundles and signed reverts are delivered (`None` in safe mode).
    pub fn inbox(&self) -> Option<&Inbox> {
        self.inbox.as_ref()
    }

    /// Scans the inbox now instead of at the next poll (after a delivery, say).
    pub fn check_inbox(&self) {
        let _ = self.control.send(ControlMsg::CheckInbox);
    }

    /// The counters so far (the processed count is exact only after [`stop`](Self::stop)).
    pub fn summary(&self) -> AgentSummary {
        let c = self.sender.counters();
        AgentSummary {
            received: Counters::get(&c.received),
            processed: Counters::get(&c.processed),
            dropped: Counters::get(&c.dropped),
            unreadable: Counters::get(&c.unreadable),
            refused: Counters::get(&c.refused),
            peers_refused: Counters::get(&c.peers_refused),
        }
    }

    /// Stops the agent: every event queued before this call is processed, the last quarantines are
    /// persisted, a [`Lifecycle::Stopped`](crate::Lifecycle::Stopped) event ends the output, and the
    /// store's lock is released. Senders still held elsewhere get [`AgentStopped`](crate::AgentStopped)
    /// from then on.
    ///
    /// A clean stop is not a failed start: if the running release's health window had not passed,
    /// its start is taken back from the boot guard's STARTING record, so restarts (SIGTERM, a
    /// reboot) never add up to a fallback. Only a start that did not end cleanly counts.
    pub fn stop(mut self) -> Result<AgentSummary, AgentError> {
        self.stop_inner(true)
            .unwrap_or(Err(AgentError::Panicked { what: "control" }))
    }

    /// [`stop`](Self::stop), counting the current start as failed (it is not taken back from the
    /// STARTING record): for an embedder whose own checks found the host unhealthy under this
    /// content (a watchdog), as if the agent had died.
    pub fn stop_failed(mut self) -> Result<AgentSummary, AgentError> {
        self.stop_inner(false)
            .unwrap_or(Err(AgentError::Panicked { what: "control" }))
    }

    fn stop_inner(&mut self, clean: bool) -> Option<Result<AgentSummary, AgentError>> {
        let thread = self.thread.take()?;
        let _ = self.control.send(ControlMsg::Stop { clean });
        Some(
            thread
                .join()
                .unwrap_or(Err(AgentError::Panicked { what: "control" })),
        )
    }
}

impl Drop for Agent {
    /// Stops the agent if [`stop`](Agent::stop) was not called.
    fn drop(&mut self) {
        let _ = self.stop_inner(true);
    }
}
