//! Async mode's delivery engine: every (event, target) pair is an independent delivery.
//!
//! One worker per target holds that target's due-ordered deliveries and starts attempts while
//! the target has room (`max_in_flight`) and its circuit breaker allows, so a slow or failing
//! target only ever holds up its own deliveries. Each attempt's result is recorded in the
//! queue; a retryable failure goes back in with a backoff delay, the rest end delivered or
//! dead.
//!
//! Memory stays bounded whatever the backlog: a worker keeps an event's body only for its
//! first attempt of a fresh event (and only while its backlog is short); everything else is
//! read back from the store when its attempt starts.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use tokio::{sync::Notify, time::Instant};

use crate::{
    config::Target,
    forward::{self, pool::Pool},
    queue::{AttemptRecord, DeliveryState, Pending, Queue, StoredEvent, now_ms},
};

pub(crate) mod retry;

use retry::{Breaker, Gate, Verdict};

/// Largest part of a target's answer read (then dropped) so its connection can be reused.
const MAX_ANSWER: usize = 64 << 10;

/// A worker keeps fresh events' bodies in memory only while its backlog is below this.
const KEEP_BODIES_BELOW: usize = 10_000;

/// How long to wait before trying again when the store cannot give an event's body.
const STORE_RETRY: Duration = Duration::from_secs(5);

pub(crate) static EVENT_ID: HeaderName = HeaderName::from_static("hookrouter-event-id");
pub(crate) static ROUTE: HeaderName = HeaderName::from_static("hookrouter-route");
pub(crate) static ATTEMPT: HeaderName = HeaderName::from_static("hookrouter-attempt");

/// The delivery engine.
pub(crate) struct Engine {
    queue: Arc<Queue>,
    pool: Pool,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
}

struct Worker {
    name: String,
    /// The target's settings; `None` while the config no longer names it (its deliveries wait).
    target: ArcSwapOption<Target>,
    state: Mutex<WorkerState>,
    wake: Notify,
    /// Signalled when the worker may have room for more (shared queue: the puller waits on it).
    room: Notify,
}

#[derive(Default)]
struct WorkerState {
    due: BinaryHeap<Reverse<Job>>,
    /// Events with a delivery to this target queued or in flight, with the generation of the
    /// job that is current: a replay of one already waiting pushes a newer job, and the older
    /// one is dropped when it comes up (or not rescheduled when it finishes).
    scheduled: HashMap<Arc<str>, u64>,
    in_flight: usize,
    breaker: Breaker,
    seq: u64,
}

struct Job {
    due_ms: i64,
    /// Order among jobs due at once, and the job's generation.
    seq: u64,
    id: Arc<str>,
    pending: Pending,
    event: Option<Arc<StoredEvent>>,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.seq) == (other.due_ms, other.seq)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due_ms, self.seq).cmp(&(other.due_ms, other.seq))
    }
}

impl Engine {
    /// An engine over `queue` for `targets`; workers start at once (call within the runtime).
    pub(crate) fn new(
        queue: Arc<Queue>,
        targets: &BTreeMap<String, Target>,
    ) -> std::io::Result<Arc<Engine>> {
        let engine = Arc::new(Engine {
            queue,
            pool: Pool::new(forward::pool::client_tls()?),
            workers: Mutex::new(HashMap::new()),
        });
        engine.apply(targets);
        Ok(engine)
    }

    /// The queue the engine delivers from.
    pub(crate) fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Takes a new set of targets (start and reload): changed settings apply to the next
    /// attempts; a target no longer named keeps its deliveries waiting.
    pub(crate) fn apply(self: &Arc<Self>, targets: &BTreeMap<String, Target>) {
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        for (name, w) in workers.iter() {
            if !targets.contains_key(name) {
                w.target.store(None);
                tracing::warn!(target_name = %name, "target removed from the config; its pending deliveries wait until it returns");
            }
        }
        for (name, t) in targets {
            let w = workers
                .entry(name.clone())
                .or_insert_with(|| self.spawn_worker(name));
            w.target.store(Some(Arc::new(t.clone())));
            w.wake.notify_one();
            w.room.notify_one();
        }
    }

    fn spawn_worker(self: &Arc<Self>, name: &str) -> Arc<Worker> {
        let w = Arc::new(Worker {
            name: name.to_string(),
            target: ArcSwapOption::empty(),
            state: Mutex::new(WorkerState::default()),
            wake: Notify::new(),
            room: Notify::new(),
        });
        tokio::spawn(run_worker(self.clone(), w.clone()));
        if let Some(q) = self.queue.shared() {
            tokio::spawn(run_puller(q.clone(), w.clone()));
        }
        w
    }

    fn worker(self: &Arc<Self>, name: &str) -> Option<Arc<Worker>> {
        let mut workers = self.workers.lock().ok()?;
        Some(
            workers
                .entry(name.to_string())
                .or_insert_with(|| self.spawn_worker(name))
                .clone(),
        )
    }

    /// Sets the per-target gauges: deliveries waiting or in flight, the oldest waiting one's
    /// age, the breaker's state.
    pub(crate) fn observe(&self) {
        let m = crate::metrics::get();
        if let Some(q) = self.queue.shared() {
            // The backlog is the shared consumers', not this instance's few in hand.
            for (name, (depth, oldest)) in q.backlog() {
                m.queue_depth.with_label_values(&[&name]).set(depth);
                m.oldest_pending.with_label_values(&[&name]).set(oldest);
            }
        }
        let now = now_ms();
        let Ok(workers) = self.workers.lock() else {
            return;
        };
        for (name, w) in workers.iter() {
            let Ok(st) = w.state.lock() else {
                continue;
            };
            m.breaker_state
                .with_label_values(&[name])
                .set(st.breaker.state(now));
            if self.queue.shared().is_some() {
                continue;
            }
            let depth = i64::try_from(st.scheduled.len()).unwrap_or(i64::MAX);
            let oldest = st
                .due
                .iter()
                .filter(|Reverse(j)| st.scheduled.get(&j.id) == Some(&j.seq))
                .map(|Reverse(j)| j.pending.round_started_ms)
                .min();
            m.queue_depth.with_label_values(&[name]).set(depth);
            m.oldest_pending
                .with_label_values(&[name])
                .set(oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0));
        }
    }

    /// Schedules the first attempts of a freshly stored event.
    pub(crate) fn enqueue(self: &Arc<Self>, event: Arc<StoredEvent>, targets: &[String]) {
        if self.queue.shared().is_some() {
            // The targets' consumers hand it to whichever instance has room.
            return;
        }
        let id: Arc<str> = Arc::from(event.id.as_str());
        for t in targets {
            let pending = Pending {
                event_id: event.id.clone(),
                target: t.clone(),
                attempts: 0,
                round_attempts: 0,
                round_started_ms: event.received_ms,
                next_ms: event.received_ms,
            };
            if let Some(w) = self.worker(t) {
                w.push(id.clone(), pending, Some(event.clone()));
            }
        }
    }

    /// Schedules deliveries read from the store (resume on start, replay).
    pub(crate) fn schedule(self: &Arc<Self>, pending: Vec<Pending>) {
        if self.queue.shared().is_some() {
            return;
        }
        for p in pending {
            if let Some(w) = self.worker(&p.target) {
                let id: Arc<str> = Arc::from(p.event_id.as_str());
                w.push(id, p, None);
            }
        }
    }

    /// Resets the selected deliveries to pending (fresh retry budget) and schedules them;
    /// how many.
    pub(crate) async fn replay(
        self: &Arc<Self>,
        sel: crate::queue::ReplaySelection,
    ) -> Result<usize, crate::queue::QueueError> {
        let pending = self.queue.replay(sel).await?;
        let n = pending.len();
        self.schedule(pending);
        Ok(n)
    }

    /// Loads every pending delivery from the store and schedules it.
    pub(crate) async fn resume(self: &Arc<Self>) -> Result<usize, crate::queue::QueueError> {
        let pending = self.queue.pending().await?;
        let n = pending.len();
        self.schedule(pending);
        Ok(n)
    }
}

impl Worker {
    fn push(&self, id: Arc<str>, pending: Pending, event: Option<Arc<StoredEvent>>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let event = event.filter(|_| st.due.len() < KEEP_BODIES_BELOW);
        st.seq += 1;
        let generation = st.seq;
        st.scheduled.insert(id.clone(), generation);
        let job = Job {
            due_ms: pending.next_ms,
            seq: st.seq,
            id,
            pending,
            event,
        };
        st.due.push(Reverse(job));
        drop(st);
        self.wake.notify_one();
    }
}

/// What a worker does next.
enum Next {
    Start(Job, Arc<Target>),
    Sleep(Duration),
    Wait,
}

async fn run_worker(engine: Arc<Engine>, w: Arc<Worker>) {
    loop {
        let next = next_job(&w);
        match next {
            Next::Start(job, target) => {
                tokio::spawn(attempt(engine.clone(), w.clone(), target, job));
            }
            Next::Sleep(d) => {
                tokio::select! {
                    () = w.wake.notified() => {}
                    () = tokio::time::sleep(d) => {}
                }
            }
            Next::Wait => w.wake.notified().await,
        }
    }
}

fn next_job(w: &Worker) -> Next {
    let Some(target) = w.target.load_full() else {
        return Next::Wait;
    };
    let Ok(mut st) = w.state.lock() else {
        return Next::Wait;
    };
    if st.in_flight >= target.max_in_flight {
        return Next::Wait;
    }
    let now = now_ms();
    // Drop jobs a replay has replaced.
    while let Some(Reverse(first)) = st.due.peek() {
        if st.scheduled.get(&first.id) == Some(&first.seq) {
            break;
        }
        st.due.pop();
    }
    let Some(Reverse(first)) = st.due.peek() else {
        return Next::Wait;
    };
    if first.due_ms > now {
        return Next::Sleep(ms(first.due_ms - now));
    }
    let in_flight = st.in_flight;
    match st.breaker.gate(now, in_flight) {
        Gate::Open => {}
        Gate::ClosedUntil(t) => return Next::Sleep(ms(t - now)),
        Gate::Busy => return Next::Wait,
    }
    let Some(Reverse(job)) = st.due.pop() else {
        return Next::Wait;
    };
    st.in_flight += 1;
    Next::Start(job, target)
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0).max(1))
}

/// One attempt of one delivery, then its bookkeeping.
async fn attempt(engine: Arc<Engine>, w: Arc<Worker>, target: Arc<Target>, mut job: Job) {
    let event = match job.event.take() {
        Some(e) => e,
        None => match engine.queue.load(&job.pending.event_id).await {
            Ok(Some(e)) => Arc::new(e),
            Ok(None) => {
                // Removed by retention (embedded: only finished events are, so this one was
                // replayed and finished meanwhile): nothing left to deliver.
                engine.queue.forget(&job.pending);
                w.finish(job, false, None);
                return;
            }
            Err(e) => {
                tracing::error!(target_name = %w.name, event_id = %job.pending.event_id, error = %e, "cannot read the event from the store; will try again");
                job.due_ms = now_ms() + i64::try_from(STORE_RETRY.as_millis()).unwrap_or(5000);
                job.pending.next_ms = job.due_ms;
                w.finish(job, true, None);
                return;
            }
        },
    };
    let n = job.pending.attempts + 1;
    let round_n = job.pending.round_attempts + 1;
    let at_ms = now_ms();
    let started = Instant::now();
    let result = send(&engine.pool, &target, &event, n).await;
    let latency = started.elapsed();
    crate::metrics::get()
        .attempt(&w.name)
        .observe(latency.as_secs_f64());
    let (status, error, verdict) = match result {
        Ok((status, retry_after)) => {
            let v = retry::classify(status, retry_after);
            let error = (!status.is_success()).then(|| format!("HTTP {}", status.as_u16()));
            (Some(status.as_u16()), error, v)
        }
        Err(e) => (None, Some(e.to_string()), Verdict::Retry(None)),
    };
    let (state, next_ms, why) =
        retry::next_state(&target.retry, &job.pending, round_n, at_ms, &verdict);
    let latency_ms = u32::try_from(latency.as_millis()).unwrap_or(u32::MAX);
    let error = match (error, why) {
        (Some(e), Some(w)) => Some(format!("{e}; {w}")),
        (e, w) => e.or(w.map(str::to_string)),
    };
    tracing::info!(
        route = %event.route,
        target_name = %w.name,
        event_id = %event.id,
        event_type = event.kind.as_deref(),
        version = event.version.as_deref(),
        attempt = n,
        status,
        latency_ms,
        result = match state {
            DeliveryState::Delivered => "delivered",
            DeliveryState::Pending => "retry",
            DeliveryState::Dead => "dead_letter",
        },
        error = error.as_deref(),
        "delivery"
    );
    let metrics = crate::metrics::get();
    match state {
        DeliveryState::Delivered => metrics
            .deliveries
            .with_label_values(&[&event.route, &w.name, "delivered"])
            .inc(),
        DeliveryState::Dead => {
            metrics
                .deliveries
                .with_label_values(&[&event.route, &w.name, "dead"])
                .inc();
            metrics
                .dead_letters_added
                .with_label_values(&[&event.route, &w.name])
                .inc();
        }
        DeliveryState::Pending => metrics
            .retries
            .with_label_values(&[&event.route, &w.name])
            .inc(),
    }
    engine.queue.record(AttemptRecord {
        event_id: event.id.clone(),
        target: w.name.clone(),
        n,
        round_n,
        at_ms,
        status,
        latency_ms,
        error,
        state,
        next_ms,
    });
    job.pending.attempts = n;
    job.pending.round_attempts = round_n;
    job.pending.next_ms = next_ms;
    job.due_ms = next_ms;
    let retry = state == DeliveryState::Pending;
    // On a shared queue the retry is JetStream's redelivery (the record above naks with
    // the delay), possibly to another instance.
    let again = retry && engine.queue.shared().is_none();
    w.finish(job, again, Some((!retry, at_ms)));
}

impl Worker {
    /// Ends an attempt: `again` queues the job for its next attempt; `tried` is the
    /// breaker's input when the target was tried — whether it was healthy (a dead letter from
    /// a 4xx still means the target answered) and when the attempt started — `None` when it
    /// was not (the store could not give the event).
    fn finish(&self, job: Job, again: bool, tried: Option<(bool, i64)>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some((healthy, started)) = tried {
            let was = st.breaker.is_open();
            st.breaker.record(now_ms(), healthy, started);
            if st.breaker.is_open() && !was {
                tracing::warn!(target_name = %self.name, "circuit breaker open: pausing deliveries to this target");
            }
        }
        st.settle(job, again);
        drop(st);
        self.wake.notify_one();
        self.room.notify_one();
    }

    /// How many more deliveries to pull for this worker (shared queue), or when to ask again.
    /// It keeps up to one window (`max_in_flight`) waiting beside the one in flight, and asks
    /// for half a window or more at a time once it has any, so a busy target is fed in
    /// batches rather than one pull per finished attempt.
    fn room(&self) -> Result<usize, Option<Duration>> {
        let Some(target) = self.target.load_full() else {
            return Err(None);
        };
        let Ok(st) = self.state.lock() else {
            return Err(None);
        };
        let now = now_ms();
        let window = match st.breaker.gate(now, st.in_flight) {
            // Half-open: one probe at a time.
            Gate::Open if st.breaker.is_open() => 1,
            Gate::Open => target.max_in_flight,
            Gate::ClosedUntil(t) => return Err(Some(ms(t - now))),
            Gate::Busy => return Err(None),
        };
        let held = st.scheduled.len();
        let free = (2 * window).saturating_sub(held);
        if free == 0 || (held > 0 && free < window.div_ceil(2)) {
            return Err(None);
        }
        Ok(free)
    }
}

/// Shared queue: pulls deliveries for one target from its consumer, as many as the worker
/// can start at once, so the rest stay available to other instances.
async fn run_puller(q: Arc<crate::queue::nats::Nats>, w: Arc<Worker>) {
    let mut failing = false;
    loop {
        let room = match w.room() {
            Ok(n) => n,
            Err(wait) => {
                let wait = wait.unwrap_or(Duration::from_secs(1));
                tokio::select! {
                    () = w.room.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        let worker = w.clone();
        let mut take = move |pending: Pending| {
            let id: Arc<str> = Arc::from(pending.event_id.as_str());
            worker.push(id, pending, None);
        };
        match q.pull(&w.name, room, &mut take).await {
            Ok(()) => {
                if failing {
                    tracing::info!(target_name = %w.name, "pulling deliveries again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(target_name = %w.name, error = %e, "cannot pull deliveries; retrying");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

impl WorkerState {
    /// After an attempt: queue the job again for its retry, or forget the delivery — unless a
    /// replay replaced the job meanwhile, in which case the newer job stands.
    fn settle(&mut self, job: Job, again: bool) {
        if self.scheduled.get(&job.id) != Some(&job.seq) {
            return;
        }
        if again {
            self.due.push(Reverse(job));
        } else {
            self.scheduled.remove(&job.id);
        }
    }
}

/// Why an attempt got no answer.
#[derive(Debug, thiserror::Error)]
enum SendFailure {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("cannot build the request")]
    Build,
}

/// Sends one attempt; the answer's status and `Retry-After`.
async fn send(
    pool: &Pool,
    target: &Target,
    event: &StoredEvent,
    n: u32,
) -> Result<(StatusCode, Option<Duration>), SendFailure> {
    let req = request(target, event, n).ok_or(SendFailure::Build)?;
    let exchange = async {
        let (resp, lease) = pool
            .send(&target.url, req)
            .await
            .map_err(|e| SendFailure::Connect(e.to_string()))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(retry::parse_retry_after);
        // Read the answer so the connection can carry the next delivery; its content is
        // not needed.
        if Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .is_ok()
        {
            pool.put(lease);
        }
        Ok((status, retry_after))
    };
    tokio::time::timeout(target.timeout, exchange)
        .await
        .map_err(|_| SendFailure::Timeout)?
}

/// The outgoing request: the stored headers and raw body, plus the router's headers and,
/// when the target has `sign`, a Standard Webhooks signature.
fn request(target: &Target, event: &StoredEvent, n: u32) -> Option<Request<Full<Bytes>>> {
    let uri = forward::target_uri(&target.url, event.query.as_deref())?;
    let mut headers = event.headers.clone();
    if let Some(authority) = target.url.authority() {
        headers.insert(
            header::HOST,
            HeaderValue::from_str(authority.as_str()).ok()?,
        );
    }
    headers.insert(EVENT_ID.clone(), HeaderValue::from_str(&event.id).ok()?);
    headers.insert(ROUTE.clone(), HeaderValue::from_str(&event.route).ok()?);
    headers.insert(ATTEMPT.clone(), HeaderValue::from(n));
    if let Some(sign) = &target.sign {
        let now = now_ms() / 1000;
        let signed = crate::verify::sign(
            crate::verify::SchemeName::StandardWebhooks,
            sign.secret.expose(),
            &event.body,
            now,
            &event.id,
            "",
            &crate::verify::Options::default(),
        )
        .ok()?;
        for (k, v) in signed {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(&v).ok()?,
            );
        }
    }
    let mut req = Request::new(Full::new(event.body.clone()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri
        .path_and_query()
        .cloned()
        .map_or_else(|| http::Uri::from_static("/"), http::Uri::from);
    *req.headers_mut() = headers;
    Some(req)
}
