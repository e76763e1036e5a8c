//! The `alertcall` command line: one binary, one subcommand per job.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod check;
#[cfg(feature = "sim")]
pub mod demo;
pub mod plugin;
pub mod run;
#[cfg(feature = "sim")]
pub mod twilio_sim;

#[derive(Parser, Debug)]
#[command(
    name = "alertcall",
    version,
    about = "Pages on-call people by phone through Twilio"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator (in-cluster or with a kubeconfig).
    Run(Box<run::RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (the source of crds/).
    Crd,
    /// Validate policies and routes offline, as a GitOps CI step.
    Check(check::CheckArgs),
    /// Run the paging pipeline on the embedded examples, with no cluster and no Twilio account.
    #[cfg(feature = "sim")]
    Demo(demo::DemoArgs),
    /// Run the Twilio simulator as a standalone loopback server.
    #[cfg(feature = "sim")]
    TwilioSim(twilio_sim::TwilioSimArgs),
    /// The kubectl plugin's commands (ack, page, test, who) for those who did not install the
    /// `kubectl-alertcall` symlink.
    Kubectl(plugin::PluginArgs),
}

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let called_as = std::env::args_os().next().unwrap_or_default();
    if plugin::called_as_plugin(&called_as) {
        return plugin::main_as_plugin();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Crd => print_crds(),
        Command::Check(args) => check::run(&args),
        #[cfg(feature = "sim")]
        Command::Demo(args) => demo::run(&args),
        #[cfg(feature = "sim")]
        Command::TwilioSim(args) => twilio_sim::run(&args),
        Command::Kubectl(args) => plugin::run(&args),
    }
}

fn print_crds() -> ExitCode {
    match crate::api::crds_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("alertcall crd: cannot serialize the CRDs: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Files of a directory (or the one file) that hold YAML, in name order.
pub fn yaml_files(path: &PathBuf) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.clone()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let file = entry?.path();
        let is_yaml = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}
