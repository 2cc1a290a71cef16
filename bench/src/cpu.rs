//! Envoy's CPU time from `/proc/<pid>/stat`: user + system time of the
//! whole process (every thread), read before and after a measurement
//! window, in clock ticks converted to milliseconds.
//!
//! Ticks are coarse (10 ms at the usual 100 Hz), so a window is worth
//! reading only when its Envoys burn hundreds of ticks in it; a full run's
//! windows do (tens of seconds at 1000 req/s). The arithmetic on the
//! readings is here and pure; reading `/proc` is the only I/O.

use std::process::Command;

use anyhow::{Context as _, Result, anyhow};

/// `utime` and `stime` of one `/proc/<pid>/stat` reading, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticks {
    /// Time in user mode.
    pub user: u64,
    /// Time in kernel mode.
    pub system: u64,
}

impl Ticks {
    /// User + system.
    pub fn total(self) -> u64 {
        self.user + self.system
    }
}

/// Parses the text of `/proc/<pid>/stat`: `pid (comm) state ppid …`, where
/// `utime` and `stime` are fields 14 and 15. The command name may hold
/// spaces and parentheses, so the fields are counted from after the
/// **last** `)`: there, `state` is the first field, `utime` the 12th and
/// `stime` the 13th.
pub fn parse_stat(text: &str) -> Result<Ticks> {
    let after = text
        .rfind(')')
        .map(|end| &text[end + 1..])
        .ok_or_else(|| anyhow!("no command name in /proc stat: {text:?}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |index: usize, name: &str| -> Result<u64> {
        fields
            .get(index)
            .ok_or_else(|| anyhow!("/proc stat has no {name}: {text:?}"))?
            .parse()
            .with_context(|| format!("/proc stat {name} is not a number: {text:?}"))
    };
    Ok(Ticks {
        user: field(11, "utime")?,
        system: field(12, "stime")?,
    })
}

/// Process `pid`'s CPU time so far.
pub fn read(pid: u32) -> Result<Ticks> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text)
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`, through
/// `getconf CLK_TCK`: this crate has no unsafe code); 100, Linux's value
/// everywhere in practice, if `getconf` cannot say.
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// Milliseconds of `ticks` at `hz` ticks per second.
pub fn ticks_to_ms(ticks: u64, hz: u64) -> f64 {
    ticks as f64 * 1000.0 / hz.max(1) as f64
}

/// A reading of the two Envoys of one configuration at the start of a
/// window; [`Start::finish`] turns it into the window's [`CpuWindow`].
#[derive(Clone, Copy, Debug)]
pub struct Start {
    client: Ticks,
    server: Ticks,
}

/// Reads the client and server sidecars' CPU time now.
pub fn start(client_pid: u32, server_pid: u32) -> Result<Start> {
    Ok(Start {
        client: read(client_pid)?,
        server: read(server_pid)?,
    })
}

impl Start {
    /// The window from this reading to one taken now, with `units`
    /// (requests, or new connections) completed in it.
    pub fn finish(self, client_pid: u32, server_pid: u32, units: u64) -> Result<CpuWindow> {
        let end = start(client_pid, server_pid)?;
        Ok(CpuWindow::between(
            self,
            end,
            units,
            clock_ticks_per_second(),
        ))
    }
}

/// The CPU time two sidecars spent over one measurement window, and how
/// many requests (or new connections) they carried in it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuWindow {
    /// The client sidecar's CPU time, ms.
    pub client_ms: f64,
    /// The server sidecar's CPU time, ms.
    pub server_ms: f64,
    /// Requests (keep-alive) or new connections completed in the window.
    pub units: u64,
}

impl CpuWindow {
    /// From two readings at `hz` ticks per second.
    pub fn between(start: Start, end: Start, units: u64, hz: u64) -> CpuWindow {
        let ms = |a: Ticks, b: Ticks| ticks_to_ms(b.total().saturating_sub(a.total()), hz);
        CpuWindow {
            client_ms: ms(start.client, end.client),
            server_ms: ms(start.server, end.server),
            units,
        }
    }

    /// Client + server, ms.
    pub fn total_ms(&self) -> f64 {
        self.client_ms + self.server_ms
    }

    /// Both sidecars' CPU ms per unit; `None` without units.
    pub fn per_unit(&self) -> Option<PerUnit> {
        (self.units > 0).then(|| {
            let n = self.units as f64;
            PerUnit {
                client: self.client_ms / n,
                server: self.server_ms / n,
            }
        })
    }

    /// Several windows as one: CPU times and units added up, so that the
    /// per-unit figure of the sum weighs each window by its units (not a
    /// mean of per-window ratios).
    pub fn sum<'a>(windows: impl IntoIterator<Item = &'a CpuWindow>) -> Option<CpuWindow> {
        windows.into_iter().fold(None, |acc, w| {
            let acc = acc.unwrap_or_default();
            Some(CpuWindow {
                client_ms: acc.client_ms + w.client_ms,
                server_ms: acc.server_ms + w.server_ms,
                units: acc.units + w.units,
            })
        })
    }
}

/// CPU ms per request (or per new connection), per sidecar.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PerUnit {
    /// The client sidecar's.
    pub client: f64,
    /// The server sidecar's.
    pub server: f64,
}

impl PerUnit {
    /// Both sidecars'.
    pub fn total(&self) -> f64 {
        self.client + self.server
    }
}

/// Mazu against the baseline for one phase: both per-unit totals, their
/// ratio and difference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// The baseline's CPU ms per unit (both sidecars).
    pub baseline: PerUnit,
    /// Mazu's.
    pub mazu: PerUnit,
}

impl Comparison {
    /// Compares two windows (or sums of windows); `None` if either has no
    /// units.
    pub fn of(baseline: &CpuWindow, mazu: &CpuWindow) -> Option<Comparison> {
        Some(Comparison {
            baseline: baseline.per_unit()?,
            mazu: mazu.per_unit()?,
        })
    }

    /// Mazu / baseline (NaN if the baseline spent nothing measurable).
    pub fn ratio(&self) -> f64 {
        let base = self.baseline.total();
        if base > 0.0 {
            self.mazu.total() / base
        } else {
            f64::NAN
        }
    }

    /// Mazu − baseline, ms per unit.
    pub fn difference(&self) -> f64 {
        self.mazu.total() - self.baseline.total()
    }

    /// Mazu's overhead in percent of the baseline: (ratio − 1) × 100.
    pub fn overhead_percent(&self) -> f64 {
        (self.ratio() - 1.0) * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line of `/proc/<pid>/stat` (an Envoy), utime 1234, stime 567.
    const ENVOY: &str = "4242 (envoy) S 4200 4242 4200 0 -1 4194560 30121 0 0 0 1234 567 0 0 20 \
                         0 9 0 123456 2147483648 26000 18446744073709551615 1 1 0 0 0 0 0 \
                         4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_utime_and_stime() {
        assert_eq!(
            parse_stat(ENVOY).unwrap(),
            Ticks {
                user: 1234,
                system: 567
            }
        );
        assert_eq!(parse_stat(ENVOY).unwrap().total(), 1801);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        // A process may name itself anything: here `a) (b c) 9 9`.
        let tricky = ENVOY.replacen("(envoy)", "(a) (b c) 9 9)", 1);
        assert_eq!(
            parse_stat(&tricky).unwrap(),
            Ticks {
                user: 1234,
                system: 567
            }
        );
    }

    #[test]
    fn truncated_or_garbled_stat_is_an_error() {
        assert!(parse_stat("4242 envoy S 1 2 3").is_err());
        assert!(parse_stat("4242 (envoy) S 4200 4242").is_err());
        let garbled = ENVOY.replacen(" 1234 ", " 12x4 ", 1);
        assert!(parse_stat(&garbled).is_err());
    }

    #[test]
    fn reads_this_process() {
        let ticks = read(std::process::id()).unwrap();
        // Nothing to assert on the value but that it parsed; the clock
        // rate is Linux's.
        let _ = ticks.total();
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn ticks_become_milliseconds() {
        assert!((ticks_to_ms(150, 100) - 1500.0).abs() < 1e-9);
        assert!((ticks_to_ms(150, 250) - 600.0).abs() < 1e-9);
    }

    fn reading(client: u64, server: u64) -> Start {
        Start {
            client: Ticks {
                user: client,
                system: 0,
            },
            server: Ticks {
                user: server / 2,
                system: server - server / 2,
            },
        }
    }

    #[test]
    fn per_request_is_the_window_divided_by_its_requests() {
        // 300 ticks client, 500 ticks server at 100 Hz over 40,000 requests:
        // 3000 + 5000 ms, 0.075 + 0.125 ms per request.
        let w = CpuWindow::between(reading(100, 200), reading(400, 700), 40_000, 100);
        assert!((w.client_ms - 3000.0).abs() < 1e-9);
        assert!((w.server_ms - 5000.0).abs() < 1e-9);
        let per = w.per_unit().unwrap();
        assert!((per.client - 0.075).abs() < 1e-12);
        assert!((per.server - 0.125).abs() < 1e-12);
        assert!((per.total() - 0.2).abs() < 1e-12);
        assert_eq!(CpuWindow::default().per_unit(), None);
    }

    #[test]
    fn overall_weighs_windows_by_their_units() {
        let a = CpuWindow {
            client_ms: 100.0,
            server_ms: 100.0,
            units: 1000,
        };
        let b = CpuWindow {
            client_ms: 50.0,
            server_ms: 250.0,
            units: 4000,
        };
        let sum = CpuWindow::sum([&a, &b]).unwrap();
        assert_eq!(sum.units, 5000);
        // 500 ms over 5000: 0.1, not the mean of 0.2 and 0.075.
        assert!((sum.per_unit().unwrap().total() - 0.1).abs() < 1e-12);
        assert_eq!(CpuWindow::sum([]), None);
    }

    #[test]
    fn ratio_difference_and_percent() {
        let base = CpuWindow {
            client_ms: 400.0,
            server_ms: 600.0,
            units: 10_000,
        };
        let mazu = CpuWindow {
            client_ms: 410.0,
            server_ms: 620.0,
            units: 10_000,
        };
        let c = Comparison::of(&base, &mazu).unwrap();
        assert!((c.baseline.total() - 0.1).abs() < 1e-12);
        assert!((c.mazu.total() - 0.103).abs() < 1e-12);
        assert!((c.ratio() - 1.03).abs() < 1e-12);
        assert!((c.difference() - 0.003).abs() < 1e-12);
        assert!((c.overhead_percent() - 3.0).abs() < 1e-9);
        let idle = CpuWindow {
            units: 10,
            ..CpuWindow::default()
        };
        assert!(Comparison::of(&idle, &mazu).unwrap().ratio().is_nan());
        assert!(Comparison::of(&CpuWindow::default(), &mazu).is_none());
    }
}
