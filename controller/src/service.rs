//! The running service: its shared state, the HTTP routes, start-up checks and shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use rulebox_controlplane_proto::{CHECKIN_PATH, ENROLL_PATH, MAX_CHECKIN_BYTES, MAX_ENROLL_BYTES};
use rulebox_release::{OnlineKey, Repository, check_online_key};
use rulebox_runtime::content::{RoleName, Root};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::ControllerConfig;
use crate::error::ServiceError;
use crate::reports::{Aggregator, AggregatorStats, Bus, ReportIntake, ReportSink};
use crate::store::{Store, lease};
use crate::{agent_api, operator_api, ticker, web};

/// Largest operator request body, in bytes.
const MAX_OPERATOR_BYTES: usize = 1 << 20;
/// Largest dashboard form, in bytes.
const MAX_FORM_BYTES: usize = 16 << 10;

/// What every handler and the ticker share.
#[derive(Debug)]
pub struct Service {
    /// The database.
    pub store: Store,
    /// Controller time.
    pub clock: Clock,
    /// The configuration.
    pub config: ControllerConfig,
    /// The content repository.
    pub repo: Repository,
    /// The newest root of the repository's chain (which contains the trusted root).
    pub root: Root,
    /// Its file in the repository.
    pub root_path: PathBuf,
    /// This instance's lease holder id.
    pub holder: String,
    /// Wakes the ticker (an operator's halt has outbox entries to carry out).
    pub wake: Notify,
    /// The dashboard's sessions.
    pub sessions: crate::web::session::Sessions,
    /// Where check-ins' reports go.
    pub reports: ReportSink,
    /// The figures of this process's aggregator (zero when it runs none).
    pub aggregator: Arc<AggregatorStats>,
}

/// A started controller.
#[derive(Debug)]
pub struct RunningController {
    addr: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    ticker: JoinHandle<()>,
    aggregator: Option<JoinHandle<()>>,
    service: Arc<Service>,
}

impl RunningController {
    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The shared state (for tests and tools in the same process).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops serving, lets the ticker finish its tick, gives the lease up.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.ticker.await;
        if let Some(aggregator) = self.aggregator {
            let _ = aggregator.await;
        }
        self.service.store.close().await;
    }

    /// Runs until `stop` resolves, then shuts down.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        stop.await;
        self.shutdown().await;
    }
}

fn role_threshold(root: &Root, role: RoleName) -> u32 {
    root.roles.get(role).map_or(u32::MAX, |r| r.threshold)
}

fn check_keys(
    root: &Root,
    keys: &[OnlineKey],
    role: RoleName,
    now: u64,
) -> Result<(), ServiceError> {
    let mut ids = std::collections::BTreeSet::new();
    for key in keys {
        check_online_key(root, key, role, now)?;
        ids.insert(key.key.keyid.as_str());
    }
    let need = role_threshold(root, role);
    if u32::try_from(ids.len()).unwrap_or(u32::MAX) < need {
        return Err(ServiceError::Config(format!(
            "the root's `{role}` role needs {need} signatures; {} distinct key(s) given",
            ids.len()
        )));
    }
    Ok(())
}

/// Loads the trusted root, checks the repository's root chain contains it, and returns the
/// newest root of the chain with its file.
fn trusted_chain(
    repo: &Repository,
    trusted_path: &std::path::Path,
) -> Result<(Root, PathBuf), ServiceError> {
    let trusted = rulebox_runtime::content::load_trusted_root(trusted_path).map_err(|e| {
        ServiceError::ConfigFile {
            path: trusted_path.to_path_buf(),
            problem: e.to_string(),
        }
    })?;
    let newest = repo.newest_root()?;
    let file = repo.path(&rulebox_controlplane_proto::repo::root_file(
        trusted.version,
    ));
    let same = std::fs::read(&file)
        .ok()
        .and_then(|b| rulebox_runtime::content::parse_trusted_root(&b).ok())
        .is_some_and(|r| r == trusted);
    if !same {
        return Err(ServiceError::Config(format!(
            "the repository's root version {} is not the trusted root {}",
            trusted.version,
            trusted_path.display()
        )));
    }
    let path = repo.path(&rulebox_controlplane_proto::repo::root_file(newest.version));
    Ok((newest, path))
}

fn random_id() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ServiceError::Config(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Starts the controller: checks the configuration, the keys against the repository's newest root
/// (the controller holds only online-role keys; a root key is refused), connects to the database
/// (bringing its schema up to date), listens, and starts the ticker, which ticks whenever this
/// instance holds the lease.
pub async fn start(config: ControllerConfig) -> Result<RunningController, ServiceError> {
    config.check()?;
    let repo = Repository::open(&config.repo)?;
    let (root, root_path) = trusted_chain(&repo, &config.root)?;
    let now = Clock::real_secs();
    check_keys(&root, &config.rollout_keys, RoleName::Rollout, now)?;
    check_keys(&root, &config.timestamp_keys, RoleName::Timestamp, now)?;
    let store =
        Store::connect(&config.database, config.max_connections, config.sqlite_sync).await?;
    let clock = {
        let mut conn = store
            .pool()
            .acquire()
            .await
            .map_err(crate::error::StoreError::from)?;
        let anchor =
            lease::meta_init(&mut conn, "clock_anchor_ms", &Clock::real_ms().to_string()).await?;
        let scale =
            lease::meta_init(&mut conn, "clock_scale", &config.clock_scale.to_string()).await?;
        if scale != config.clock_scale.to_string() {
            return Err(ServiceError::Config(format!(
                "this database's clock runs at scale {scale}; the controller was started with {}",
                config.clock_scale
            )));
        }
        let anchor: u64 = anchor
            .parse()
            .map_err(|_| ServiceError::Config("damaged clock anchor".to_owned()))?;
        Clock::new(anchor, config.clock_scale)
    };
    if clock.scale() > 1 {
        tracing::warn!(
            scale = clock.scale(),
            "controller time runs faster than the wall clock: for tests only"
        );
    }
    let (reports, aggregate) = match &config.reports {
        ReportIntake::Direct => (ReportSink::Direct, false),
        ReportIntake::Bus {
            config: bus,
            aggregate,
        } => (
            ReportSink::Bus(Box::new(Bus::connect(bus).await?)),
            *aggregate,
        ),
    };
    let aggregator_stats = Arc::new(AggregatorStats::default());
    let aggregator = match (&reports, aggregate) {
        (ReportSink::Bus(bus), true) => Some(
            Aggregator::new(
                Bus::clone(bus),
                store.clone(),
                clock,
                Arc::clone(&aggregator_stats),
            )
            .await?,
        ),
        _ => None,
    };
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServiceError::Listen {
                addr: config.listen.to_string(),
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServiceError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
    let service = Arc::new(Service {
        store,
        clock,
        holder: random_id()?,
        repo,
        root,
        root_path,
        wake: Notify::new(),
        sessions: crate::web::session::Sessions::default(),
        reports,
        aggregator: aggregator_stats,
        config,
    });
    let (shutdown, mut stop) = watch::channel(false);
    let app = router(Arc::clone(&service));
    let mut stop_server = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_server.wait_for(|s| *s).await;
            })
            .await
    });
    let aggregator = aggregator.map(|a| {
        let stop = stop.clone();
        tokio::spawn(a.run(stop))
    });
    let ticker = {
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            ticker::run(service, &mut stop).await;
        })
    };
    tracing::info!(%addr, database = service.store.dialect().name(), "controller listening");
    Ok(RunningController {
        addr,
        shutdown,
        server,
        ticker,
        aggregator,
        service,
    })
}

/// The routes.
fn router(service: Arc<Service>) -> Router {
    let serve_repo = service
        .config
        .serve_repo
        .then(|| service.repo.dir().to_path_buf());
    let mut app = Router::new()
        .route(
            ENROLL_PATH,
            post(agent_api::enroll).layer(DefaultBodyLimit::max(MAX_ENROLL_BYTES)),
        )
        .route(
            CHECKIN_PATH,
            post(agent_api::checkin).layer(DefaultBodyLimit::max(MAX_CHECKIN_BYTES)),
        )
        .route(
            "/v1/rollouts",
            get(operator_api::list)
                .post(operator_api::start)
                .layer(DefaultBodyLimit::max(MAX_OPERATOR_BYTES)),
        )
        .route("/v1/rollouts/current", get(operator_api::current))
        .route("/v1/rollouts/{id}", get(operator_api::status))
        .route(
            "/v1/rollouts/{id}/halt",
            post(operator_api::halt).layer(DefaultBodyLimit::max(MAX_OPERATOR_BYTES)),
        )
        .route(
            "/v1/rollouts/{id}/resume",
            post(operator_api::resume).layer(DefaultBodyLimit::max(MAX_OPERATOR_BYTES)),
        )
        .route("/v1/audit", get(operator_api::audit))
        .route("/v1/controller", get(operator_api::info))
        .route("/healthz", get(operator_api::health))
        .merge(web::routes().layer(DefaultBodyLimit::max(MAX_FORM_BYTES)))
        .with_state(service);
    if let Some(dir) = serve_repo {
        app = app.nest_service("/repo", tower_http::services::ServeDir::new(dir));
    }
    app
}
