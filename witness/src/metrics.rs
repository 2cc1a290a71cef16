//! Prometheus metrics, served as text on `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mazu_witness_add_checkpoint_total` | counter | `origin` (a configured origin, or `unknown`), `outcome` |
//! | `mazu_witness_tree_size` | gauge | `origin`: the size last cosigned |
//!
//! Outcomes: `cosigned`, `malformed`, `unknown_origin`, `forbidden`,
//! `needs_records`, `no_state_line`, `old_above_size`, `conflict`, `fork`,
//! `bad_proof`, `bad_records`, `bad_state`, `no_follower`, `internal`
//! ([`crate::witness::AddError::outcome`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// A configured origin, or `unknown` (bounded cardinality).
    pub origin: String,
    /// What happened.
    pub outcome: String,
}

/// Labels of the size gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    /// A configured origin.
    pub origin: String,
}

/// Every metric the witness exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `add-checkpoint` requests by origin and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// The size last cosigned, by origin.
    pub tree_size: Family<OriginLabels, Gauge>,
    /// What the HTTP server's connection limits counted (exported as
    /// `connections_refused_total{reason}` and `connections_open`).
    pub connections: std::sync::Arc<mazu_service::http::ConnectionStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mazu_witness");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "add_checkpoint",
            "add-checkpoint requests, by origin and outcome",
            requests.clone(),
        );
        let tree_size = Family::<OriginLabels, Gauge>::default();
        registry.register(
            "tree_size",
            "Tree size of the checkpoint last cosigned, by origin",
            tree_size.clone(),
        );
        let connections = std::sync::Arc::<mazu_service::http::ConnectionStats>::default();
        registry.register_collector(Box::new(mazu_service::http::ConnectionMetrics(
            connections.clone(),
        )));
        Self {
            registry,
            requests,
            tree_size,
            connections,
        }
    }

    /// Counts one request.
    pub fn request(&self, origin: Option<&str>, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                origin: origin.unwrap_or("unknown").to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records the size last cosigned for `origin`.
    pub fn set_size(&self, origin: &str, size: u64) {
        self.tree_size
            .get_or_create(&OriginLabels {
                origin: origin.to_owned(),
            })
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
