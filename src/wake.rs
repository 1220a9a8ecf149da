//! Event-triggered initiation (the patent's [0039]): when the network changes or the machine
//! wakes from suspend, the connections are checked at once — a keep-alive query on every
//! session, an immediate reconnect where one is down, any pending backoff skipped — instead of
//! waiting for the next timer. Linux: route/address/link changes from rtnetlink, and a suspend
//! detector that compares CLOCK_BOOTTIME (which counts suspended time) with CLOCK_MONOTONIC
//! (which does not). Other platforms: not yet (their timers and the keep-alive still recover).

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::event::Command;

/// Changes arrive in bursts (a link coming up adds addresses and routes): wait this long for
/// the burst to end, then initiate once.
pub const SETTLE: Duration = Duration::from_millis(500);
/// Suspends shorter than this are ignored.
pub const MIN_SUSPEND: Duration = Duration::from_secs(30);
/// How often the suspend detector looks at the clocks.
pub const SUSPEND_CHECK: Duration = Duration::from_secs(60);

/// Start the wake sources on the current tokio runtime; each sends [`Command::CheckNow`].
pub fn spawn(commands: UnboundedSender<Command>) {
    #[cfg(target_os = "linux")]
    {
        tokio::spawn(linux::network_changes(commands.clone()));
        tokio::spawn(linux::resumes(commands));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = commands;
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use netlink_sys::{AsyncSocket, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};

    const GROUPS: u32 = (libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV6_ROUTE) as u32;

    pub async fn network_changes(commands: UnboundedSender<Command>) {
        let mut socket = match TokioSocket::new(NETLINK_ROUTE) {
            Ok(s) => s,
            Err(e) => {
                tracing::info!("no network change notifications (netlink: {e})");
                return;
            }
        };
        if let Err(e) = socket.socket_mut().bind(&SocketAddr::new(0, GROUPS)) {
            tracing::info!("no network change notifications (netlink bind: {e})");
            return;
        }
        loop {
            if let Err(e) = std::future::poll_fn(|cx| socket.poll_recv_from_full(cx)).await {
                tracing::info!("network change notifications stopped: {e}");
                return;
            }
            // Let the burst settle, swallowing what else arrives meanwhile.
            let settle = tokio::time::sleep(SETTLE);
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    _ = &mut settle => break,
                    r = std::future::poll_fn(|cx| socket.poll_recv_from_full(cx)) => if r.is_err() { break },
                }
            }
            tracing::info!("the network changed: checking every connection now");
            if commands.send(Command::CheckNow).is_err() {
                return;
            }
        }
    }

    fn clock(id: libc::clockid_t) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own; both clocks exist on Linux.
        unsafe { libc::clock_gettime(id, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Time spent suspended so far (BOOTTIME runs on during suspend, MONOTONIC does not).
    pub fn suspended_so_far() -> Duration {
        clock(libc::CLOCK_BOOTTIME).saturating_sub(clock(libc::CLOCK_MONOTONIC))
    }

    pub async fn resumes(commands: UnboundedSender<Command>) {
        let mut before = suspended_so_far();
        let mut tick = tokio::time::interval(SUSPEND_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = suspended_so_far();
            // Short gaps are a paused virtual machine or a blip; a real suspend is long enough
            // for gateways to have forgotten the connection.
            if now.saturating_sub(before) > MIN_SUSPEND {
                tracing::info!(
                    "resumed after {} s of suspend: checking every connection now",
                    (now - before).as_secs()
                );
                if commands.send(Command::CheckNow).is_err() {
                    return;
                }
            }
            before = now;
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_suspend_clock_difference_is_read() {
        // No suspend happens during a test: the difference is stable.
        let a = linux::suspended_so_far();
        std::thread::sleep(Duration::from_millis(50));
        let b = linux::suspended_so_far();
        assert!(
            b.saturating_sub(a) < Duration::from_millis(100),
            "{a:?} → {b:?}"
        );
    }
}
