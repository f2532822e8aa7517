//! What stands in front of every console route: the `Host` check against DNS rebinding, and one
//! JSON error shape for every error (axum's own 405 included).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fairway_runtime::http::ApiError;

/// The names a console answers to by default: a page on any other origin (e.g. a DNS-rebinding
/// attack, whose `Host` is the attacker's domain) is refused.
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// `router` behind the `Host` check (allowing [`DEFAULT_HOSTS`] and `hosts`) and the JSON
/// error rewrite.
pub(crate) fn guarded(router: axum::Router, hosts: &[String]) -> axum::Router {
    router
        .layer(axum::middleware::from_fn(
            fairway_runtime::http::json_errors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            AllowedHosts::new(hosts),
            check_host,
        ))
}

/// The host names allowed in `Host` (lower case, IPv6 in brackets, without port).
#[derive(Debug, Clone)]
pub(crate) struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    pub(crate) fn new(extra: &[String]) -> AllowedHosts {
        let mut names: Vec<String> = DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        for name in extra {
            let name = normalize_name(name);
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        AllowedHosts(Arc::new(names))
    }

    fn allows(&self, host: &str) -> bool {
        let name = host_name(host);
        self.0.contains(&name)
    }
}

/// A configured name: lower case; a bare IPv6 address gets its brackets.
fn normalize_name(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    if name.contains(':') && !name.starts_with('[') {
        format!("[{name}]")
    } else {
        name
    }
}

/// The name part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), lower case.
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host[..=end].to_owned(),
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => host,
    }
}

/// 421 in the JSON error shape when the request's `Host` is not one of the allowed names.
pub(crate) async fn check_host(
    State(allowed): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(h) if allowed.allows(&h) => next.run(request).await,
        Some(h) => {
            let shown: String = h.chars().take(80).collect();
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "host_not_allowed",
                format!(
                    "the console does not answer to Host {shown:?}; it answers to: {} (add names \
                     with --console-host)",
                    allowed.0.join(", ")
                ),
            )
            .into_response()
        }
        // No browser sends a request without `Host` (HTTP/1.1 requires it), so such a request
        // cannot come from a rebinding page: an in-process or HTTP/1.0 client on loopback.
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_case() {
        assert_eq!(host_name("LocalHost:8081"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8081"), "[::1]");
        assert_eq!(host_name("evil.example:80"), "evil.example");
        let allowed = AllowedHosts::new(&["Console.Internal".to_owned(), "::2".to_owned()]);
        assert!(allowed.allows("console.internal:9000"));
        assert!(allowed.allows("[::2]:1"));
        assert!(allowed.allows("localhost"));
        assert!(!allowed.allows("evil.example"));
        assert!(!allowed.allows("localhost.evil.example"));
        assert!(!allowed.allows(""));
    }
}
