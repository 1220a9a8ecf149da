//! `make demo`: a private Dovecot with a demo account, the tray agent pointed at it, and a new
//! message every 20 s. Linux only: the private Dovecot is Debian's package (see `linux.rs`).

#[cfg(target_os = "linux")]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("the demo runs a private Dovecot and needs Linux");
        std::process::exit(2);
    }
}
