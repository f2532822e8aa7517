//! The host's HTTP layers around the module routes: request metrics per route, one JSON error
//! shape for every error response, and a last-resort panic catcher.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fairway_runtime::http::ApiError;
use futures::FutureExt as _;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

/// Request counts and latencies per route (method + matched path template).
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    routes: Arc<Mutex<BTreeMap<(String, String), RouteStats>>>,
}

impl HttpMetrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let stats = routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *stats.by_status.entry(status).or_default() += 1;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                stats.buckets[i] += 1;
            }
        }
        stats.sum_seconds += seconds;
        stats.count += 1;
    }

    /// Prometheus text: `fairway_http_requests_total{method,route,status}` and the histogram
    /// `fairway_http_request_duration_seconds{method,route}`.
    pub fn render(&self) -> String {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP fairway_http_requests_total HTTP requests by route and status\n\
             # TYPE fairway_http_requests_total counter"
        );
        for ((method, route), s) in routes.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "fairway_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP fairway_http_request_duration_seconds HTTP request latency by route\n\
             # TYPE fairway_http_request_duration_seconds histogram"
        );
        for ((method, route), s) in routes.iter() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "fairway_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "fairway_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 fairway_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 fairway_http_request_duration_seconds_count{{{labels}}} {}",
                s.count, s.sum_seconds, s.count
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts the request under its route template (`unmatched` for unknown paths).
pub async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Rewrites any error response that is not JSON into `{"error":{"code","message"}}` (the
/// runtime's middleware, shared with the console).
pub use fairway_runtime::http::json_errors;

/// Turns a panic in a handler into a JSON 500 and an error log line.
pub async fn catch_panics(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(%method, %uri, panic = %message, "handler panicked");
            ApiError::internal("internal error").into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt as _;

    async fn call(router: Router, uri: &str, method: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let resp = router.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn router(metrics: HttpMetrics) -> Router {
        Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("deliberate");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/ok/{id}",
                get(|| async { axum::Json(serde_json::json!({})) }),
            )
            .layer(axum::middleware::from_fn(catch_panics))
            .layer(axum::middleware::from_fn(json_errors))
            .layer(axum::middleware::from_fn_with_state(metrics, track))
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_json_500() {
        let (status, body) = call(router(HttpMetrics::default()), "/boom", "GET").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
    }

    #[tokio::test]
    async fn plain_text_errors_become_json() {
        let (status, body) = call(router(HttpMetrics::default()), "/ok/1", "DELETE").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }

    #[tokio::test]
    async fn requests_are_counted_per_route_template() {
        let m = HttpMetrics::default();
        call(router(m.clone()), "/ok/1", "GET").await;
        call(router(m.clone()), "/ok/2", "GET").await;
        call(router(m.clone()), "/boom", "GET").await;
        let text = m.render();
        assert!(
            text.contains(
                "fairway_http_requests_total{method=\"GET\",route=\"/ok/{id}\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "fairway_http_requests_total{method=\"GET\",route=\"/boom\",status=\"500\"} 1\n"
        ));
        assert!(text.contains(
            "fairway_http_request_duration_seconds_count{method=\"GET\",route=\"/ok/{id}\"} 2\n"
        ));
    }
}
