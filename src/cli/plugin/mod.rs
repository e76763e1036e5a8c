//! `kubectl alertcall`: the binary answers as a kubectl plugin when it is called (through a
//! symlink) as `kubectl-alertcall`; `alertcall kubectl ...` offers the same commands. kubectl
//! hands the plugin the arguments after `alertcall`; the cluster, context and namespace come
//! from the kubeconfig as kubectl reads them (`KUBECONFIG`, `--context`, `-n`).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

mod commands;
mod who;

/// The plugin's command line, as `kubectl alertcall` sees it.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-alertcall",
    version,
    about = "alertcall from kubectl: acknowledge, page, test phones, see who is called"
)]
pub struct PluginCli {
    #[command(flatten)]
    pub args: PluginArgs,
}

/// The plugin's options and command, also under `alertcall kubectl`.
#[derive(Args, Debug)]
pub struct PluginArgs {
    /// The namespace; the kubeconfig context's namespace when absent, else `default`.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Acknowledge a page (an AlertCall): stops its escalation.
    Ack {
        /// The AlertCall's name.
        page: String,
    },
    /// Page now: creates an AlertCall for POLICY that calls at once; prints its name.
    Page {
        /// The CallPolicy's name.
        policy: String,
        /// What is spoken on the call.
        #[arg(long, short = 'm')]
        message: String,
    },
    /// Place a test call to every recipient of POLICY (or one): it asks for the key and
    /// records the outcome in the policy's status.recipients; prints the AlertCall's name.
    Test {
        /// The CallPolicy's name.
        policy: String,
        /// Call only this recipient.
        #[arg(long)]
        recipient: Option<String>,
    },
    /// Show the call order a page of POLICY would follow now (or at --at).
    Who {
        /// The CallPolicy's name.
        policy: String,
        /// The moment to show, RFC 3339 (for example 2026-12-01T09:00:00Z); now when absent.
        #[arg(long)]
        at: Option<String>,
    },
}

/// Entry point when the binary is called as `kubectl-alertcall`.
pub fn main_as_plugin() -> ExitCode {
    run(&PluginCli::parse().args)
}

/// Runs a plugin command; a failure is printed as `error: ...` with exit status 1, as kubectl
/// does.
pub fn run(args: &PluginArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: &PluginArgs) -> Result<String, String> {
    let (client, namespace) = connect(args).await?;
    match &args.command {
        PluginCommand::Ack { page } => commands::ack(&client, &namespace, page).await,
        PluginCommand::Page { policy, message } => {
            commands::page(&client, &namespace, policy, message).await
        }
        PluginCommand::Test { policy, recipient } => {
            commands::test(&client, &namespace, policy, recipient.as_deref()).await
        }
        PluginCommand::Who { policy, at } => {
            let at = match at {
                Some(text) => text.parse::<jiff::Timestamp>().map_err(|error| {
                    format!("--at {text:?} is not an RFC 3339 time (e.g. 2026-12-01T09:00:00Z): {error}")
                })?,
                None => jiff::Timestamp::now(),
            };
            who::who(&client, &namespace, policy, at).await
        }
    }
}

/// The client and namespace kubectl would use: `KUBECONFIG` or `~/.kube/config` (in-cluster
/// config inside a Pod), the chosen context, and `-n` over the context's namespace.
async fn connect(args: &PluginArgs) -> Result<(Client, String), String> {
    let config = match &args.context {
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..KubeConfigOptions::default()
            };
            let kubeconfig =
                Kubeconfig::read().map_err(|e| format!("reading the kubeconfig: {e}"))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| format!("context {context:?}: {e}"))?
        }
        None => Config::infer().await.map_err(|e| {
            format!("no cluster configuration (KUBECONFIG, ~/.kube/config or in-cluster): {e}")
        })?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| format!("building the client: {e}"))?;
    Ok((client, namespace))
}

/// Whether the process was started as the kubectl plugin (its file name, through a symlink).
pub fn called_as_plugin(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_stem()
        .is_some_and(|name| name == "kubectl-alertcall")
}
