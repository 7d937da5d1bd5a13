//! Prometheus metrics, one registry per server instance.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use flow_jobs::JobMetrics;

/// The server's metrics and the registry they are rendered from.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    ws_connections: IntGaugeVec,
    ws_published: IntCounterVec,
    ws_delivery: Histogram,
    ws_slow_consumers: IntCounter,
    /// The queue engine's own metrics, in this registry.
    pub jobs: JobMetrics,
}

/// Decrements a gauge when dropped: an open connection, a running job.
pub struct ConnectionGuard {
    gauge: prometheus::IntGauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Metrics {
    /// Creates and registers Flow's metrics.
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status_code"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response head",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let ws_connections = IntGaugeVec::new(
            Opts::new("websocket_connections_active", "Open WebSocket connections"),
            &["tenant_id", "app_id"],
        )
        .expect("valid metric");
        let ws_published = IntCounterVec::new(
            Opts::new(
                "websocket_events_published_total",
                "Events published by the gateway, per target app room",
            ),
            &["event_type", "source_app", "target_app"],
        )
        .expect("valid metric");
        let ws_delivery = Histogram::with_opts(
            HistogramOpts::new(
                "websocket_event_delivery_seconds",
                "From an event's commit to its frame being written to a socket",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .expect("valid metric");
        let ws_slow_consumers = IntCounter::new(
            "websocket_slow_consumers_dropped_total",
            "Sockets disconnected because they could not keep up",
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(ws_connections.clone()),
            Box::new(ws_published.clone()),
            Box::new(ws_delivery.clone()),
            Box::new(ws_slow_consumers.clone()),
        ] {
            registry.register(collector).expect("registered once");
        }
        let jobs = JobMetrics::register(&registry).expect("queue metrics registered once");
        Self {
            registry,
            jobs,
            http_requests,
            http_duration,
            ws_connections,
            ws_published,
            ws_delivery,
            ws_slow_consumers,
        }
    }

    /// Counts an open connection until the returned guard drops.
    pub fn ws_connection_opened(&self, tenant_id: &str, app_id: &str) -> ConnectionGuard {
        let gauge = self.ws_connections.with_label_values(&[tenant_id, app_id]);
        gauge.inc();
        ConnectionGuard { gauge }
    }

    /// Counts an event published to a target app's room.
    pub fn ws_event_published(&self, event_type: &str, source_app: &str, target_app: &str) {
        self.ws_published
            .with_label_values(&[event_type, source_app, target_app])
            .inc();
    }

    /// Records how long an event took from commit to socket.
    pub fn ws_delivered(&self, latency: std::time::Duration) {
        self.ws_delivery.observe(latency.as_secs_f64());
    }

    /// Counts a socket cut off for falling behind.
    pub fn ws_slow_consumer_dropped(&self) {
        self.ws_slow_consumers.inc();
    }

    /// Everything in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts and times every request by its route template, not its raw path, so ids
/// do not explode the label set.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    metrics
        .http_requests
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}
