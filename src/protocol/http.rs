//! A small HTTP/1.1 client over a byte stream we own (TCP + TLS), just enough for EWS and
//! Microsoft Graph: `POST` with `Content-Length` (EWS) or `GET` (Graph), answers with
//! `Content-Length` or `Transfer-Encoding: chunked`, read whole or chunk by chunk
//! (GetStreamingEvents), persistent connections, every size bounded.
//!
//! Owning the connection is the point: NTLM authenticates a TCP connection, not a request, so
//! the 401 handshake and the long streaming request that follows must share one socket; Graph's
//! keep-alive is one kept connection whose traffic refreshes the NAT mapping; and every read has
//! the caller's deadline.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::Account;
use crate::error::ProtoError;
use crate::net::tls::Tls;
use crate::net::{self, Io};
use crate::proxy::Purpose;

/// A new connection to an HTTP server of `account` (EWS, Graph): TCP with the deadline (through
/// the account's proxy), TCP keep-alive after `quiet`, TLS (verified) for https. The first
/// plain-http connection logs a warning that `secret` travels unencrypted.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connect(
    account: &Account,
    url: &url::Url,
    host: &str,
    port: u16,
    rt: Duration,
    quiet: Duration,
    tls: &Tls,
    warned_plain: &AtomicBool,
    secret: &str,
) -> Result<Conn, ProtoError> {
    let endpoint = format!("{host}:{port}");
    let purpose = if url.scheme() == "http" {
        Purpose::Http
    } else {
        Purpose::Https
    };
    let tcp = crate::net::tunnel::connect_tcp(
        host,
        port,
        rt,
        " in url",
        account.proxy_setting(),
        purpose,
    )
    .await?;
    let _ = tcp.set_nodelay(true);
    net::set_tcp_keepalive(&tcp, quiet);
    if purpose == Purpose::Http {
        if !warned_plain.swap(true, Ordering::Relaxed) {
            tracing::warn!(account = %account.name, "plain http: {secret} travels unencrypted to {endpoint}");
        }
        return Ok(Conn::new(Box::new(net::LazyAck::new(tcp, true))));
    }
    let stream = tls
        .connect(
            host,
            net::LazyAck::new(tcp, true),
            rt,
            &endpoint,
            "check the port in url",
        )
        .await?;
    Ok(Conn::new(stream))
}

/// The longest header section we accept.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug)]
pub enum HttpError {
    Io(std::io::Error),
    /// Not HTTP, or an answer over the limits.
    Malformed(String),
}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        HttpError::Io(e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
    /// The server will close the connection after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

pub struct Conn {
    io: BufReader<Box<dyn Io>>,
    /// Whether a request was already answered on this connection (a stale pooled connection
    /// may be retried once).
    pub used: bool,
    /// NTLM authenticated this connection.
    pub authed: bool,
}

impl Conn {
    pub fn new(io: Box<dyn Io>) -> Conn {
        Conn {
            io: BufReader::new(io),
            used: false,
            authed: false,
        }
    }

    /// Send `POST path` with the headers and an XML body (EWS).
    pub async fn post(
        &mut self,
        path: &str,
        host: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(), HttpError> {
        let mut all = vec![
            ("Content-Type", "text/xml; charset=utf-8".to_owned()),
            ("Content-Length", body.len().to_string()),
            ("Accept", "text/xml".to_owned()),
        ];
        all.extend(headers.iter().map(|(k, v)| (*k, v.clone())));
        self.send("POST", path, host, &all, body).await
    }

    /// Send `GET path` with the headers (no body).
    pub async fn get(
        &mut self,
        path: &str,
        host: &str,
        headers: &[(&str, String)],
    ) -> Result<(), HttpError> {
        self.send("GET", path, host, headers, b"").await
    }

    /// Send a request: `method path`, `Host`, `User-Agent`, the headers (which say the body's
    /// type and length, if any), the body. No header value may hold a line break.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(), HttpError> {
        let unsafe_text = |t: &str| t.contains(['\r', '\n']);
        if unsafe_text(path)
            || unsafe_text(host)
            || headers
                .iter()
                .any(|(k, v)| unsafe_text(k) || unsafe_text(v))
        {
            return Err(HttpError::Malformed(
                "a request line or header holds a line break".into(),
            ));
        }
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailpulse/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let w = self.io.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(body).await?;
        w.flush().await?;
        Ok(())
    }

    async fn line(&mut self, limit: usize) -> Result<String, HttpError> {
        let mut line = Vec::new();
        let n = (&mut self.io)
            .take(limit as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(HttpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if !line.ends_with(b"\n") {
            return Err(HttpError::Malformed("a header line is too long".into()));
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        String::from_utf8(line).map_err(|_| HttpError::Malformed("a header is not UTF-8".into()))
    }

    /// The status line and headers of the answer.
    pub async fn read_head(&mut self) -> Result<Head, HttpError> {
        let status_line = self.line(MAX_HEAD).await?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(HttpError::Malformed(format!(
                "not an HTTP answer: {}",
                crate::net::clip(&status_line)
            )));
        }
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| HttpError::Malformed(format!("bad status line: {status_line}")))?;
        let reason = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        let mut total = status_line.len();
        loop {
            let line = self.line(MAX_HEAD).await?;
            total += line.len();
            if total > MAX_HEAD {
                return Err(HttpError::Malformed(
                    "the header section is too long".into(),
                ));
            }
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| HttpError::Malformed(format!("bad header line: {line}")))?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        self.used = true;
        Ok(Head {
            status,
            reason,
            headers,
        })
    }

    /// The whole body of an answer whose head was read, at most `max` bytes.
    pub async fn read_body(&mut self, head: &Head, max: usize) -> Result<Vec<u8>, HttpError> {
        if head.chunked() {
            let mut body = Vec::new();
            while let Some(chunk) = self.read_chunk(max).await? {
                body.extend_from_slice(&chunk);
                if body.len() > max {
                    return Err(HttpError::Malformed(format!(
                        "the answer is over {max} bytes"
                    )));
                }
            }
            return Ok(body);
        }
        let len = match head.header("content-length") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length: {v}")))?,
            None if head.status == 204 || head.status == 304 => 0,
            None => {
                // Until the server closes the connection.
                let mut body = Vec::new();
                (&mut self.io)
                    .take(max as u64 + 1)
                    .read_to_end(&mut body)
                    .await?;
                if body.len() > max {
                    return Err(HttpError::Malformed(format!(
                        "the answer is over {max} bytes"
                    )));
                }
                return Ok(body);
            }
        };
        if len > max {
            return Err(HttpError::Malformed(format!(
                "the answer is {len} bytes, over the limit of {max}"
            )));
        }
        let mut body = vec![0; len];
        self.io.read_exact(&mut body).await?;
        Ok(body)
    }

    /// The next chunk of a chunked body; `None` after the last (zero-size) chunk.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Vec<u8>>, HttpError> {
        let line = self.line(1024).await?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("bad chunk size {size_text:?}")))?;
        if size > max {
            return Err(HttpError::Malformed(format!(
                "a chunk of {size} bytes is over the limit of {max}"
            )));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            while !self.line(MAX_HEAD).await?.is_empty() {}
            return Ok(None);
        }
        let mut chunk = vec![0; size];
        self.io.read_exact(&mut chunk).await?;
        let end = self.line(16).await?;
        if !end.is_empty() {
            return Err(HttpError::Malformed(
                "a chunk does not end with CRLF".into(),
            ));
        }
        Ok(Some(chunk))
    }
}
