//! The event stream: everything the hosted phones see and do, numbered, kept in a bounded
//! ring and served as Server-Sent Events (`GET /events`, `GET /phones/{name}/events`) or,
//! for clients without an SSE reader, as a JSON array with a long-poll.
//!
//! Ordering: [`EventHub::publish`] numbers, stores and broadcasts an event under one lock,
//! and a reader subscribes and copies the ring's backlog under the same lock, so a reader
//! sees every event after its resume point exactly once, in order, or an explicit
//! `events_lost` event when the ring no longer holds what it asked for.

use super::ControlState;
use super::error::{ControlError, QueryArgs};
use crate::api::{Timestamp, now_utc};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Events kept for resumption; older ones are dropped.
pub const EVENT_BUFFER: usize = 4096;
/// The longest JSON long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// One numbered event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Its sequence number: 1, 2, 3... across all phones.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// Its type, e.g. `sms_received` (also the SSE `event:` field).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The phone it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The type's own fields.
    pub data: serde_json::Value,
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    next_seq: u64,
}

/// The numbered, bounded, broadcast log of events.
#[derive(Clone)]
pub struct EventHub {
    ring: Arc<Mutex<Ring>>,
    live: broadcast::Sender<Arc<Event>>,
    capacity: usize,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl EventHub {
    /// A hub keeping the last `capacity` events.
    pub fn new(capacity: usize) -> EventHub {
        let (live, _) = broadcast::channel(capacity.clamp(16, 1024));
        EventHub {
            ring: Arc::new(Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity.min(1024)),
                next_seq: 1,
            })),
            live,
            capacity: capacity.max(1),
        }
    }

    /// Numbers, stores and broadcasts one event; returns its sequence number.
    pub fn publish(&self, phone: Option<&str>, kind: &'static str, data: serde_json::Value) -> u64 {
        let mut ring = self.ring.lock();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        let event = Arc::new(Event {
            seq,
            at: now_utc(),
            kind,
            phone: phone.map(str::to_owned),
            data,
        });
        if ring.events.len() >= self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the ring's lock, so a subscriber's backlog and live feed never overlap
        // or leave a gap. No receiver is not an error.
        let _ = self.live.send(event);
        seq
    }

    /// The sequence number of the newest event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.ring.lock().next_seq - 1
    }

    /// A live feed of every event published from now on (to wake long-polls).
    pub fn subscribe_live(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// Subscribes to live events and copies the stored ones with `seq > after`.
    fn subscribe(&self, after: u64) -> (broadcast::Receiver<Arc<Event>>, Backlog) {
        let ring = self.ring.lock();
        let rx = self.live.subscribe();
        (rx, backlog(&ring, after))
    }

    /// The stored events with `seq > after`.
    fn since(&self, after: u64) -> Backlog {
        backlog(&self.ring.lock(), after)
    }
}

/// Stored events after a point, and whether some the reader asked for were already dropped.
struct Backlog {
    events: Vec<Arc<Event>>,
    /// `(first wanted, first still held)` when events were dropped before being read.
    lost: Option<(u64, u64)>,
}

fn backlog(ring: &Ring, after: u64) -> Backlog {
    let first_held = ring.events.front().map_or(ring.next_seq, |e| e.seq);
    let lost = (after + 1 < first_held).then_some((after + 1, first_held));
    let events = ring
        .events
        .iter()
        .filter(|e| e.seq > after)
        .cloned()
        .collect();
    Backlog { events, lost }
}

/// Query of the event routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Resume after this sequence number (like `Last-Event-ID`, which wins when both are set).
    pub after: Option<u64>,
    /// JSON form only: wait up to this long (at most 60000) for the first event.
    pub wait_ms: Option<u64>,
}

/// `GET /events`.
pub async fn all(
    State(state): State<ControlState>,
    headers: HeaderMap,
    QueryArgs(q): QueryArgs<EventQuery>,
) -> Result<Response, ControlError> {
    serve(&state, &headers, q, None).await
}

/// `GET /phones/{name}/events`.
pub async fn of_phone(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    QueryArgs(q): QueryArgs<EventQuery>,
) -> Result<Response, ControlError> {
    let name = state.phones().known_name(&name)?;
    serve(&state, &headers, q, Some(name.to_string())).await
}

async fn serve(
    state: &ControlState,
    headers: &HeaderMap,
    q: EventQuery,
    phone: Option<String>,
) -> Result<Response, ControlError> {
    let after = resume_point(headers, q.after)?;
    let hub = state.events().clone();
    if wants_json(headers) {
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
        return Ok(Json(json_page(&hub, after, wait, phone.as_deref()).await).into_response());
    }
    let (rx, backlog) = hub.subscribe(after);
    let stream = sse_stream(hub, rx, backlog, after, phone);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The resume point: `Last-Event-ID` (what an `EventSource` sends on reconnect), else
/// `?after=`, else 0 (everything still held).
fn resume_point(headers: &HeaderMap, after: Option<u64>) -> Result<u64, ControlError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ControlError::BadRequest("Last-Event-ID must be an event's sequence number".into())
            }),
        None => Ok(after.unwrap_or(0)),
    }
}

/// JSON when the client asks for it and not for an event stream.
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/event-stream")
}

fn matches(event: &Event, phone: Option<&str>) -> bool {
    phone.is_none() || event.phone.as_deref() == phone
}

/// A stand-in event for events the ring dropped before the reader got them.
fn lost_event(from: u64, to: u64) -> Event {
    Event {
        seq: to.saturating_sub(1),
        at: now_utc(),
        kind: "events_lost",
        phone: None,
        data: serde_json::json!({"first_lost": from, "last_lost": to.saturating_sub(1)}),
    }
}

/// The events after `after`, waiting up to `wait` for the first one.
async fn json_page(hub: &EventHub, after: u64, wait: Duration, phone: Option<&str>) -> Vec<Event> {
    let page = |b: Backlog| -> Vec<Event> {
        let mut out: Vec<Event> = b.lost.map(|(f, t)| lost_event(f, t)).into_iter().collect();
        out.extend(
            b.events
                .iter()
                .filter(|e| matches(e, phone))
                .map(|e| (**e).clone()),
        );
        out
    };
    let (mut rx, backlog) = hub.subscribe(after);
    let first = page(backlog);
    if !first.is_empty() || wait.is_zero() {
        return first;
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Vec::new(),
            Ok(Ok(e)) if matches(&e, phone) => return page(hub.since(after)),
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                let again = page(hub.since(after));
                if !again.is_empty() {
                    return again;
                }
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => return Vec::new(),
        }
    }
}

fn to_sse(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    SseEvent::default()
        .id(event.seq.to_string())
        .event(event.kind)
        .data(data)
}

struct Reader {
    hub: EventHub,
    rx: broadcast::Receiver<Arc<Event>>,
    pending: VecDeque<Event>,
    last: u64,
    phone: Option<String>,
}

/// The backlog, then live events; after a lag, the ring fills the gap (or says it cannot).
fn sse_stream(
    hub: EventHub,
    rx: broadcast::Receiver<Arc<Event>>,
    backlog: Backlog,
    after: u64,
    phone: Option<String>,
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let mut reader = Reader {
        hub,
        rx,
        pending: VecDeque::new(),
        last: after,
        phone,
    };
    reader.take(backlog);
    futures::stream::unfold(reader, |mut r| async move {
        loop {
            if let Some(e) = r.pending.pop_front() {
                return Some((Ok(to_sse(&e)), r));
            }
            match r.rx.recv().await {
                Ok(e) => {
                    if e.seq > r.last {
                        r.last = e.seq;
                        if matches(&e, r.phone.as_deref()) {
                            return Some((Ok(to_sse(&e)), r));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let b = r.hub.since(r.last);
                    r.take(b);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

impl Reader {
    fn take(&mut self, b: Backlog) {
        if let Some((from, to)) = b.lost {
            self.pending.push_back(lost_event(from, to));
            self.last = self.last.max(to.saturating_sub(1));
        }
        for e in b.events {
            if e.seq > self.last {
                self.last = e.seq;
                if matches(&e, self.phone.as_deref()) {
                    self.pending.push_back((*e).clone());
                }
            }
        }
    }
}

/// The event routes.
pub fn routes(r: super::Routes) -> super::Routes {
    use axum::http::Method;
    use axum::routing::get;
    r.add(Method::GET, "/events", get(all))
        .add(Method::GET, "/phones/{name}/events", get(of_phone))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_events_and_reports_what_it_dropped() {
        let hub = EventHub::new(3);
        for _ in 0..5 {
            hub.publish(Some("a"), "x", serde_json::json!({}));
        }
        let b = hub.since(0);
        assert_eq!(
            b.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(b.lost, Some((1, 3)));
        let b = hub.since(2);
        assert_eq!(b.lost, None);
        assert_eq!(b.events.len(), 3);
        assert_eq!(hub.last_seq(), 5);
    }
}
