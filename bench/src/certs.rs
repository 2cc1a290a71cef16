//! The baseline's PKI: a CA and two CA-signed leaf certificates (server and
//! client), P-256 like the Mazu agents' keys, made with the `openssl` CLI.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Writes `ca.crt`/`ca.key`, `server.crt`/`server.key` and
/// `client.crt`/`client.key` into `dir`.
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
    for (name, san) in [
        (
            "server",
            "URI:spiffe://cluster.local/ns/bench/sa/server,DNS:server.bench.local",
        ),
        ("client", "URI:spiffe://cluster.local/ns/bench/sa/client"),
    ] {
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
        )?;
    }
    Ok(())
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
