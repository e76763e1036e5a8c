//! `alertcall twilio-sim`: the Twilio simulator as a standalone loopback server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::twilio::sim::{Script, SimConfig, Simulator};

#[derive(clap::Args, Debug)]
pub struct TwilioSimArgs {
    /// Loopback address to listen on (non-loopback addresses are refused).
    #[arg(long, default_value = "127.0.0.1:4010")]
    pub listen: SocketAddr,
    /// The account SID requests must authenticate as.
    #[arg(
        long,
        env = "TWILIO_ACCOUNT_SID",
        default_value = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )]
    pub account_sid: String,
    /// The auth token: checks Basic auth and signs webhooks (X-Twilio-Signature).
    #[arg(
        long,
        env = "TWILIO_AUTH_TOKEN",
        default_value = "simulator-auth-token"
    )]
    pub auth_token: String,
    /// YAML file with the recipients' behaviour (see examples/simulator/script.yaml).
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Outbound calls started per simulated second (Twilio's CPS).
    #[arg(long, default_value_t = 1.0)]
    pub calls_per_second: f64,
    /// Concurrent outbound call cap (unlimited when absent).
    #[arg(long)]
    pub max_concurrent_calls: Option<usize>,
    /// Serve a call's Events while it runs. Twilio serves them only 15 minutes after the call
    /// ends, and so does the simulator without this flag.
    #[arg(long)]
    pub immediate_call_events: bool,
}

pub fn run(args: &TwilioSimArgs) -> ExitCode {
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "alertcall twilio-sim: refusing to listen on {}: the simulator only serves loopback addresses (e.g. 127.0.0.1:4010)",
            args.listen
        );
        return ExitCode::FAILURE;
    }
    let script = match &args.script {
        None => Script::default(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Script::from_yaml(&text).map_err(|e| e.to_string()))
        {
            Ok(script) => script,
            Err(error) => {
                eprintln!("alertcall twilio-sim: {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let config = SimConfig {
        listen: args.listen,
        script,
        time_scale: args.time_scale,
        calls_per_second: args.calls_per_second,
        max_concurrent_calls: args.max_concurrent_calls,
        immediate_call_events: args.immediate_call_events,
        ..SimConfig::new(&args.account_sid, &args.auth_token)
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("alertcall twilio-sim: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let handle = match Simulator::start(config).await {
            Ok(handle) => handle,
            Err(error) => {
                eprintln!("alertcall twilio-sim: {error}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "twilio simulator on {} (account {}); ledger at {}/__sim/ledger; Ctrl-C stops",
            handle.api_url(),
            handle.account_sid(),
            handle.api_url()
        );
        let _ = tokio::signal::ctrl_c().await;
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}
