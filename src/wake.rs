//! Event-triggered initiation (the patent's [0039]): when the network changes or the machine
//! wakes from suspend, the connections are checked at once — a keep-alive query on every
//! session, an immediate reconnect where one is down, any pending backoff skipped — instead of
//! waiting for the next timer. Linux: route/address/link changes from rtnetlink, logind's
//! `PrepareForSleep(false)` on the system bus, and, where there is no logind, a suspend
//! detector that compares CLOCK_BOOTTIME (which counts suspended time) with CLOCK_MONOTONIC
//! (which does not). Intervals are measured on the monotonic clock (tokio's `Instant`), so a
//! jump of the wall clock (NTP, a manual change, a time zone) neither fires nor delays a timer.
//! macOS and Windows: IOKit's and the power manager's resume notifications and the platform's
//! network changes (see `platform`); the same clock-pair detector (continuous vs absolute mach
//! time; interrupt time vs unbiased interrupt time) runs only until the system is seen to
//! announce resumes itself, since it wakes the agent once a minute.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::event::Command;

/// Suspends shorter than this are ignored.
pub const MIN_SUSPEND: Duration = Duration::from_secs(30);
/// How often the suspend detector looks at the clocks.
pub const SUSPEND_CHECK: Duration = Duration::from_secs(60);

/// Start the wake sources on the current tokio runtime; each sends [`Command::Wake`]: the
/// platform's own notifications, and the clock-pair suspend detector everywhere.
pub fn spawn(commands: UnboundedSender<Command>) {
    crate::platform::spawn_wake_sources(commands.clone());
    tokio::spawn(clock_resumes(commands));
}

/// The suspend detector: each platform has a clock that runs on while the machine sleeps and
/// one that stops; their difference grows by the time spent asleep. Checked every
/// [`SUSPEND_CHECK`]; this is the resume signal where no system service announces it (Linux
/// without logind; macOS and Windows, whose wake notifications need the GUI run loop).
async fn clock_resumes(commands: UnboundedSender<Command>) {
    let suspended_so_far = crate::platform::suspended_so_far;
    let Some(mut before) = suspended_so_far() else {
        return;
    };
    loop {
        // The platform's timer: one wake-up a minute, where tokio's timer wheel takes several.
        crate::platform::sleep(SUSPEND_CHECK).await;
        if crate::platform::RESUME_ANNOUNCED.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!("the system announces resumes: the clock-pair detector stops");
            return;
        }
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
            if commands.send(Command::Wake).is_err() {
                return;
            }
        }
        before = now;
    }
}
