//! Where the built filter `.wasm` is, for the harnesses that load it (the
//! wasmtime host in `mazu-wasm-tests`, a real Envoy, the local mesh): the
//! one named by `MAZU_FILTER_WASM`, or the one
//! `cargo build -p mazu-filter --target wasm32-wasip1 --profile wasm` leaves
//! in the target directory ([`filter_wasm_path`]).

use std::path::PathBuf;

/// The command that builds the filter.
pub const BUILD_COMMAND: &str = "cargo build -p mazu-filter --target wasm32-wasip1 --profile wasm";

/// Where the built filter is: `$MAZU_FILTER_WASM`, else
/// `wasm32-wasip1/wasm/mazu_filter.wasm` under the target directory
/// (`$CARGO_TARGET_DIR`, the one this test binary runs from, or the
/// workspace's `target/`). The error says how to build it.
pub fn filter_wasm_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("MAZU_FILTER_WASM") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "MAZU_FILTER_WASM={} does not exist; build it with `{BUILD_COMMAND}`",
                path.display()
            ))
        };
    }
    let relative = ["wasm32-wasip1", "wasm", "mazu_filter.wasm"]
        .iter()
        .collect::<PathBuf>();
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join(&relative));
    }
    if let Ok(exe) = std::env::current_exe() {
        // <target>/<profile>/deps/<test binary>
        for ancestor in exe.ancestors().skip(1).take(3) {
            candidates.push(ancestor.join(&relative));
        }
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(workspace.join("target").join(&relative));
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect();
    Err(format!(
        "the filter .wasm is missing; run `{BUILD_COMMAND}` first (or set MAZU_FILTER_WASM).\nLooked in:\n{}",
        looked.join("\n")
    ))
}
