//! The HTTP surface: each resource module exposes `router()`, this one only merges them
//! and adds the cross-cutting layers.

mod activities;
mod analytics;
mod backups;
mod chat;
mod contacts;
mod deals;
mod jobs;
mod leads;
mod logs;
mod ops;
mod security;
mod sessions;
mod users;
mod voice;

use std::time::{Duration, Instant};

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    middleware,
    response::Response,
    Router,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    auth,
    error::{self, ErrorCode, HttpError},
    gateway, metrics,
    state::AppState,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Flow API", description = "Multi-tenant integration platform. Every tenant route is also served under /api/v1."),
    modifiers(&ApiKeyScheme),
    security(("tenant_key" = []), ("bearer" = [])),
    tags(
        (name = "leads"), (name = "contacts"), (name = "activities"), (name = "deals"),
        (name = "auth"), (name = "events"), (name = "audit"), (name = "jobs"), (name = "security"), (name = "analytics"), (name = "admin"), (name = "operations"),
    )
)]
struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "tenant_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-tenant-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    build_routers().doc
}

/// The tenant API (behind authentication), the public sign-in routes (also under
/// /api/v1), operations, and the OpenAPI document of all of them.
struct Routers {
    tenant_api: Router<AppState>,
    public_api: Router<AppState>,
    ops: Router<AppState>,
    doc: utoipa::openapi::OpenApi,
}

fn build_routers() -> Routers {
    let (tenant_api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(sessions::router())
        .merge(users::router())
        .merge(leads::router())
        .merge(contacts::router())
        .merge(activities::router())
        .merge(deals::router())
        .merge(logs::router())
        .merge(jobs::router())
        .merge(backups::router())
        .merge(analytics::router())
        .merge(chat::router())
        .merge(security::router())
        .merge(voice::router())
        .merge(gateway::token_router())
        .split_for_parts();
    let (public_api, public_doc) = sessions::public_router().split_for_parts();
    let (ops, ops_doc) = ops::router()
        .merge(gateway::socket_router())
        .split_for_parts();
    doc.merge(public_doc);
    doc.merge(ops_doc);
    Routers {
        tenant_api,
        public_api,
        ops,
        doc,
    }
}

/// The whole application: tenant API (at `/` and `/api/v1`), operations and docs.
pub fn router(state: AppState) -> Router {
    let Routers {
        tenant_api,
        public_api,
        ops,
        doc,
    } = build_routers();
    let tenant_api = tenant_api
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .merge(public_api);
    let config = state.config.clone();
    let request_timeout = Duration::from_secs(config.request_timeout_secs);
    let x_request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(tenant_api.clone())
        .nest("/api/v1", tenant_api)
        .merge(ops)
        .merge(crate::web::router())
        .merge(
            // The API explorer runs inline scripts and styles of its own; nothing else may.
            Router::from(SwaggerUi::new("/docs").url("/openapi.json", doc)).layer(
                SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'self'; script-src 'self' 'unsafe-inline'; \
                         style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                         frame-ancestors 'none'",
                    ),
                ),
            ),
        )
        .fallback(|| async { HttpError::new(ErrorCode::RouteNotFound, "no such route") })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        // The request's deadline reaches the database: a statement ends with its request.
        .layer(middleware::from_fn(move |request: Request, next: middleware::Next| {
            flow_store::with_deadline(Instant::now() + request_timeout, next.run(request))
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(cors(&config.cors_allowed_origins))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(error::render_errors))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %request_id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .layer(middleware::map_request(auth::sanitize_request_id))
        .layer(middleware::map_response(browser_protections))
        .with_state(state)
}

/// One set of browser protections on every response, in one pass over the headers; the
/// dashboard and the API explorer set their own content policy first. Answers carry
/// tenant data and, from sign-in, tokens: no cache may keep them.
async fn browser_protections(mut response: Response) -> Response {
    const DEFAULTS: [(HeaderName, HeaderValue); 5] = [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    let headers = response.headers_mut();
    for (name, value) in DEFAULTS {
        headers.entry(name).or_insert(value);
    }
    response
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            HeaderName::from_static("content-type"),
            HeaderName::from_static("x-tenant-key"),
            HeaderName::from_static("x-tenant-id"),
            HeaderName::from_static("x-source-app"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("authorization"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("retry-after"),
        ])
        .max_age(Duration::from_secs(600))
}
