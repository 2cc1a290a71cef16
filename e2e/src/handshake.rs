//! What the TLS handshake decides: an impostor server that counts the
//! application bytes it is sent, and an extra inbound sidecar for one
//! service's agent, with or without the Mazu filter (a pod served by a Mazu
//! agent that the WasmPlugin does not select) and with either `tcp_proxy`
//! connect mode (server-first protocols).

use core::time::Duration;
use std::path::Path;

use anyhow::Result;
pub use mazu_testkit::net::Impostor;
use mazu_testkit::net::free_port;

use crate::binaries::Binaries;
use crate::mesh::{LocalMesh, Sidecar};
use crate::process::Process;

/// How an [`ExtraSidecar`] is built.
#[derive(Clone, Copy, Debug)]
pub struct ExtraSidecarOptions {
    /// The workload port `tcp_proxy` connects to.
    pub workload_port: u16,
    /// Run the Mazu inbound filter (the mesh's plugin configuration) before
    /// `tcp_proxy`.
    pub filter: bool,
    /// `tcp_proxy` connects to the workload only after the client's TLS
    /// handshake (`upstream_connect_mode: ON_DOWNSTREAM_TLS_HANDSHAKE`);
    /// otherwise as soon as the connection is accepted (Istio's default).
    pub connect_after_handshake: bool,
}

/// An inbound Envoy with a service's agent's SDS secrets (`default`,
/// `ROOTCA`) in front of a workload port. Killed on drop.
pub struct ExtraSidecar {
    /// The mTLS listener's port.
    pub port: u16,
    /// The admin port.
    pub admin_port: u16,
    envoy: Process,
}

/// A sidecar of `service`'s agent with no Mazu filter, in front of its
/// workload: the TLS handshake is all there is.
pub struct UnfilteredSidecar;

impl UnfilteredSidecar {
    /// Starts it (see [`ExtraSidecar::start`]).
    pub fn start(sidecar: &Sidecar, dir: &Path) -> Result<ExtraSidecar> {
        let options = ExtraSidecarOptions {
            workload_port: sidecar.workload_port(),
            filter: false,
            connect_after_handshake: false,
        };
        ExtraSidecar::start_with(sidecar, None, options, dir)
    }
}

impl ExtraSidecar {
    /// Starts an inbound sidecar for `service` of `mesh` with `options`.
    pub fn start(
        mesh: &LocalMesh,
        service: &str,
        options: ExtraSidecarOptions,
    ) -> Result<ExtraSidecar> {
        ExtraSidecar::start_with(mesh.service(service)?, Some(mesh), options, mesh.dir())
    }

    fn start_with(
        sidecar: &Sidecar,
        mesh: Option<&LocalMesh>,
        options: ExtraSidecarOptions,
        dir: &Path,
    ) -> Result<ExtraSidecar> {
        let binaries = Binaries::locate()?;
        let port = free_port()?;
        let admin = free_port()?;
        let sds = |name: &str| {
            serde_json::json!({
                "name": name,
                "sds_config": {
                    "resource_api_version": "V3",
                    "api_config_source": {
                        "api_type": "GRPC",
                        "transport_api_version": "V3",
                        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]
                    }
                }
            })
        };
        let mut filters = Vec::new();
        let mut extra_clusters = Vec::new();
        if options.filter {
            let mesh = mesh.ok_or_else(|| anyhow::anyhow!("the filter needs the mesh"))?;
            filters.push(serde_json::json!({
                "name": "mazu.inbound",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                    "config": {
                        "name": "mazu.inbound",
                        "root_id": "mazu",
                        "fail_open": false,
                        "vm_config": {
                            "vm_id": "mazu",
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": binaries.filter_wasm}}
                        },
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": mesh.plugin_config("inbound")
                        }
                    }
                }
            }));
            extra_clusters.push(serde_json::json!({
                "name": "mazu-curator", "type": "STATIC", "connect_timeout": "1s",
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": "mazu-curator",
                        "common_tls_context": {"validation_context": {
                            "verify_certificate_spki": [mesh.curator_tls_pin()?.to_string()]
                        }}
                    }
                },
                "load_assignment": {"cluster_name": "mazu-curator", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": mesh.front_port()}}}}]}]}
            }));
        }
        let mut tcp_proxy = serde_json::json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "extra",
            "cluster": "workload"
        });
        if options.connect_after_handshake {
            tcp_proxy["upstream_connect_mode"] = "ON_DOWNSTREAM_TLS_HANDSHAKE".into();
            tcp_proxy["max_early_data_bytes"] = 0.into();
        }
        filters.push(serde_json::json!({
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": tcp_proxy
        }));
        let mut config = serde_json::json!({
            "node": {"id": "unfiltered", "cluster": "unfiltered"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {
                "listeners": [{
                    "name": "inbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "require_client_certificate": true,
                                "common_tls_context": {
                                    "tls_certificate_sds_secret_configs": [sds("default")],
                                    "validation_context_sds_secret_config": sds("ROOTCA")
                                }
                            }
                        },
                        "filters": filters
                    }]
                }],
                "clusters": [
                    {
                        "name": "workload", "type": "STATIC", "connect_timeout": "1s",
                        "load_assignment": {"cluster_name": "workload", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": options.workload_port}}}}]}]}
                    },
                    {
                        "name": "sds-grpc", "type": "STATIC", "connect_timeout": "1s",
                        "typed_extension_protocol_options": {
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                                "explicit_http_config": {"http2_protocol_options": {}}
                            }
                        },
                        "load_assignment": {"cluster_name": "sds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": sidecar.sds_socket()}}}}]}]}
                    }
                ]
            }
        });
        if let Some(clusters) = config["static_resources"]["clusters"].as_array_mut() {
            clusters.extend(extra_clusters);
        }
        let tag = format!("{:08x}", rand::random::<u32>());
        let config_path = dir.join(format!("extra-sidecar-{tag}.json"));
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let mut command = binaries.envoy_command();
        command
            .arg("--config-path")
            .arg(&config_path)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--log-level", "info"]);
        let mut envoy = Process::spawn(
            "envoy (extra sidecar)",
            command,
            &dir.join(format!("extra-sidecar-{tag}.log")),
        )?;
        envoy.wait_until("ready", Duration::from_secs(30), || {
            mazu_testkit::http::get_text(admin, "/ready").is_ok_and(|b| b.trim() == "LIVE")
        })?;
        Ok(ExtraSidecar {
            port,
            admin_port: admin,
            envoy,
        })
    }

    /// The Mazu filter's counters (`/stats`).
    pub fn filter_stats(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        crate::mesh::filter_stats(self.admin_port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.envoy.log_tail(60)
    }
}
