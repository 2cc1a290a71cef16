//! `mazu-ceremony`: run the multi-party trusted setup for the RBE CRS.
//!
//! Exit status: 0 on success, 2 on a usage error (bad flags or values), 1 when
//! a transcript does not verify or any other operation fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mazu_ceremony::{check_expected, contribute, init, parse_hash, verify, write_crs};
use mazu_rbe::ceremony::MAX_NAME_LEN;
use mazu_rbe::{MAX_CAPACITY, MIN_CAPACITY};

/// Multi-party trusted setup ("powers of tau") for Mazu's RBE CRS. The final
/// CRS's secret is unknown to everyone as long as one contributor was honest
/// (used good randomness and forgot it).
#[derive(Parser)]
#[command(name = "mazu-ceremony", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a ceremony: write the initial transcript (the public starting
    /// CRS, no contribution) to DIR/transcript.bin.
    Init {
        /// Capacity N of the CRS (number of slots).
        #[arg(long, value_parser = clap::value_parser!(u32).range(i64::from(MIN_CAPACITY)..=i64::from(MAX_CAPACITY)))]
        capacity: u32,
        /// Ceremony directory (created if missing; must not hold a transcript).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Add a contribution: verify the transcript so far, multiply the latest
    /// CRS by a fresh secret, append the new CRS and its proof atomically, and
    /// print the contribution hash to keep.
    Contribute {
        /// Ceremony directory (or transcript file).
        #[arg(long, value_name = "DIR")]
        transcript: PathBuf,
        /// Name to record with the contribution (public, not authenticated).
        #[arg(long, default_value = "", value_parser = parse_name)]
        name: String,
        /// File of extra entropy mixed with the operating system's randomness
        /// (e.g. typed noise or a hardware RNG dump).
        #[arg(long, value_name = "FILE")]
        entropy_file: Option<PathBuf>,
    },
    /// Check the whole transcript from the start, list the contributions and
    /// optionally write the final CRS.
    Verify {
        /// Ceremony directory (or transcript file).
        #[arg(long, value_name = "DIR")]
        transcript: PathBuf,
        /// Fail unless a contribution with this hash (64 hex digits, as printed
        /// by `contribute`) is in the transcript. Repeatable.
        #[arg(long, value_name = "HASH", value_parser = parse_hash)]
        expect_contribution: Vec<[u8; 32]>,
        /// Write the final CRS here in the canonical binary encoding (the
        /// curator's `--crs` file).
        #[arg(long, value_name = "FILE")]
        out_crs: Option<PathBuf>,
    },
}

fn parse_name(s: &str) -> Result<String, String> {
    if s.len() > MAX_NAME_LEN || s.chars().any(char::is_control) {
        return Err(format!(
            "at most {MAX_NAME_LEN} bytes and no control characters"
        ));
    }
    Ok(s.to_owned())
}

fn main() -> ExitCode {
    // Usage errors exit with 2 inside `parse` (clap's convention).
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Init { capacity, out } => {
            let (path, transcript) = init(capacity, &out)?;
            let crs = transcript.start();
            println!(
                "initialized ceremony for capacity {} (block size {}) in {}",
                crs.capacity(),
                crs.block_size(),
                path.display()
            );
            println!("starting CRS digest: {}", hex::encode(crs.digest()));
        }
        Command::Contribute {
            transcript,
            name,
            entropy_file,
        } => {
            let started = Instant::now();
            let summary = contribute(&transcript, &name, entropy_file.as_deref())?;
            println!(
                "contribution #{} by {:?} appended in {:.2} s",
                summary.index,
                summary.name,
                started.elapsed().as_secs_f64()
            );
            println!("new CRS digest: {}", hex::encode(summary.crs_digest));
            println!("contribution hash: {}", hex::encode(summary.hash));
            println!(
                "Keep the contribution hash and check it is in the final transcript with \
                 `mazu-ceremony verify --transcript {} --expect-contribution {}`.",
                transcript.display(),
                hex::encode(summary.hash)
            );
        }
        Command::Verify {
            transcript,
            expect_contribution,
            out_crs,
        } => {
            let path = mazu_ceremony::transcript_path(&transcript);
            let started = Instant::now();
            let verified = verify(&path)?;
            let crs = verified.crs();
            println!(
                "{}: capacity {} (block size {}), {} contribution(s), verified in {:.2} s",
                path.display(),
                crs.capacity(),
                crs.block_size(),
                verified.contributions().len(),
                started.elapsed().as_secs_f64()
            );
            for c in verified.contributions() {
                println!("  #{} {:?} {}", c.index, c.name, hex::encode(c.hash));
            }
            check_expected(&verified, &expect_contribution)?;
            for hash in &expect_contribution {
                println!("expected contribution {} is included", hex::encode(hash));
            }
            println!("final CRS digest: {}", hex::encode(crs.digest()));
            if let Some(out) = out_crs {
                write_crs(crs, &out)?;
                println!("wrote the final CRS to {}", out.display());
            }
            println!("OK");
        }
    }
    Ok(())
}
