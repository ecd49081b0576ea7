//! The queue on NATS JetStream, shared by several router instances.
//!
//! Layout, all named after `queue.nats.stream` (`S` below):
//! - stream `S`, subjects `S.events.<event id>`: one message per accepted event (the journal
//!   record format of [`super::record`]), published with `Nats-Msg-Id: <route>:<dedup key>` so
//!   JetStream's duplicate window drops a provider's retry whichever instance it reaches.
//!   Limits retention (`retention`, `max_size`, discard new: a full stream refuses, so ingest
//!   answers 503 rather than dropping what it accepted).
//! - stream `S_DELIVER` (work-queue retention), subjects `S.deliver.<target>.<event id>`: one
//!   small ticket per delivery, published after the event (`Nats-Msg-Id:
//!   <route>:<dedup key>:<target>`, so a provider's retry after a partial publish completes the
//!   set without doubling any), removed once acknowledged. Each target has one durable pull
//!   consumer on its own subjects, shared by every instance, so a consumer sees only its own
//!   target's deliveries and its backlog is exactly what waits for that target. An instance
//!   pulls only what its worker can start at once, reads the event, acks after success, naks
//!   with the retry policy's delay after a retryable failure, and after the last attempt copies
//!   the event to the dead-letter stream, then acks. Tickets an instance holds are kept alive
//!   with progress acks; if it dies, JetStream hands them to another after `ack_wait`.
//! - stream `S_DLQ`, subjects `S.dlq.<event id>.<target>`: one copy per dead delivery.
//! - stream `S_ATTEMPTS`, subjects `S.attempts.<event id>.<target>`: every attempt (the
//!   last 64 per delivery), for `events`, `dlq` and `events show`.
//! - stream `S_INSTANCES`, subjects `S.instances.<id>`: one entry per running instance,
//!   refreshed every few seconds, with its config generation and digest.
//!
//! A replay publishes new tickets for the replayed targets, carrying the attempts made so far,
//! and removes their dead letters.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::{
    HeaderMap as NatsHeaders,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
        message::Acker,
        stream::{DiscardPolicy, RetentionPolicy, StorageType},
    },
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{
    Appended, AttemptRecord, AttemptView, DeliveryState, DeliveryView, EventView, ListFilter,
    NewEvent, Pending, QueueError, ReplaySelection, Stats, StoredEvent, now_ms, record, rfc3339,
};

/// Most stream messages one listing reads before it answers with what it found.
const SCAN_LIMIT: u64 = 20_000;
/// How long one pull waits for messages before the worker asks again.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// Attempts kept per delivery for `events show` (the bucket's history).
const HISTORY: i64 = 64;
/// How often an instance refreshes its entry in the instances bucket.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long an instance's entry outlives its last refresh.
const INSTANCE_TTL: Duration = Duration::from_secs(30);
/// How often the shared backlog per target is read for the metrics.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

const EVENT_ID: &str = "Hookrouter-Event-Id";
/// On a replay's ticket: the attempts made before it.
const PRIOR: &str = "Hookrouter-Prior-Attempts";
const TARGET: &str = "Hookrouter-Target";

/// The queue on JetStream.
pub(crate) struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    settings: crate::config::Nats,
    events: jetstream::stream::Stream,
    /// `S_DELIVER`: the delivery tickets.
    deliver: jetstream::stream::Stream,
    dlq: jetstream::stream::Stream,
    /// `S_ATTEMPTS`, subjects `S.attempts.<event id>.<target>`: every attempt.
    attempts: jetstream::stream::Stream,
    /// `S_INSTANCES`, subjects `S.instances.<id>`: one entry per running instance.
    instances: jetstream::stream::Stream,
    consumers: Mutex<HashMap<String, Arc<PullConsumer>>>,
    /// Deliveries this instance pulled and has not finished: their ack handles.
    held: Mutex<HashMap<(String, String), Held>>,
    /// Per target: messages its consumer has yet to pass or see acked, and the age of the
    /// oldest of them, in seconds (read every few seconds, for the gauges).
    backlog: Mutex<BTreeMap<String, (i64, f64)>>,
    /// This instance's id in the instances bucket.
    instance: String,
}

struct Held {
    acker: Arc<Acker>,
}

/// An attempt as stored in the deliveries bucket.
#[derive(Debug, Serialize, Deserialize)]
struct StoredAttempt {
    state: DeliveryState,
    /// 0 for the entry a replay writes.
    attempt: u32,
    at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    latency_ms: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    next_ms: i64,
}

/// One running instance, as the instances bucket holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) version: String,
    /// The config generation it runs (1 at its start, +1 per reload).
    pub(crate) generation: u64,
    /// A digest of its config file: instances with the same digest run the same config.
    pub(crate) config_digest: String,
    /// RFC 3339.
    pub(crate) started_at: String,
    /// RFC 3339.
    pub(crate) seen_at: String,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(format!("NATS: {what}: {e}"))
}

impl Nats {
    /// Connects, creates or updates the streams and buckets, and starts the background tasks
    /// (progress acks, backlog gauges). `dedup` is the routes' longest dedup window, used when
    /// `duplicate_window` is not set.
    pub(crate) async fn open(
        settings: &crate::config::Nats,
        dedup: Duration,
    ) -> Result<Arc<Nats>, QueueError> {
        let hosts: Vec<String> = settings
            .urls
            .iter()
            .map(|u| crate::config::redact_url(u))
            .collect();
        let addrs: Vec<async_nats::ServerAddr> = settings
            .urls
            .iter()
            .filter_map(|u| u.parse().ok())
            .collect();
        let client = async_nats::ConnectOptions::new()
            .name("hookrouter")
            .connection_timeout(Duration::from_secs(5))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting");
                    }
                    other => tracing::warn!(event = %other, "NATS"),
                }
            })
            .connect(addrs)
            .await
            .map_err(|e| {
                QueueError::Unavailable(format!(
                    "cannot connect to NATS at {}: {e}",
                    hosts.join(", ")
                ))
            })?;
        let js = jetstream::new(client.clone());
        let s = &settings.stream;
        let window = settings
            .duplicate_window
            .unwrap_or(dedup)
            .clamp(Duration::from_secs(1), settings.retention);
        let events = ensure_stream(
            &js,
            "cannot set up the event stream",
            jetstream::stream::Config {
                name: s.clone(),
                description: Some("hookrouter: accepted events".into()),
                subjects: vec![format!("{s}.events.*")],
                retention: RetentionPolicy::Limits,
                discard: DiscardPolicy::New,
                max_age: settings.retention,
                max_bytes: i64::try_from(settings.max_size).unwrap_or(i64::MAX),
                duplicate_window: window,
                num_replicas: settings.replicas,
                storage: StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let deliver = ensure_stream(
            &js,
            "cannot set up the delivery stream",
            jetstream::stream::Config {
                name: format!("{s}_DELIVER"),
                description: Some(
                    "hookrouter: deliveries waiting, one per event and target".into(),
                ),
                subjects: vec![format!("{s}.deliver.*.*")],
                retention: RetentionPolicy::WorkQueue,
                discard: DiscardPolicy::New,
                max_age: settings.retention,
                duplicate_window: window,
                num_replicas: settings.replicas,
                storage: StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let dlq = ensure_stream(
            &js,
            "cannot set up the dead-letter stream",
            jetstream::stream::Config {
                name: format!("{s}_DLQ"),
                description: Some("hookrouter: dead letters".into()),
                subjects: vec![format!("{s}.dlq.*.*")],
                retention: RetentionPolicy::Limits,
                discard: DiscardPolicy::Old,
                max_messages_per_subject: 1,
                max_age: settings.dead_retention,
                num_replicas: settings.replicas,
                storage: StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let attempts = ensure_stream(
            &js,
            "cannot set up the attempts stream",
            jetstream::stream::Config {
                name: format!("{s}_ATTEMPTS"),
                description: Some("hookrouter: delivery attempts".into()),
                subjects: vec![format!("{s}.attempts.*.*")],
                retention: RetentionPolicy::Limits,
                discard: DiscardPolicy::Old,
                max_messages_per_subject: HISTORY,
                max_age: settings.retention.max(settings.dead_retention),
                num_replicas: settings.replicas,
                storage: StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let instances = ensure_stream(
            &js,
            "cannot set up the instances stream",
            jetstream::stream::Config {
                name: format!("{s}_INSTANCES"),
                description: Some("hookrouter: running instances".into()),
                subjects: vec![format!("{s}.instances.*")],
                retention: RetentionPolicy::Limits,
                discard: DiscardPolicy::Old,
                max_messages_per_subject: 1,
                max_age: INSTANCE_TTL,
                num_replicas: settings.replicas,
                // On file, like the rest, so it outlives a restart of the NATS server.
                storage: StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let nats = Arc::new(Nats {
            client,
            js,
            settings: settings.clone(),
            events,
            deliver,
            dlq,
            attempts,
            instances,
            consumers: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            backlog: Mutex::new(BTreeMap::new()),
            instance: uuid::Uuid::now_v7().simple().to_string(),
        });
        tokio::spawn(keep_alive(Arc::downgrade(&nats)));
        tokio::spawn(read_backlog(Arc::downgrade(&nats)));
        tracing::info!(
            servers = %hosts.join(", "),
            stream = %s,
            duplicate_window = ?window,
            "NATS JetStream queue open"
        );
        Ok(nats)
    }

    fn subject(&self, id: &str) -> String {
        format!("{}.events.{id}", self.settings.stream)
    }

    fn ticket_subject(&self, target: &str, id: &str) -> String {
        format!("{}.deliver.{target}.{id}", self.settings.stream)
    }

    fn dlq_subject(&self, id: &str, target: &str) -> String {
        format!("{}.dlq.{id}.{target}", self.settings.stream)
    }

    /// The target's consumer, created if it does not exist yet.
    async fn consumer(&self, target: &str) -> Result<Arc<PullConsumer>, QueueError> {
        if let Some(c) = self
            .consumers
            .lock()
            .ok()
            .and_then(|m| m.get(target).cloned())
        {
            return Ok(c);
        }
        let config = pull::Config {
            durable_name: Some(target.to_string()),
            description: Some(format!("hookrouter: deliveries to {target}")),
            filter_subject: format!("{}.deliver.{target}.*", self.settings.stream),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        let mut c: PullConsumer = self
            .deliver
            .get_or_create_consumer(target, config.clone())
            .await
            .map_err(|e| unavailable(&format!("cannot set up the consumer for {target}"), e))?;
        if c.cached_info().config.ack_wait != self.settings.ack_wait {
            // `ack_wait` changed since the consumer was made: the settings of the instance
            // started last apply (the start position is kept).
            match self.deliver.create_consumer(config).await {
                Ok(updated) => c = updated,
                Err(e) => {
                    tracing::warn!(target_name = %target, error = %e, "cannot change the consumer's ack_wait; keeping its own");
                }
            }
        }
        let c = Arc::new(c);
        if let Ok(mut m) = self.consumers.lock() {
            m.insert(target.to_string(), c.clone());
        }
        Ok(c)
    }

    fn connected(&self) -> Result<(), QueueError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(QueueError::Unavailable("not connected to NATS".into())),
        }
    }

    /// Publishes the event, then its delivery tickets, and returns once JetStream has stored
    /// them all.
    pub(crate) async fn append(&self, mut e: NewEvent) -> Result<Appended, QueueError> {
        self.connected()?;
        let mut payload = Vec::with_capacity(e.body.len() + 512);
        record::encode_event(&e, &mut payload);
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(payload))
            .header(EVENT_ID, e.id.as_str());
        if let Some(key) = &e.dedup_key {
            publish = publish.message_id(format!("{}:{key}", e.route));
        }
        let ack = self
            .js
            .send_publish(self.subject(&e.id), publish)
            .await
            .map_err(|err| unavailable("publish failed", err))?
            .await
            .map_err(|err| unavailable("publish not acknowledged", err))?;
        let duplicate = ack.duplicate;
        if duplicate {
            // The acknowledgement of a duplicate carries the first message's sequence. Its
            // tickets are published again below (each deduplicated by its own id), so a
            // first attempt that stopped half-way is completed rather than left short.
            let first = self
                .events
                .get_raw_message(ack.sequence)
                .await
                .map_err(|err| unavailable("cannot read the first copy of a duplicate", err))?;
            let Some(first) = record::decode_event(&first.payload) else {
                return Err(QueueError::Unavailable(
                    "the first copy of a duplicate is unreadable".into(),
                ));
            };
            e.id = first.id;
            e.targets = first.targets;
        }
        self.publish_tickets(&e, None).await?;
        if duplicate {
            Ok(Appended::Duplicate { id: e.id })
        } else {
            Ok(Appended::Stored)
        }
    }

    /// Publishes a ticket per target of `e` (all sent, then all acknowledgements awaited). A
    /// replay passes the attempts made so far and publishes without message ids.
    async fn publish_tickets(
        &self,
        e: &NewEvent,
        replay: Option<&[(String, u32)]>,
    ) -> Result<(), QueueError> {
        let mut acks = Vec::with_capacity(e.targets.len());
        for t in &e.targets {
            let mut ticket = jetstream::message::PublishMessage::build()
                .payload(Bytes::new())
                .header(EVENT_ID, e.id.as_str());
            match replay {
                Some(prior) => {
                    let made = prior
                        .iter()
                        .find(|(name, _)| name == t)
                        .map_or(0, |(_, n)| *n);
                    ticket = ticket.header(PRIOR, made.to_string().as_str());
                }
                None => {
                    if let Some(key) = &e.dedup_key {
                        ticket = ticket.message_id(format!("{}:{key}:{t}", e.route));
                    }
                }
            }
            acks.push(
                self.js
                    .send_publish(self.ticket_subject(t, &e.id), ticket)
                    .await
                    .map_err(|err| unavailable("delivery not published", err))?,
            );
        }
        for ack in acks {
            ack.await
                .map_err(|err| unavailable("delivery not acknowledged", err))?;
        }
        Ok(())
    }

    /// Pulls up to `room` deliveries for `target` (waiting a few seconds for the first) and
    /// hands each to `take` as it arrives; the engine reads the event when the attempt starts.
    pub(crate) async fn pull(
        &self,
        target: &str,
        room: usize,
        take: &mut (dyn FnMut(Pending) + Send),
    ) -> Result<(), QueueError> {
        self.connected()?;
        let consumer = self.consumer(target).await?;
        let mut batch = consumer
            .batch()
            .max_messages(room)
            .expires(PULL_WAIT)
            .messages()
            .await
            .map_err(|e| unavailable("pull failed", e))?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| unavailable("pull failed", e))?;
            let (delivered, published_ms) = match m.info() {
                Ok(i) => (
                    u32::try_from(i.delivered.max(1)).unwrap_or(u32::MAX),
                    i64::try_from(i.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
                ),
                Err(_) => (1, now_ms()),
            };
            let header = |name: &str| {
                m.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
            };
            let prior: u32 = header(PRIOR).and_then(|v| v.parse().ok()).unwrap_or(0);
            let id = header(EVENT_ID).unwrap_or_default();
            let (_, acker) = m.split();
            let acker = Arc::new(acker);
            if !valid_token(&id) {
                tracing::error!(target_name = %target, "a delivery without a valid event id; dropped");
                let _ = acker.ack_with(AckKind::Term).await;
                continue;
            }
            let key = (id.clone(), target.to_string());
            let taken = match self.held.lock() {
                Ok(mut held) if !held.contains_key(&key) => {
                    held.insert(
                        key,
                        Held {
                            acker: acker.clone(),
                        },
                    );
                    true
                }
                Ok(_) => false,
                Err(_) => return Err(QueueError::Closed),
            };
            if !taken {
                // Already being delivered here (a replay beside the first round): later, once
                // that one is settled.
                let _ = acker
                    .ack_with(AckKind::Nak(Some(self.settings.ack_wait)))
                    .await;
                continue;
            }
            let pending = Pending {
                event_id: id,
                target: target.to_string(),
                attempts: prior + delivered - 1,
                round_attempts: delivered - 1,
                round_started_ms: published_ms,
                next_ms: now_ms(),
            };
            // The attempt reads the event itself, so this loop only hands out tickets.
            take(pending);
        }
        Ok(())
    }

    /// Records an attempt, then acks (delivered), naks with the retry delay (pending) or
    /// moves the event to the dead letters and acks (dead). Runs in its own task.
    pub(crate) fn record(self: &Arc<Self>, a: AttemptRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let held = this
                .held
                .lock()
                .ok()
                .and_then(|mut h| h.remove(&(a.event_id.clone(), a.target.clone())));
            let Some(held) = held else {
                return;
            };
            let stored = StoredAttempt {
                state: a.state,
                attempt: a.n,
                at_ms: a.at_ms,
                status: a.status,
                latency_ms: a.latency_ms,
                error: a.error.clone(),
                next_ms: a.next_ms,
            };
            // Sent without waiting for JetStream's acknowledgement: the record and then the
            // ack below travel on one connection in order, so the record is stored before the
            // ticket is settled; a record lost with the connection costs history, not the
            // delivery (a dead letter is acknowledged, below).
            if let Err(e) = this.send_attempt(&a.event_id, &a.target, &stored).await {
                tracing::warn!(event_id = %a.event_id, target_name = %a.target, error = %e, "cannot record the attempt in NATS");
            }
            let kind = match a.state {
                DeliveryState::Delivered => AckKind::Ack,
                DeliveryState::Pending => {
                    let delay = u64::try_from(a.next_ms - now_ms()).unwrap_or(0);
                    AckKind::Nak(Some(Duration::from_millis(delay.max(1))))
                }
                DeliveryState::Dead => match this.dead_letter(&a).await {
                    Ok(()) => AckKind::Ack,
                    Err(e) => {
                        tracing::error!(event_id = %a.event_id, target_name = %a.target, error = %e, "cannot store the dead letter; the delivery will be tried again");
                        AckKind::Nak(Some(Duration::from_secs(5)))
                    }
                },
            };
            if let Err(e) = held.acker.ack_with(kind).await {
                tracing::warn!(event_id = %a.event_id, target_name = %a.target, error = %e, "cannot acknowledge in NATS; the delivery may be repeated");
            }
        });
    }

    async fn dead_letter(&self, a: &AttemptRecord) -> Result<(), QueueError> {
        let payload = match self
            .events
            .get_last_raw_message_by_subject(&self.subject(&a.event_id))
            .await
        {
            Ok(m) => m.payload,
            Err(e) => return Err(unavailable("cannot read the event for its dead letter", e)),
        };
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .header(EVENT_ID, a.event_id.as_str())
            .header(TARGET, a.target.as_str());
        self.js
            .send_publish(self.dlq_subject(&a.event_id, &a.target), publish)
            .await
            .map_err(|e| unavailable("dead letter not published", e))?
            .await
            .map_err(|e| unavailable("dead letter not acknowledged", e))?;
        Ok(())
    }

    /// The stored event with this id, if still kept.
    async fn find(&self, id: &str) -> Result<Option<NewEvent>, QueueError> {
        if !valid_token(id) {
            return Ok(None);
        }
        match self
            .events
            .get_last_raw_message_by_subject(&self.subject(id))
            .await
        {
            Ok(m) => Ok(record::decode_event(&m.payload)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(unavailable("cannot read the event", e)),
        }
    }

    /// A pulled delivery whose event is no longer stored: acknowledged, so it is not handed
    /// out again.
    pub(crate) fn forget(self: &Arc<Self>, event_id: &str, target: &str) {
        let held = self
            .held
            .lock()
            .ok()
            .and_then(|mut h| h.remove(&(event_id.to_string(), target.to_string())));
        if let Some(held) = held {
            tracing::error!(target_name = %target, event_id = %event_id, "a delivery's event is no longer stored (queue.nats.retention passed?); dropped");
            tokio::spawn(async move {
                let _ = held.acker.ack_with(AckKind::Term).await;
            });
        }
    }

    /// An event as the engine needs it.
    pub(crate) async fn load(&self, id: &str) -> Result<Option<StoredEvent>, QueueError> {
        Ok(self.find(id).await?.map(|e| StoredEvent::from_new(&e)))
    }

    fn attempt_subject(&self, id: &str, target: &str) -> String {
        format!("{}.attempts.{id}.{target}", self.settings.stream)
    }

    async fn send_attempt(
        &self,
        id: &str,
        target: &str,
        a: &StoredAttempt,
    ) -> Result<(), QueueError> {
        let v = serde_json::to_vec(a).map_err(|e| QueueError::Unavailable(e.to_string()))?;
        self.client
            .publish(self.attempt_subject(id, target), Bytes::from(v))
            .await
            .map_err(|e| unavailable("attempt not published", e))
    }

    async fn put_attempt(
        &self,
        id: &str,
        target: &str,
        a: &StoredAttempt,
    ) -> Result<(), QueueError> {
        let v = serde_json::to_vec(a).map_err(|e| QueueError::Unavailable(e.to_string()))?;
        self.js
            .publish(self.attempt_subject(id, target), Bytes::from(v))
            .await
            .map_err(|e| unavailable("attempt not published", e))?
            .await
            .map_err(|e| unavailable("attempt not acknowledged", e))?;
        Ok(())
    }

    /// The delivery's attempts, oldest first (empty when none was made).
    async fn attempts(&self, id: &str, target: &str) -> Result<Vec<StoredAttempt>, QueueError> {
        let subject = self.attempt_subject(id, target);
        let mut out = Vec::new();
        let mut seq = 1;
        for _ in 0..HISTORY {
            match self
                .attempts
                .get_first_raw_message_by_subject(&subject, seq)
                .await
            {
                Ok(m) => {
                    seq = m.sequence + 1;
                    if let Ok(a) = serde_json::from_slice::<StoredAttempt>(&m.payload) {
                        out.push(a);
                    }
                }
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(unavailable("cannot read delivery attempts", e)),
            }
        }
        Ok(out)
    }

    /// The delivery's latest state (pending with no attempt when none is recorded).
    async fn delivery(&self, id: &str, target: &str) -> Result<DeliveryView, QueueError> {
        let latest = match self
            .attempts
            .get_last_raw_message_by_subject(&self.attempt_subject(id, target))
            .await
        {
            Ok(m) => serde_json::from_slice::<StoredAttempt>(&m.payload).ok(),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(unavailable("cannot read the delivery state", e)),
        };
        Ok(match latest {
            None => DeliveryView {
                target: target.to_string(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: None,
                last_status: None,
                last_error: None,
            },
            Some(a) => DeliveryView {
                target: target.to_string(),
                state: a.state,
                attempts: a.attempt,
                next_attempt_at: (a.state == DeliveryState::Pending).then(|| rfc3339(a.next_ms)),
                last_status: a.status,
                last_error: a.error,
            },
        })
    }

    async fn view(&self, e: &NewEvent, with_attempts: bool) -> Result<EventView, QueueError> {
        let mut deliveries = Vec::with_capacity(e.targets.len());
        let mut attempts = Vec::new();
        for t in &e.targets {
            deliveries.push(self.delivery(&e.id, t).await?);
            if with_attempts {
                for a in self.attempts(&e.id, t).await? {
                    if a.attempt == 0 {
                        continue;
                    }
                    attempts.push(AttemptView {
                        target: t.clone(),
                        attempt: a.attempt,
                        at: rfc3339(a.at_ms),
                        status: a.status,
                        latency_ms: a.latency_ms,
                        error: a.error,
                    });
                }
            }
        }
        attempts.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(EventView {
            id: e.id.clone(),
            route: e.route.clone(),
            kind: e.kind.clone(),
            provider_id: e.provider_id.clone(),
            version: e.version.clone(),
            received_at: rfc3339(e.received_ms),
            body_bytes: e.body.len(),
            deliveries,
            attempts: with_attempts.then_some(attempts),
        })
    }

    /// Reads `stream` from its newest message back, `visit` deciding for each whether to go
    /// on; at most [`SCAN_LIMIT`] messages.
    async fn scan_back(
        stream: &jetstream::stream::Stream,
        mut visit: impl FnMut(u64, &NatsHeaders, &[u8]) -> bool,
    ) -> Result<(), QueueError> {
        let info = stream
            .get_info()
            .await
            .map_err(|e| unavailable("cannot read the stream", e))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        if info.state.messages == 0 {
            return Ok(());
        }
        let mut seq = last;
        let mut read = 0;
        while seq >= first.max(1) && read < SCAN_LIMIT {
            match stream.get_raw_message(seq).await {
                Ok(m) => {
                    read += 1;
                    if !visit(seq, &m.headers, &m.payload) {
                        return Ok(());
                    }
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(unavailable("cannot read the stream", e)),
            }
            seq -= 1;
        }
        Ok(())
    }

    /// Events, newest first.
    pub(crate) async fn events(&self, filter: ListFilter) -> Result<Vec<EventView>, QueueError> {
        let mut found = Vec::new();
        let mut passed_before = filter.before.is_none();
        Self::scan_back(&self.events, |_, _, payload| {
            let Some(e) = record::decode_event(payload) else {
                return true;
            };
            if !passed_before {
                passed_before = filter.before.as_deref() == Some(e.id.as_str());
                return true;
            }
            if matches(&filter, &e) {
                found.push(e);
            }
            found.len() < filter.limit
        })
        .await?;
        let mut out = Vec::with_capacity(found.len());
        for e in &found {
            out.push(self.view(e, false).await?);
        }
        Ok(out)
    }

    /// One event with every attempt.
    pub(crate) async fn event(&self, id: &str) -> Result<Option<EventView>, QueueError> {
        match self.find(id).await? {
            Some(e) => Ok(Some(self.view(&e, true).await?)),
            None => self.dead_event(id).await,
        }
    }

    /// An event only the dead letters still hold (the event stream's retention is shorter).
    async fn dead_event(&self, id: &str) -> Result<Option<EventView>, QueueError> {
        match self.dead_copy(id).await? {
            Some(e) => Ok(Some(self.view(&e, true).await?)),
            None => Ok(None),
        }
    }

    /// Events with a dead delivery (to the filter's target), newest first.
    pub(crate) async fn dead_letters(
        &self,
        filter: ListFilter,
    ) -> Result<Vec<EventView>, QueueError> {
        let mut found: Vec<NewEvent> = Vec::new();
        let mut seen = HashSet::new();
        let mut passed_before = filter.before.is_none();
        Self::scan_back(&self.dlq, |_, headers, payload| {
            let target = headers.get(TARGET).map(|v| v.as_str().to_string());
            let Some(e) = record::decode_event(payload) else {
                return true;
            };
            if !passed_before {
                passed_before = filter.before.as_deref() == Some(e.id.as_str());
                seen.insert(e.id.clone());
                return true;
            }
            let target_ok = filter.target.is_none() || filter.target == target;
            let route_ok = filter.route.as_ref().is_none_or(|r| *r == e.route);
            if target_ok && route_ok && seen.insert(e.id.clone()) {
                found.push(e);
            }
            found.len() < filter.limit
        })
        .await?;
        let mut out = Vec::with_capacity(found.len());
        for e in &found {
            out.push(self.view(e, false).await?);
        }
        Ok(out)
    }

    /// Publishes replay copies of the selected deliveries and removes their dead letters.
    pub(crate) async fn replay(&self, sel: ReplaySelection) -> Result<Vec<Pending>, QueueError> {
        self.connected()?;
        // Event id → (the event, targets to replay).
        let mut todo: BTreeMap<String, (NewEvent, BTreeSet<String>)> = BTreeMap::new();
        match &sel {
            ReplaySelection::Event { id, target } => {
                let event = match self.find(id).await? {
                    Some(e) => Some(e),
                    None => self.dead_copy(id).await?,
                };
                if let Some(e) = event {
                    let targets: BTreeSet<String> = e
                        .targets
                        .iter()
                        .filter(|t| target.as_ref().is_none_or(|want| want == *t))
                        .cloned()
                        .collect();
                    if !targets.is_empty() {
                        todo.insert(id.clone(), (e, targets));
                    }
                }
            }
            ReplaySelection::DeadLetters {
                event,
                target,
                route,
            } => {
                let info = self
                    .dlq
                    .get_info()
                    .await
                    .map_err(|e| unavailable("cannot read the dead letters", e))?;
                let (first, last) = (info.state.first_sequence, info.state.last_sequence);
                let mut seq = first.max(1);
                while info.state.messages > 0 && seq <= last {
                    match self.dlq.get_raw_message(seq).await {
                        Ok(m) => {
                            let t = m.headers.get(TARGET).map(|v| v.as_str().to_string());
                            if let (Some(t), Some(e)) = (t, record::decode_event(&m.payload)) {
                                let keep = event.as_ref().is_none_or(|id| *id == e.id)
                                    && target.as_ref().is_none_or(|want| *want == t)
                                    && route.as_ref().is_none_or(|r| *r == e.route);
                                if keep {
                                    todo.entry(e.id.clone())
                                        .or_insert_with(|| (e, BTreeSet::new()))
                                        .1
                                        .insert(t);
                                }
                            }
                        }
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(unavailable("cannot read the dead letters", e)),
                    }
                    seq += 1;
                }
            }
        }
        let mut out = Vec::new();
        for (id, (mut e, targets)) in todo {
            // Per target: attempts made so far, the latest record (to put back if the replay
            // cannot be published) and the dead letter to remove (by its own sequence, read
            // now: once the copy is out, a new dead letter may take the subject).
            let mut before = Vec::with_capacity(targets.len());
            for t in &targets {
                let history = self.attempts(&id, t).await?;
                let made = history.iter().map(|a| a.attempt).max().unwrap_or(0);
                let dead = match self
                    .dlq
                    .get_last_raw_message_by_subject(&self.dlq_subject(&id, t))
                    .await
                {
                    Ok(m) => Some(m.sequence),
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => return Err(unavailable("cannot read the dead letters", e)),
                };
                before.push((t.clone(), made, history.into_iter().last(), dead));
            }
            let now = now_ms();
            // The state goes first: the copy can be delivered (and its result recorded)
            // before this call returns, and must not be followed by an older "pending".
            for (t, made, _, _) in &before {
                let marker = StoredAttempt {
                    state: DeliveryState::Pending,
                    attempt: *made,
                    at_ms: now,
                    status: None,
                    latency_ms: 0,
                    error: None,
                    next_ms: now,
                };
                if let Err(e) = self.put_attempt(&id, t, &marker).await {
                    tracing::warn!(event_id = %id, target_name = %t, error = %e, "cannot record the replay's state");
                }
            }
            let prior: Vec<(String, u32)> = before
                .iter()
                .map(|(t, made, _, _)| (t.clone(), *made))
                .collect();
            e.targets = targets.iter().cloned().collect();
            let published = async {
                if self.find(&id).await?.is_none() {
                    // Only the dead letter still has it (the event stream's retention is
                    // shorter): store it again for the deliveries to read.
                    let mut payload = Vec::with_capacity(e.body.len() + 512);
                    record::encode_event(&e, &mut payload);
                    let publish = jetstream::message::PublishMessage::build()
                        .payload(Bytes::from(payload))
                        .header(EVENT_ID, id.as_str());
                    self.js
                        .send_publish(self.subject(&id), publish)
                        .await
                        .map_err(|err| unavailable("replay not published", err))?
                        .await
                        .map_err(|err| unavailable("replay not acknowledged", err))?;
                }
                self.publish_tickets(&e, Some(&prior)).await
            }
            .await;
            if let Err(err) = published {
                for (t, _, latest, _) in &before {
                    if let Some(latest) = latest {
                        let _ = self.put_attempt(&id, t, latest).await;
                    }
                }
                return Err(err);
            }
            for (t, made, _, dead) in before {
                if let Some(seq) = dead
                    && let Err(e) = self.dlq.delete_message(seq).await
                    && !is_not_found(&e)
                {
                    tracing::warn!(event_id = %id, target_name = %t, error = %e, "replayed, but the dead letter could not be removed");
                }
                out.push(Pending {
                    event_id: id.clone(),
                    target: t,
                    attempts: made,
                    round_attempts: 0,
                    round_started_ms: now,
                    next_ms: now,
                });
            }
        }
        Ok(out)
    }

    /// The event as a dead letter holds it.
    async fn dead_copy(&self, id: &str) -> Result<Option<NewEvent>, QueueError> {
        let mut hit = None;
        Self::scan_back(&self.dlq, |_, headers, payload| {
            if headers.get(EVENT_ID).map(|v| v.as_str()) == Some(id) {
                hit = record::decode_event(payload);
                return false;
            }
            true
        })
        .await?;
        Ok(hit)
    }

    /// Sizes and counts: events and dead letters held, deliveries not yet acknowledged.
    pub(crate) async fn stats(&self) -> Result<Stats, QueueError> {
        let events = self
            .events
            .get_info()
            .await
            .map_err(|e| unavailable("cannot read the event stream", e))?;
        let dlq = self
            .dlq
            .get_info()
            .await
            .map_err(|e| unavailable("cannot read the dead letters", e))?;
        let pending = self
            .backlog
            .lock()
            .map(|b| {
                b.values()
                    .map(|(n, _)| u64::try_from(*n).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        Ok(Stats {
            disk_bytes: events.state.bytes + dlq.state.bytes,
            max_bytes: self.settings.max_size,
            events: events.state.messages,
            pending,
            dead: dlq.state.messages,
            degraded: false,
        })
    }

    /// Bytes held and dead letters per target.
    pub(crate) async fn gauges(&self) -> Result<(u64, Vec<(String, u64)>), QueueError> {
        let events = self
            .events
            .get_info()
            .await
            .map_err(|e| unavailable("cannot read the event stream", e))?;
        let mut dlq = self
            .dlq
            .info_with_subjects(format!("{}.dlq.*.*", self.settings.stream))
            .await
            .map_err(|e| unavailable("cannot read the dead letters", e))?;
        let mut dead: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(s) = dlq.next().await {
            let (subject, n) = s.map_err(|e| unavailable("cannot read the dead letters", e))?;
            if let Some(t) = subject.rsplit('.').next() {
                *dead.entry(t.to_string()).or_default() += u64::try_from(n).unwrap_or(0);
            }
        }
        let dlq_bytes = self.dlq.get_info().await.map_or(0, |i| i.state.bytes);
        Ok((events.state.bytes + dlq_bytes, dead.into_iter().collect()))
    }

    /// The shared backlog per target, as last read: (messages not yet acknowledged, age of the
    /// oldest in seconds).
    pub(crate) fn backlog(&self) -> BTreeMap<String, (i64, f64)> {
        self.backlog.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Writes this instance's entry.
    pub(crate) async fn announce(&self, me: &Instance) -> Result<(), QueueError> {
        let v = serde_json::to_vec(me).map_err(|e| QueueError::Unavailable(e.to_string()))?;
        self.js
            .publish(
                format!("{}.instances.{}", self.settings.stream, self.instance),
                Bytes::from(v),
            )
            .await
            .map_err(|e| unavailable("cannot announce this instance", e))?
            .await
            .map_err(|e| unavailable("cannot announce this instance", e))?;
        Ok(())
    }

    /// This instance's id.
    pub(crate) fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Every instance seen in the last half minute.
    pub(crate) async fn instances(&self) -> Result<Vec<Instance>, QueueError> {
        let mut subjects = self
            .instances
            .info_with_subjects(format!("{}.instances.*", self.settings.stream))
            .await
            .map_err(|e| unavailable("cannot list instances", e))?;
        let mut names = Vec::new();
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(|e| unavailable("cannot list instances", e))?;
            names.push(subject);
        }
        let mut out = Vec::new();
        for subject in names {
            if let Ok(m) = self
                .instances
                .get_last_raw_message_by_subject(&subject)
                .await
                && let Ok(i) = serde_json::from_slice::<Instance>(&m.payload)
            {
                out.push(i);
            }
        }
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// On shutdown: hands the deliveries this instance holds back to JetStream at once (rather
    /// than after `ack_wait`) and removes this instance's entry.
    pub(crate) async fn leave(&self) {
        let held: Vec<Arc<Acker>> = self
            .held
            .lock()
            .map(|mut h| h.drain().map(|(_, h)| h.acker).collect())
            .unwrap_or_default();
        for a in held {
            let _ = a.ack_with(AckKind::Nak(None)).await;
        }
        let _ = self
            .instances
            .purge()
            .filter(format!(
                "{}.instances.{}",
                self.settings.stream, self.instance
            ))
            .await;
    }
}

fn matches(filter: &ListFilter, e: &NewEvent) -> bool {
    filter.route.as_ref().is_none_or(|r| *r == e.route)
        && filter
            .target
            .as_ref()
            .is_none_or(|t| e.targets.iter().any(|x| x == t))
}

/// Whether `s` can be one token of a subject (ids from the admin API are checked before use).
fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_not_found(e: &impl std::fmt::Display) -> bool {
    let s = e.to_string().to_ascii_lowercase();
    s.contains("not found") || s.contains("no message")
}

/// Creates the stream or brings its settings up to date, and opens it.
async fn ensure_stream(
    js: &jetstream::Context,
    what: &str,
    config: jetstream::stream::Config,
) -> Result<jetstream::stream::Stream, QueueError> {
    let name = config.name.clone();
    js.create_or_update_stream(config)
        .await
        .map_err(|e| unavailable(what, e))?;
    js.get_stream(&name).await.map_err(|e| unavailable(what, e))
}

/// Sends progress acks for every held delivery so JetStream keeps them with this instance.
async fn keep_alive(nats: std::sync::Weak<Nats>) {
    loop {
        let every = match nats.upgrade() {
            Some(n) => n.settings.ack_wait / 3,
            None => return,
        };
        tokio::time::sleep(every.max(Duration::from_millis(300))).await;
        let Some(n) = nats.upgrade() else {
            return;
        };
        let ackers: Vec<Arc<Acker>> = n
            .held
            .lock()
            .map(|h| h.values().map(|h| h.acker.clone()).collect())
            .unwrap_or_default();
        drop(n);
        for a in ackers {
            let _ = a.ack_with(AckKind::Progress).await;
        }
    }
}

/// Reads every consumer's backlog for the gauges: tickets waiting or in flight, and the age
/// of the oldest (the first left on the target's subjects: acknowledged ones are removed).
async fn read_backlog(nats: std::sync::Weak<Nats>) {
    loop {
        let Some(n) = nats.upgrade() else {
            return;
        };
        let mut out = BTreeMap::new();
        let mut consumers = n.deliver.consumers();
        let mut infos = Vec::new();
        while let Some(c) = consumers.next().await {
            match c {
                Ok(c) => infos.push(c),
                Err(_) => break,
            }
        }
        let now = now_ms();
        for c in infos {
            let waiting = c.num_pending + u64::try_from(c.num_ack_pending).unwrap_or(0);
            let oldest = if waiting == 0 {
                0.0
            } else {
                let subjects = format!("{}.deliver.{}.*", n.settings.stream, c.name);
                match n
                    .deliver
                    .get_first_raw_message_by_subject(&subjects, 1)
                    .await
                {
                    Ok(m) => {
                        let t =
                            i64::try_from(m.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(now);
                        (now - t).max(0) as f64 / 1000.0
                    }
                    Err(_) => 0.0,
                }
            };
            out.insert(
                c.name.clone(),
                (i64::try_from(waiting).unwrap_or(i64::MAX), oldest),
            );
        }
        if let Ok(mut b) = n.backlog.lock() {
            *b = out;
        }
        drop(n);
        tokio::time::sleep(BACKLOG_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tokens_are_subjects() {
        assert!(valid_token("0192f0a1-7c3e-7b8a-9d2e-1f2a3b4c5d6e"));
        for bad in ["", "a.b", "a*", ">", "a b", "a\r\n"] {
            assert!(!valid_token(bad), "{bad:?}");
        }
    }
}
