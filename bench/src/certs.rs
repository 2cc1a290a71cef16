//! The baseline's PKI: a CA and two CA-signed leaf certificates (server and
//! client), P-256 like the Mazu agents' keys, made with the `openssl` CLI;
//! the client's certificate reaches its sidecar through a file-based SDS
//! secret, so that it can be renewed while Envoy runs.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Writes `ca.crt`/`ca.key`, `server.crt`/`server.key` and
/// `client.crt`/`client.key` into `dir`, and the client's SDS secret.
pub fn make_baseline_pki(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=bench mesh CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )?;
    for (name, san) in [("server", SERVER_SAN), ("client", CLIENT_SAN)] {
        issue_leaf(dir, name, san)?;
    }
    write_client_secret(dir, "client")
}

/// The server's subject alternative names.
const SERVER_SAN: &str = "URI:spiffe://cluster.local/ns/bench/sa/server,DNS:server.bench.local";
/// The client's: the same identity in every certificate it is given.
const CLIENT_SAN: &str = "URI:spiffe://cluster.local/ns/bench/sa/client";

/// Gives the baseline client a new CA-signed certificate and key (same
/// identity, new key and serial), `name.crt`/`name.key` in `dir`, and hands
/// it to the client sidecar through its file-based SDS secret.
pub fn renew_client(dir: &Path, name: &str) -> Result<()> {
    issue_leaf(dir, name, CLIENT_SAN)?;
    write_client_secret(dir, name)
}

/// The directory the baseline client sidecar watches for its SDS secret
/// (`sds/client.json`, `bench/envoy/baseline-client.yaml`).
pub fn client_secret_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("sds")
}

/// Writes the SDS secret `client` (the certificate and key `name.crt`/
/// `name.key` inline) and moves it into the watched directory in one
/// rename, so that Envoy never reads half a file.
fn write_client_secret(dir: &Path, name: &str) -> Result<()> {
    let read = |file: String| {
        std::fs::read_to_string(dir.join(&file)).with_context(|| format!("reading {file}"))
    };
    let secret = serde_json::json!({
        "resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": "client",
            "tls_certificate": {
                "certificate_chain": { "inline_string": read(format!("{name}.crt"))? },
                "private_key": { "inline_string": read(format!("{name}.key"))? },
            },
        }],
    });
    let watched = client_secret_dir(dir);
    std::fs::create_dir_all(&watched)?;
    let staged = dir.join("client-secret.json.new");
    std::fs::write(&staged, serde_json::to_vec_pretty(&secret)?)?;
    std::fs::rename(&staged, watched.join("client.json"))?;
    Ok(())
}

/// A P-256 key and a certificate for it signed by the bench CA:
/// `name.key`, `name.crt` in `dir`.
fn issue_leaf(dir: &Path, name: &str, san: &str) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    )?;
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n\
             basicConstraints=critical,CA:FALSE\n"
        ),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    )
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
