//! `mazu-mesh`: starts the local Mazu mesh on 127.0.0.1, sends traffic
//! between its services and the attack scenarios' forged credentials to it,
//! prints which connections were allowed and which were denied (and why),
//! and stops everything. `--keep-up` leaves the mesh running until Ctrl-C.

use core::time::Duration;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Parser;
use mazu_e2e::mesh::{LocalMesh, MeshOptions};
use mazu_e2e::scenarios;

/// Start the local Mazu mesh, show what it allows and denies, stop it.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Keep the mesh running after the table, and print how to talk to it;
    /// Ctrl-C stops it.
    #[arg(long)]
    keep_up: bool,
    /// Working directory for the mesh (configuration, state, logs); kept
    /// afterwards. Default: a temporary directory, removed on exit.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// How often the filters poll the curator for the registry, milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    refresh_interval_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Ctrl-C ends the wait below; the mesh is then dropped, which stops
    // every process it started.
    let (stop_tx, stop_rx) = mpsc::channel();
    if let Err(error) = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    }) {
        eprintln!("mazu-mesh: cannot install the Ctrl-C handler: {error}");
        return ExitCode::from(2);
    }
    match run(&args, &stop_rx) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("mazu-mesh: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args, stop: &mpsc::Receiver<()>) -> Result<bool> {
    let options = MeshOptions {
        refresh_interval_ms: args.refresh_interval_ms,
        dir: args.dir.clone(),
        ..MeshOptions::default()
    };
    let names: Vec<&str> = options.services.iter().map(|s| s.name.as_str()).collect();
    println!(
        "Starting the local Mazu mesh: curator, then agent + Envoy sidecar + backend for {} ...",
        names.join(", ")
    );
    let started = Instant::now();
    let mut mesh = LocalMesh::start(options).context("starting the mesh")?;
    println!(
        "Mesh up in {:.1} s (working directory {}); registry version {}.\n",
        started.elapsed().as_secs_f64(),
        mesh.dir().display(),
        mesh.registry_version()?
    );
    let outcomes = scenarios::run_standard(&mesh)?;
    print!("{}", scenarios::table(&outcomes));
    let all_expected = outcomes.iter().all(scenarios::Outcome::as_expected);
    println!(
        "\n{} of {} connections went as Mazu intends.",
        outcomes.iter().filter(|o| o.as_expected()).count(),
        outcomes.len()
    );
    if args.keep_up {
        // The lying curator below would leave the mesh refusing its updates.
        print_how_to_talk(&mesh);
        // Wait for Ctrl-C; check the curator now and then so a crash is seen.
        while stop.recv_timeout(Duration::from_secs(5)).is_err() {
            if !mesh.curator_is_up() {
                eprintln!(
                    "mazu-mesh: the curator stopped answering; see {}",
                    mesh.dir().display()
                );
            }
        }
        println!("Stopping the mesh.");
        return Ok(all_expected);
    }
    let lie_caught = show_a_lying_curator(&mut mesh)?;
    Ok(all_expected && lie_caught)
}

/// The curator rewrites its log; every witness must refuse to cosign it, and
/// every filter keeps deciding with the registry it held.
fn show_a_lying_curator(mesh: &mut LocalMesh) -> Result<bool> {
    println!(
        "\nNow the curator lies: it swaps two logged registrations on disk and restarts with \
         the same checkpoint key, and asks the witnesses to cosign it ..."
    );
    let refusals = scenarios::curator_rewrites_its_log(mesh, Duration::from_secs(15))?;
    let refused = refusals.iter().all(|(_, n)| *n > 0);
    for (witness, n) in &refusals {
        println!("  {witness} refused to cosign the rewritten log ({n} fork record(s) kept)");
    }
    let names: Vec<String> = mesh
        .services()
        .iter()
        .map(|s| s.spec.name.clone())
        .collect();
    let (Some(from), Some(to)) = (names.first(), names.get(1)) else {
        return Ok(refused);
    };
    let still = mesh.call(from, to)?;
    println!(
        "  {from} -> {to} on the registry held: {}",
        if still.is_allowed() {
            "allowed"
        } else {
            "DENIED"
        }
    );
    let caught = refused && still.is_allowed();
    println!(
        "{}",
        if caught {
            "Every witness refused the rewritten log, so no sidecar was shown it; they keep the witnessed registry."
        } else {
            "UNEXPECTED: a witness cosigned the rewritten log, or a sidecar lost its registry."
        }
    );
    Ok(caught)
}

fn print_how_to_talk(mesh: &LocalMesh) {
    println!("\nThe mesh stays up; Ctrl-C stops it. To talk to it:");
    for sidecar in mesh.services() {
        for (peer, port) in &sidecar.outbound {
            println!(
                "  curl -s http://127.0.0.1:{port}/     # {} -> {peer} through both sidecars",
                sidecar.spec.name
            );
        }
    }
    for sidecar in mesh.services() {
        println!(
            "  {}: mTLS on 127.0.0.1:{}, Envoy admin http://127.0.0.1:{}/stats?filter=mazu, files in {}",
            sidecar.spec.name,
            sidecar.inbound_port,
            sidecar.admin_port,
            sidecar.dir.display()
        );
    }
    println!(
        "  curator: https://127.0.0.1:{}/v1/registry?format=json (TLS key pin {})",
        mesh.curator_port(),
        mesh.curator_tls_pin()
            .map_or_else(|e| e.to_string(), |pin| pin.to_string())
    );
}
