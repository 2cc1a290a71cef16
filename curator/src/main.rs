//! `mazu-curator`: the key curator service. See `mazu-curator --help` and
//! docs/curator.md.

use clap::Parser;
use mazu_curator::config::{Args, Command, RepairArgs, TlsPinArgs};
use mazu_curator::recovery::{RepairAction, repair};
use mazu_curator::server;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Command::Repair(repair)) => std::process::exit(run_repair(repair)),
        Some(Command::TlsPin(tls_pin)) => std::process::exit(run_tls_pin(tls_pin)),
        None => {}
    }
    mazu_service::init_tracing();
    let config = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mazu-curator: {e}\n(see mazu-curator --help)");
            std::process::exit(2);
        }
    };
    mazu_service::run_until_shutdown("mazu-curator", |shutdown| server::run(config, shutdown))?;
    Ok(())
}

/// `mazu-curator repair`: prints the report; truncates only with
/// `--truncate-at-offset N --yes`. Exit status 0 done, 1 refused or failed,
/// 2 usage.
fn run_repair(args: &RepairArgs) -> i32 {
    let action = match (args.truncate_at_offset, args.yes) {
        (None, _) => RepairAction::Report,
        (Some(n), true) => RepairAction::TruncateAt(n),
        (Some(_), false) => {
            eprintln!(
                "mazu-curator repair: --truncate-at-offset discards log entries; add --yes to \
                 confirm (run without it to see the report first)"
            );
            return 2;
        }
    };
    match repair(&args.data_dir, action) {
        Ok(report) => {
            print!("{report}");
            0
        }
        Err(e) => {
            eprintln!("mazu-curator repair: {e}");
            1
        }
    }
}

/// `mazu-curator tls-pin`: prints the key's pin on stdout. Exit status 0
/// done, 1 no usable key.
fn run_tls_pin(args: &TlsPinArgs) -> i32 {
    let pin = mazu_service::files::load_or_create_key(&args.tls_key, args.create_key)
        .map_err(|e| e.to_string())
        .and_then(|key| {
            mazu_service::tls::ServerTls::from_secret(&key.secret).map_err(|e| e.to_string())
        });
    match pin {
        Ok(tls) => {
            println!("{}", tls.pin());
            0
        }
        Err(e) => {
            eprintln!("mazu-curator tls-pin: {}: {e}", args.tls_key.display());
            1
        }
    }
}
