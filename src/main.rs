#![forbid(unsafe_code)]

use std::process::ExitCode;

// NB: glibc malloc kept what two 5,000-alert webhook bodies freed in its arenas (+49 MiB over idle
// for good). jemalloc, with the background thread that `.cargo/config.toml` bakes in through
// JEMALLOC_SYS_WITH_MALLOC_CONF, purges it within seconds even in an idle process; mimalloc
// purged only part of it. Measured by `cargo bench --bench memory` (README, Performance).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // NB: kube and reqwest both pull in rustls; with two crypto backends compiled in, rustls panics
    // unless the process-level provider is chosen before the first TLS connection.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("alertcall: a TLS crypto provider was already installed");
    }
    alertcall::cli::main()
}
