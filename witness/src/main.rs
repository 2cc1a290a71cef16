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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("witness")
        .build()?;
    let result = runtime.block_on(server::run(config, mazu_service::shutdown_signal()));
    runtime.shutdown_timeout(core::time::Duration::from_secs(1));
    if let Err(e) = result {
        tracing::error!(error = %e, "mazu-witness failed");
        eprintln!("mazu-witness: {e}");
        std::process::exit(1);
    }
    Ok(())
}
