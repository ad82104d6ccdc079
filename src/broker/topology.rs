//! Every exchange and queue herald uses, named from `amqp.prefix`, and their
//! declaration. Declaring is idempotent: the same arguments every time, and
//! delay queues are named by their TTL so a changed schedule adds queues
//! instead of redeclaring old ones with different arguments (PRECONDITION_FAILED).

use std::time::Duration;

use anyhow::Context as _;
use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};

use crate::config::QueueType;

#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    queue_type: QueueType,
    delivery_limit: u32,
    events: String,
    deliveries: String,
    dead: String,
    rejected: String,
    outcomes: String,
    delays: Vec<Duration>,
}

impl Topology {
    /// `delays` are the delay-queue TTLs the retry policy can ask for.
    pub fn new(
        prefix: &str,
        queue_type: QueueType,
        delivery_limit: u32,
        delays: Vec<Duration>,
    ) -> Self {
        Self {
            prefix: prefix.to_owned(),
            queue_type,
            delivery_limit,
            events: Self::events_of(prefix),
            deliveries: format!("{prefix}.deliveries"),
            dead: format!("{prefix}.dead"),
            rejected: format!("{prefix}.rejected"),
            outcomes: format!("{prefix}.outcomes"),
            delays,
        }
    }

    /// The topic exchange producers publish to, and the queue bound to all of it.
    pub fn events(&self) -> &str {
        &self.events
    }

    /// [`events`](Self::events) for `prefix`, for a producer that declares nothing.
    pub fn events_of(prefix: &str) -> String {
        format!("{prefix}.events")
    }
    pub fn deliveries(&self) -> &str {
        &self.deliveries
    }
    pub fn dead(&self) -> &str {
        &self.dead
    }
    pub fn rejected(&self) -> &str {
        &self.rejected
    }
    /// The topic exchange outcome events go to (`delivery.succeeded`, ...).
    pub fn outcomes(&self) -> &str {
        &self.outcomes
    }
    /// The stream dead letters rest in once `<p>.dead` handed them over.
    pub fn dead_log(&self) -> String {
        format!("{}.log", self.dead)
    }
    /// The stream of dead letters replayed or purged (by their offset in the log).
    pub fn dead_settled(&self) -> String {
        format!("{}.settled", self.dead)
    }
    /// The delay queue whose TTL is `delay` (one of `delays()`).
    pub fn delay(&self, delay: Duration) -> String {
        format!("{}.delay.{}ms", self.prefix, delay.as_millis())
    }
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// Every queue herald owns, for metrics and tests.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = vec![
            self.events.clone(),
            self.deliveries.clone(),
            self.dead.clone(),
            self.rejected.clone(),
        ];
        queues.extend(self.delays.iter().map(|d| self.delay(*d)));
        queues
    }

    /// Declares the exchanges, every queue and the one binding.
    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        for exchange in [&self.events, &self.outcomes] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("declaring exchange {exchange}"))?;
        }

        // Messages that crash workers over and over end in <p>.dead (reason `poison`).
        let work = self.arguments(Some(&self.dead), None);
        self.declare_queue(channel, &self.events, work.clone())
            .await?;
        self.declare_queue(channel, &self.deliveries, work).await?;
        self.declare_queue(channel, &self.dead, self.arguments(None, None))
            .await?;
        self.declare_queue(channel, &self.rejected, self.arguments(None, None))
            .await?;
        // One delay queue per bucket: per-message TTLs only expire at the head of a queue.
        for delay in &self.delays {
            let args = self.arguments(Some(&self.deliveries), Some(*delay));
            self.declare_queue(channel, &self.delay(*delay), args)
                .await?;
        }
        channel
            .queue_bind(
                self.events.as_str().into(),
                self.events.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding queue {0} to exchange {0}", self.events))?;
        Ok(())
    }

    async fn declare_queue(
        &self,
        channel: &Channel,
        name: &str,
        args: FieldTable,
    ) -> anyhow::Result<()> {
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .with_context(|| format!("declaring queue {name}"))?;
        Ok(())
    }

    /// Queue arguments: dead-lettering via the default exchange to `dead_letter_to`, and a TTL.
    fn arguments(&self, dead_letter_to: Option<&str>, ttl: Option<Duration>) -> FieldTable {
        let mut args = FieldTable::default();
        let quorum = self.queue_type == QueueType::Quorum;
        if quorum {
            args.insert("x-queue-type".into(), string("quorum"));
        }
        if let Some(target) = dead_letter_to {
            args.insert("x-dead-letter-exchange".into(), string(""));
            args.insert("x-dead-letter-routing-key".into(), string(target));
            if quorum {
                // The broker's default dead-lettering is at-most-once; this one is not.
                args.insert("x-dead-letter-strategy".into(), string("at-least-once"));
                args.insert("x-overflow".into(), string("reject-publish"));
            }
        }
        if let Some(ttl) = ttl {
            let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
        } else if quorum && dead_letter_to.is_some() {
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
        }
        args
    }
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}
