//! The handle modules run against: the store, the environment, metrics and view progress.

use std::sync::Arc;

use dcb_core::EventStore;

use crate::env::{Environment, SystemEnv};
use crate::metrics::Metrics;
use crate::services::Services;
use crate::view::Progress;

/// The shared handle every command, view, automation and HTTP handler uses (also the axum
/// state). Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    store: Arc<dyn EventStore>,
    env: Arc<dyn Environment>,
    metrics: Metrics,
    progress: Progress,
    services: Services,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime over `store` with the real clock and random ids.
    pub fn new(store: Arc<dyn EventStore>) -> Runtime {
        Runtime::with_env(store, Arc::new(SystemEnv::new()))
    }

    /// A runtime over `store` with a chosen environment (tests pass a [`TestEnv`](crate::TestEnv)).
    pub fn with_env(store: Arc<dyn EventStore>, env: Arc<dyn Environment>) -> Runtime {
        Runtime {
            store,
            env,
            metrics: Metrics::default(),
            progress: Progress::default(),
            services: Services::new(),
        }
    }

    /// Registers a service (a mailer, secrets, a client) that handlers and automations can ask
    /// for by type with [`Runtime::service`].
    pub fn with_service<T: Clone + Send + Sync + 'static>(mut self, service: T) -> Runtime {
        self.services.insert(service);
        self
    }

    /// The service of type `T`, when the host registered one.
    pub fn service<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.services.get::<T>()
    }

    /// The service of type `T`, or a 503 `service_missing` error naming it (for handlers).
    pub fn require_service<T: Clone + Send + Sync + 'static>(
        &self,
    ) -> Result<T, crate::http::ApiError> {
        self.service::<T>().ok_or_else(|| {
            crate::http::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "service_missing",
                format!("the host provides no {}", std::any::type_name::<T>()),
            )
        })
    }

    /// The event store.
    pub fn store(&self) -> &dyn EventStore {
        &*self.store
    }

    /// The event store, shared.
    pub fn store_arc(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    /// The environment.
    pub fn env(&self) -> &dyn Environment {
        &*self.env
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }
}
