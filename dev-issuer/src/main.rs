//! `mazu-dev-issuer`: a development-only Kubernetes service-account token issuer.
//!
//! See the library docs (`mazu_dev_issuer`) for the token shape.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest, store};

const ABOUT: &str = "\
Development-only stand-in for the Kubernetes service-account token issuer.

*** FOR DEVELOPMENT AND TESTS ONLY. ***
The keys are ordinary files and anyone who can read them can mint tokens for any
workload. Never point a production Mazu curator or verifier at this issuer's JWKS.

An issuer directory holds key.pem (PKCS#8 private key, mode 0600), issuer.json
(issuer URL, alg, kid) and jwks.json (the public JWKS).";

/// Repeated under every subcommand's help.
const DEV_ONLY: &str =
    "*** FOR DEVELOPMENT AND TESTS ONLY: never trust this issuer in production. ***";

#[derive(Debug, Parser)]
#[command(name = "mazu-dev-issuer", version, about = ABOUT, long_about = ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgArg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the Kubernetes default).
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once")]
enum Command {
    /// Generate a signing key and write DIR/key.pem, DIR/issuer.json and DIR/jwks.json.
    #[command(after_help = DEV_ONLY)]
    Init {
        /// Issuer directory to create or fill.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Signing algorithm.
        #[arg(long, value_enum, default_value = "rs256")]
        alg: AlgArg,
        /// RSA modulus size in bits (rs256 only; 1024..=8192).
        #[arg(long, default_value_t = mazu_dev_issuer::DEFAULT_RSA_BITS, value_name = "BITS")]
        rsa_bits: usize,
        /// Issuer URL written into the `iss` claim of minted tokens.
        #[arg(long, default_value = DEFAULT_ISSUER_URL, value_name = "URL")]
        issuer: String,
        /// Replace an existing issuer in DIR (its old tokens stop verifying).
        #[arg(long)]
        force: bool,
    },
    /// Print the JWKS of one issuer, or the merged JWKS of several.
    #[command(after_help = DEV_ONLY)]
    Jwks {
        /// Issuer directory; repeat to merge several issuers' keys into one JWKS.
        #[arg(long, value_name = "DIR", required = true)]
        dir: Vec<PathBuf>,
    },
    /// Mint a Kubernetes-shaped projected service-account token.
    #[command(after_help = DEV_ONLY)]
    Mint {
        /// Issuer directory (made by `init`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The pod's namespace.
        #[arg(long, value_name = "NS")]
        namespace: String,
        /// The service account name (sub = system:serviceaccount:NS:SA).
        #[arg(long, value_name = "SA")]
        service_account: String,
        /// Service account UID [default: derived from NS and SA, stable across runs].
        #[arg(long, value_name = "UID")]
        sa_uid: Option<String>,
        /// Pod name [default: SA-pod].
        #[arg(long, value_name = "NAME")]
        pod: Option<String>,
        /// Pod UID [default: derived from NS and the pod name, stable across runs].
        #[arg(long, value_name = "UID")]
        pod_uid: Option<String>,
        /// Node name; without it the token has no kubernetes.io.node claim.
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Node UID [default: derived from the node name].
        #[arg(long, value_name = "UID", requires = "node")]
        node_uid: Option<String>,
        /// Audience; repeat for several. Required: the deployment's own
        /// audience, as the curator's --audience (e.g. "mazu:" followed by
        /// the curator's checkpoint origin). There is no default: a shared
        /// audience would let a token from one deployment register at another.
        #[arg(long = "audience", value_name = "A", required = true)]
        audiences: Vec<String>,
        /// Lifetime: seconds, or a number with s, m, h or d (e.g. 600s, 10m, 1h).
        /// Kubernetes' minimum is 10m; anything is accepted here.
        #[arg(long, default_value = "1h", value_parser = parse_lifetime, value_name = "DURATION")]
        lifetime: u64,
        /// Issued-at time in unix seconds [default: now]; a past time with a short
        /// lifetime yields an already-expired token.
        #[arg(long, value_name = "UNIX")]
        issued_at: Option<u64>,
        /// Not-before time in unix seconds [default: the issued-at time].
        #[arg(long, value_name = "UNIX")]
        not_before: Option<u64>,
        /// Write the token to FILE (atomic replace, mode 0600) instead of stdout,
        /// as the kubelet does for projected tokens.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole context chain, whatever RUST_BACKTRACE says.
            eprintln!("mazu-dev-issuer: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            dir,
            alg,
            rsa_bits,
            issuer,
            force,
        } => init(&dir, alg, rsa_bits, issuer, force),
        Command::Jwks { dir } => {
            let issuers = dir.iter().map(|d| load(d)).collect::<Result<Vec<_>>>()?;
            println!("{}", DevIssuer::merged_jwks(&issuers).to_json());
            Ok(())
        }
        Command::Mint {
            dir,
            namespace,
            service_account,
            sa_uid,
            pod,
            pod_uid,
            node,
            node_uid,
            audiences,
            lifetime,
            issued_at,
            not_before,
            out,
        } => {
            let issuer = load(&dir)?;
            let mut request =
                TokenRequest::new(namespace.clone(), service_account.clone()).lifetime(lifetime);
            if let Some(uid) = sa_uid {
                request = request.service_account_uid(uid);
            }
            let pod = pod.unwrap_or_else(|| format!("{service_account}-pod"));
            request = match pod_uid {
                Some(uid) => request.pod(pod, uid),
                None => request.pod_named(pod),
            };
            if let Some(name) = node {
                let uid =
                    node_uid.unwrap_or_else(|| mazu_dev_issuer::derived_uid("node", "", &name));
                request = request.node(name, uid);
            }
            request = request.audiences(audiences);
            if let Some(t) = issued_at {
                request = request.issued_at(t);
            }
            if let Some(t) = not_before {
                request = request.not_before(t);
            }
            let token = issuer.mint(&request).context("cannot mint the token")?;
            match out {
                Some(path) => mazu_dev_issuer::write_atomic(&path, token.as_bytes(), 0o600)
                    .with_context(|| format!("cannot write the token to {}", path.display())),
                None => {
                    println!("{token}");
                    Ok(())
                }
            }
        }
    }
}

fn init(dir: &Path, alg: AlgArg, rsa_bits: usize, issuer_url: String, force: bool) -> Result<()> {
    if DevIssuer::exists_in(dir) && !force {
        bail!(
            "{} already holds an issuer; pass --force to replace it (tokens it minted will stop verifying)",
            dir.display()
        );
    }
    let rng = &mut rand::rngs::OsRng;
    let issuer = match alg {
        AlgArg::Rs256 => DevIssuer::generate_rsa(rsa_bits, issuer_url, rng),
        AlgArg::Es256 => DevIssuer::generate(Algorithm::Es256, issuer_url, rng),
    }
    .context("cannot generate the signing key")?;
    issuer
        .save(dir)
        .with_context(|| format!("cannot save the issuer to {}", dir.display()))?;
    eprintln!(
        "mazu-dev-issuer (DEVELOPMENT ONLY): {} key {} for issuer {}\n  wrote {}, {}, {}",
        issuer.algorithm(),
        issuer.kid(),
        issuer.issuer_url(),
        dir.join(store::KEY_FILE).display(),
        dir.join(store::METADATA_FILE).display(),
        dir.join(store::JWKS_FILE).display(),
    );
    Ok(())
}

fn load(dir: &Path) -> Result<DevIssuer> {
    if !dir.is_dir() {
        bail!(
            "issuer directory {} does not exist (create one with `mazu-dev-issuer init --dir {}`)",
            dir.display(),
            dir.display()
        );
    }
    DevIssuer::load(dir).with_context(|| format!("cannot load the issuer from {}", dir.display()))
}

/// Parses `3600`, `600s`, `10m`, `1h` or `1d` into seconds.
fn parse_lifetime(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid lifetime {s:?}: expected e.g. 600, 600s, 10m, 1h, 1d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("invalid lifetime unit in {s:?}: use s, m, h or d")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("lifetime {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("3600"), Ok(3600));
        assert_eq!(parse_lifetime("600s"), Ok(600));
        assert_eq!(parse_lifetime("10m"), Ok(600));
        assert_eq!(parse_lifetime("1h"), Ok(3600));
        assert_eq!(parse_lifetime("2d"), Ok(172_800));
        assert!(parse_lifetime("").is_err());
        assert!(parse_lifetime("1w").is_err());
        assert!(parse_lifetime("h").is_err());
        assert!(parse_lifetime("-5s").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
