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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("curator")
        .build()?;
    let result = runtime.block_on(server::run(config, mazu_service::shutdown_signal()));
    // Do not wait for a start-up replay still running on a blocking thread.
    runtime.shutdown_timeout(core::time::Duration::from_secs(1));
    if let Err(e) = result {
        tracing::error!(error = %e, "mazu-curator failed");
        eprintln!("mazu-curator: {e}");
        std::process::exit(1);
    }
    Ok(())
}
