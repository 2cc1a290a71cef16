//! Drives `oha` (constant-rate HTTP load with latency correction) and reads
//! its JSON summary.

use core::time::Duration;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::stats::Percentiles;

/// One oha run.
#[derive(Clone, Debug)]
pub struct Load {
    /// The plain-text port (the client sidecar's outbound listener).
    pub port: u16,
    /// Fixed request rate, requests per second (`-q`); `None` = as fast as
    /// the connections go.
    pub rate: Option<u32>,
    /// Concurrent connections (`-c`).
    pub connections: u32,
    /// How long (`-z`).
    pub duration: Duration,
    /// HTTP/1.1 keep-alive; `false` = a new connection per request
    /// (`--disable-keepalive`).
    pub keep_alive: bool,
    /// Request body bytes (`POST` with `-d`); 0 = `GET`.
    pub body_bytes: usize,
}

impl Load {
    /// The oha arguments for this run.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--no-tui".to_owned(),
            "--output-format".to_owned(),
            "json".to_owned(),
            "--http-version".to_owned(),
            "1.1".to_owned(),
            "-c".to_owned(),
            self.connections.to_string(),
            "-z".to_owned(),
            format!("{}ms", self.duration.as_millis()),
        ];
        if let Some(rate) = self.rate {
            args.extend(["-q".to_owned(), rate.to_string()]);
            // Latency from when each request was due, not when it was sent:
            // no coordinated omission.
            args.push("--latency-correction".to_owned());
        }
        if !self.keep_alive {
            args.push("--disable-keepalive".to_owned());
        }
        if self.body_bytes > 0 {
            args.extend([
                "-m".to_owned(),
                "POST".to_owned(),
                "-d".to_owned(),
                "p".repeat(self.body_bytes),
            ]);
        }
        args.push(format!("http://127.0.0.1:{}/", self.port));
        args
    }
}

/// What one oha run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Requests answered (any status).
    pub requests: u64,
    /// Share of requests answered with a status (0..=1).
    pub success_rate: f64,
    /// Requests per second achieved.
    pub requests_per_sec: f64,
    /// Latency percentiles, milliseconds.
    pub latency: Percentiles,
    /// Answers by status code.
    pub status_codes: BTreeMap<String, u64>,
    /// Errors by message.
    pub errors: BTreeMap<String, u64>,
}

impl Summary {
    /// Requests answered with something other than 200, plus errors (not
    /// counting the requests still in flight when the duration ended, which
    /// oha reports as "aborted due to deadline").
    pub fn failures(&self) -> u64 {
        let bad_status: u64 = self
            .status_codes
            .iter()
            .filter(|(code, _)| code.as_str() != "200")
            .map(|(_, n)| n)
            .sum();
        let errors: u64 = self
            .errors
            .iter()
            .filter(|(message, _)| !message.contains("aborted due to deadline"))
            .map(|(_, n)| n)
            .sum();
        bad_status + errors
    }
}

/// Where oha is: `$OHA_BIN`, `.tools/oha/bin/oha` (what
/// `scripts/install-oha.sh` installs), or `oha` on `PATH`.
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("OHA_BIN") {
        return Ok(PathBuf::from(path));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/oha/bin/oha");
    if local.is_file() {
        return Ok(local);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("oha").is_file() {
                return Ok(dir.join("oha"));
            }
        }
    }
    bail!("oha is missing: run `bash scripts/install-oha.sh` (or set OHA_BIN)")
}

/// oha's version line.
pub fn version(oha: &Path) -> Result<String> {
    let output = Command::new(oha).arg("--version").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs `load` and parses the result.
pub fn run(oha: &Path, load: &Load) -> Result<Summary> {
    let output = Command::new(oha)
        .args(load.args())
        .output()
        .with_context(|| format!("running {}", oha.display()))?;
    if !output.status.success() {
        bail!(
            "oha failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Parses oha's `--output-format json` document (times in seconds).
pub fn parse(json: &str) -> Result<Summary> {
    let doc: Value = serde_json::from_str(json).context("oha output is not JSON")?;
    let summary = &doc["summary"];
    let percentiles = &doc["latencyPercentiles"];
    let ms = |key: &str| -> Result<f64> {
        percentiles[key]
            .as_f64()
            .map(|secs| secs * 1000.0)
            .ok_or_else(|| anyhow!("oha output has no latencyPercentiles.{key} (no answers?)"))
    };
    let counts = |value: &Value| -> BTreeMap<String, u64> {
        value
            .as_object()
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let status_codes = counts(&doc["statusCodeDistribution"]);
    Ok(Summary {
        requests: status_codes.values().sum(),
        success_rate: summary["successRate"].as_f64().unwrap_or(0.0),
        requests_per_sec: summary["requestsPerSec"].as_f64().unwrap_or(0.0),
        latency: Percentiles {
            p50: ms("p50")?,
            p90: ms("p90")?,
            p99: ms("p99")?,
        },
        status_codes,
        errors: counts(&doc["errorDistribution"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "summary": {"successRate": 1.0, "total": 5.001, "slowest": 0.0123, "fastest": 0.0003,
                  "average": 0.0009, "requestsPerSec": 999.8, "totalData": 5120000,
                  "sizePerRequest": 1024, "sizePerSec": 1023795.2},
      "responseTimeHistogram": {"0.0003": 1, "0.0123": 1},
      "latencyPercentiles": {"p10": 0.0005, "p25": 0.0006, "p50": 0.00071, "p75": 0.0008,
                             "p90": 0.00125, "p95": 0.0014, "p99": 0.0031, "p99.9": 0.009,
                             "p99.99": 0.012},
      "rps": {"mean": 999.8, "stddev": 3.0, "max": 1010.0, "min": 990.0, "percentiles": {}},
      "details": {"DNSDialup": {"average": 0.0001, "fastest": 0.00005, "slowest": 0.0002},
                  "DNSLookup": {"average": 0.0, "fastest": 0.0, "slowest": 0.0}},
      "statusCodeDistribution": {"200": 4998, "503": 1},
      "errorDistribution": {"connection closed before message completed": 1,
                            "aborted due to deadline": 7}
    }"#;

    #[test]
    fn parses_percentiles_in_milliseconds_and_counts() {
        let summary = parse(SAMPLE).unwrap();
        assert_eq!(summary.requests, 4999);
        assert!((summary.latency.p50 - 0.71).abs() < 1e-9);
        assert!((summary.latency.p90 - 1.25).abs() < 1e-9);
        assert!((summary.latency.p99 - 3.1).abs() < 1e-9);
        assert!((summary.requests_per_sec - 999.8).abs() < 1e-9);
        assert_eq!(summary.failures(), 2);
    }

    #[test]
    fn no_percentiles_is_an_error() {
        let json = r#"{"summary": {"successRate": 0.0}, "latencyPercentiles": {"p50": null},
                       "statusCodeDistribution": {}, "errorDistribution": {"refused": 9}}"#;
        let error = parse(json).unwrap_err().to_string();
        assert!(error.contains("p50"), "{error}");
    }

    #[test]
    fn constant_rate_keep_alive_post_arguments() {
        let load = Load {
            port: 4242,
            rate: Some(1000),
            connections: 16,
            duration: Duration::from_secs(60),
            keep_alive: true,
            body_bytes: 1024,
        };
        let args = load.args();
        let joined = args.join(" ");
        assert!(joined.contains("-q 1000 --latency-correction"), "{joined}");
        assert!(joined.contains("-c 16 -z 60000ms"), "{joined}");
        assert!(!joined.contains("--disable-keepalive"));
        assert!(joined.contains("-m POST -d"));
        assert_eq!(
            args.iter().find(|a| a.starts_with("ppp")).map(String::len),
            Some(1024)
        );
        assert_eq!(
            args.last().map(String::as_str),
            Some("http://127.0.0.1:4242/")
        );
    }
}
