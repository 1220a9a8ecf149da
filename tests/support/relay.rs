//! A TCP relay on loopback between the agent and a server: it forwards bytes both ways, counts
//! them, and can cut every connection, refuse new ones, or silently swallow traffic (the way a
//! NAT gateway that forgot a mapping does). Real sockets, real connection teardown.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const FORWARD: u8 = 0;
const REFUSE: u8 = 1;
const BLACKHOLE: u8 = 2;
/// Once the client has sent [`TRIGGER`] on a connection, the server's next bytes are replaced
/// by 1 MB of garbage (a broken server or a middlebox mangling the stream mid-session).
const GARBAGE: u8 = 3;
/// Once the client has sent [`TRIGGER`], half of the server's next chunk is forwarded and then
/// nothing more: a server that stalls in the middle of a response, connection left open.
const STALL: u8 = 4;
/// Once the client has sent `LOGOUT`, nothing more of the server reaches it, not even the end
/// of the connection: a server (or path) that dies just as the client says goodbye.
const STALL_LOGOUT: u8 = 5;
/// The last-item query, sent on every connection once the folder is open.
const TRIGGER: &[u8] = b"UID FETCH *";
const LOGOUT: &[u8] = b"LOGOUT";

#[derive(Default)]
struct Shared {
    mode: AtomicU8,
    up: AtomicU64,
    down: AtomicU64,
    accepted: AtomicU64,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
}

impl Relay {
    /// Relay `127.0.0.1:<new port>` → `127.0.0.1:target`.
    pub fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        s.accepted.fetch_add(1, Ordering::SeqCst);
                        if s.mode.load(Ordering::SeqCst) == REFUSE {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let triggered = Arc::new(AtomicBool::new(false));
                        {
                            let mut conns = s.conns.lock().unwrap();
                            conns.push(client.try_clone().unwrap());
                            conns.push(server.try_clone().unwrap());
                        }
                        pump(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            s.clone(),
                            true,
                            triggered.clone(),
                        );
                        pump(server, client, s.clone(), false, triggered);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Relay { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Close every relayed connection (both sides see the connection end).
    pub fn cut(&self) {
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// New connections are accepted and closed at once (the path is down).
    pub fn refuse(&self) {
        self.shared.mode.store(REFUSE, Ordering::SeqCst);
    }

    /// Bytes are read and dropped; no connection ends (a gateway that forgot the mapping).
    pub fn blackhole(&self) {
        self.shared.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// From now on, every connection gets 1 MB of garbage in answer to its last-item query.
    pub fn garbage_mid_session(&self) {
        self.shared.mode.store(GARBAGE, Ordering::SeqCst);
    }

    /// From now on, every connection's answer to its last-item query stops half-way.
    pub fn stall_mid_response(&self) {
        self.shared.mode.store(STALL, Ordering::SeqCst);
    }

    /// From now on, no connection gets an answer to its `LOGOUT` (nor sees the server close).
    pub fn stall_logout(&self) {
        self.shared.mode.store(STALL_LOGOUT, Ordering::SeqCst);
    }

    pub fn forward(&self) {
        self.shared.mode.store(FORWARD, Ordering::SeqCst);
    }

    /// Bytes relayed client → server and server → client.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.up.load(Ordering::SeqCst),
            self.shared.down.load(Ordering::SeqCst),
        )
    }

    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    s: Arc<Shared>,
    upstream: bool,
    triggered: Arc<AtomicBool>,
) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut stalled = false;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mode = s.mode.load(Ordering::SeqCst);
            if mode == BLACKHOLE || stalled {
                continue;
            }
            let mut chunk = &buf[..n];
            let trigger = if mode == STALL_LOGOUT {
                LOGOUT
            } else {
                TRIGGER
            };
            if upstream && buf[..n].windows(trigger.len()).any(|w| w == trigger) {
                triggered.store(true, Ordering::SeqCst);
            }
            if !upstream && triggered.load(Ordering::SeqCst) {
                if mode == STALL_LOGOUT {
                    stalled = true;
                    continue;
                }
                if mode == GARBAGE {
                    let garbage = b"\xff\x00)(}{\r\n* 7 FETCH (((\x01\x02".repeat(1 << 20 >> 4);
                    s.down.fetch_add(garbage.len() as u64, Ordering::SeqCst);
                    if to.write_all(&garbage).is_err() {
                        break;
                    }
                    stalled = true;
                    continue;
                }
                if mode == STALL {
                    chunk = &buf[..n / 2];
                    stalled = true;
                }
            }
            let counter = if upstream { &s.up } else { &s.down };
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            if to.write_all(chunk).is_err() {
                break;
            }
        }
        // A stalled logout leaves the connection open, also when the server ends it.
        if !(stalled && s.mode.load(Ordering::SeqCst) == STALL_LOGOUT) {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        }
    });
}
