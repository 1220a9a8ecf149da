//! The network layer every backend shares, and the OAuth token requests with them: TCP connect
//! with deadlines and advice, the proxy tunnel ([`tunnel`], with the proxy's sign-in; NTLM in
//! [`ntlm`], shared with EWS), TLS above them ([`tls`]), the blocking HTTP agent of the token
//! requests ([`http_agent`]), and the byte-stream type the protocols run over. It sits below
//! `protocol` and `oauth`, and above `proxy` (which way out) and `platform`.

pub(crate) mod http_agent;
pub(crate) mod ntlm;
pub(crate) mod tls;
pub(crate) mod tunnel;

use std::fmt::Debug;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{ErrorKind, ProtoError};

/// Any byte stream a session can run over (TCP, TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

/// A boxed [`Io`]: what a backend holds once TCP (and TLS) are set up.
pub(crate) type Stream = Box<dyn Io>;

/// Keep messages that quote server output short.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Resolve `host` and open TCP to the first of its addresses that answers, each step within
/// `rt`, with errors that say what to check.
pub(crate) async fn connect_direct(
    host: &str,
    port: u16,
    rt: Duration,
    setting: &str,
) -> Result<tokio::net::TcpStream, ProtoError> {
    use tokio::time::timeout;
    let addrs: Vec<std::net::SocketAddr> = match timeout(rt, tokio::net::lookup_host((host, port)))
        .await
    {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            return Err(ProtoError::new(
                ErrorKind::Resolve,
                format!(
                    "cannot resolve {host}: {e}; check the host name{setting} and your network connection"
                ),
            ));
        }
        Err(_) => {
            return Err(ProtoError::new(
                ErrorKind::Timeout,
                format!(
                    "{host}:{port}: no answer within {} s while resolving the host name",
                    rt.as_secs()
                ),
            ));
        }
    };
    let mut last = ProtoError::new(ErrorKind::Resolve, format!("{host} has no address"));
    for addr in addrs {
        match timeout(rt, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => {
                let hint = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    format!("; check the port{setting} and that the server is running")
                } else {
                    String::new()
                };
                last = ProtoError::new(
                    ErrorKind::Connect,
                    format!("cannot connect to {host}:{port} ({addr}): {e}{hint}"),
                );
            }
            Err(_) => {
                last = ProtoError::new(
                    ErrorKind::Connect,
                    format!(
                        "cannot connect to {host}:{port} ({addr}): no answer within {} s; a firewall may be dropping the connection",
                        rt.as_secs()
                    ),
                );
            }
        }
    }
    Err(last)
}

/// TCP keep-alive as a second line of defence: kernel probes after `quiet` + 5 s of silence,
/// every 10 s (3 of them where the OS lets us say so). Nothing is sent while traffic flows.
pub(crate) fn set_tcp_keepalive(tcp: &tokio::net::TcpStream, quiet: Duration) {
    let params =
        crate::platform::tcp_keepalive(quiet + Duration::from_secs(5), Duration::from_secs(10));
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&params) {
        tracing::debug!("cannot set TCP keep-alive: {e}");
    }
}

/// A TCP stream that, before each write, asks the OS to ACK the answers together
/// (`platform::ack_answers_together`): what the client writes is a command, what follows is its
/// answers, and a lone ACK for each of them is a packet on the link for nothing. A write is a
/// command (`Bounded` holds a command until its flush), so this is one system call per command.
#[derive(Debug)]
pub(crate) struct LazyAck {
    tcp: tokio::net::TcpStream,
    lazy: bool,
}

impl LazyAck {
    /// `lazy` off leaves the OS's ACKs alone (the adaptive probe measures a silent path as is).
    pub(crate) fn new(tcp: tokio::net::TcpStream, lazy: bool) -> LazyAck {
        LazyAck { tcp, lazy }
    }
}

impl AsyncRead for LazyAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for LazyAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.lazy {
            crate::platform::ack_answers_together(&self.tcp);
        }
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The most a server may announce for one literal (`{N}` at a line's end). mailpulse fetches
/// UIDs, flags, envelopes and dates, never a body: a sane envelope string is a few hundred bytes.
pub(crate) const MAX_LITERAL: u64 = 1 << 20;
/// The most one response may hold: its lines and literals up to the CRLF that ends it.
pub(crate) const MAX_RESPONSE: u64 = 2 << 20;
/// The most one response may hold outside its literals. async-imap parses an unfinished
/// response again from its start after every read of at most 4 KiB, so the work on a line
/// grows with its square: this bound keeps a line without end cheap as well as small. (A
/// `SEARCH` answer is one line: 512 KiB hold some 70 000 UIDs; mailpulse counts new
/// messages without SEARCH.)
pub(crate) const MAX_LINE: u64 = 512 << 10;

/// A byte stream that refuses what the IMAP codec above it would have to hold in memory without
/// bound, before the codec sees it: a literal announced larger than [`MAX_LITERAL`] (async-imap
/// would allocate — and zero — the whole declared size at once, up to 512 MiB), and a response
/// longer than [`MAX_RESPONSE`] (an endless line without CRLF, or endless literals).
///
/// It reads the server's bytes through a small state machine (`Scan`) that knows only IMAP's
/// framing: lines end with CRLF, and `{N}` CRLF at a line's end announces N bytes of literal
/// that belong to the same response. Bytes pass on unchanged; a violation is an
/// `InvalidData` error with a sentence naming the limit, and every later read fails too.
///
/// Writes are held until the codec flushes at the end of a command: async-imap writes a
/// command in pieces (the tag, a space, the command, CRLF), and with `TCP_NODELAY` each piece
/// left as its own segment — over TLS its own record — each ACKed on its own. A command is now
/// one write: one segment, one record. (Held bytes are bounded: past [`WRITE_HOLD`] they go out.)
#[derive(Debug)]
pub(crate) struct Bounded<S> {
    inner: S,
    scan: Scan,
    /// Written by the codec, not yet passed on; `sent` of them are.
    held: Vec<u8>,
    sent: usize,
}

/// The most a command holds back before its bytes go out anyway (IMAP commands are short; a
/// long literal is sent as it comes).
pub(crate) const WRITE_HOLD: usize = 16 << 10;

impl<S> Bounded<S> {
    pub(crate) fn new(inner: S) -> Bounded<S> {
        Bounded {
            inner,
            scan: Scan::default(),
            held: Vec::new(),
            sent: 0,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Some(e) = &this.scan.failed {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.clone(),
            )));
        }
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if let Err(e) = this.scan.feed(new) {
                    // Nothing of this read reaches the codec.
                    buf.set_filled(before);
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e,
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> Bounded<S> {
    /// Pass the held bytes on (as few writes as the stream takes: one, normally).
    fn poll_send_held(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.sent < self.held.len() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.held.len() + buf.len() > WRITE_HOLD {
            match this.poll_send_held(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if buf.len() > WRITE_HOLD {
                return std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
            }
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        match this.poll_send_held(cx) {
            Poll::Ready(Ok(())) => std::pin::Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        match this.poll_send_held(cx) {
            Poll::Ready(Ok(())) => std::pin::Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

/// IMAP's server-to-client framing, byte by byte, in constant memory.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scan {
    /// Bytes of the current response so far (lines and literals).
    response: u64,
    /// The part of it outside literals.
    line: u64,
    /// Bytes of literal still to come; 0 = reading a line.
    literal: u64,
    /// Where the end of the current line stands in a possible `{N}` / `{N+}` announcement.
    tail: Tail,
    /// Set once a limit was crossed: the stream is unusable from then on.
    failed: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Tail {
    #[default]
    Other,
    /// `{` seen.
    Open,
    /// `{` and digits: their value (saturating).
    Digits(u64),
    /// `{N+` (LITERAL+ form).
    Plus(u64),
    /// `{N}` or `{N+}`.
    Closed(u64),
    /// `{N}` CR.
    Cr(u64),
    /// CR at the end of an ordinary line.
    LineCr,
}

impl Scan {
    /// Account for `bytes` from the server; an error names the limit that was crossed.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        for &b in bytes {
            // Literal bytes are data, not framing: they were counted towards the response when
            // announced. They are still watched for an announcement too large, so that a server
            // cannot hide one from this scan in a line the codec reads differently (a status
            // line's text ending in `{N}` is text to the codec, a literal here).
            let in_literal = self.literal > 0;
            if in_literal {
                self.literal -= 1;
            } else {
                self.response += 1;
                self.line += 1;
            }
            self.tail = match (self.tail, b) {
                (_, b'{') => Tail::Open,
                (Tail::Open, d @ b'0'..=b'9') => Tail::Digits(u64::from(d - b'0')),
                (Tail::Digits(n), d @ b'0'..=b'9') => {
                    Tail::Digits(n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
                }
                (Tail::Digits(n), b'+') => Tail::Plus(n),
                (Tail::Digits(n) | Tail::Plus(n), b'}') => Tail::Closed(n),
                (Tail::Closed(n), b'\r') => Tail::Cr(n),
                (Tail::Cr(n), b'\n') => {
                    if n > MAX_LITERAL {
                        return self.fail(format!(
                            "the server announced a literal of {n} bytes; mailpulse reads at \
                             most {MAX_LITERAL} bytes per literal (it fetches only envelopes)"
                        ));
                    }
                    if !in_literal {
                        self.literal = n;
                        self.response = self.response.saturating_add(n);
                    }
                    Tail::Other
                }
                (_, b'\r') => Tail::LineCr,
                (Tail::LineCr, b'\n') => {
                    if !in_literal {
                        // The response ends here.
                        self.response = 0;
                        self.line = 0;
                    }
                    Tail::Other
                }
                _ => Tail::Other,
            };
            if self.literal == 0 && in_literal {
                // The literal's last byte: what follows is line again.
                self.tail = Tail::Other;
            }
            if self.line > MAX_LINE {
                return self.fail(format!(
                    "the server sent a line of more than {MAX_LINE} bytes without ending it; \
                     mailpulse reads at most that in one response"
                ));
            }
            if self.response > MAX_RESPONSE {
                return self.fail(format!(
                    "the server sent more than {MAX_RESPONSE} bytes in one response without \
                     ending it; mailpulse reads at most that"
                ));
            }
        }
        Ok(())
    }

    fn fail(&mut self, message: String) -> Result<(), String> {
        self.failed = Some(message.clone());
        Err(message)
    }

    /// Bytes of the current, unfinished response (what a codec above may be holding).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> u64 {
        self.response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_two_hundred_characters() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(300);
        assert_eq!(clip(&long).chars().count(), 201);
    }

    #[test]
    fn a_huge_literal_is_refused_when_announced() {
        let mut scan = Scan::default();
        assert!(
            scan.feed(b"* 1 FETCH (UID 7 ENVELOPE (NIL {12}\r\nhello world!")
                .is_ok()
        );
        let e = scan.feed(b" {400000000}\r\n").unwrap_err();
        assert!(e.contains("400000000"), "{e}");
        // Split across reads, and in the LITERAL+ form.
        let mut scan = Scan::default();
        assert!(scan.feed(b"* 1 FETCH (BODY[] {40000").is_ok());
        assert!(scan.feed(b"0000+}\r").is_ok());
        assert!(scan.feed(b"\n").is_err());
        // A literal at the limit is fine.
        let mut scan = Scan::default();
        assert!(
            scan.feed(format!("* 1 FETCH (X {MAX_LITERAL}}}\r\n").as_bytes())
                .is_ok()
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut scan = Scan::default();
        let chunk = vec![b'a'; 64 * 1024];
        let mut fed = 0u64;
        let err = loop {
            match scan.feed(&chunk) {
                Ok(()) => fed += chunk.len() as u64,
                Err(e) => break e,
            }
            assert!(fed <= MAX_RESPONSE, "no error after {fed} bytes");
        };
        assert!(err.contains("without ending it"), "{err}");
        assert!(fed <= MAX_LINE, "{fed}");
    }

    #[test]
    fn lines_and_literals_end_responses_where_imap_does() {
        let mut scan = Scan::default();
        // A literal's CRLF does not end the response; the CRLF after it does.
        scan.feed(b"* 1 FETCH (ENVELOPE ({5}\r\na\r\nbc)").unwrap();
        assert!(scan.pending() > 0);
        scan.feed(b"\r\n").unwrap();
        assert_eq!(scan.pending(), 0);
        // Many small responses never add up.
        for _ in 0..100_000 {
            scan.feed(b"* OK Still here\r\n").unwrap();
        }
        assert_eq!(scan.pending(), 0);
        // Literals inside one response add up.
        let mut scan = Scan::default();
        let lit = format!("{{{}}}\r\n{}", 1 << 19, "x".repeat(1 << 19));
        scan.feed(b"* 1 FETCH (X ").unwrap();
        let mut n = 0;
        while scan.feed(lit.as_bytes()).is_ok() {
            n += 1;
            assert!(n < 10, "literals without end accepted");
        }
    }

    #[test]
    fn a_huge_announcement_hidden_after_a_status_text_is_still_refused() {
        // `* OK text {5}` is text to the codec, a literal to a naive scan: the next line's
        // announcement must not slip through inside the "literal".
        let mut scan = Scan::default();
        assert!(
            scan.feed(b"* OK hi {40}\r\n* 1 FETCH (BODY[] {400000000}\r\n")
                .is_err()
        );
    }

    /// The bounded stream under the real async-imap codec: a server announcing 400 MB gets an
    /// error, and nothing near that is allocated.
    #[tokio::test]
    async fn the_codec_above_gets_an_error_not_an_allocation() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = server
                .write_all(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = server.write_all(b"* 1 FETCH (BODY[] {400000000}\r\n").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let mut client = async_imap::Client::new(Bounded::new(client));
        assert!(client.read_response().await.unwrap().is_some());
        let e = client.read_response().await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("literal of 400000000 bytes"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever the server sends, in whatever pieces: no panic, and the response held back
        /// never exceeds the bound (what the codec above may have to buffer).
        #[test]
        fn any_bytes_keep_the_scan_bounded(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                    proptest::sample::select(vec![
                        b"{".to_vec(), b"}\r\n".to_vec(), b"\r\n".to_vec(), b"{1048577}\r\n".to_vec(),
                        b"{99999999999999999999999}\r\n".to_vec(), b"{10+}\r\n".to_vec(),
                        b"* 1 FETCH (UID 3 ENVELOPE (NIL \"s\" ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL NIL NIL))\r\n".to_vec(),
                    ]),
                ],
                0..40,
            )
        ) {
            let mut scan = Scan::default();
            for p in &pieces {
                if scan.feed(p).is_err() {
                    break;
                }
                proptest::prop_assert!(scan.pending() <= MAX_RESPONSE);
                proptest::prop_assert!(scan.line <= MAX_LINE);
            }
        }
    }
}
