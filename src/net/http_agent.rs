//! The blocking HTTP client (ureq) of the OAuth token requests, connected the way every mail
//! connection is: [`super::tunnel::connect_tcp`] — straight, or through the proxy with the
//! sign-in it asks for (Basic, NTLM, Windows' own Negotiate/NTLM, SOCKS5) — then the same TLS
//! implementation and trust store as the mail connections ([`super::tls::http_config`]).
//!
//! ureq's own proxy support is not used: it answers only Basic, and reads the environment in its
//! own way. So the agent gets no proxy, a connector that opens the route itself, and a resolver
//! that leaves the name to that route (a proxy may be the only one that can resolve it).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

use crate::config::ProxySetting;
use crate::proxy::Purpose;

/// An agent whose requests take `proxy`'s route; each connection step within `timeout`, the
/// whole request too.
pub(crate) fn agent(proxy: &ProxySetting, timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(super::tls::http_config())
        .proxy(None)
        .build();
    let connector = ()
        .chain(Route {
            proxy: proxy.clone(),
            timeout,
        })
        .chain(super::tls::UreqTls::default());
    ureq::Agent::with_parts(config, connector, NoLookup)
}

/// Opens the TCP connection of a request the way [`super::tunnel::connect_tcp`] does.
#[derive(Debug)]
struct Route {
    proxy: ProxySetting,
    timeout: Duration,
}

impl Connector<()> for Route {
    type Out = Tcp;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<Tcp>, ureq::Error> {
        let uri = details.uri;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let purpose = if https { Purpose::Https } else { Purpose::Http };
        // The route is async (the tunnel's sign-in, the OS's proxy settings): run on a thread
        // of its own with a runtime of its own, whatever the caller's thread is part of.
        let opened = std::thread::scope(|s| {
            s.spawn(|| -> std::io::Result<std::net::TcpStream> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let tcp = super::tunnel::connect_tcp(
                        &host,
                        port,
                        self.timeout,
                        " in url",
                        &self.proxy,
                        purpose,
                    )
                    .await
                    .map_err(|e| std::io::Error::other(e.message))?;
                    tcp.into_std()
                })
            })
            .join()
        });
        let tcp = match opened {
            Ok(result) => result?,
            Err(_) => return Err(std::io::Error::other("the connection attempt failed").into()),
        };
        tcp.set_nonblocking(false)?;
        let _ = tcp.set_nodelay(true);
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Tcp {
            stream: tcp,
            buffers,
        }))
    }
}

/// The opened connection as ureq's transport (ureq keeps its own TCP transport private).
#[derive(Debug)]
pub(crate) struct Tcp {
    stream: std::net::TcpStream,
    buffers: LazyBuffers,
}

/// An I/O error as ureq's: a timeout as its timeout.
fn io_error(e: std::io::Error, timeout: &NextTimeout) -> ureq::Error {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            ureq::Error::Timeout(timeout.reason)
        }
        _ => e.into(),
    }
}

impl Transport for Tcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        use std::io::Write as _;
        let timeout = timeout.for_write();
        self.stream
            .set_write_timeout(timeout.not_zero().map(|t| *t))?;
        let output = &self.buffers.output()[..amount];
        (&self.stream)
            .write_all(output)
            .map_err(|e| io_error(e, &timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        use std::io::Read as _;
        let timeout = timeout.for_read();
        self.stream
            .set_read_timeout(timeout.not_zero().map(|t| *t))?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.stream).read(input) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.map_err(|e| io_error(e, &timeout))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    /// Still open and quiet (for reuse from the pool): nothing to read, no end of stream.
    fn is_open(&mut self) -> bool {
        use std::io::Read as _;
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8];
        let open = matches!(
            (&self.stream).read(&mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        open && self.stream.set_nonblocking(false).is_ok()
    }
}

/// No lookup here: [`Route`] resolves (directly, or the proxy does). ureq wants an address; it
/// gets a placeholder nobody connects to.
#[derive(Debug)]
struct NoLookup;

impl Resolver for NoLookup {
    fn resolve(
        &self,
        _uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        addrs.push(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        Ok(addrs)
    }
}
