//! What the agent costs while idle, read from /proc: resident and private memory, CPU time,
//! wake-ups (context switches) per thread, and the OpenSSL floor to compare with.

use super::*;

#[derive(Clone, Copy)]
pub(super) struct Proc {
    pub(super) rss_kib: u64,
    pub(super) private_kib: u64,
    pub(super) cpu_ticks: u64,
    /// CPU time in ns from the scheduler (`/proc/PID/task/*/schedstat`), far finer than the
    /// 10 ms ticks of `/proc/PID/stat`.
    pub(super) cpu_ns: u64,
    pub(super) ctx_switches: u64,
    pub(super) threads: u64,
}

/// What an idle run measured, for comparing 30 sessions with 1.
#[derive(Clone, Copy)]
pub(super) struct Idle {
    pub(super) proc: Proc,
    pub(super) sessions: usize,
    pub(super) ctx_per_min: f64,
}

pub(super) fn read_proc(pid: u32) -> Proc {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        smaps
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut ctx = 0;
    let mut threads = 0;
    let mut cpu_ns = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            threads += 1;
            cpu_ns += std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in status.lines() {
                if let Some(v) = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    ctx += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    Proc {
        rss_kib: field("Rss:"),
        private_kib: field("Private_Clean:") + field("Private_Dirty:"),
        cpu_ticks: ticks,
        cpu_ns,
        ctx_switches: ctx,
        threads,
    }
}

/// Context switches (voluntary + involuntary) per thread, keyed by thread id and name.
pub(super) fn thread_switches(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let total: u64 = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .sum();
            let name = format!("{} ({})", comm.trim(), t.file_name().to_string_lossy());
            out.push((name, total));
        }
    }
    out
}

/// Where the memory is: RSS and private memory per mapping (file, or [heap]/[stack]/anonymous),
/// largest first. `MAILPULSE_BENCH_SMAPS=1 make bench` prints it for each idle figure.
pub(super) fn print_smaps(pid: u32) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_name: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut name = String::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let path = line.split_whitespace().nth(5).unwrap_or("[anonymous]");
            name = path.to_owned();
            continue;
        }
        let kib = fields
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let entry = by_name.entry(name.clone()).or_default();
        match first {
            "Rss:" => entry.0 += kib,
            "Private_Clean:" | "Private_Dirty:" => entry.1 += kib,
            _ => {}
        }
    }
    let mut rows: Vec<_> = by_name.into_iter().collect();
    rows.sort_by_key(|(_, (rss, _))| std::cmp::Reverse(*rss));
    eprintln!("      RSS KiB  private KiB  mapping");
    for (name, (rss, private)) in rows.iter().take(15) {
        eprintln!("      {rss:7}  {private:11}  {name}");
    }
}

/// `openssl s_client` with a verified TLS session to the server's IMAPS port, idle for 5 s:
/// what any process using the system's OpenSSL for one session costs at least.
pub(super) fn openssl_floor(d: &Dovecot) -> Option<Proc> {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(format!("127.0.0.1:{}", d.imaps_port()))
        .arg("-CAfile")
        .arg(d.ca_pem())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    sleep(Duration::from_secs(5));
    let alive = matches!(child.try_wait(), Ok(None));
    let p = alive.then(|| read_proc(child.id()));
    let _ = child.kill();
    let _ = child.wait();
    p
}

pub(super) fn idle_cost(
    exe: &Path,
    window_secs: u64,
    accounts: usize,
    baseline: Option<Idle>,
    figures: &mut Vec<Figure>,
) -> Idle {
    let users: Vec<(String, String)> = (0..accounts)
        .map(|i| (format!("user{i}"), "secret-pw".to_string()))
        .collect();
    let d = Dovecot::start(DovecotOptions {
        users,
        ..Default::default()
    });
    // Several accounts get three folders each; the extra folders are created first.
    let folders: &[&str] = if accounts == 1 {
        &["INBOX"]
    } else {
        &["INBOX", "Sent", "Archive"]
    };
    if accounts > 1 {
        for i in 0..accounts {
            let (mut c, _) = imap::ImapClient::connect_greeted(d.imap_port());
            c.login(&format!("user{i}"), "secret-pw");
            c.command_ok("CREATE Sent");
            c.command_ok("CREATE Archive");
            c.command_ok("LOGOUT");
        }
    }
    let w = Watch::start(exe, |home| {
        let mut text = String::from("[keepalive]\ninterval_secs = 60\n\n");
        for i in 0..accounts {
            text += &account_block(
                &format!("a{i}"),
                &d,
                &format!("user{i}"),
                d.imaps_port(),
                "tls",
                folders,
                home,
            );
        }
        text
    });
    let sessions = accounts * if accounts > 1 { 3 } else { 1 };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut connected = 0;
    while connected < sessions && Instant::now() < deadline {
        w.until(Duration::from_secs(120), |v| v["type"] == "connected");
        connected += 1;
    }
    sleep(Duration::from_secs(2));
    let before = read_proc(w.pid());
    let threads_before = thread_switches(w.pid());
    let t0 = Instant::now();
    sleep(Duration::from_secs(window_secs));
    let after = read_proc(w.pid());
    if std::env::var_os("MAILPULSE_BENCH_SMAPS").is_some() {
        print_smaps(w.pid());
        // Which thread woke up how often during the window.
        for (name, total) in thread_switches(w.pid()) {
            let before = threads_before
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, c)| *c);
            eprintln!(
                "      thread {name}: {} switches in the window",
                total - before.min(total)
            );
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // Scheduler nanoseconds where the kernel has them; 10 ms ticks otherwise.
    let cpu_s = if after.cpu_ns > 0 {
        after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9
    } else {
        after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / 100.0
    };
    let per_hour = cpu_s * 3600.0 / elapsed;
    let ctx_per_min =
        after.ctx_switches.saturating_sub(before.ctx_switches) as f64 * 60.0 / elapsed;
    // The floor for memory: the system's own TLS client (C, OpenSSL) holding the same kind of
    // verified IMAPS session idle.
    let floor = (accounts == 1).then(|| openssl_floor(&d)).flatten();
    let label = if accounts == 1 {
        "1 account".to_string()
    } else {
        format!("{accounts} accounts × 3 folders")
    };
    // Linear = each added session costs the same small amount; no busy-waiting = no thread per
    // account, and wake-ups that follow the keep-alives (about two context switches each).
    let per_session = baseline.map(|b| {
        let extra = (sessions - b.sessions).max(1) as f64;
        (
            after.rss_kib.saturating_sub(b.proc.rss_kib) as f64 / extra,
            (ctx_per_min - b.ctx_per_min) / extra,
            after.threads as i64 - b.proc.threads as i64,
        )
    });
    figures.push(Figure {
        name: format!("idle memory of `watch`, {label}"),
        value: match per_session {
            Some((kib, _, _)) => format!(
                "RSS {:.1} MiB ({kib:.0} KiB per added session), private {:.1} MiB",
                after.rss_kib as f64 / 1024.0,
                after.private_kib as f64 / 1024.0
            ),
            None => format!(
                "RSS {:.1} MiB, private {:.1} MiB",
                after.rss_kib as f64 / 1024.0,
                after.private_kib as f64 / 1024.0
            ),
        },
        floor: match (floor, baseline) {
            (Some(f), _) => format!(
                "`openssl s_client` on the same session: RSS {:.1} MiB, private {:.1} MiB",
                f.rss_kib as f64 / 1024.0,
                f.private_kib as f64 / 1024.0
            ),
            (None, Some(b)) => format!("1 account: RSS {:.1} MiB", b.proc.rss_kib as f64 / 1024.0),
            _ => "—".into(),
        },
        target: if accounts == 1 {
            "RSS ≤ 9 MiB".into()
        } else {
            "linear: ≤ 512 KiB per added session".into()
        },
        ok: match per_session {
            Some((kib, _, _)) => Some(kib <= 512.0),
            None => Some(after.rss_kib <= 9 * 1024),
        },
        how: format!(
            "/proc/PID/smaps_rollup after {} s connected",
            window_secs + 2
        ),
    });
    figures.push(Figure {
        name: format!("idle CPU and wake-ups of `watch`, {label}"),
        value: match per_session {
            Some((_, ctx, threads)) => format!(
                "{per_hour:.4} s CPU per hour, {ctx_per_min:.1} context switches/min \
                 ({ctx:+.2} per added session), {} threads ({threads:+} vs 1 account)",
                after.threads
            ),
            None => format!(
                "{per_hour:.4} s CPU per hour, {ctx_per_min:.1} context switches/min, {} threads",
                after.threads
            ),
        },
        floor: format!("{sessions} session(s) × 1 keep-alive per 60 s"),
        target: if accounts == 1 {
            "≤ 0.05 s per idle hour".into()
        } else {
            "no thread per account; ≤ 4 switches/min per added session".into()
        },
        ok: match per_session {
            Some((_, ctx, threads)) => Some(threads <= 0 && ctx <= 4.0),
            None => Some(per_hour <= 0.05),
        },
        how: format!("/proc/PID/task/*/schedstat (CPU ns) and /proc/PID/task/*/status over {elapsed:.0} s (interval 60 s)"),
    });
    Idle {
        proc: after,
        sessions,
        ctx_per_min,
    }
}
