//! `alertcall run`: the operator.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use url::Url;

use crate::leader::LeaseConfig;
use crate::operator::{self, Config};
use crate::page::hooks::Hooks;
use crate::twilio::TwilioEndpoints;

/// The production defaults of `alertcall run`, as the flags' defaults spell them. A unit test
/// keeps the two equal; the README states them.
pub mod defaults {
    use std::time::Duration;

    /// Events older than this at arrival are history (a watch restart replays them): no page.
    pub const MAX_EVENT_AGE: Duration = Duration::from_secs(300);
    /// Drift made in Twilio by hand is corrected within this.
    pub const POLICY_RESYNC: Duration = Duration::from_secs(300);
    /// Without `--public-url` polling is the only way a page learns what its calls did, so
    /// this bounds how late a key press stops the other phones and how late a no-answer moves
    /// on to the next person. A poll costs one Twilio GET per live call; idle pages never poll.
    pub const POLL_INTERVAL: Duration = Duration::from_secs(3);
    /// After the leader dies, a standby dials within this (plus a renew attempt).
    pub const LEASE_DURATION: Duration = Duration::from_secs(15);
    /// The holder renews this long after its last renewal; the 5 s left of the duration absorb
    /// a slow API server and clock skew between nodes. As client-go's leader election does.
    pub const LEASE_RENEW: Duration = Duration::from_secs(10);
}

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
    /// Twilio Sync base URL, where the acknowledgement ledger lives (default: Twilio's, or
    /// `<--twilio-serverless-url>/sync` when that is set, as `alertcall twilio-sim` serves it).
    #[arg(long, env = "ALERTCALL_TWILIO_SYNC_URL")]
    pub twilio_sync_url: Option<Url>,
    /// Names the Twilio Serverless service that hosts this install's TwiML documents.
    #[arg(long, env = "ALERTCALL_INSTANCE_NAME", default_value = "alertcall")]
    pub instance_name: String,
    /// Kubernetes Events older than this at arrival never page (e.g. `5m`, `90s`).
    #[arg(long, env = "ALERTCALL_MAX_EVENT_AGE", default_value = "5m", value_parser = parse_positive_duration)]
    pub max_event_age: Duration,
    /// How often each CallPolicy is checked against Twilio without a change (drift correction).
    #[arg(long, env = "ALERTCALL_POLICY_RESYNC", default_value = "5m", value_parser = parse_positive_duration)]
    pub policy_resync: Duration,
    /// How often a page with live calls polls Twilio for their status and acknowledgements.
    #[arg(long, env = "ALERTCALL_POLL_INTERVAL", default_value = "3s", value_parser = parse_positive_duration)]
    pub poll_interval: Duration,
    /// Address of the HTTP endpoints (health, metrics, Twilio callbacks, Alertmanager).
    #[arg(long, env = "ALERTCALL_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Elect a leader through a Lease, for running two replicas.
    #[arg(long, env = "ALERTCALL_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    #[arg(long, env = "ALERTCALL_LEASE_NAME", default_value = "alertcall-leader")]
    pub lease_name: String,
    /// How long the Lease stays held after its last renewal: a standby takes over this long
    /// after the leader dies. Whole seconds.
    #[arg(long, env = "ALERTCALL_LEASE_DURATION", default_value = "15s", value_parser = parse_positive_duration)]
    pub lease_duration: Duration,
    /// How long after its last renewal the leader renews the Lease; shorter than
    /// --lease-duration. Whole seconds.
    #[arg(long, env = "ALERTCALL_LEASE_RENEW", default_value = "10s", value_parser = parse_positive_duration)]
    pub lease_renew: Duration,
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

/// [`parse_duration`], refusing zero: every timing of `run` is a period or a limit.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(duration)
}

impl RunArgs {
    /// The operator's configuration, every field from a flag or a production constant. Test
    /// hooks stay empty: nothing on the command line reaches them.
    pub fn config(&self) -> Result<Config, String> {
        let identity = self.identity.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .unwrap_or_else(|_| format!("alertcall-{}", std::process::id()))
        });
        let lease = LeaseConfig {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity: identity.clone(),
            duration: self.lease_duration,
            renew: self.lease_renew,
        };
        // NB: checked even without --leader-election, so a bad value in the manifest shows
        // before someone scales to two replicas.
        lease.check().map_err(|e| {
            format!(
                "--lease-duration {} / --lease-renew {}: {e}",
                humanize(self.lease_duration),
                humanize(self.lease_renew)
            )
        })?;
        Ok(Config {
            namespace: self.namespace.clone(),
            public_url: self.public_url.clone(),
            twilio: TwilioEndpoints {
                api_url: self.twilio_api_url.clone(),
                serverless_url: self.twilio_serverless_url.clone(),
                upload_url: self.twilio_upload_url.clone(),
                sync_url: self.twilio_sync_url.clone(),
                asset_scheme: None,
            },
            instance_name: self.instance_name.clone(),
            max_event_age: self.max_event_age,
            listen: self.listen,
            leader_election: self.leader_election.then_some(lease),
            identity,
            policy_resync: self.policy_resync,
            call_policies: true,
            poll_interval: self.poll_interval,
            hooks: Hooks::default(),
        })
    }
}

fn humanize(duration: Duration) -> String {
    jiff::SignedDuration::try_from(duration)
        .map(|d| format!("{d:#}"))
        .unwrap_or_else(|_| format!("{duration:?}"))
}

pub fn run(args: &RunArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("alertcall run: {error}");
            // NB: 2, as clap exits on the other usage errors.
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("alertcall run: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(operator::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("alertcall run: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn durations_in_friendly_and_iso_forms() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("PT1H"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("soon").is_err());
    }

    /// Parsing reads the environment, which one test changes.
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        parse_locked(args)
    }

    fn parse_locked(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["alertcall", "run"].iter().chain(args);
        match crate::cli::Cli::try_parse_from(argv)?.command {
            crate::cli::Command::Run(args) => Ok(*args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_production_values() {
        let config = parse(&["--leader-election", "--identity", "a"])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(config.max_event_age, defaults::MAX_EVENT_AGE);
        assert_eq!(config.policy_resync, defaults::POLICY_RESYNC);
        assert_eq!(config.poll_interval, defaults::POLL_INTERVAL);
        let lease = config.leader_election.unwrap();
        assert_eq!(lease.duration, defaults::LEASE_DURATION);
        assert_eq!(lease.renew, defaults::LEASE_RENEW);
        assert_eq!(
            (lease.name.as_str(), lease.identity.as_str()),
            ("alertcall-leader", "a")
        );
        assert_eq!(defaults::POLL_INTERVAL, Duration::from_secs(3));
        assert_eq!(defaults::LEASE_DURATION, Duration::from_secs(15));
        assert_eq!(defaults::LEASE_RENEW, Duration::from_secs(10));
        assert!(config.call_policies, "production publishes TwiML");
        assert_eq!(format!("{:?}", config.hooks), "Hooks(None)", "no test hook");
        assert_eq!(config.twilio.asset_scheme, None);
    }

    #[test]
    fn timings_come_from_flags() {
        let config = parse(&[
            "--poll-interval=1s",
            "--policy-resync=1m",
            "--max-event-age=90s",
            "--lease-duration=30s",
            "--lease-renew=20s",
            "--leader-election",
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(config.poll_interval, Duration::from_secs(1));
        assert_eq!(config.policy_resync, Duration::from_secs(60));
        assert_eq!(config.max_event_age, Duration::from_secs(90));
        let lease = config.leader_election.unwrap();
        assert_eq!(lease.duration, Duration::from_secs(30));
        assert_eq!(lease.renew, Duration::from_secs(20));
    }

    #[test]
    fn timings_come_from_the_environment() {
        // NB: holds the lock while the variables are set, so no other parse sees them.
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let vars = [
            ("ALERTCALL_POLL_INTERVAL", "2s"),
            ("ALERTCALL_LEASE_DURATION", "20s"),
            ("ALERTCALL_LEASE_RENEW", "PT12S"),
        ];
        for (name, value) in vars {
            std::env::set_var(name, value);
        }
        let parsed = parse_locked(&[]);
        for (name, _) in vars {
            std::env::remove_var(name);
        }
        let args = parsed.unwrap();
        assert_eq!(args.poll_interval, Duration::from_secs(2));
        assert_eq!(args.lease_duration, Duration::from_secs(20));
        assert_eq!(args.lease_renew, Duration::from_secs(12));
    }

    #[test]
    fn zero_durations_are_usage_errors() {
        for flag in [
            "--poll-interval=0s",
            "--policy-resync=0s",
            "--max-event-age=0s",
            "--lease-duration=0s",
            "--lease-renew=0s",
        ] {
            let error = parse(&[flag]).expect_err(flag).to_string();
            assert!(
                error.contains("must be longer than zero"),
                "{flag}: {error}"
            );
        }
        let error = parse(&["--poll-interval=-1s"]).unwrap_err().to_string();
        assert!(error.contains("must not be negative"), "{error}");
    }

    #[test]
    fn a_renew_not_shorter_than_the_duration_is_refused() {
        for (duration, renew) in [("15s", "15s"), ("10s", "20s")] {
            let error = parse(&["--lease-duration", duration, "--lease-renew", renew])
                .unwrap()
                .config()
                .unwrap_err();
            assert!(
                error.contains("must be shorter than the lease duration"),
                "{duration}/{renew}: {error}"
            );
            assert!(error.starts_with("--lease-duration "), "{error}");
        }
        let error = parse(&["--lease-duration=1500ms"])
            .unwrap()
            .config()
            .unwrap_err();
        assert!(error.contains("whole number of seconds"), "{error}");
    }
}
