//! Prometheus metrics served on `/metrics`: calls by outcome, acknowledgement latency, pages by
//! route, Twilio API latency and errors by code, dial queue depth, reconcile errors.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub namespace: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TwilioErrorLabels {
    pub operation: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileErrorLabels {
    pub controller: String,
    pub reason: String,
}

/// Every metric of the operator, registered once per process.
pub struct Metrics {
    registry: Registry,
    /// Calls by final outcome (`completed`, `busy`, `no-answer`, `failed`, `canceled`, `acknowledged`).
    pub calls: Family<OutcomeLabels, Counter>,
    /// Seconds from a page's start to its acknowledgement.
    pub ack_latency: Histogram,
    /// Pages created, by route.
    pub pages: Family<RouteLabels, Counter>,
    /// Signals matched but not paged (group already paged in its repeat window), by route.
    pub suppressed: Family<RouteLabels, Counter>,
    /// Twilio API request latency in seconds, by operation.
    pub twilio_latency: Family<OperationLabels, Histogram>,
    /// Twilio API errors by operation and Twilio error code (or transport reason).
    pub twilio_errors: Family<TwilioErrorLabels, Counter>,
    /// Dials waiting for the pacer (calls per second, concurrency).
    pub dial_queue_depth: Gauge,
    /// Reconcile failures by controller and reason.
    pub reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    /// Pages entering each phase: the dashboard's pages by phase and the page-exhausted alert.
    pub page_phases: Family<PhaseLabels, Counter>,
    /// 1 while a policy's TwilioHealthy condition is True, 0 while it is False.
    pub twilio_healthy: Family<PolicyLabels, Gauge>,
    /// Alertmanager webhook requests answered with an error, by reason.
    pub webhook_rejections: Family<ReasonLabels, Counter>,
}

/// The phases of an AlertCall, as `api::alert_call::Phase` spells them.
const PHASES: [&str; 9] = [
    "Pending",
    "Waiting",
    "Calling",
    "Acknowledged",
    "Exhausted",
    "Notified",
    "Failed",
    "Cancelled",
    "Resolved",
];

/// A family exported with its `# HELP` and `# TYPE` even before its first series: dashboards,
/// alert rules and `absent()` can name it on an operator that has not paged yet.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("alertcall");
        let calls = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "calls",
            "Calls placed, by final outcome",
            Declared(calls.clone()),
        );
        let ack_latency = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "acknowledgement_latency_seconds",
            "Seconds from the start of a page to its acknowledgement",
            ack_latency.clone(),
        );
        let pages = Family::<RouteLabels, Counter>::default();
        registry.register("pages", "Pages created, by route", Declared(pages.clone()));
        let suppressed = Family::<RouteLabels, Counter>::default();
        registry.register(
            "suppressed",
            "Matches not paged because their group already paged in the repeat window",
            Declared(suppressed.clone()),
        );
        let twilio_latency = Family::<OperationLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "twilio_request_seconds",
            "Twilio API request latency, by operation",
            Declared(twilio_latency.clone()),
        );
        let twilio_errors = Family::<TwilioErrorLabels, Counter>::default();
        registry.register(
            "twilio_errors",
            "Twilio API errors, by operation and error code",
            Declared(twilio_errors.clone()),
        );
        let dial_queue_depth = Gauge::default();
        registry.register(
            "dial_queue_depth",
            "Dials waiting for the pacer",
            dial_queue_depth.clone(),
        );
        let reconcile_errors = Family::<ReconcileErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile failures, by controller and reason",
            Declared(reconcile_errors.clone()),
        );
        let page_phases = Family::<PhaseLabels, Counter>::default();
        registry.register(
            "page_phases",
            "Pages entering each phase",
            Declared(page_phases.clone()),
        );
        let twilio_healthy = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "twilio_healthy",
            "1 while a CallPolicy's TwilioHealthy condition is True, 0 while False",
            Declared(twilio_healthy.clone()),
        );
        let webhook_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "webhook_rejections",
            "Alertmanager webhook requests answered with an error, by reason",
            Declared(webhook_rejections.clone()),
        );
        // NB: a counter first seen at 1 gives `increase() == 0` in Prometheus, so the first
        // exhausted page would not fire its alert: every series an alert watches starts at 0.
        for phase in PHASES {
            let _ = page_phases.get_or_create(&PhaseLabels {
                phase: phase.to_string(),
            });
        }
        for reason in ["unauthorized", "bad-payload", "unavailable"] {
            let _ = webhook_rejections.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        Self {
            registry,
            page_phases,
            twilio_healthy,
            webhook_rejections,
            calls,
            ack_latency,
            pages,
            suppressed,
            twilio_latency,
            twilio_errors,
            dial_queue_depth,
            reconcile_errors,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn page_phase(&self, phase: &str) {
        self.page_phases
            .get_or_create(&PhaseLabels {
                phase: phase.to_string(),
            })
            .inc();
    }

    pub fn twilio_health(&self, namespace: &str, policy: &str, healthy: bool) {
        self.twilio_healthy
            .get_or_create(&PolicyLabels {
                namespace: namespace.to_string(),
                policy: policy.to_string(),
            })
            .set(i64::from(healthy));
    }

    pub fn webhook_rejection(&self, reason: &str) {
        self.webhook_rejections
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A call that ended with a Twilio error code, counted with the API's errors.
    pub fn call_error(&self, code: &str) {
        self.twilio_errors
            .get_or_create(&TwilioErrorLabels {
                operation: "call".to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    pub fn reconcile_error(&self, controller: &str, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ReconcileErrorLabels {
                controller: controller.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let metrics = Metrics::new();
        metrics
            .calls
            .get_or_create(&OutcomeLabels {
                outcome: "busy".into(),
            })
            .inc();
        metrics.reconcile_error("alertcall", "TwilioUnavailable");
        metrics.dial_queue_depth.set(3);
        metrics.page_phase("Exhausted");
        metrics.twilio_health("ns", "p", false);
        metrics.webhook_rejection("unauthorized");
        metrics.call_error("21211");
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE alertcall_suppressed counter"),
            "a family without series is declared: {text}"
        );
        for line in [
            "alertcall_page_phases_total{phase=\"Acknowledged\"} 0",
            "alertcall_page_phases_total{phase=\"Exhausted\"} 1",
            "alertcall_twilio_healthy{namespace=\"ns\",policy=\"p\"} 0",
            "alertcall_webhook_rejections_total{reason=\"unauthorized\"} 1",
            "alertcall_twilio_errors_total{operation=\"call\",code=\"21211\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(
            text.contains("alertcall_calls_total{outcome=\"busy\"} 1"),
            "{text}"
        );
        assert!(text.contains("alertcall_dial_queue_depth 3"), "{text}");
        assert!(
            text.contains("alertcall_reconcile_errors_total{controller=\"alertcall\",reason=\"TwilioUnavailable\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("alertcall_acknowledgement_latency_seconds"),
            "{text}"
        );
    }
}
