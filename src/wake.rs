//! Event-triggered initiation (the patent's [0039]): when the network changes or the machine
//! wakes from suspend, the connections are checked at once — a keep-alive query on every
//! session, an immediate reconnect where one is down, any pending backoff skipped — instead of
//! waiting for the next timer. Linux: route/address/link changes from rtnetlink, logind's
//! `PrepareForSleep(false)` on the system bus, and, where there is no logind, a suspend
//! detector that compares CLOCK_BOOTTIME (which counts suspended time) with CLOCK_MONOTONIC
//! (which does not). Intervals are measured on the monotonic clock (tokio's `Instant`), so a
//! jump of the wall clock (NTP, a manual change, a time zone) neither fires nor delays a timer.
//! macOS and Windows: the same clock-pair detector (continuous vs absolute mach time; interrupt
//! time vs unbiased interrupt time), within a minute of the wake; network changes there are
//! not watched yet (the keep-alive still finds a dead connection within one interval).

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
        tokio::spawn(linux::logind_resumes(commands.clone()));
    }
    tokio::spawn(clocks::resumes(commands));
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

    /// logind announces `PrepareForSleep(true)` before a suspend and `PrepareForSleep(false)`
    /// after the resume, on the system bus. Without a system bus or logind (containers, some
    /// minimal systems) the clock-based detector below still notices long suspends.
    pub async fn logind_resumes(commands: UnboundedSender<Command>) {
        use futures::StreamExt;
        let stream = async {
            let conn = zbus::Connection::system().await?;
            let rule = zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .sender("org.freedesktop.login1")?
                .path("/org/freedesktop/login1")?
                .interface("org.freedesktop.login1.Manager")?
                .member("PrepareForSleep")?
                .build();
            zbus::MessageStream::for_match_rule(rule, &conn, None).await
        };
        let mut stream = match stream.await {
            Ok(s) => s,
            Err(e) => {
                tracing::info!("no resume notifications from logind (system bus: {e})");
                return;
            }
        };
        while let Some(message) = stream.next().await {
            let Ok(message) = message else { continue };
            match message.body().deserialize::<bool>() {
                Ok(true) => tracing::info!("the system is going to sleep"),
                Ok(false) => {
                    tracing::info!("resumed from suspend (logind): checking every connection now");
                    if commands.send(Command::CheckNow).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!("PrepareForSleep with an unexpected body: {e}"),
            }
        }
        tracing::info!("resume notifications from logind stopped (the system bus went away)");
    }
}

/// The suspend detector: each platform has a clock that runs on while the machine sleeps and
/// one that stops; their difference grows by the time spent asleep. Checked every
/// [`SUSPEND_CHECK`]; this is the resume signal where no system service announces it (Linux
/// without logind; macOS and Windows, whose wake notifications need the GUI run loop).
mod clocks {
    use super::*;

    #[cfg(target_os = "linux")]
    fn clock(id: libc::clockid_t) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own; the clocks used exist.
        unsafe { libc::clock_gettime(id, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Time spent suspended so far (BOOTTIME runs on during suspend, MONOTONIC does not).
    #[cfg(target_os = "linux")]
    pub fn suspended_so_far() -> Option<Duration> {
        Some(clock(libc::CLOCK_BOOTTIME).saturating_sub(clock(libc::CLOCK_MONOTONIC)))
    }

    /// macOS: `mach_continuous_time` runs on during sleep, `mach_absolute_time` does not.
    #[cfg(target_os = "macos")]
    pub fn suspended_so_far() -> Option<Duration> {
        unsafe extern "C" {
            fn mach_continuous_time() -> u64;
            fn mach_absolute_time() -> u64;
            fn mach_timebase_info(info: *mut [u32; 2]) -> i32;
        }
        let mut base = [0u32; 2];
        // SAFETY: plain reads of the kernel's clocks into values we own.
        let (cont, abs) = unsafe {
            if mach_timebase_info(&mut base) != 0 || base[1] == 0 {
                return None;
            }
            (mach_continuous_time(), mach_absolute_time())
        };
        let ticks = cont.saturating_sub(abs) as u128;
        Some(Duration::from_nanos(
            (ticks * base[0] as u128 / base[1] as u128) as u64,
        ))
    }

    /// Windows: the interrupt time counts sleep, the unbiased interrupt time does not
    /// (both in 100 ns units).
    #[cfg(windows)]
    pub fn suspended_so_far() -> Option<Duration> {
        #[link(name = "kernel32")]
        unsafe extern "system" {
            fn QueryUnbiasedInterruptTime(unbiased: *mut u64) -> i32;
            fn GetTickCount64() -> u64;
        }
        let mut unbiased = 0u64;
        // SAFETY: both calls only write into / return plain integers.
        let (ok, ticks_ms) =
            unsafe { (QueryUnbiasedInterruptTime(&mut unbiased), GetTickCount64()) };
        if ok == 0 {
            return None;
        }
        let awake = Duration::from_nanos(unbiased.saturating_mul(100));
        Some(Duration::from_millis(ticks_ms).saturating_sub(awake))
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    pub fn suspended_so_far() -> Option<Duration> {
        None
    }

    pub async fn resumes(commands: UnboundedSender<Command>) {
        let Some(mut before) = suspended_so_far() else {
            return;
        };
        let mut tick = tokio::time::interval(SUSPEND_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(now) = suspended_so_far() else {
                return;
            };
            // Short gaps are a paused virtual machine or a blip; a real suspend is long enough
            // for gateways to have forgotten the connection. GetTickCount64 has a coarse
            // resolution; the threshold is far above it.
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
        let a = clocks::suspended_so_far().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let b = clocks::suspended_so_far().unwrap();
        assert!(
            b.saturating_sub(a) < Duration::from_millis(100),
            "{a:?} → {b:?}"
        );
    }
}
