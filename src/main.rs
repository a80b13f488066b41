//! The `voxproxy` binary: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

/// jemalloc: fewer instructions per allocation than glibc's malloc on the request path, and, with
/// its background thread, freed memory goes back to the system, so RSS falls again after a burst
/// of connections (bench/README.md has both measurements).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Purge freed pages in the background rather than on some later allocation: an idle proxy
    // after a burst would otherwise keep them. Best effort: without it, memory still returns as
    // the proxy allocates again.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    voxproxy::cmd::main()
}
