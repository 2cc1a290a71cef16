//! Checks a plugin configuration with the filter's own parser, natively.
//!
//! The same `FilterConfig::parse` runs in the root context's `on_configure`
//! inside Envoy; this lets tooling (the Istio manifest checks in
//! `istio/tests/check_manifests.py`) refuse a WasmPlugin whose `pluginConfig`
//! the filter would refuse, before it reaches a cluster.
//!
//! ```sh
//! cargo run -q -p mazu-filter --example check_config -- config.json
//! cargo run -q -p mazu-filter --example check_config < config.json
//! ```
//!
//! Prints `ok: <direction> filter, curator cluster <name>` and exits 0, or
//! `error: <field>: <problem>` (the message Envoy's log would show) and
//! exits 1. Exit code 2: the input could not be read.

use std::io::Read;
use std::process::ExitCode;

use mazu_filter::config::FilterConfig;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (source, read) = match (args.next(), args.next()) {
        (None, _) => {
            let mut bytes = Vec::new();
            let read = std::io::stdin().read_to_end(&mut bytes).map(|_| bytes);
            ("standard input".to_owned(), read)
        }
        (Some(path), None) => {
            let name = path.to_string_lossy().into_owned();
            (name, std::fs::read(&path))
        }
        (Some(_), Some(_)) => {
            eprintln!("usage: check_config [CONFIG.json]   (or the JSON on standard input)");
            return ExitCode::from(2);
        }
    };
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("check_config: reading {source}: {e}");
            return ExitCode::from(2);
        }
    };
    match FilterConfig::parse(&bytes) {
        Ok(config) => {
            println!(
                "ok: {} filter, curator cluster {}",
                config.direction.as_str(),
                config.curator.cluster
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
