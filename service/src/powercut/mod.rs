//! Test support: the power-cut shim (`powercut.c`, an LD_PRELOAD library)
//! that keeps beside a flat data directory what a power cut would leave of
//! it (see the C file's header). The curator's and the witness's power-cut
//! tests run their process under it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The shim's C source.
const SOURCE: &str = include_str!("powercut.c");

/// Compiles the shim with `cc` into `out_dir` and returns the library's
/// path.
pub fn build_shim(out_dir: &Path) -> std::io::Result<PathBuf> {
    let source = out_dir.join("powercut.c");
    let library = out_dir.join("powercut.so");
    std::fs::write(&source, SOURCE)?;
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .args(["-ldl", "-lpthread"])
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "cc could not build the power-cut shim ({status})"
        )));
    }
    Ok(library)
}

/// The environment that runs a process under the shim for `dir` (absolute),
/// mirroring its durable state into `shadow`.
pub fn env(shim: &Path, dir: &Path, shadow: &Path) -> Vec<(&'static str, OsString)> {
    vec![
        ("LD_PRELOAD", shim.as_os_str().to_owned()),
        ("POWERCUT_DIR", dir.as_os_str().to_owned()),
        ("POWERCUT_SHADOW", shadow.as_os_str().to_owned()),
    ]
}

/// Makes `to` an exact copy of the flat directory `from` (empty if `from`
/// does not exist), leaving out the shim's own temporary file: use it to
/// seed the shadow before a start, and to put the durable state in place
/// after a cut.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(to)?;
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() && entry.file_name() != ".powercut-tmp" {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
