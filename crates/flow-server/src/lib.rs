//! Flow's HTTP server: routes, the WebSocket gateway, authentication at the edge, the
//! dashboard, config and start-up, as a library the `flow` binary and the integration
//! tests share. The use cases are in `flow-app`, the queue engine in `flow-jobs`.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod listener;
pub mod metrics;
pub mod ratelimit;
pub mod state;
pub mod telemetry;
pub mod web;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use flow_store::Store;
use flow_store_postgres::{PgOptions, PgStore};
use flow_store_sqlite::{SqliteOptions, SqliteStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, state::AppState};

/// Opens the configured database and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url();
    let store: Arc<dyn Store> = if is_postgres(&url) {
        let store = PgStore::open(&url, &pg_options(config)?)
            .await
            .context("connecting to PostgreSQL")?;
        store.listen();
        Arc::new(store)
    } else {
        if config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        }
        let options = SqliteOptions {
            read_connections: config.db_read_connections,
            ..SqliteOptions::default()
        };
        Arc::new(
            SqliteStore::open(&url, &options)
                .await
                .with_context(|| format!("opening database {url}"))?,
        )
    };
    store.migrate().await.context("migrating database")?;
    Ok(store)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn pg_options(config: &Config) -> anyhow::Result<PgOptions> {
    // Event notices between instances are tagged with a key of their own, derived from the
    // shared secret every instance of a cluster already has.
    use sha2::Digest;
    let secret = config.load_or_create_secret()?;
    let notice_key = sha2::Sha256::new()
        .chain_update(b"flow event notices\0")
        .chain_update(&secret)
        .finalize()
        .to_vec();
    Ok(PgOptions {
        notice_key: flow_store_postgres::NoticeKey(notice_key),
        max_connections: config.db_max_connections,
        statement_timeout: std::time::Duration::from_millis(config.db_statement_timeout_ms),
        connections_per_tenant: config.db_connections_per_tenant,
        app_role: config.db_app_role.clone(),
        ..PgOptions::default()
    })
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Binds the configured address (port 0 picks a free port). Cancelling `shutdown`
    /// stops the server, its background tasks and its sockets.
    pub async fn bind(
        store: Arc<dyn Store>,
        config: Config,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let address = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        Ok(Self {
            listener,
            state: AppState::new(store, config, shutdown)?,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until the shutdown token is cancelled, then lets in-flight requests finish.
    pub async fn run(self) -> anyhow::Result<()> {
        let state = self.state.clone();
        let hub = tokio::spawn(state.hub.clone().run());
        let pruner = tokio::spawn(upkeep(state.clone()));
        let workers = spawn_workers(&state);
        let app = api::router(self.state);
        let limits = state.config.connection_limits(listener::fd_limit());
        tracing::debug!(?limits, "connection limits");
        listener::serve(self.listener, app, limits, state.shutdown.clone())
            .await
            .context("serving HTTP")?;
        // Workers finish the job in hand, then stop.
        for worker in workers {
            let _ = worker.await;
        }
        let _ = tokio::join!(hub, pruner);
        state.store.close().await;
        Ok(())
    }
}

/// Starts the queue workers (and the queue-size gauge) for this process.
fn spawn_workers(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut worker = flow_jobs::Worker::new(
        state.store.clone(),
        flow_app::processors::registry(flow_app::processors::ProcessorSettings {
            data_dir: state.config.data_dir.clone(),
            backups_kept: state.config.backups_kept,
            llm: flow_outbound::LlmClient::from_config(&state.config.llm()),
            speech: state.speech.clone(),
        }),
        std::sync::Arc::new(flow_jobs::SystemClock),
        state.metrics.jobs.clone(),
    );
    worker.lease = std::time::Duration::from_secs(state.config.worker_lease_secs);
    worker.settler = Some(flow_jobs::Settler::start(state.store.clone()));
    worker.claim_gate = Some(std::sync::Arc::default());
    let poll = std::time::Duration::from_millis(state.config.worker_poll_ms);
    let mut handles: Vec<_> = (0..state.config.worker_concurrency)
        .map(|_| {
            tokio::spawn(worker.clone().run(
                state.work_signal.clone(),
                poll,
                state.config.worker_batch,
                state.shutdown.clone(),
            ))
        })
        .collect();
    if let Some(mut remote) = state.store.work_notices() {
        let signal = state.work_signal.clone();
        let shutdown = state.shutdown.clone();
        handles.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    notice = remote.recv() => match notice {
                        Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => signal.notify(),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        }));
    }
    let gauge_state = state.clone();
    handles.push(tokio::spawn(async move {
        loop {
            if let Ok(depths) = gauge_state.store.queue_depths().await {
                for queue in flow_jobs::Queue::ALL {
                    let depth = depths
                        .iter()
                        .find(|(q, _)| q == queue.as_str())
                        .map_or(0, |(_, n)| *n);
                    gauge_state
                        .metrics
                        .jobs
                        .set_queue_size(queue.as_str(), depth);
                }
            }
            tokio::select! {
                () = gauge_state.shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }));
    handles
}

/// Hourly upkeep: event and job retention (also once at start), business rollups of
/// today for every active tenant (from the first hour on: a fresh start has nothing new).
async fn upkeep(state: AppState) {
    let retention = chrono::Duration::hours(state.config.event_retention_hours as i64);
    let mut first_round = true;
    loop {
        let cutoff = chrono::Utc::now() - retention;
        match state.store.prune_events(cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned events past retention"),
            Err(error) => tracing::warn!(%error, "pruning the event log failed"),
        }
        if let Err(error) = state.store.prune_jobs(cutoff).await {
            tracing::warn!(%error, "pruning finished jobs failed");
        }
        if let Err(error) = state.store.prune_refresh_tokens(chrono::Utc::now()).await {
            tracing::warn!(%error, "pruning expired refresh tokens failed");
        }
        if !first_round {
            schedule_rollups(&state).await;
        }
        first_round = false;
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

async fn schedule_rollups(state: &AppState) {
    let tenants = match state.store.list_tenants().await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(%error, "listing tenants for rollups failed");
            return;
        }
    };
    let today = chrono::Utc::now().date_naive();
    for tenant in tenants.into_iter().filter(|t| t.active) {
        if let Err(error) =
            flow_app::processors::analytics::enqueue(&*state.store, tenant.id, today).await
        {
            tracing::warn!(tenant = %tenant.id, error = %error.message, "could not schedule the rollup");
        }
    }
    state.work_signal.notify();
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
