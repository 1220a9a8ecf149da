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
                        );
                        pump(server, client, s.clone(), false);
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

fn pump(mut from: TcpStream, mut to: TcpStream, s: Arc<Shared>, upstream: bool) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if s.mode.load(Ordering::SeqCst) == BLACKHOLE {
                continue;
            }
            let counter = if upstream { &s.up } else { &s.down };
            counter.fetch_add(n as u64, Ordering::SeqCst);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
