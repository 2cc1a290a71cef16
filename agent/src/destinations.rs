//! The handshake validator's `destinations`, derived from Kubernetes
//! Services and the service accounts of the pods behind them (pure: no
//! I/O; [`crate::kube`] reads the objects from the API server).
//!
//! For each Service `name` in namespace `ns`, the host
//! `name.ns.svc.<cluster domain>` may be served by the SPIFFE IDs
//! `spiffe://<trust domain>/ns/<ns>/sa/<service account>` of the pods its
//! EndpointSlices reference (the slice's `kubernetes.io/service-name` label
//! names the Service; `endpoints[].targetRef` of kind `Pod` names the pod).
//! Sorted, without duplicates. Fail closed everywhere:
//!
//! - a Service with no pod behind it gets no entry (an outbound handshake to
//!   it then fails, as to any unlisted host);
//! - an endpoint whose pod is not in the pod list (or is there under another
//!   uid: the slice is older than the pod) counts for nothing;
//! - an endpoint's readiness does not matter: a pod that is not ready (or
//!   terminating) still has the identity that may serve the Service, and
//!   readiness flapping must not rebuild every proxy's TLS contexts.
//!
//! Hosts written by hand in the configuration's `destinations` win over
//! derived ones for the same host ([`merge_into_config`]).

use std::collections::{BTreeMap, BTreeSet};

use mazu_identity::SpiffeId;

use crate::kube::{EndpointSlice, Pod, Service};

/// Host → the SPIFFE IDs allowed to serve it (sorted, unique, never empty).
pub type Destinations = BTreeMap<String, Vec<String>>;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What one poll of the API server read.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// Every Service.
    pub services: Vec<Service>,
    /// Every EndpointSlice.
    pub slices: Vec<EndpointSlice>,
    /// Every Pod.
    pub pods: Vec<Pod>,
}

/// The destinations the Services of `view` derive (see the module docs).
pub fn derive(view: &ClusterView, trust_domain: &str, cluster_domain: &str) -> Destinations {
    // (namespace, name) → (uid, service account).
    let pods: BTreeMap<(&str, &str), &Pod> = view
        .pods
        .iter()
        .map(|p| ((p.metadata.namespace.as_str(), p.metadata.name.as_str()), p))
        .collect();
    // (namespace, service) → service accounts behind it.
    let mut behind: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for slice in &view.slices {
        let Some(service) = slice.metadata.labels.get(SERVICE_NAME_LABEL) else {
            continue;
        };
        let namespace = slice.metadata.namespace.as_str();
        for endpoint in &slice.endpoints {
            let Some(target) = &endpoint.target_ref else {
                continue;
            };
            if target.kind != "Pod" {
                continue;
            }
            // A slice refers to pods of its own namespace.
            if target
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != namespace)
            {
                continue;
            }
            let Some(pod) = pods.get(&(namespace, target.name.as_str())) else {
                continue;
            };
            if let Some(uid) = &target.uid
                && !uid.is_empty()
                && !pod.metadata.uid.is_empty()
                && *uid != pod.metadata.uid
            {
                continue;
            }
            behind
                .entry((namespace, service.as_str()))
                .or_default()
                .insert(pod.service_account());
        }
    }
    let mut destinations = Destinations::new();
    for service in &view.services {
        let (namespace, name) = (&service.metadata.namespace, &service.metadata.name);
        let Some(accounts) = behind.get(&(namespace.as_str(), name.as_str())) else {
            continue;
        };
        let ids: Vec<String> = accounts
            .iter()
            .map(|sa| format!("spiffe://{trust_domain}/ns/{namespace}/sa/{sa}"))
            // Only IDs the validator accepts: one it refused would make it
            // refuse the whole configuration.
            .filter(|id| SpiffeId::parse(id).is_ok())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let host = format!("{name}.{namespace}.svc.{cluster_domain}").to_ascii_lowercase();
        destinations.insert(host, ids);
    }
    destinations
}

/// Why the configuration could not take the derived destinations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The configuration is not a JSON object (it was checked at start).
    #[error("the validator configuration is not a JSON object")]
    NotAnObject,
    /// Its `destinations` is not a JSON object.
    #[error("the validator configuration's `destinations` is not a JSON object")]
    DestinationsNotAnObject,
    /// The merged configuration is refused by the validator's own parser.
    #[error("the merged validator configuration is refused: {0}")]
    Refused(#[from] mazu_validator::config::ConfigError),
}

/// The validator configuration `config_json` with `derived` added to its
/// `destinations`. A host written by hand wins (compared without case, as
/// the validator compares hosts): its entry is kept as written and the
/// derived one dropped. The result is checked with the validator's own
/// parser ([`mazu_validator::ValidatorConfig::parse`]).
pub fn merge_into_config(config_json: &str, derived: &Destinations) -> Result<String, MergeError> {
    let Ok(serde_json::Value::Object(mut config)) = serde_json::from_str(config_json) else {
        return Err(MergeError::NotAnObject);
    };
    let mut destinations = match config.remove("destinations") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(map)) => map,
        Some(_) => return Err(MergeError::DestinationsNotAnObject),
    };
    let by_hand: BTreeSet<String> = destinations
        .keys()
        .map(|host| host.to_ascii_lowercase())
        .collect();
    for (host, ids) in derived {
        if by_hand.contains(&host.to_ascii_lowercase()) {
            continue;
        }
        destinations.insert(host.clone(), serde_json::json!(ids));
    }
    config.insert(
        "destinations".to_owned(),
        serde_json::Value::Object(destinations),
    );
    let merged = serde_json::Value::Object(config).to_string();
    mazu_validator::ValidatorConfig::parse(merged.as_bytes())?;
    Ok(merged)
}

/// What changed between two derivations, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Hosts only in the new one.
    pub added: Vec<String>,
    /// Hosts only in the old one.
    pub removed: Vec<String>,
    /// Hosts in both, with other identities.
    pub changed: Vec<String>,
}

impl Change {
    /// The difference from `old` to `new`.
    pub fn between(old: &Destinations, new: &Destinations) -> Change {
        let mut change = Change::default();
        for (host, ids) in new {
            match old.get(host) {
                None => change.added.push(host.clone()),
                Some(before) if before != ids => change.changed.push(host.clone()),
                Some(_) => {}
            }
        }
        change.removed = old
            .keys()
            .filter(|host| !new.contains_key(*host))
            .cloned()
            .collect();
        change
    }
}

#[cfg(test)]
mod tests;
