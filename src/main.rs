//! The `voxproxy` binary: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

/// jemalloc: fewer instructions per allocation than glibc's malloc on the request path, and
/// freed memory goes back to the system, so RSS falls again after a burst of connections
/// (bench/README.md has both measurements).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start-up: purge freed pages from a background thread, not
/// on some later allocation (an idle proxy after a burst would otherwise keep them), and after
/// one second unused instead of ten, so RSS is back near its baseline within seconds of a burst
/// of connections closing. Purging costs a few `madvise` calls a second, on that thread.
/// (`unsafe` only because an exported symbol could clash with another of the same name; jemalloc
/// defines none, it looks this one up.)
#[allow(non_upper_case_globals, unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 63] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

fn main() -> ExitCode {
    voxproxy::cmd::main()
}
