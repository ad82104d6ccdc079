//! `App::build(config, role)` connects what can be connected lazily and binds
//! the API listener; `app.run(cancel)` runs the role until `cancel`, then shuts
//! down in order. `main` and every test make exactly these two calls.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    api::{self, AppState},
    broker::{link::Link, topology::Topology},
    config::Config,
    delivery::{credentials::Credentials, http::HttpClient, worker::DeliveryCore},
    metrics::Metrics,
    subscriptions::{snapshot::Subscriptions, store::Store},
    supervisor::Worker,
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

/// Broker connectivity of the parts this role runs, for `/readyz` and metrics.
pub struct Health {
    role: Role,
    api_link: AtomicBool,
    worker: Arc<AtomicBool>,
}

impl Health {
    pub fn broker_connected(&self) -> bool {
        let api = !self.role.serves_api() || self.api_link.load(Ordering::Acquire);
        let worker = !self.role.runs_worker() || self.worker.load(Ordering::Acquire);
        api && worker
    }
}

pub struct App {
    config: Arc<Config>,
    role: Role,
    metrics: Arc<Metrics>,
    topology: Arc<Topology>,
    store: Store,
    subscriptions: Arc<Subscriptions>,
    link: Arc<Link>,
    health: Arc<Health>,
    listener: TcpListener,
}

impl App {
    pub async fn build(config: Config, role: Role) -> anyhow::Result<Self> {
        config.validate()?;
        if role.serves_api() {
            config.validate_api()?;
        }
        let policy = config.retry_policy();
        let topology = Topology::new(
            &config.amqp.prefix,
            config.amqp.queue_type,
            config.amqp.delivery_limit.get(),
            policy.buckets(),
        );
        let store = Store::new(config.redis.url.expose(), &config.redis.prefix)
            .with_context(|| format!("redis.url: {}", config.redis.url.masked()))?;
        let listener = TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("api.listen: cannot listen on {}", config.api.listen))?;
        let health = Arc::new(Health {
            role,
            api_link: AtomicBool::new(false),
            worker: Arc::new(AtomicBool::new(false)),
        });
        let credentials = Arc::new(Credentials::new(&config.credentials.dir));
        Ok(Self {
            metrics: Arc::new(Metrics::new(config.metrics.per_subscription)),
            config: Arc::new(config),
            role,
            topology: Arc::new(topology),
            store,
            subscriptions: Arc::new(Subscriptions::new(credentials)),
            link: Arc::new(Link::new()),
            health,
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
        let App {
            config,
            role,
            metrics,
            topology,
            store,
            subscriptions,
            link,
            health,
            listener,
        } = self;
        info!(role = ?role, api = %listener.local_addr()?, prefix = %config.amqp.prefix, "herald starting");
        let tasks = tokio_util::task::TaskTracker::new();

        {
            let (subscriptions, store, metrics, cancel) = (
                subscriptions.clone(),
                store.clone(),
                metrics.clone(),
                cancel.clone(),
            );
            tasks.spawn(async move { subscriptions.refresh(&store, &metrics, &cancel).await });
        }

        if role.serves_api() {
            let (link, config, topology, cancel, health) = (
                link.clone(),
                config.clone(),
                topology.clone(),
                cancel.clone(),
                health.clone(),
            );
            tasks.spawn(async move {
                // With a worker in this process its session declares the topology; two
                // concurrent declarations of the same quorum queues have wedged RabbitMQ 3.10.
                let declare = (role == Role::Api).then_some(&*topology);
                link.run(&config.amqp, declare, &cancel, |up| {
                    health.api_link.store(up, Ordering::Release);
                })
                .await;
            });
        }

        // One client, one guard: real deliveries and the test route send alike.
        let http = HttpClient::new(config.delivery.max_response_bytes, config.egress_policy()?)?;
        if role.runs_worker() {
            let core = Arc::new(DeliveryCore::new(
                subscriptions.clone(),
                store.clone(),
                http.clone(),
                topology.clone(),
                metrics.clone(),
                config.retry_policy(),
                config.delivery.timeout,
                config.delivery.max_in_flight_per_subscription.get() as usize,
            ));
            let worker = Worker {
                config: config.clone(),
                core,
                connected: health.worker.clone(),
            };
            let cancel = cancel.clone();
            tasks.spawn(async move { worker.run(cancel).await });
        }

        // Health and metrics are served in every role; /v1/ routes only where the API runs.
        let state = Arc::new(AppState {
            config: config.clone(),
            metrics: metrics.clone(),
            store,
            subscriptions,
            link,
            topology,
            health: health.clone(),
            http,
        });
        let router = api::router(state, role.serves_api());
        let shutdown = cancel.clone();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving the API")?;
        tasks.close();
        tasks.wait().await;
        info!("herald stopped");
        Ok(())
    }
}
