//! The application: shared state, the whole HTTP surface, background work.

use crate::clock::Clock;
use crate::config::Config;
use crate::incidents::{Engine, EngineHandle};
use crate::ingest::Committer;
use crate::metrics::Metrics;
use crate::smtp::Classifier;
use crate::store::DynStore;
use crate::web::auth::TokenCache;
use axum::Router;
use axum::response::IntoResponse;
use std::ops::Deref;
use std::sync::Arc;
use tokio::sync::{Semaphore, watch};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub struct Inner {
    pub config: Config,
    pub store: DynStore,
    pub engine: EngineHandle,
    pub classifier: Arc<Classifier>,
    pub clock: Arc<dyn Clock>,
    pub committer: Committer,
    pub metrics: Metrics,
    pub tokens: TokenCache,
    pub ingest_slots: Arc<Semaphore>,
    pub line_parsers: crate::ingest::http::LineParsers,
    /// ESP signature verification state (SNS certificates, Mailgun tokens seen).
    pub webhooks: crate::ingest::webhook::WebhookState,
    checks: std::sync::RwLock<crate::check_runner::CheckRunner>,
    /// The configuration with the settings saved in the browser laid over it.
    effective: std::sync::RwLock<Arc<Config>>,
    /// Started with `serve --demo`: pages say the data is generated.
    pub demo: std::sync::atomic::AtomicBool,
    /// The sender-wide view of all open incidents, refreshed in the background: an
    /// incident page needs it to tell "us" from "them", and reading every open
    /// incident on each page view would not scale.
    overview: std::sync::RwLock<Option<Arc<crate::incidents::Overview>>>,
}

impl Inner {
    pub fn checks(&self) -> crate::check_runner::CheckRunner {
        self.checks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn effective(&self) -> Arc<Config> {
        self.effective
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts new settings to work: the engine's thresholds at once, the checks from
    /// their next run (a fresh runner; the old one finishes what it queued).
    pub fn reconfigure(&self, cfg: Config) -> Result<(), crate::checks::CheckError> {
        let runner = crate::check_runner::CheckRunner::spawn(&cfg.checks, self.store.clone())?;
        self.engine.set(Engine::new(cfg.thresholds.clone()));
        *self.checks.write().unwrap_or_else(|e| e.into_inner()) = runner;
        *self.effective.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
        Ok(())
    }

    pub fn overview(&self) -> Option<Arc<crate::incidents::Overview>> {
        self.overview
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Recomputes the cached overview from the open incidents.
    pub async fn refresh_overview(&self) -> Result<(), crate::store::StoreError> {
        let open = self
            .store
            .list_incidents(&crate::store::IncidentFilter {
                status: Some(crate::incidents::Status::Open),
                limit: 5000,
                ..Default::default()
            })
            .await?;
        let o = crate::incidents::overview(&open);
        *self.overview.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(o));
        Ok(())
    }

    pub fn is_demo(&self) -> bool {
        self.demo.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Must be called inside a Tokio runtime: it starts the group-commit writer.
    pub fn new(
        config: Config,
        store: DynStore,
        clock: Arc<dyn Clock>,
        classifier: Classifier,
    ) -> Result<Self, crate::checks::CheckError> {
        let checks = crate::check_runner::CheckRunner::spawn(&config.checks, store.clone())?;
        let engine = EngineHandle::new(Engine::new(config.thresholds.clone()));
        let committer = Committer::spawn(
            store.clone(),
            engine.clone(),
            clock.clone(),
            config.group_commit_max_events,
        );
        Ok(AppState(Arc::new(Inner {
            checks: std::sync::RwLock::new(checks),
            effective: std::sync::RwLock::new(Arc::new(config.clone())),
            demo: std::sync::atomic::AtomicBool::new(false),
            overview: std::sync::RwLock::new(None),
            tokens: TokenCache::new(config.token_cache_ttl),
            ingest_slots: Arc::new(Semaphore::new(config.max_ingest_concurrency)),
            line_parsers: Default::default(),
            webhooks: Default::default(),
            config,
            store,
            engine,
            classifier: Arc::new(classifier),
            clock,
            committer,
            metrics: Metrics::new(),
        })))
    }
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::ingest::http::router(&state))
        .merge(crate::web::api::router())
        .merge(crate::web::reports_api::router())
        .merge(crate::web::pages::router(&state))
        .layer(CatchPanicLayer::custom(|_| {
            crate::web::error::AppError::Internal("handler panicked".into()).into_response()
        }))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            retry_after,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every 503 tells the client when to try again, whatever produced it.
async fn retry_after(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut resp: axum::response::Response,
) -> axum::response::Response {
    if resp.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .entry(axum::http::header::RETRY_AFTER)
            .or_insert(axum::http::HeaderValue::from(state.config.retry_after_secs));
    }
    resp
}

/// Periodic work on the clock: the sweep that lets time pass for open incidents, and
/// retention. Stops when `shutdown` flips.
pub fn spawn_background(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let s = state.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(s.config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match s.store.sweep(&s.engine.get(), s.clock.now()).await {
                        Ok(r) if r.recovered + r.stale > 0 => tracing::info!(recovered = r.recovered, stale = r.stale, "sweep"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "sweep failed"),
                    }
                    if let Err(e) = s.refresh_overview().await {
                        tracing::warn!(error = %e, "overview refresh failed");
                    }
                    if let Err(e) = s.store.prune_sessions(s.clock.now()).await {
                        tracing::warn!(error = %e, "session prune failed");
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });
    crate::notify::spawn(state.clone(), shutdown.clone());
    {
        let s = state.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
                        match crate::report::digest_job::run_due(&s).await {
                            Ok(crate::report::digest_job::DigestRun::Sent { message_id, .. }) => tracing::info!(%message_id, "digest sent"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "digest not sent; retrying in 15 minutes"),
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        });
    }
    if state.checks().enabled() {
        let s = state.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                // Read each time: the interval can change in the settings page.
                let interval = s.effective().checks.interval;
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {
                        let filter = crate::store::IncidentFilter {
                            status: Some(crate::incidents::Status::Open),
                            limit: 1000,
                            ..Default::default()
                        };
                        match s.store.list_incidents(&filter).await {
                            Ok(open) => {
                                let mut subjects: Vec<_> = open.iter().flat_map(crate::check_runner::subjects_for).collect();
                                subjects.sort_by_key(|s| s.key());
                                subjects.dedup_by_key(|s| s.key());
                                s.checks().enqueue(subjects);
                            }
                            Err(e) => tracing::warn!(error = %e, "periodic checks: cannot list open incidents"),
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.prune_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let retention = chrono::TimeDelta::from_std(state.config.retention).unwrap_or(chrono::TimeDelta::days(30));
                    match state.store.prune(state.clock.now() - retention).await {
                        Ok(r) if r.events + r.dead_letters + r.check_results > 0 => tracing::info!(events = r.events, dead_letters = r.dead_letters, check_results = r.check_results, "retention: pruned"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "retention prune failed"),
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    });
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish (their
/// events are committed before they are answered).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_background(state.clone(), stop_rx);
    // The peer address feeds login throttling per client.
    let result = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    let _ = stop_tx.send(true);
    result
}
