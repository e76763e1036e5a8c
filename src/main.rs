#![forbid(unsafe_code)]

use std::process::ExitCode;

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
