//! `make bench`: what mailpulse costs and how fast it is, each figure next to a floor measured in
//! the same run. Linux only: it measures against a private Dovecot, network namespaces and
//! /proc (see `linux.rs`).

#[cfg(target_os = "linux")]
mod linux;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("the benchmark measures against a private Dovecot and /proc and needs Linux");
        std::process::exit(2);
    }
}
