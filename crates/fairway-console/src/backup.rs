//! `POST api/backup`: an online backup made by the running host.
//!
//! The console makes no backup itself (it knows no backend): the host registers a
//! [`BackupService`] in its runtime, and this route, behind the admin token, runs it for the
//! destination the request names and answers with the service's report. Without a service the
//! route answers 501; one backup runs at a time (409 while another does).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use fairway_runtime::http::ApiError;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::api::ConsoleState;

/// Why a backup was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupRefused {
    /// The destination cannot take a backup (not absolute, already there, ...): 409.
    #[error("{0}")]
    Destination(String),
    /// The store cannot make one (e.g. FoundationDB: use `fdbbackup`): 501.
    #[error("{0}")]
    Unsupported(String),
    /// The backup failed part-way; nothing was left at the destination: 500.
    #[error("{0}")]
    Failed(String),
}

type BackupFn = dyn Fn(PathBuf) -> BoxFuture<'static, Result<Value, BackupRefused>> + Send + Sync;

/// The host's backup: given a destination directory, makes a consistent, self-checking copy of
/// the store there and returns a JSON report (head, events, bytes, seconds). Register it with
/// [`Runtime::with_service`](fairway_runtime::Runtime::with_service).
#[derive(Clone)]
pub struct BackupService {
    run: Arc<BackupFn>,
    running: Arc<AtomicBool>,
}

impl std::fmt::Debug for BackupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupService").finish_non_exhaustive()
    }
}

impl BackupService {
    /// A service running `run` for each backup request.
    pub fn new(
        run: impl Fn(PathBuf) -> BoxFuture<'static, Result<Value, BackupRefused>>
        + Send
        + Sync
        + 'static,
    ) -> BackupService {
        BackupService {
            run: Arc::new(run),
            running: Arc::default(),
        }
    }
}

/// Clears the "running" flag however the request ends (also when the client hangs up).
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// `POST api/backup` with `{"dest": "/absolute/path"}` and the admin token.
pub(crate) async fn backup(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    st.authorize(&headers)?;
    crate::params::Params::parse(raw.as_deref(), &[])?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_field("body", format!("not JSON: {e}")))?;
    let dest = match request.as_object().map(|o| (o.len(), o.get("dest"))) {
        Some((1, Some(Value::String(d)))) => PathBuf::from(d),
        _ => {
            return Err(ApiError::bad_field(
                "body",
                "expected {\"dest\": \"/absolute/path\"} and nothing else",
            ));
        }
    };
    if !dest.is_absolute() {
        return Err(ApiError::bad_field("dest", "must be an absolute path"));
    }
    let Some(service) = st.runtime().service::<BackupService>() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "backup_unsupported",
            "this host offers no online backup",
        ));
    };
    if service.running.swap(true, Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup_running",
            "a backup is running already",
        ));
    }
    let running = Running(service.running.clone());
    tracing::info!(dest = %dest.display(), "console: backup started");
    // On a task of its own: a client that hangs up does not cut the backup short (which would
    // leave its `.partial` directory behind); the flag clears when it ends.
    let task = tokio::spawn(async move {
        let _running = running;
        (service.run)(dest).await
    });
    let outcome = task
        .await
        .map_err(|e| ApiError::internal(format!("the backup task failed: {e}")))?;
    match outcome {
        Ok(report) => Ok((StatusCode::OK, axum::Json(report))),
        Err(BackupRefused::Destination(m)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "backup_destination", m))
        }
        Err(BackupRefused::Unsupported(m)) => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "backup_unsupported",
            m,
        )),
        Err(BackupRefused::Failed(m)) => {
            tracing::error!(error = %m, "console: backup failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backup_failed",
                m,
            ))
        }
    }
}
