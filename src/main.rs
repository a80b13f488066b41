//! The `voxproxy` binary: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

/// mimalloc: fewer instructions per allocation than glibc's malloc on the request path, and freed
/// memory goes back to the system, so RSS falls again after a burst of connections
/// (bench/README.md has both measurements).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    voxproxy::cmd::main()
}
