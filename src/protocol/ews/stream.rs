//! The notification stream: a task per folder holds `GetStreamingEvents` open on its own
//! connection, splits the chunked answer into envelopes and tells the session what they said.

use super::*;

/// How one GetStreamingEvents answer ended.
pub(super) enum StreamEnd {
    /// `ConnectionStatus Closed` or the answer ended: ask again.
    Closed,
    /// The subscription is gone: subscribe again and catch up.
    Lost(EwsError),
    /// `ErrorServerBusy`: wait this long, then ask again.
    Busy(Duration),
}

/// Reads notifications on its own connection until the session ends (it is aborted then).
pub(super) async fn stream_task(
    mut http: Http,
    folder: &'static str,
    mut subscription: String,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let shared = http.shared.clone();
    // A server that ends every stream at once must not be asked again in a tight loop.
    let mut pause = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let end = stream_once(&mut http, &subscription, &tx).await;
        if started.elapsed() < Duration::from_secs(1) {
            tracing::debug!(account = %shared.account.name, "the notification stream ended at once; asking again in {} s", pause.as_secs());
            sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(60));
        } else {
            pause = Duration::from_secs(1);
        }
        match end {
            Ok(StreamEnd::Closed) => {
                tracing::debug!(account = %shared.account.name, "notification stream closed by the server; asking again");
            }
            Ok(StreamEnd::Busy(d)) => {
                let d = d.min(MAX_BACK_OFF);
                tracing::info!(account = %shared.account.name, "{}: server busy; waiting {} ms as it asks", shared.endpoint(), d.as_millis());
                http.conn = None;
                sleep(d).await;
            }
            Ok(StreamEnd::Lost(e)) => {
                tracing::info!(account = %shared.account.name, "{}: subscription lost ({}); subscribing again", shared.endpoint(), e.code);
                http.conn = None;
                match http.subscribe(folder).await {
                    Ok(s) => {
                        subscription = s;
                        // Catch up with FindItem (the old watermark is not reused).
                        if tx.send(Msg::Changed).is_err() {
                            return;
                        }
                    }
                    Err(CallError::Proto(e)) => {
                        let _ = tx.send(Msg::Failed(e));
                        return;
                    }
                    Err(CallError::Ews(e)) => {
                        let _ = tx.send(Msg::Failed(shared.ews_error(&e, "subscribing again")));
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        }
    }
}

/// What one envelope of the stream said.
pub(super) fn stream_envelope(
    bytes: &[u8],
    endpoint: &str,
    changed: &mut bool,
) -> Result<Option<StreamEnd>, ProtoError> {
    let malformed = |m: String| {
        ProtoError::new(
            ErrorKind::Protocol,
            format!("{endpoint}: malformed notification: {}", clip(&m)),
        )
    };
    let root = xml::parse(bytes).map_err(malformed)?;
    let op = match xml::body(&root) {
        Ok(op) => op,
        Err(Ok(e)) if e.is_subscription_lost() => return Ok(Some(StreamEnd::Lost(e))),
        Err(Ok(e)) if e.code == "ErrorServerBusy" => {
            return Ok(Some(StreamEnd::Busy(
                e.back_off.unwrap_or(Duration::from_secs(30)),
            )));
        }
        Err(Ok(e)) => {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{endpoint}: {} ({}) on the notification stream",
                    e.code,
                    clip(&e.text)
                ),
            ));
        }
        Err(Err(m)) => return Err(malformed(m)),
    };
    let mut end = None;
    for message in xml::messages(op).map_err(malformed)? {
        match xml::check(message) {
            Err(e) if e.is_subscription_lost() => return Ok(Some(StreamEnd::Lost(e))),
            Err(e) if e.code == "ErrorServerBusy" => {
                return Ok(Some(StreamEnd::Busy(
                    e.back_off.unwrap_or(Duration::from_secs(30)),
                )));
            }
            Err(e) => {
                return Err(ProtoError::new(
                    ErrorKind::Protocol,
                    format!(
                        "{endpoint}: {} ({}) on the notification stream",
                        e.code,
                        clip(&e.text)
                    ),
                ));
            }
            Ok(m) => {
                if let Some(list) = m.child("Notifications") {
                    for n in &list.children {
                        if n.children
                            .iter()
                            .any(|e| e.name == "NewMailEvent" || e.name == "CreatedEvent")
                        {
                            *changed = true;
                        }
                    }
                }
                if m.child_text("ConnectionStatus").map(str::trim) == Some("Closed") {
                    end = Some(StreamEnd::Closed);
                }
            }
        }
    }
    Ok(end)
}

pub(super) async fn stream_once(
    http: &mut Http,
    subscription: &str,
    tx: &mpsc::UnboundedSender<Msg>,
) -> Result<StreamEnd, ProtoError> {
    let shared = http.shared.clone();
    let endpoint = shared.endpoint();
    let what = "opening the notification stream";
    let head = http
        .request(
            what,
            &xml::get_streaming_events(subscription, STREAM_MINUTES),
        )
        .await?;
    if !head.chunked() || head.status != 200 {
        // A whole answer: an error, or a server that does not stream (one envelope).
        let body = http.body(&head, what).await?;
        let mut changed = false;
        if head.status != 200 && head.status != 500 {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{endpoint}: HTTP {} {} while {what}",
                    head.status, head.reason
                ),
            ));
        }
        let end = stream_envelope(&body, &endpoint, &mut changed)?;
        if changed {
            let _ = tx.send(Msg::Changed);
        }
        return Ok(end.unwrap_or(StreamEnd::Closed));
    }
    let _ = tx.send(Msg::Alive {
        at: Instant::now(),
        fresh: true,
    });
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let conn = http.conn.as_mut().ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!("{endpoint}: the connection was lost"),
            )
        })?;
        // No deadline here: the session's wait() watches the heartbeats.
        let chunk = match conn.read_chunk(MAX_BODY).await {
            Ok(c) => c,
            Err(e) => {
                http.conn = None;
                return Err(shared.http_error(e, "reading the notification stream"));
            }
        };
        let Some(chunk) = chunk else {
            if head.closes() {
                http.conn = None;
            }
            return Ok(StreamEnd::Closed);
        };
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_BODY {
            http.conn = None;
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!("{endpoint}: a notification over {MAX_BODY} bytes"),
            ));
        }
        while let Some(end) = xml::envelope_end(&buf) {
            let envelope: Vec<u8> = buf.drain(..end).collect();
            let mut changed = false;
            let outcome = stream_envelope(&envelope, &endpoint, &mut changed);
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    http.conn = None;
                    return Err(e);
                }
            };
            let _ = tx.send(Msg::Alive {
                at: Instant::now(),
                fresh: false,
            });
            if changed && tx.send(Msg::Changed).is_err() {
                return Ok(StreamEnd::Closed);
            }
            if let Some(end) = outcome {
                // Read the rest of the answer so the connection can be used again.
                let rest = async {
                    while conn_chunk(http).await?.is_some() {}
                    Ok::<_, HttpError>(())
                };
                if !matches!(timeout(shared.rt(), rest).await, Ok(Ok(()))) || head.closes() {
                    http.conn = None;
                }
                return Ok(end);
            }
        }
    }
}

pub(super) async fn conn_chunk(http: &mut Http) -> Result<Option<Vec<u8>>, HttpError> {
    match http.conn.as_mut() {
        Some(c) => c.read_chunk(MAX_BODY).await,
        None => Ok(None),
    }
}
