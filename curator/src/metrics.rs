//! Prometheus metrics, served as text on `GET /metrics`. (The metric names
//! predate log format 2 and are kept for dashboards: "registrations" counts
//! log entries, binds and reveals.)
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mazu_curator_registrations_accepted_total` | counter | |
//! | `mazu_curator_registrations_refused_total` | counter | `reason` (the API error code) |
//! | `mazu_curator_slot_reservations_total` | counter | `outcome` (`new`, `existing`, or an error code) |
//! | `mazu_curator_log_entries` | gauge | |
//! | `mazu_curator_ready` | gauge | |
//! | `mazu_curator_replay_seconds` | gauge | |
//! | `mazu_curator_registration_verify_seconds` | histogram | |
//! | `mazu_curator_registration_commit_seconds` | histogram | |
//! | `mazu_curator_http_request_duration_seconds` | histogram | `method`, `route`, `status` |

use core::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of the refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The API error code.
    pub reason: String,
}

/// Label set of the reservation counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `new`, `existing` or an API error code.
    pub outcome: String,
}

/// Label set of the HTTP latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// The matched route pattern (`/v1/openings/{slot}`), or `unmatched`.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Every metric the curator exports, plus the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Registrations appended to the log.
    pub accepted: Counter,
    /// Registrations refused, by reason.
    pub refused: Family<ReasonLabels, Counter>,
    /// Slot reservation requests, by outcome.
    pub reservations: Family<OutcomeLabels, Counter>,
    /// Entries in the log (the registry version).
    pub log_entries: Gauge,
    /// 1 once the log is replayed and the store is healthy.
    pub ready: Gauge,
    /// How long the start-up replay took.
    pub replay_seconds: Gauge<f64, AtomicU64>,
    /// Time spent verifying one registration (token, PoP, RBE checks).
    pub verify_seconds: Histogram,
    /// Time in the serialized writer: re-check, append + fsync, apply.
    pub commit_seconds: Histogram,
    /// HTTP request latency by route.
    pub http: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Bindings ended, by reason (`unrevealed`, `expired`, `holder`,
    /// `revoked`).
    pub ended: Family<ReasonLabels, Counter>,
    /// Slots held by a binding (bound or live).
    pub slots_held: Gauge,
    /// Bindings whose token is not revealed yet.
    pub bindings_unrevealed: Gauge,
    /// Slots free (capacity minus held).
    pub slots_free: Gauge,
    /// The earliest token expiry of a live binding, Unix seconds (0: none).
    pub next_expiry: Gauge,
    /// What the HTTP server's connection limits counted (exported as
    /// `connections_refused_total{reason}` and `connections_open`).
    pub connections: Arc<mazu_service::http::ConnectionStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mazu_curator");
        let accepted = Counter::default();
        registry.register(
            "registrations_accepted",
            "Entries (binds and reveals) appended to the log",
            accepted.clone(),
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "registrations_refused",
            "Binds and reveals refused, by reason (API error code)",
            refused.clone(),
        );
        let reservations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "slot_reservations",
            "Slot reservation requests, by outcome",
            reservations.clone(),
        );
        let log_entries = Gauge::default();
        registry.register(
            "log_entries",
            "Entries in the registration log (the registry version)",
            log_entries.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when the log is replayed and registrations are accepted",
            ready.clone(),
        );
        let replay_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "replay_seconds",
            "Time the start-up log replay took",
            replay_seconds.clone(),
        );
        let verify_seconds = latency_histogram();
        registry.register(
            "registration_verify_seconds",
            "Time to verify one registration (token, proof of possession, RBE checks)",
            verify_seconds.clone(),
        );
        let commit_seconds = latency_histogram();
        registry.register(
            "registration_commit_seconds",
            "Time in the serialized writer per registration (re-check, append + fsync, apply)",
            commit_seconds.clone(),
        );
        let http = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            http.clone(),
        );
        let ended = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "bindings_ended",
            "Bindings released or revoked (their slots freed), by reason",
            ended.clone(),
        );
        let slots_held = Gauge::default();
        registry.register(
            "slots_held",
            "Slots held by a binding (bound or live)",
            slots_held.clone(),
        );
        let bindings_unrevealed = Gauge::default();
        registry.register(
            "bindings_unrevealed",
            "Bindings whose token is not revealed yet (released after the reveal window)",
            bindings_unrevealed.clone(),
        );
        let slots_free = Gauge::default();
        registry.register("slots_free", "Slots no binding holds", slots_free.clone());
        let next_expiry = Gauge::default();
        registry.register(
            "next_expiry_unix_seconds",
            "The earliest token expiry of a live binding (0: none)",
            next_expiry.clone(),
        );
        let connections = Arc::<mazu_service::http::ConnectionStats>::default();
        registry.register_collector(Box::new(mazu_service::http::ConnectionMetrics(
            connections.clone(),
        )));
        Self {
            registry,
            connections,
            ended,
            slots_held,
            bindings_unrevealed,
            slots_free,
            next_expiry,
            accepted,
            refused,
            reservations,
            log_entries,
            ready,
            replay_seconds,
            verify_seconds,
            commit_seconds,
            http,
        }
    }

    /// Counts a refused registration.
    pub fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a reservation outcome.
    pub fn reservation(&self, outcome: &str) {
        self.reservations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts an ended binding (`created`: this request logged it).
    pub fn released(&self, reason: &str, created: bool) {
        if created {
            self.ended
                .get_or_create(&ReasonLabels {
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// Sets the slot gauges.
    pub fn lifecycle(
        &self,
        held: usize,
        unrevealed: usize,
        capacity: u32,
        next_expiry: Option<u64>,
    ) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.slots_held.set(gauge(held as u64));
        self.bindings_unrevealed.set(gauge(unrevealed as u64));
        self.slots_free
            .set(gauge(u64::from(capacity).saturating_sub(held as u64)));
        self.next_expiry.set(gauge(next_expiry.unwrap_or(0)));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_text_format() {
        let m = Metrics::new();
        m.accepted.inc();
        m.refuse("slot_taken");
        m.refuse("slot_taken");
        m.log_entries.set(3);
        m.http
            .get_or_create(&RouteLabels {
                method: "GET".into(),
                route: "/v1/params".into(),
                status: 200,
            })
            .observe(0.001);
        let text = m.encode();
        assert!(
            text.contains("mazu_curator_registrations_accepted_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"mazu_curator_registrations_refused_total{reason="slot_taken"} 2"#),
            "{text}"
        );
        assert!(text.contains("mazu_curator_log_entries 3"), "{text}");
        assert!(
            text.contains(r#"mazu_curator_http_request_duration_seconds_count{method="GET",route="/v1/params",status="200"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
