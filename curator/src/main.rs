//! `mazu-curator`: the key curator service. See `mazu-curator --help` and
//! docs/curator.md.

use clap::Parser;
use mazu_curator::config::Args;
use mazu_curator::server;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
