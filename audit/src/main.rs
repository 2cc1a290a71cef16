//! `mazu-audit`: audit and monitor a Mazu key curator. See `mazu-audit
//! --help` and docs/audit.md.

use core::time::Duration;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use mazu_audit::check::{self, CheckConfig, Progress};
use mazu_audit::monitor::{Monitor, MonitorConfig};
use mazu_identity::trust::NamespaceScope;
use mazu_identity::{SpiffeId, TrustConfig};
use mazu_service::tls::{ClientTransport, SpkiPin};

/// Exit code when discrepancies were found (check) or an alert fired
/// (monitor with --exit-on-alert).
const EXIT_FOUND: i32 = 1;
/// Exit code when the audit could not be carried out.
const EXIT_FAILED: i32 = 3;

/// Checks that a Mazu key curator is honest, from what it publishes only:
/// its log, public parameters, registry and signed checkpoints.
#[derive(Debug, Parser)]
#[command(name = "mazu-audit", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify the checkpoint (curator signature, witness quorum), download
    /// the whole log, check every record against its entry, re-verify every
    /// bind and reveal, replay the lifecycle (first binding wins), recompute
    /// the public parameters, registry and Merkle root, and compare them
    /// with what the curator serves and signed. Exit 0: consistent; 1:
    /// discrepancies (one DISCREPANCY line each on stdout); 3: the audit
    /// could not run; 2: bad usage.
    Check(CheckArgs),
    /// Watch the log and print an ALERT line for every reveal of a token of
    /// one SPIFFE ID and every bind or reveal of given workload ids (exit 1
    /// on the first with --exit-on-alert).
    Monitor(MonitorArgs),
}

/// How to reach the curator (flattened into every subcommand).
#[derive(Debug, clap::Args)]
struct CuratorArgs {
    /// The curator's base URL, e.g. https://mazu-curator.mazu-system:7878.
    #[arg(long, env = "MAZU_AUDIT_CURATOR", value_name = "URL")]
    curator: String,
    /// The pin of the curator's TLS key: base64 SHA-256 of its public key,
    /// from the curator's --tls-pin-file or start-up log (repeatable, e.g.
    /// during a key rotation; comma-separated in the environment).
    #[arg(
        long = "curator-tls-pin",
        env = "MAZU_AUDIT_CURATOR_TLS_PIN",
        value_name = "PIN",
        value_delimiter = ','
    )]
    curator_tls_pins: Vec<SpkiPin>,
    /// Development only: reach the curator over plain HTTP (an http:// URL).
    /// Whoever is on the path can then show this auditor another log.
    #[arg(long, env = "MAZU_AUDIT_INSECURE_PLAIN_HTTP")]
    insecure_plain_http: bool,
}

impl CuratorArgs {
    /// The transport the flags ask for; a usage error if they contradict
    /// each other or the URL.
    fn transport(&self) -> ClientTransport {
        ClientTransport::for_url(
            &self.curator,
            self.curator_tls_pins.clone(),
            self.insecure_plain_http,
        )
        .unwrap_or_else(|e| usage(&format!("--curator: {e}")))
    }
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    curator: CuratorArgs,
    /// The expected CRS digest (64 hex digits, as printed by
    /// `mazu-ceremony verify`).
    #[arg(
        long,
        value_name = "HEX",
        conflicts_with = "crs",
        required_unless_present = "crs"
    )]
    crs_digest: Option<String>,
    /// The expected CRS file (canonical binary), instead of --crs-digest.
    #[arg(long, value_name = "FILE")]
    crs: Option<PathBuf>,
    /// A trusted token issuer, its JWKS file and the namespaces it may
    /// assert, as ISSUER=JWKS_FILE;namespaces=SCOPE (the curator's --issuer
    /// syntax: SCOPE is names joined by '+', or '*' for every namespace);
    /// repeatable. Tokens are checked against these keys as of each entry's
    /// acceptance time; a token naming a namespace outside its issuer's scope
    /// is reported (token_namespace_out_of_scope).
    #[arg(
        long = "issuer",
        value_name = "ISSUER=JWKS_FILE;namespaces=SCOPE",
        required = true
    )]
    issuers: Vec<String>,
    /// The audience tokens must carry: the curator's --audience. Required,
    /// no default; the shared "mazu" is refused.
    #[arg(long, required = true)]
    audience: String,
    /// The SPIFFE trust domain (the curator's --trust-domain).
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Clock skew tolerated on token times (the curator's --clock-skew-secs).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    clock_skew_secs: u64,
    /// Remember the verified checkpoint here, and require the next run's
    /// checkpoint to be consistent with it (JSON; created if missing,
    /// updated only after a clean run).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Require checkpoints signed by this verifier key
    /// (NAME+HASH+BASE64, as served by /v1/checkpoint/key). Default: the key
    /// remembered in --state, else the one the curator serves (trust on
    /// first use).
    #[arg(long, value_name = "VKEY")]
    checkpoint_key: Option<String>,
    /// A witness whose cosignatures count toward the quorum (its verifier
    /// key, NAME+HASH+BASE64, as `mazu-witness` prints it); repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned the checkpoint
    /// (default: all of them). A checkpoint below the quorum is refused.
    #[arg(long, value_name = "K")]
    witness_quorum: Option<usize>,
    /// Development only: audit without witnesses (no --witness, or a quorum
    /// of 0), trusting checkpoints only the curator signed.
    #[arg(long)]
    insecure_no_witness: bool,
    /// Threads for the per-entry checks (default: CPU count).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Debug, clap::Args)]
struct MonitorArgs {
    #[command(flatten)]
    curator: CuratorArgs,
    /// Report reveals of tokens for this SPIFFE ID
    /// (spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT).
    #[arg(long, value_name = "ID", required_unless_present = "ids")]
    spiffe_id: Option<String>,
    /// Report binds and reveals of this workload id (64 hex digits, SHA-256
    /// of the token); repeatable.
    #[arg(long = "id", value_name = "HEX")]
    ids: Vec<String>,
    /// Seconds between polls.
    #[arg(long, default_value_t = 10, value_name = "N")]
    interval_secs: u64,
    /// Remember the position in the log here between runs (JSON).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Without a remembered position, start at the end of the log instead
    /// of reporting existing registrations too.
    #[arg(long)]
    from_now: bool,
    /// Exit with status 1 after the poll that raised an alert.
    #[arg(long)]
    exit_on_alert: bool,
    /// Poll once and exit (status 1 if an alert was raised).
    #[arg(long)]
    once: bool,
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    let code = match cli.command {
        Command::Check(args) => runtime.block_on(run_check(args)),
        Command::Monitor(args) => runtime.block_on(run_monitor(args)),
    };
    std::process::exit(code);
}

fn fail(message: &str) -> ! {
    eprintln!("mazu-audit: {message}");
    std::process::exit(EXIT_FAILED);
}

fn usage(message: &str) -> ! {
    eprintln!("mazu-audit: {message}\n(see mazu-audit --help)");
    std::process::exit(2);
}

fn trust_config(args: &CheckArgs) -> TrustConfig {
    let mut builder = TrustConfig::builder(&args.trust_domain)
        .audience(&args.audience)
        .clock_skew_secs(args.clock_skew_secs);
    for spec in &args.issuers {
        let Some((issuer, path, scope)) = spec
            .split_once('=')
            .and_then(|(i, rest)| rest.rsplit_once(";namespaces=").map(|(p, s)| (i, p, s)))
            .filter(|(i, p, _)| !i.is_empty() && !p.is_empty())
        else {
            usage(&format!(
                "invalid --issuer: {spec:?} is not ISSUER=JWKS_FILE;namespaces=SCOPE \
                 (SCOPE: namespaces joined by '+', or '*' for every namespace)"
            ));
        };
        let scope = NamespaceScope::parse(scope).unwrap_or_else(|e| {
            usage(&format!(
                "invalid --issuer: namespace scope of {issuer}: {e}"
            ))
        });
        let doc = std::fs::read(path)
            .unwrap_or_else(|e| fail(&format!("reading the JWKS file {path}: {e}")));
        builder = builder.issuer(issuer, &doc, scope);
    }
    builder
        .build()
        .unwrap_or_else(|e| fail(&format!("invalid token trust configuration: {e}")))
}

async fn run_check(args: CheckArgs) -> i32 {
    let crs_digest: [u8; 32] = match (&args.crs_digest, &args.crs) {
        (Some(hex_digest), _) => hex::decode(hex_digest)
            .ok()
            .and_then(|d| d.try_into().ok())
            .unwrap_or_else(|| usage("invalid --crs-digest: not 64 hex digits")),
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .unwrap_or_else(|e| fail(&format!("reading the CRS file {}: {e}", path.display())));
            mazu_rbe::Crs::from_bytes(&bytes)
                .unwrap_or_else(|e| fail(&format!("CRS file {}: {e}", path.display())))
                .digest()
        }
        (None, None) => usage("missing --crs-digest or --crs"),
    };
    if (args.witnesses.is_empty() || args.witness_quorum == Some(0)) && !args.insecure_no_witness {
        usage(
            "no witness quorum: give --witness VKEY (repeatable) and --witness-quorum K, or \
             --insecure-no-witness (development only)",
        );
    }
    let witnesses = args
        .witnesses
        .iter()
        .map(|vkey| {
            mazu_log::WitnessVerifier::parse(vkey)
                .unwrap_or_else(|e| usage(&format!("invalid --witness {vkey:?}: {e}")))
        })
        .collect();
    let config = CheckConfig {
        curator: args.curator.curator.clone(),
        curator_transport: args.curator.transport(),
        crs_digest,
        trust: trust_config(&args),
        state: args.state.clone(),
        checkpoint_key: args.checkpoint_key.clone(),
        witnesses,
        witness_quorum: args.witness_quorum,
        insecure_no_witness: args.insecure_no_witness,
        threads: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, core::num::NonZeroUsize::get)
        }),
    };
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut last_done = 0u64;
    let mut progress = |p: Progress| {
        if p.done / 1000 > last_done / 1000
            || last_print.elapsed() >= Duration::from_secs(1)
            || p.done == p.total
        {
            let rate = p.done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "mazu-audit: checked {}/{} entries ({:.0}/s)",
                p.done, p.total, rate
            );
            last_print = Instant::now();
        }
        last_done = p.done;
    };
    let report = match check::run(&config, &mut progress).await {
        Ok(r) => r,
        Err(e) => fail(&e.to_string()),
    };
    let mut out = std::io::stdout().lock();
    for d in &report.discrepancies {
        let _ = writeln!(out, "{d}");
    }
    let _ = writeln!(
        out,
        "{}: {} entries checked, checkpoint size {}{}, parameters and registry compared at \
         log size {} ({:.2} s: download {:.2} s, verify {:.2} s){}",
        if report.is_clean() { "OK" } else { "FAILED" },
        report.entries,
        report
            .checkpoint_size
            .map_or_else(|| "unverified".to_owned(), |s| s.to_string()),
        match (report.checkpoint_size, report.witnessed_at) {
            (Some(_), Some(t)) => format!(" witnessed at {t} by {}", report.cosigners.join(",")),
            (Some(_), None) => " (NOT witnessed: --insecure-no-witness)".to_owned(),
            _ => String::new(),
        },
        report
            .compared_version
            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        started.elapsed().as_secs_f64(),
        report.download.as_secs_f64(),
        report.verify.as_secs_f64(),
        if report.is_clean() {
            format!(
                "; {} discrepancies{}",
                0,
                if report.state_updated {
                    ", state updated"
                } else {
                    ""
                }
            )
        } else {
            format!("; {} discrepancies", report.discrepancies.len())
        }
    );
    let _ = out.flush();
    if report.is_clean() { 0 } else { EXIT_FOUND }
}

async fn run_monitor(args: MonitorArgs) -> i32 {
    let spiffe_id = args.spiffe_id.as_deref().map(|s| {
        SpiffeId::parse(s).unwrap_or_else(|e| usage(&format!("invalid --spiffe-id: {e}")))
    });
    let ids = args
        .ids
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .unwrap_or_else(|| usage(&format!("invalid --id {h:?}: not 64 hex digits")))
        })
        .collect();
    let watched = match (&args.spiffe_id, args.ids.len()) {
        (Some(s), 0) => s.clone(),
        (Some(s), n) => format!("{s} and {n} ids"),
        (None, n) => format!("{n} ids"),
    };
    let config = MonitorConfig {
        curator: args.curator.curator.clone(),
        curator_transport: args.curator.transport(),
        spiffe_id,
        ids,
        interval: Duration::from_secs(args.interval_secs.max(1)),
        state: args.state.clone(),
        from_now: args.from_now,
    };
    let interval = config.interval;
    let mut monitor = match Monitor::new(config).await {
        Ok(m) => m,
        Err(e) => fail(&e.to_string()),
    };
    eprintln!(
        "mazu-audit: watching {} for {} from log index {}",
        args.curator.curator,
        watched,
        monitor.next()
    );
    loop {
        match monitor.poll().await {
            Ok((alerts, unreadable)) => {
                let mut out = std::io::stdout().lock();
                for a in &alerts {
                    let _ = writeln!(out, "ALERT {a}");
                }
                let _ = out.flush();
                for (index, reason) in unreadable {
                    eprintln!("mazu-audit: log entry {index} cannot be read: {reason}");
                }
                if !alerts.is_empty() && (args.exit_on_alert || args.once) {
                    return EXIT_FOUND;
                }
                if args.once {
                    return 0;
                }
            }
            Err(e) => {
                if args.once {
                    fail(&e.to_string());
                }
                eprintln!("mazu-audit: poll failed (will retry): {e}");
            }
        }
        tokio::time::sleep(interval).await;
    }
}
