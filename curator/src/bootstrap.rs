//! Start-up loading of the files the configuration names: the CRS (or the
//! generated development CRS); the issuers' JWKS are loaded by
//! [`crate::jwks`]. Every failure says which file and what is wrong with it.

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mazu_rbe::Crs;

use crate::config::{Config, CrsSource};

/// The loaded CRS and how it was obtained.
#[derive(Debug, Clone)]
pub struct LoadedCrs {
    /// The CRS (structure verified).
    pub crs: Crs,
    /// Whether it is an insecure single-contributor development CRS.
    pub dev: bool,
    /// Whether this start generated it.
    pub generated: bool,
    /// The file it was read from or written to.
    pub path: PathBuf,
    /// Time spent verifying it: [`Crs::verify`] for a development CRS, the
    /// whole ceremony transcript ([`mazu_rbe::ceremony::verify_crs`]) otherwise.
    pub verify_time: Duration,
    /// For a ceremony CRS: the transcript file and its number of contributions.
    pub ceremony: Option<(PathBuf, usize)>,
}

/// A start-up failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CRS file does not decode.
    #[error("CRS file {path} is not a valid CRS encoding: {source}")]
    CrsDecode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: mazu_rbe::DecodeError,
    },
    /// The CRS fails its structural (pairing) check.
    #[error("CRS file {path} fails verification: {source}")]
    CrsInvalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: mazu_rbe::CrsError,
    },
    /// The CRS capacity differs from `--capacity`.
    #[error("CRS file {path} has capacity {found}, but --capacity is {configured}")]
    CapacityMismatch {
        /// The file.
        path: PathBuf,
        /// The CRS's capacity.
        found: u32,
        /// The configured capacity.
        configured: u32,
    },
    /// The ceremony transcript does not verify, or does not end in the CRS.
    #[error(
        "refusing the CRS {crs}: the ceremony transcript {transcript} does not vouch for it: {source}"
    )]
    CeremonyInvalid {
        /// The CRS file.
        crs: PathBuf,
        /// The transcript file.
        transcript: PathBuf,
        /// Why.
        source: mazu_rbe::ceremony::CeremonyError,
    },
    /// A development CRS could not be generated.
    #[error("cannot generate a development CRS of capacity {capacity}: {source}")]
    CrsGenerate {
        /// The capacity.
        capacity: u32,
        /// Why.
        source: mazu_rbe::CrsError,
    },
    /// The issuer/JWKS/audience configuration is invalid.
    #[error("invalid token trust configuration: {0}")]
    Trust(#[from] mazu_identity::ConfigError),
    /// A JWKS URL could not be fetched at start-up.
    #[error("cannot fetch the JWKS of issuer {issuer} from {url}: {source}")]
    JwksFetch {
        /// The issuer.
        issuer: String,
        /// The URL.
        url: String,
        /// Why.
        source: crate::jwks::FetchError,
    },
    /// The HTTP client for JWKS URLs cannot be built.
    #[error("cannot build the HTTP client for JWKS URLs: {0}")]
    JwksClient(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BootError {
    let path = path.to_path_buf();
    move |source| BootError::Io { what, path, source }
}

/// Loads the CRS named by the configuration (generating a development CRS if
/// `--dev-crs` and the file does not exist), checks its capacity and verifies
/// its structure.
pub fn load_crs(config: &Config) -> Result<LoadedCrs, BootError> {
    let (path, dev, transcript) = match &config.crs {
        CrsSource::File { crs, transcript } => (crs.clone(), false, Some(transcript.clone())),
        CrsSource::Dev(p) => (p.clone(), true, None),
    };
    let mut generated = false;
    let crs = if dev && !path.exists() {
        let crs = Crs::generate_insecure_dev(config.capacity, &mut rand::rngs::OsRng).map_err(
            |source| BootError::CrsGenerate {
                capacity: config.capacity,
                source,
            },
        )?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io("creating the directory of", &path))?;
        }
        write_atomic(&path, &crs.to_bytes()).map_err(io("writing the development CRS", &path))?;
        generated = true;
        crs
    } else {
        let bytes = std::fs::read(&path).map_err(io("reading the CRS file", &path))?;
        Crs::from_bytes(&bytes).map_err(|source| BootError::CrsDecode {
            path: path.clone(),
            source,
        })?
    };
    if crs.capacity() != config.capacity {
        return Err(BootError::CapacityMismatch {
            path,
            found: crs.capacity(),
            configured: config.capacity,
        });
    }
    let started = Instant::now();
    let ceremony = match transcript {
        // The transcript check runs `Crs::verify` on every contribution's
        // CRS, the last of which must be this one (same digest).
        Some(transcript) => {
            let bytes = std::fs::read(&transcript)
                .map_err(io("reading the ceremony transcript", &transcript))?;
            let verified = mazu_rbe::ceremony::verify_crs(&crs, &bytes).map_err(|source| {
                BootError::CeremonyInvalid {
                    crs: path.clone(),
                    transcript: transcript.clone(),
                    source,
                }
            })?;
            Some((transcript, verified.contributions().len()))
        }
        None => {
            crs.verify().map_err(|source| BootError::CrsInvalid {
                path: path.clone(),
                source,
            })?;
            None
        }
    };
    Ok(LoadedCrs {
        crs,
        dev,
        generated,
        path,
        verify_time: started.elapsed(),
        ceremony,
    })
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, so a
/// crash leaves either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}
