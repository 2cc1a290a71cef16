//! Checks a validator configuration with the module's own parser, natively.
//!
//! The same `ValidatorConfig::parse` runs when Envoy hands the module its
//! `validator_config` (and when `mazu-agent --validator-config` starts); this
//! lets tooling (the Istio manifest checks in `istio/tests/check_manifests.py`)
//! refuse the ConfigMap `mazu-validator` before it reaches a cluster.
//!
//! ```sh
//! cargo run -q -p mazu-validator --example check_config -- config.json
//! cargo run -q -p mazu-validator --example check_config < config.json
//! ```
//!
//! Prints `ok: registry file <path>, <n> destination(s)` and exits 0, or
//! `error: <problem>` (what the module prints when Envoy gives it that
//! configuration) and exits 1. Exit code 2: the input could not be read.

use std::io::Read;
use std::process::ExitCode;

use mazu_validator::ValidatorConfig;

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
    match ValidatorConfig::parse(&bytes) {
        Ok(config) => {
            println!(
                "ok: registry file {}, {} destination(s)",
                config.registry_file.display(),
                config.destinations.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
