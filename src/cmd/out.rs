//! What the commands share for their output: writing to stdout, and several errors as one.

use crate::error::Failure;

/// Write a command's output; a reader that went away (`EPIPE`: `| head -1`) is not a failure.
pub fn write_out(out: &mut dyn std::io::Write, bytes: &[u8]) -> Result<(), Failure> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout").into())
        }
        _ => Ok(()),
    }
}

/// Several errors as one, each with its whole chain.
pub fn join_errors(errors: Vec<anyhow::Error>) -> anyhow::Error {
    let text: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
    anyhow::anyhow!(text.join("; "))
}
