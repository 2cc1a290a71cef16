//! `mazu-witness`: the C2SP tlog-witness service. See `mazu-witness --help`
//! and docs/witness.md.

use clap::Parser;
use mazu_witness::config::Args;
use mazu_witness::server;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mazu_service::init_tracing();
    if args.print_tls_pin {
        std::process::exit(print_tls_pin(&args));
    }
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

/// `--print-tls-pin`: the pin of --tls-key on stdout. Exit status 0 done,
/// 1 no usable key, 2 no --tls-key.
fn print_tls_pin(args: &Args) -> i32 {
    let Some(key) = &args.tls_key else {
        eprintln!("mazu-witness: --print-tls-pin needs --tls-key FILE");
        return 2;
    };
    match mazu_service::tls::load_server_tls(
        key,
        args.create_tls_key,
        Some("--create-tls-key"),
        None,
    ) {
        Ok(loaded) => {
            println!("{}", loaded.tls.pin());
            0
        }
        Err(e) => {
            eprintln!("mazu-witness: {e}");
            1
        }
    }
}
