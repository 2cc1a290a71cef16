//! Renders a sidecar in istiod's shape (`e2e/envoy/istio-sidecar.yaml`: HTTP
//! connection managers, the WasmPlugins over ECDS with no `vm_id`, RBAC from
//! AuthorizationPolicies, auto-mTLS clusters with Istio's SNI and SAN
//! matchers), and the ECDS resources the WasmPlugins become.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::envoy_config::{OutboundPeer, SidecarConfig, substitute};

const SIDECAR: &str = include_str!("../envoy/istio-sidecar.yaml");
const OUTBOUND_LISTENER: &str = include_str!("../envoy/istio-outbound-listener.yaml");
const OUTBOUND_CLUSTER: &str = include_str!("../envoy/istio-outbound-cluster.yaml");
const OUTBOUND_TCP_LISTENER: &str = include_str!("../envoy/istio-outbound-tcp-listener.yaml");

/// An HTTP Service port's cluster protocol: the downstream's, as istiod
/// renders it for a port whose protocol it detects (HTTP/1.1 or HTTP/2).
const HTTP_PROTOCOL_OPTIONS: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: { idle_timeout: 3600s }
        use_downstream_protocol_config:
          http_protocol_options: {}
          http2_protocol_options: {}
"#;

/// The workload's TCP Service port (a server-first workload) and the peers'
/// TCP ports: [`OutboundPeer`]s whose ports are the TCP ones.
#[derive(Clone, Copy, Debug)]
pub struct TcpPorts<'a> {
    /// The workload's own TCP port.
    pub workload_port: u16,
    /// The sidecar's mTLS port for it (a second address of the inbound
    /// listener).
    pub inbound_port: u16,
    /// The peers, with their TCP ports.
    pub peers: &'a [OutboundPeer],
}

/// The namespace the WasmPlugins live in (istio/base/mesh): istiod names
/// their ECDS resources `<namespace>.<name>`.
const PLUGIN_NAMESPACE: &str = "mazu-system";

/// An Istio-shaped sidecar: its bootstrap and the two ECDS resource files
/// it reads (write them to [`IstioSidecar::ecds_inbound_path`] and
/// [`IstioSidecar::ecds_outbound_path`] before Envoy starts).
#[derive(Clone, Debug)]
pub struct IstioSidecar {
    /// Envoy's configuration (YAML).
    pub bootstrap: String,
    /// Where the bootstrap reads the inbound WasmPlugin's ECDS resource.
    pub ecds_inbound_path: PathBuf,
    /// The inbound WasmPlugin, as istiod serves it over ECDS (YAML).
    pub ecds_inbound: String,
    /// Where the bootstrap reads the outbound WasmPlugin's ECDS resource.
    pub ecds_outbound_path: PathBuf,
    /// The outbound WasmPlugin, as istiod serves it over ECDS (YAML).
    pub ecds_outbound: String,
}

/// The outbound cluster istiod names for `peer`'s Service port.
pub fn outbound_cluster(peer: &OutboundPeer) -> String {
    format!("outbound|{}||{}", peer.peer_inbound_port, peer.host)
}

/// Renders `config` in istiod's shape. `allowed_principals`: the
/// AuthorizationPolicy on this workload (ALLOW from these
/// `source.principals`, e.g. `cluster.local/ns/shop/sa/frontend`); `None`:
/// no policy (every authenticated peer may call). ECDS files go to `dir`.
pub fn render(
    config: &SidecarConfig<'_>,
    tcp: &TcpPorts<'_>,
    allowed_principals: Option<&[String]>,
    dir: &Path,
) -> Result<IstioSidecar> {
    let ecds_inbound_path = std::path::absolute(dir.join("ecds-mazu-inbound.yaml"))?;
    let ecds_outbound_path = std::path::absolute(dir.join("ecds-mazu-outbound.yaml"))?;
    let mut listeners = String::new();
    let mut clusters = String::new();
    let http = config
        .peers
        .iter()
        .map(|peer| (peer, OUTBOUND_LISTENER, HTTP_PROTOCOL_OPTIONS));
    let tcp_peers = tcp
        .peers
        .iter()
        .map(|peer| (peer, OUTBOUND_TCP_LISTENER, ""));
    for (peer, listener, protocol_options) in http.chain(tcp_peers) {
        // The Service host is `<name>.<namespace>.svc.<domain>`.
        let peer_namespace = peer.host.split('.').nth(1).unwrap_or_default();
        let vars = [
            ("PEER", peer.name.clone()),
            ("PEER_NAMESPACE", peer_namespace.to_owned()),
            ("OUTBOUND_PORT", peer.outbound_port.to_string()),
            ("PEER_PORT", peer.peer_inbound_port.to_string()),
            ("PEER_SPIFFE_ID", peer.spiffe_id.clone()),
            ("PEER_HOST", peer.host.clone()),
            ("ECDS_OUTBOUND", ecds_outbound_path.display().to_string()),
            ("PROTOCOL_OPTIONS", protocol_options.to_owned()),
        ];
        listeners.push_str(&substitute(listener, &vars)?);
        clusters.push_str(&substitute(OUTBOUND_CLUSTER, &vars)?);
    }
    let mut vars = config.workload_vars();
    vars.extend([
        ("TCP_WORKLOAD_PORT", tcp.workload_port.to_string()),
        ("INBOUND_TCP_PORT", tcp.inbound_port.to_string()),
        ("ECDS_INBOUND", ecds_inbound_path.display().to_string()),
        (
            "INBOUND_AUTHZ",
            allowed_principals
                .map(|principals| rbac_filter(config.namespace, config.service, principals))
                .unwrap_or_default(),
        ),
        ("OUTBOUND_LISTENERS", listeners),
        ("OUTBOUND_CLUSTERS", clusters),
    ]);
    Ok(IstioSidecar {
        bootstrap: substitute(SIDECAR, &vars)?,
        ecds_inbound: wasm_plugin(
            "mazu-inbound",
            config.filter_wasm,
            config.inbound_plugin_config,
        )?,
        ecds_inbound_path,
        ecds_outbound: wasm_plugin(
            "mazu-outbound",
            config.filter_wasm,
            config.outbound_plugin_config,
        )?,
        ecds_outbound_path,
    })
}

/// An AuthorizationPolicy `ALLOW` from `principals` on every path, as
/// istiod renders it into the inbound HTTP chain (one policy, one rule).
/// Istio 1.2x matches the principal its `istio_authn` filter took from the
/// peer certificate's URI SAN; upstream Envoy lacks that filter, so the same
/// SAN is matched directly (`authenticated.principal_name`).
fn rbac_filter(namespace: &str, service: &str, principals: &[String]) -> String {
    let ids: String = principals
        .iter()
        .map(|principal| {
            format!(
                "                            - authenticated: {{ principal_name: {{ exact: \"spiffe://{principal}\" }} }}\n"
            )
        })
        .collect();
    format!(
        "          - name: envoy.filters.http.rbac
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              shadow_rules_stat_prefix: istio_dry_run_allow_
              rules:
                action: ALLOW
                policies:
                  ns[{namespace}]-policy[{service}]-rule[0]:
                    permissions:
                    - and_rules: {{ rules: [{{ any: true }}] }}
                    principals:
                    - and_ids:
                        ids:
                        - or_ids:
                            ids:
{ids}"
    )
}

/// The ECDS resource of WasmPlugin `name` (type NETWORK) as istiod serves
/// it: named `<namespace>.<name>`, root_id the plugin name (`mazu`), no
/// `vm_id`, V8, the module from istio-agent's local cache, fail closed.
fn wasm_plugin(name: &str, wasm: &Path, plugin_config: &str) -> Result<String> {
    let full_name = format!("{PLUGIN_NAMESPACE}.{name}");
    let resource = serde_json::json!({
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": full_name,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                "config": {
                    "name": full_name,
                    "root_id": "mazu",
                    "fail_open": false,
                    "vm_config": {
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": { "local": { "filename": std::path::absolute(wasm)? } },
                        "environment_variables": {
                            "key_values": { "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1" }
                        }
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": plugin_config
                    }
                }
            }
        }]
    });
    // JSON is YAML; Envoy reads either.
    Ok(serde_json::to_string_pretty(&resource)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy_config::fixtures::{example_config, example_peer};

    #[test]
    fn renders_istiods_names_and_the_policy() {
        let peers = [example_peer()];
        let config = example_config(&peers);
        let dir = Path::new("/tmp/sidecar");
        let policy = ["cluster.local/ns/shop/sa/checkout".to_owned()];
        let tcp_peers = [OutboundPeer {
            outbound_port: 7,
            peer_inbound_port: 8,
            ..peers[0].clone()
        }];
        let tcp = TcpPorts {
            workload_port: 9,
            inbound_port: 10,
            peers: &tcp_peers,
        };
        let rendered = render(&config, &tcp, Some(&policy), dir).unwrap();
        let yaml = &rendered.bootstrap;
        assert!(!yaml.contains("${"), "{yaml}");
        for expected in [
            "name: outbound|3||checkout.shop.svc.cluster.local",
            "sni: outbound_.3_._.checkout.shop.svc.cluster.local",
            "name: 0.0.0.0_3",
            "- checkout.shop:3",
            "name: inbound|5||",
            "exact: \"spiffe://cluster.local/ns/shop/sa/checkout\" } }",
            "ns[shop]-policy[frontend]-rule[0]:",
            "path: /tmp/sidecar/ecds-mazu-inbound.yaml",
            "cluster: outbound|8||checkout.shop.svc.cluster.local",
            "sni: outbound_.8_._.checkout.shop.svc.cluster.local",
            "cluster: inbound|9||",
            "port_value: 10 }",
        ] {
            assert!(yaml.contains(expected), "{expected} missing:\n{yaml}");
        }
        let ecds: serde_json::Value = serde_json::from_str(&rendered.ecds_outbound).unwrap();
        let plugin = &ecds["resources"][0]["typed_config"]["config"];
        assert_eq!(plugin["name"], "mazu-system.mazu-outbound");
        assert!(plugin["vm_config"].get("vm_id").is_none());
        assert_eq!(
            plugin["configuration"]["value"],
            r#"{"direction":"outbound"}"#
        );
        // No policy: no RBAC filter.
        let open = render(&config, &tcp, None, dir).unwrap();
        assert!(!open.bootstrap.contains("envoy.filters.http.rbac"));
    }
}
