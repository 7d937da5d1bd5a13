//! One WebSocket connection: a reader task for the client's frames and a writer task that
//! owns the socket's subscription and its position in the tenant's event log.

use std::{collections::HashSet, sync::Arc, time::Duration};

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use chrono::Utc;
use flow_app::auth::Caller;
use flow_app::services::voice;
use flow_store::{EventType, LoggedEvent};
use futures_util::{
    stream::{SplitSink, SplitStream},
    SinkExt, StreamExt,
};
use tokio::sync::{broadcast, mpsc};

use super::{hub::EventFrame, protocol, protocol::ClientMessage};
use crate::state::AppState;

/// Frames replayed from the log per read while catching up.
const REPLAY_BATCH: u32 = 500;

/// Live frames written with one flush at most.
const MAX_WRITE_BATCH: usize = 256;

/// What the reader asks the writer to do.
enum Control {
    Send(Utf8Bytes),
    Subscribe {
        event_types: Vec<EventType>,
        rooms: Vec<String>,
    },
    Unsubscribe {
        event_types: Vec<EventType>,
        rooms: Vec<String>,
    },
    Resume {
        since: i64,
    },
    Close(u16, &'static str),
}

/// Which events reach this socket.
struct Subscription {
    tenant_room: String,
    /// Rooms joined: `tenant:{id}` and `app:{name}` entries.
    rooms: HashSet<String>,
    /// `None`: every event type.
    event_types: Option<HashSet<EventType>>,
    /// The types the caller's grants let it read; the others reach it only when routed
    /// to its own app, whatever it subscribes to.
    readable: HashSet<EventType>,
    /// The caller's app (`x-source-app`).
    own_app: String,
}

impl Subscription {
    fn wants(&self, frame: &EventFrame) -> bool {
        let routed = self.rooms.contains(&self.tenant_room)
            || frame.target_apps.iter().any(|app| {
                // Rooms are few; formatting here avoids storing app names twice.
                self.rooms
                    .iter()
                    .any(|room| room.strip_prefix("app:") == Some(app.as_str()))
            });
        routed
            && (self.readable.contains(&frame.event_type)
                || frame.target_apps.contains(&self.own_app))
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&frame.event_type))
    }

    fn rooms_sorted(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self.rooms.iter().cloned().collect();
        rooms.sort();
        rooms
    }
}

/// Runs a connection until either side closes it or the server shuts down.
/// A socket opened with a token closes when the token expires (1008), so a signed-out
/// or removed user's socket does not outlive the credential; the client reconnects
/// with a fresh one and resumes.
pub async fn serve(
    socket: WebSocket,
    state: AppState,
    caller: Caller,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) {
    let app = caller.source_app.clone();
    let tenant = caller.tenant_id;
    let live = match state.hub.subscribe(tenant).await {
        Ok(live) => live,
        Err(error) => {
            tracing::warn!(%error, "cannot open the event stream");
            let mut socket = socket;
            let frame = CloseFrame {
                code: close_code::ERROR,
                reason: Utf8Bytes::from_static("event log unavailable"),
            };
            let _ = socket.send(Message::Close(Some(frame))).await;
            return;
        }
    };
    // The tenant label names tenants by id to whoever reads /metrics: optional.
    let tenant_label = if state.config.metrics_tenant_label {
        tenant.to_string()
    } else {
        String::new()
    };
    let gauge = state.metrics.ws_connection_opened(&tenant_label, &app);
    let (sink, stream) = socket.split();
    let (control_tx, control_rx) = mpsc::channel(64);
    let writer = Writer {
        state: state.clone(),
        caller: caller.clone(),
        expires_at,
        sink,
        control: control_rx,
        live,
        last_sent: 0,
        subscription: Subscription {
            tenant_room: format!("tenant:{tenant}"),
            rooms: [format!("tenant:{tenant}"), format!("app:{app}")]
                .into_iter()
                .collect(),
            event_types: None,
            readable: EventType::ALL
                .iter()
                .copied()
                .filter(|t| caller.permissions.allows("read", t.resource()))
                .collect(),
            own_app: app.clone(),
        },
    };
    let mut writer = tokio::spawn(writer.run());
    let mut reader = tokio::spawn(read_frames(stream, state.clone(), caller, control_tx));
    // When one side ends, the other has nothing left to do.
    tokio::select! {
        _ = &mut writer => reader.abort(),
        _ = &mut reader => {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
            writer.abort();
        }
    }
    drop(gauge);
}

async fn read_frames(
    mut stream: SplitStream<WebSocket>,
    state: AppState,
    caller: Caller,
    control: mpsc::Sender<Control>,
) {
    let idle = Duration::from_secs(state.config.ws_idle_timeout_secs);
    loop {
        let message = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => {
                let _ = control
                    .send(Control::Close(close_code::NORMAL, "idle timeout"))
                    .await;
                return;
            }
            Ok(None) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                let reply = protocol::error("unsupported_frame", "send JSON text frames", None);
                if control.send(Control::Send(reply)).await.is_err() {
                    return;
                }
                continue;
            }
            Message::Close(_) => return,
            // Pings are answered by the WebSocket layer; any frame proves the client alive.
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let command = match serde_json::from_str::<ClientMessage>(&text) {
            Ok(command) => command,
            Err(e) => {
                let reply = protocol::error("invalid_message", e.to_string(), None);
                if control.send(Control::Send(reply)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let outgoing = match command {
            ClientMessage::Ping { id } => Control::Send(protocol::pong(id.as_ref())),
            ClientMessage::Subscribe { event_types, rooms } => {
                Control::Subscribe { event_types, rooms }
            }
            ClientMessage::Unsubscribe { event_types, rooms } => {
                Control::Unsubscribe { event_types, rooms }
            }
            ClientMessage::Resume { since } => Control::Resume { since },
            ClientMessage::ExecuteVoiceCommand {
                id,
                command,
                parameters,
                text,
                language,
                conversation_id,
            } => {
                let request = voice::VoiceRequest {
                    text,
                    language,
                    command,
                    parameters: Some(parameters),
                    conversation_id,
                    utc_offset_minutes: None,
                    speak: false,
                };
                let result = voice::handle(
                    &*state.store,
                    &caller,
                    state.voice_llm.as_ref(),
                    request,
                    voice::Mode::Execute,
                )
                .await
                .map_err(|e| (e.code.as_str().to_owned(), e.message));
                Control::Send(protocol::voice_response(&id, result))
            }
        };
        if control.send(outgoing).await.is_err() {
            return;
        }
    }
}

struct Writer {
    state: AppState,
    caller: Caller,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    sink: SplitSink<WebSocket, Message>,
    control: mpsc::Receiver<Control>,
    live: broadcast::Receiver<Arc<EventFrame>>,
    /// The last sequence number this socket has been brought up to.
    last_sent: i64,
    subscription: Subscription,
}

/// How long after the welcome live delivery waits for a `resume` that may follow it.
const RESUME_GRACE: Duration = Duration::from_millis(250);

/// The connection is over (closed, gone, or cut off): the writer stops.
struct Stop;

/// The event log could not be read: the writer stops (the client reconnects and resumes
/// from the log), and the cause goes to the log, since the client only sees a close.
fn store_failed(error: flow_store::StoreError) -> Stop {
    tracing::warn!(%error, "socket writer stopped: the event log could not be read");
    Stop
}

impl Writer {
    async fn run(mut self) {
        let _ = self.run_inner().await;
    }

    async fn run_inner(&mut self) -> Result<(), Stop> {
        self.last_sent = self.current_seq().await?;
        let welcome = protocol::welcome(
            self.last_sent,
            self.caller.tenant_id,
            &self.caller.source_app,
            &self.subscription.rooms_sorted(),
        );
        self.send(welcome).await?;
        let mut heartbeat =
            tokio::time::interval(Duration::from_secs(self.state.config.ws_heartbeat_secs));
        heartbeat.tick().await;
        let shutdown = self.state.shutdown.clone();
        // Live events are held back until the client resumes or a moment has passed: a
        // live frame sent before a `resume` that follows the welcome would be sent again
        // by the replay, out of order. Held-back frames are not kept (the log has them):
        // the replay or a catch-up sends them.
        let grace = tokio::time::sleep(RESUME_GRACE);
        tokio::pin!(grace);
        let expiry = super::credential_expiry(self.expires_at);
        tokio::pin!(expiry);
        let mut live_open = false;
        let mut held_back: Option<i64> = None;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    return self.close(close_code::AWAY, "server shutting down").await;
                }
                () = &mut expiry, if self.expires_at.is_some() => {
                    return self.close(close_code::POLICY, "credential expired: reconnect with a fresh token").await;
                }
                control = self.control.recv() => match control {
                    None => return Err(Stop),
                    Some(control) => {
                        if matches!(control, Control::Resume { .. }) {
                            live_open = true;
                            held_back = None;
                        }
                        self.handle(control).await?
                    }
                },
                () = &mut grace, if !live_open => {
                    live_open = true;
                    if let Some(until) = held_back.take() {
                        self.catch_up(until).await?;
                    }
                }
                frame = self.live.recv() => match frame {
                    Ok(frame) if live_open => {
                        let (frames, ended) = self.drain_live(frame);
                        self.deliver(frames).await?;
                        if let Some(ended) = ended {
                            return self.live_ended(ended).await;
                        }
                    }
                    Ok(frame) => held_back = Some(frame.seq),
                    Err(ended) => return self.live_ended(ended).await,
                },
                _ = heartbeat.tick() => {
                    // A store error (the database restarting) is not a revocation.
                    match flow_app::auth::credential_still_valid(&*self.state.store, &self.caller).await {
                        Ok(true) => {}
                        Ok(false) => {
                            return self.close(close_code::POLICY, "credential revoked").await;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "could not recheck a socket's credential");
                        }
                    }
                    self.send_message(Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    async fn current_seq(&self) -> Result<i64, Stop> {
        let mut tx = self
            .state
            .store
            .read(self.caller.tenant_id)
            .await
            .map_err(store_failed)?;
        tx.last_event_seq().await.map_err(store_failed)
    }

    async fn handle(&mut self, control: Control) -> Result<(), Stop> {
        match control {
            Control::Send(text) => self.send(text).await,
            Control::Close(code, reason) => self.close(code, reason).await,
            Control::Subscribe { event_types, rooms } => {
                if let Err(reply) = self.check_rooms(&rooms) {
                    return self.send(reply).await;
                }
                self.subscription.rooms.extend(rooms);
                if !event_types.is_empty() {
                    self.subscription
                        .event_types
                        .get_or_insert_with(HashSet::new)
                        .extend(event_types);
                }
                self.send_subscription().await
            }
            Control::Unsubscribe { event_types, rooms } => {
                for room in &rooms {
                    self.subscription.rooms.remove(room);
                }
                // An empty filter delivers no events: the client unsubscribed from all of them.
                match &mut self.subscription.event_types {
                    Some(types) => {
                        for event_type in &event_types {
                            types.remove(event_type);
                        }
                    }
                    None if !event_types.is_empty() => {
                        let all: HashSet<EventType> =
                            flow_store::EventType::ALL.iter().copied().collect();
                        self.subscription.event_types =
                            Some(&all - &event_types.into_iter().collect());
                    }
                    None => {}
                }
                self.send_subscription().await
            }
            Control::Resume { since } => self.resume(since).await,
        }
    }

    fn check_rooms(&self, rooms: &[String]) -> Result<(), Utf8Bytes> {
        for room in rooms {
            let allowed = *room == self.subscription.tenant_room
                || room
                    .strip_prefix("app:")
                    .is_some_and(flow_app::auth::valid_app_name);
            if !allowed {
                return Err(protocol::error(
                    "forbidden_room",
                    format!("room {room:?} is not one of this tenant's rooms (tenant:{{id}} or app:{{name}})"),
                    None,
                ));
            }
        }
        Ok(())
    }

    async fn send_subscription(&mut self) -> Result<(), Stop> {
        let types: Option<Vec<EventType>> = self.subscription.event_types.as_ref().map(|t| {
            let mut v: Vec<EventType> = t.iter().copied().collect();
            v.sort_by_key(|t| t.as_str());
            v
        });
        let frame = protocol::subscribed(&self.subscription.rooms_sorted(), types.as_deref());
        self.send(frame).await
    }

    /// Replays the log after `since`, then live delivery continues from there.
    async fn resume(&mut self, since: i64) -> Result<(), Stop> {
        let mut tx = self
            .state
            .store
            .read(self.caller.tenant_id)
            .await
            .map_err(store_failed)?;
        let current = tx.last_event_seq().await.map_err(store_failed)?;
        if since < 0 || since > current {
            let reply = protocol::error(
                "invalid_since",
                format!("since must be between 0 and {current}"),
                None,
            );
            return self.send(reply).await;
        }
        let oldest = tx
            .oldest_event_seq()
            .await
            .map_err(store_failed)?
            .unwrap_or(current + 1);
        drop(tx);
        if since + 1 < oldest {
            self.last_sent = current;
            return self
                .send(protocol::resync_required(since, oldest, current))
                .await;
        }
        self.last_sent = since;
        self.catch_up(current).await
    }

    /// Sends logged events from `last_sent` up to and including `until`.
    async fn catch_up(&mut self, until: i64) -> Result<(), Stop> {
        while self.last_sent < until {
            let batch: Vec<LoggedEvent> = {
                let mut tx = self
                    .state
                    .store
                    .read(self.caller.tenant_id)
                    .await
                    .map_err(store_failed)?;
                tx.list_events(self.last_sent, REPLAY_BATCH)
                    .await
                    .map_err(store_failed)?
            };
            if batch.is_empty() {
                // Pruned meanwhile or not yet visible: live delivery continues from here.
                self.last_sent = until;
                return Ok(());
            }
            let mut texts = Vec::with_capacity(batch.len());
            for logged in batch.iter().take_while(|e| e.seq <= until) {
                let frame = EventFrame::new(logged);
                self.last_sent = logged.seq;
                if self.subscription.wants(&frame) {
                    texts.push(frame.text);
                }
            }
            self.write_all(texts).await?;
        }
        Ok(())
    }

    /// `first` and whatever else the broadcast already holds (up to a bound), so that a
    /// burst of events (an import's chunk) costs this socket one write, not one per event.
    fn drain_live(
        &mut self,
        first: Arc<EventFrame>,
    ) -> (Vec<Arc<EventFrame>>, Option<broadcast::error::RecvError>) {
        let mut frames = vec![first];
        while frames.len() < MAX_WRITE_BATCH {
            match self.live.try_recv() {
                Ok(frame) => frames.push(frame),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    return (frames, Some(broadcast::error::RecvError::Lagged(n)))
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    return (frames, Some(broadcast::error::RecvError::Closed))
                }
            }
        }
        (frames, None)
    }

    async fn live_ended(&mut self, ended: broadcast::error::RecvError) -> Result<(), Stop> {
        match ended {
            broadcast::error::RecvError::Lagged(_) => {
                self.state.metrics.ws_slow_consumer_dropped();
                self.close(close_code::AGAIN, "too slow: reconnect and resume")
                    .await
            }
            broadcast::error::RecvError::Closed => {
                self.close(close_code::AWAY, "server shutting down").await
            }
        }
    }

    /// Sends the live frames this socket wants, in order, filling any gap from the log.
    async fn deliver(&mut self, frames: Vec<Arc<EventFrame>>) -> Result<(), Stop> {
        let mut wanted: Vec<Arc<EventFrame>> = Vec::with_capacity(frames.len());
        for frame in frames {
            if frame.seq <= self.last_sent {
                continue; // already sent while catching up
            }
            if frame.seq > self.last_sent + 1 {
                // Something between was published before this socket listened: what is
                // queued goes first, then the gap from the log.
                self.write_all(wanted.iter().map(|f| f.text.clone()).collect())
                    .await?;
                self.delivered(&wanted);
                wanted.clear();
                self.catch_up(frame.seq - 1).await?;
            }
            self.last_sent = frame.seq;
            if self.subscription.wants(&frame) {
                wanted.push(frame);
            }
        }
        self.write_all(wanted.iter().map(|f| f.text.clone()).collect())
            .await?;
        self.delivered(&wanted);
        Ok(())
    }

    fn delivered(&self, frames: &[Arc<EventFrame>]) {
        let now = Utc::now();
        for frame in frames {
            let latency = (now - frame.timestamp).to_std().unwrap_or_default();
            self.state.metrics.ws_delivered(latency);
        }
    }

    /// Writes the frames with one flush at the end, under one send timeout.
    async fn write_all(&mut self, texts: Vec<Utf8Bytes>) -> Result<(), Stop> {
        if texts.is_empty() {
            return Ok(());
        }
        let timeout = Duration::from_secs(self.state.config.ws_send_timeout_secs);
        let sink = &mut self.sink;
        let written = tokio::time::timeout(timeout, async move {
            for text in texts {
                sink.feed(Message::Text(text)).await?;
            }
            sink.flush().await
        })
        .await;
        self.sent_within(written)
    }

    async fn send(&mut self, text: Utf8Bytes) -> Result<(), Stop> {
        self.send_message(Message::Text(text)).await
    }

    async fn send_message(&mut self, message: Message) -> Result<(), Stop> {
        let timeout = Duration::from_secs(self.state.config.ws_send_timeout_secs);
        let sent = tokio::time::timeout(timeout, self.sink.send(message)).await;
        self.sent_within(sent)
    }

    fn sent_within<E>(
        &self,
        sent: Result<Result<(), E>, tokio::time::error::Elapsed>,
    ) -> Result<(), Stop> {
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop),
            Err(_) => {
                // The client stopped reading: its buffers are full, so even a close frame
                // would not get through. Drop the connection.
                self.state.metrics.ws_slow_consumer_dropped();
                Err(Stop)
            }
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) -> Result<(), Stop> {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.sink.send(Message::Close(Some(frame))),
        )
        .await;
        Err(Stop)
    }
}
