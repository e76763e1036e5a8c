//! `alertcall run`: the operator.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use url::Url;

use crate::controller::{self, Config, TwilioEndpoints};
use crate::leader::LeaseConfig;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "ALERTCALL_NAMESPACE")]
    pub namespace: Option<String>,
    /// URL at which Twilio reaches this operator, for signed status callbacks. Without it, call
    /// status comes from polling Twilio only.
    #[arg(long, env = "ALERTCALL_PUBLIC_URL")]
    pub public_url: Option<Url>,
    /// Twilio REST API base URL (point it at `alertcall twilio-sim` for a dry run).
    #[arg(long, env = "ALERTCALL_TWILIO_API_URL")]
    pub twilio_api_url: Option<Url>,
    /// Twilio Serverless API base URL.
    #[arg(long, env = "ALERTCALL_TWILIO_SERVERLESS_URL")]
    pub twilio_serverless_url: Option<Url>,
    /// Twilio Serverless upload base URL (default: follows --twilio-serverless-url).
    #[arg(long, env = "ALERTCALL_TWILIO_UPLOAD_URL")]
    pub twilio_upload_url: Option<Url>,
    /// Names the Twilio Serverless service that hosts this install's TwiML documents.
    #[arg(long, env = "ALERTCALL_INSTANCE_NAME", default_value = "alertcall")]
    pub instance_name: String,
    /// Kubernetes Events older than this at arrival never page (e.g. `5m`, `90s`).
    #[arg(long, env = "ALERTCALL_MAX_EVENT_AGE", default_value = "5m", value_parser = parse_duration)]
    pub max_event_age: Duration,
    /// How often each CallPolicy is checked against Twilio without a change (drift correction).
    #[arg(long, env = "ALERTCALL_POLICY_RESYNC", default_value = "5m", value_parser = parse_duration)]
    pub policy_resync: Duration,
    /// Address of the HTTP endpoints (health, metrics, Twilio callbacks, Alertmanager).
    #[arg(long, env = "ALERTCALL_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Elect a leader through a Lease, for running two replicas.
    #[arg(long, env = "ALERTCALL_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    #[arg(long, default_value = "alertcall-leader")]
    pub lease_name: String,
    /// This replica's identity (default: the pod name or host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Parses `5m`, `90s`, `1h30m` or ISO 8601 `PT5M`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 5m or 90s: {e}"))?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} must not be negative"))
}

impl RunArgs {
    pub fn config(&self) -> Config {
        let identity = self.identity.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .unwrap_or_else(|_| format!("alertcall-{}", std::process::id()))
        });
        Config {
            namespace: self.namespace.clone(),
            public_url: self.public_url.clone(),
            twilio: TwilioEndpoints {
                api_url: self.twilio_api_url.clone(),
                serverless_url: self.twilio_serverless_url.clone(),
                upload_url: self.twilio_upload_url.clone(),
                asset_scheme: None,
            },
            instance_name: self.instance_name.clone(),
            max_event_age: self.max_event_age,
            listen: self.listen,
            leader_election: self.leader_election.then(|| LeaseConfig {
                namespace: self.lease_namespace.clone(),
                name: self.lease_name.clone(),
                identity: identity.clone(),
                duration: Duration::from_secs(15),
            }),
            identity,
            policy_resync: self.policy_resync,
            call_policies: true,
            ..Config::local("")
        }
    }
}

pub fn run(args: &RunArgs) -> ExitCode {
    crate::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("alertcall run: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(controller::run(args.config())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("alertcall run: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_friendly_and_iso_forms() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("PT1H"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
