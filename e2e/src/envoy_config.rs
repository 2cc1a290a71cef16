//! Renders the sidecar configuration from the templates in `e2e/envoy/`.
//!
//! The templates are plain Envoy YAML with `${NAME}` placeholders, so that the
//! file a reader opens is the configuration that runs. Rendering is string
//! substitution only; a placeholder left unfilled is an error rather than a
//! configuration Envoy would reject with a less helpful message.

use std::path::Path;

use anyhow::{Result, bail};
use mazu_service::tls::SpkiPin;

const SIDECAR: &str = include_str!("../envoy/sidecar.yaml");
const OUTBOUND_LISTENER: &str = include_str!("../envoy/outbound-listener.yaml");
const OUTBOUND_CLUSTER: &str = include_str!("../envoy/outbound-cluster.yaml");

/// The outbound cluster's validation context: the agent's `ROOTCA` (the SPKI
/// pins of the live registered keys).
const ROOTCA_ONLY: &str = r#"          validation_context_sds_secret_config:
            name: ROOTCA
            sds_config:
              resource_api_version: V3
              api_config_source:
                api_type: GRPC
                transport_api_version: V3
                grpc_services:
                - envoy_grpc: { cluster_name: sds-grpc }
"#;

/// The outbound cluster's validation context as istiod renders it: the
/// destination's SPIFFE ID as the only acceptable SAN, combined with
/// `ROOTCA`. Envoy 1.40 refuses SAN matchers without a trusted CA, so it
/// NACKs the agent's pins-only `ROOTCA` here (e2e `s23`, docs/istio.md).
fn istio_san_and_rootca() -> String {
    let rootca: String = ROOTCA_ONLY
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    format!(
        "          combined_validation_context:\n            default_validation_context:\n              \
         match_typed_subject_alt_names:\n              - san_type: URI\n                \
         matcher: {{ exact: \"${{PEER_SPIFFE_ID}}\" }}\n{rootca}"
    )
}

/// A service this sidecar may call.
#[derive(Clone, Debug)]
pub struct OutboundPeer {
    /// The peer's service name.
    pub name: String,
    /// The local plain-text port the workload connects to.
    pub outbound_port: u16,
    /// The peer sidecar's mTLS port.
    pub peer_inbound_port: u16,
    /// The peer's SPIFFE ID.
    pub spiffe_id: String,
    /// The peer's Service host name: the cluster's SNI is Istio's
    /// `outbound_.<port>_._.<host>`.
    pub host: String,
}

/// Everything one sidecar's configuration needs.
#[derive(Clone, Debug)]
pub struct SidecarConfig<'a> {
    /// The workload's service name.
    pub service: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Envoy's admin port.
    pub admin_port: u16,
    /// The mTLS port peers connect to.
    pub inbound_port: u16,
    /// The workload's own (plain-text) port.
    pub workload_port: u16,
    /// The key curator's HTTPS port.
    pub curator_port: u16,
    /// The pin of the curator's TLS key (the cluster accepts no other).
    pub curator_tls_pin: SpkiPin,
    /// The node agent's SDS socket.
    pub sds_socket: &'a Path,
    /// The filter `.wasm`.
    pub filter_wasm: &'a Path,
    /// The filter configuration (JSON) for the inbound listener.
    pub inbound_plugin_config: &'a str,
    /// The filter configuration (JSON) for the outbound listeners.
    pub outbound_plugin_config: &'a str,
    /// The services this workload may call.
    pub peers: &'a [OutboundPeer],
    /// Give outbound clusters Istio's SAN matcher (the peer's SPIFFE ID)
    /// beside `ROOTCA`, as istiod does.
    pub istio_san_matchers: bool,
}

/// The sidecar's Envoy configuration (YAML).
pub fn render(config: &SidecarConfig<'_>) -> Result<String> {
    let wasm = config.filter_wasm.display().to_string();
    let outbound_config = yaml_string(config.outbound_plugin_config)?;
    let mut listeners = String::new();
    let mut clusters = String::new();
    let validation = if config.istio_san_matchers {
        istio_san_and_rootca()
    } else {
        ROOTCA_ONLY.to_owned()
    };
    for peer in config.peers {
        let cluster = OUTBOUND_CLUSTER.replace("${VALIDATION_CONTEXT}\n", &validation);
        let vars = [
            ("PEER", peer.name.clone()),
            ("OUTBOUND_PORT", peer.outbound_port.to_string()),
            ("PEER_INBOUND_PORT", peer.peer_inbound_port.to_string()),
            ("PEER_SPIFFE_ID", peer.spiffe_id.clone()),
            ("PEER_HOST", peer.host.clone()),
            ("FILTER_WASM", wasm.clone()),
            ("OUTBOUND_PLUGIN_CONFIG", outbound_config.clone()),
        ];
        listeners.push_str(&substitute(OUTBOUND_LISTENER, &vars)?);
        clusters.push_str(&substitute(&cluster, &vars)?);
    }
    let mut vars = config.workload_vars();
    vars.extend([
        ("FILTER_WASM", wasm),
        (
            "INBOUND_PLUGIN_CONFIG",
            yaml_string(config.inbound_plugin_config)?,
        ),
        ("OUTBOUND_LISTENERS", listeners),
        ("OUTBOUND_CLUSTERS", clusters),
    ]);
    substitute(SIDECAR, &vars)
}

impl SidecarConfig<'_> {
    /// The placeholders every sidecar template fills the same way: the
    /// workload, its ports, the curator and the SDS socket.
    pub fn workload_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SERVICE", self.service.to_owned()),
            ("NAMESPACE", self.namespace.to_owned()),
            ("ADMIN_PORT", self.admin_port.to_string()),
            ("INBOUND_PORT", self.inbound_port.to_string()),
            ("WORKLOAD_PORT", self.workload_port.to_string()),
            ("CURATOR_PORT", self.curator_port.to_string()),
            ("CURATOR_TLS_PIN", self.curator_tls_pin.to_string()),
            ("SDS_SOCKET", self.sds_socket.display().to_string()),
        ]
    }
}

/// A YAML double-quoted scalar holding `text` (a JSON string literal is one).
fn yaml_string(text: &str) -> Result<String> {
    Ok(serde_json::to_string(text)?)
}

/// Replaces every `${NAME}` with its value; fails on an unknown or unfilled
/// placeholder. Values are inserted verbatim (never re-scanned).
pub fn substitute(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("unterminated placeholder in template: {}", &rest[start..]);
        };
        let name = &after[..end];
        match vars.iter().find(|(key, _)| *key == name) {
            Some((_, value)) => out.push_str(value),
            None => bail!("template placeholder ${{{name}}} has no value"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What the renderers' tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// The sidecar configuration the renderers' tests use: frontend, calling
    /// `peers`.
    pub(crate) fn example_config(peers: &[OutboundPeer]) -> SidecarConfig<'_> {
        SidecarConfig {
            service: "frontend",
            namespace: "shop",
            admin_port: 1,
            inbound_port: 4,
            workload_port: 5,
            curator_port: 6,
            curator_tls_pin: SpkiPin([6; 32]),
            sds_socket: Path::new("/tmp/sds.sock"),
            filter_wasm: Path::new("/tmp/mazu_filter.wasm"),
            inbound_plugin_config: r#"{"direction":"inbound"}"#,
            outbound_plugin_config: r#"{"direction":"outbound"}"#,
            peers,
            istio_san_matchers: true,
        }
    }

    /// Checkout, as a peer the renderers' tests call.
    pub(crate) fn example_peer() -> OutboundPeer {
        OutboundPeer {
            name: "checkout".into(),
            outbound_port: 2,
            peer_inbound_port: 3,
            spiffe_id: "spiffe://cluster.local/ns/shop/sa/checkout".into(),
            host: "checkout.shop.svc.cluster.local".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{example_config, example_peer};
    use super::*;

    #[test]
    fn substitute_fills_every_placeholder_and_refuses_unknown_ones() {
        let vars = [("A", "1".to_owned()), ("B", "${A}".to_owned())];
        assert_eq!(substitute("x${A}y${B}z", &vars).unwrap(), "x1y${A}z");
        assert!(substitute("${C}", &vars).is_err());
        assert!(substitute("${A", &vars).is_err());
    }

    #[test]
    fn rendered_sidecar_has_no_placeholders_and_quotes_the_plugin_config() {
        let peers = [example_peer()];
        let yaml = render(&SidecarConfig {
            istio_san_matchers: false,
            ..example_config(&peers)
        })
        .unwrap();
        assert!(!yaml.contains("${"), "{yaml}");
        assert!(yaml.contains(r#"value: "{\"direction\":\"inbound\"}""#));
        assert!(yaml.contains("name: outbound-checkout"));
        assert!(yaml.contains("name: peer-checkout"));
        assert!(yaml.contains("port_value: 3 }"));
    }
}
