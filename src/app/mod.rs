//! `App::build(config, role)` connects what can be connected lazily and binds
//! the API listener; `app.run(cancel)` runs the role until `cancel`, then shuts
//! down in order. `main` and every test make exactly these two calls.

mod worker;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

use self::worker::WorkerRole;
use crate::{
    api::{self, AppState, Routes},
    broker::{
        connectivity::{Connectivity, SessionUp},
        link::Link,
        topology::Topology,
    },
    config::Config,
    delivery::{egress::EgressPolicy, http::HttpClient, retry::RetryPolicy, shared::DeliveryCore},
    metrics::Metrics,
    subscriptions::{credentials::Credentials, current::Subscriptions, store::Store},
};

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// API and worker in one process.
    All,
    /// The HTTP API only (ingest, subscriptions, health, metrics).
    Api,
    /// Fan-out and delivery only (health and metrics are still served).
    Worker,
}

impl Role {
    fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }
    fn runs_worker(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

pub struct App {
    config: Arc<Config>,
    role: Role,
    metrics: Arc<Metrics>,
    topology: Arc<Topology>,
    store: Store,
    subscriptions: Arc<Subscriptions>,
    http: HttpClient,
    /// The API link's session, when this role serves the API.
    api_up: Option<SessionUp>,
    /// The worker's session, when this role runs the worker.
    worker_up: Option<SessionUp>,
    connectivity: Arc<Connectivity>,
    listener: TcpListener,
}

impl App {
    pub async fn build(config: Config, role: Role) -> anyhow::Result<Self> {
        config.validate()?;
        if role.serves_api() {
            config.validate_api()?;
        }
        let topology = Topology::new(
            &config.amqp.prefix,
            config.amqp.queue_type,
            config.amqp.delivery_limit.get(),
            RetryPolicy::from_config(&config.delivery).buckets(),
        );
        let store = Store::new(&config.redis)
            .with_context(|| format!("redis.url: {}", config.redis.url.masked()))?;
        let listener = TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("api.listen: cannot listen on {}", config.api.listen))?;
        // One client, one guard: real deliveries and the test route send alike.
        let http = HttpClient::new(
            config.delivery.max_response_bytes,
            EgressPolicy::from_config(&config.delivery),
        )?;
        let mut connectivity = Connectivity::default();
        let api_up = role.serves_api().then(|| connectivity.track());
        let worker_up = role.runs_worker().then(|| connectivity.track());
        let credentials = Arc::new(Credentials::new(&config.credentials.dir));
        Ok(Self {
            metrics: Arc::new(Metrics::new(config.metrics.per_subscription)),
            config: Arc::new(config),
            role,
            topology: Arc::new(topology),
            store,
            subscriptions: Arc::new(Subscriptions::new(credentials)),
            http,
            api_up,
            worker_up,
            connectivity: Arc::new(connectivity),
            listener,
        })
    }

    /// Where the API listens (useful with port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has a local address")
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Runs until `cancel`; then the worker drains and the API finishes open requests.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        info!(role = ?self.role, api = %self.listener.local_addr()?, prefix = %self.config.amqp.prefix, "herald starting");
        let tasks = TaskTracker::new();
        let link = Arc::new(Link::new());
        self.spawn_refresher(&tasks, &cancel);
        if let Some(up) = self.api_up.clone() {
            self.spawn_api_link(&tasks, &link, up, &cancel);
        }
        if let Some(up) = self.worker_up.clone() {
            self.spawn_worker(&tasks, up, &cancel);
        }
        // Health and metrics are served in every role; /v1/ routes only where the API runs.
        let routes = if self.role.serves_api() {
            Routes::All
        } else {
            Routes::HealthAndMetrics
        };
        let state = Arc::new(AppState {
            config: self.config,
            metrics: self.metrics,
            store: self.store,
            subscriptions: self.subscriptions,
            link,
            topology: self.topology,
            connectivity: self.connectivity,
            http: self.http,
        });
        let shutdown = cancel.clone();
        axum::serve(self.listener, api::router(state, routes))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving the API")?;
        tasks.close();
        tasks.wait().await;
        info!("herald stopped");
        Ok(())
    }

    fn spawn_refresher(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        let (subscriptions, store, cancel) = (
            self.subscriptions.clone(),
            self.store.clone(),
            cancel.clone(),
        );
        tasks.spawn(async move { subscriptions.refresh(&store, &cancel).await });
    }

    fn spawn_api_link(
        &self,
        tasks: &TaskTracker,
        link: &Arc<Link>,
        up: SessionUp,
        cancel: &CancellationToken,
    ) {
        let (link, config, topology, cancel) = (
            link.clone(),
            self.config.clone(),
            self.topology.clone(),
            cancel.clone(),
        );
        // With a worker in this process its session declares the topology; two
        // concurrent declarations of the same quorum queues have wedged RabbitMQ 3.10.
        let declare = self.worker_up.is_none();
        tasks.spawn(async move {
            let declare = declare.then_some(&*topology);
            link.run(&config.amqp, declare, up, &cancel).await;
        });
    }

    fn spawn_worker(&self, tasks: &TaskTracker, up: SessionUp, cancel: &CancellationToken) {
        let core = Arc::new(DeliveryCore::new(
            &self.config,
            self.subscriptions.clone(),
            self.store.clone(),
            self.http.clone(),
            self.topology.clone(),
            self.metrics.clone(),
        ));
        let worker = WorkerRole::new(self.config.clone(), core, up);
        let cancel = cancel.clone();
        tasks.spawn(async move { worker.run(cancel).await });
    }
}
