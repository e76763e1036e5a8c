//! Logging: structured tracing to stderr, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // NB: a container's stderr is a pipe the kubelet stores; colour codes there end up as
        // escape sequences in `kubectl logs` and in every log pipeline.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
