//! `mazu-witness`: the C2SP tlog-witness service. See `mazu-witness --help`
//! and docs/witness.md.

use clap::Parser;
use mazu_witness::config::Args;
use mazu_witness::server;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mazu_service::init_tracing();
    let config = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mazu-witness: {e}\n(see mazu-witness --help)");
            std::process::exit(2);
        }
    };
    if args.print_vkey {
        match server::load_signer(&config) {
            Ok(signer) => {
                println!("{}", signer.verifier().to_vkey());
                return Ok(());
            }
            Err(e) => {
                eprintln!("mazu-witness: {e}");
                std::process::exit(1);
            }
        }
    }
    mazu_service::run_until_shutdown("mazu-witness", |shutdown| server::run(config, shutdown))?;
    Ok(())
}
