//! Latency percentiles, their combination over rounds, the Mazu − baseline
//! differences, and the goals.

/// p50/p90/p99 latency, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// The element-wise mean of several runs' percentiles (each round of an
    /// interleaved run measures the same load for the same time, so their
    /// percentiles are averaged; the spread is reported beside it).
    pub fn mean(runs: &[Percentiles]) -> Option<Percentiles> {
        if runs.is_empty() {
            return None;
        }
        let n = runs.len() as f64;
        let sum = |f: fn(&Percentiles) -> f64| runs.iter().map(f).sum::<f64>() / n;
        Some(Percentiles {
            p50: sum(|p| p.p50),
            p90: sum(|p| p.p90),
            p99: sum(|p| p.p99),
        })
    }

    /// `self − base`, element-wise (the overhead of `self` over `base`).
    pub fn minus(&self, base: &Percentiles) -> Percentiles {
        Percentiles {
            p50: self.p50 - base.p50,
            p90: self.p90 - base.p90,
            p99: self.p99 - base.p99,
        }
    }

    /// `self / base`, element-wise.
    pub fn ratio(&self, base: &Percentiles) -> Percentiles {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Percentiles {
            p50: div(self.p50, base.p50),
            p90: div(self.p90, base.p90),
            p99: div(self.p99, base.p99),
        }
    }
}

/// The smallest and largest of `values` (for the per-round spread).
pub fn range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values.into_iter().fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// The `q` quantile (0..=1) of `samples` by nearest rank; `None` if empty.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One goal of the issue and what was measured against it.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    /// What it is about, e.g. "p90 overhead, 16 connections".
    pub name: String,
    /// The limit (at most), in `unit`.
    pub limit: f64,
    /// The measured value, in `unit`; `None` if not measured.
    pub measured: Option<f64>,
    /// "ms" or "MB".
    pub unit: &'static str,
}

impl Goal {
    /// Whether the measured value is within the limit.
    pub fn met(&self) -> Option<bool> {
        self.measured.map(|m| m <= self.limit)
    }

    /// By how much the limit is exceeded (0 when met).
    pub fn excess(&self) -> Option<f64> {
        self.measured.map(|m| (m - self.limit).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(p50: f64, p90: f64, p99: f64) -> Percentiles {
        Percentiles { p50, p90, p99 }
    }

    #[test]
    fn mean_diff_and_ratio() {
        let mazu = Percentiles::mean(&[p(1.0, 2.0, 4.0), p(1.2, 2.2, 5.0)]).unwrap();
        let base = p(1.0, 2.0, 4.0);
        let diff = mazu.minus(&base);
        assert!((diff.p50 - 0.1).abs() < 1e-12);
        assert!((diff.p90 - 0.1).abs() < 1e-12);
        assert!((diff.p99 - 0.5).abs() < 1e-12);
        assert!((mazu.ratio(&base).p90 - 1.05).abs() < 1e-12);
        assert!(Percentiles::mean(&[]).is_none());
        assert!(p(1.0, 1.0, 1.0).ratio(&p(0.0, 1.0, 1.0)).p50.is_nan());
    }

    #[test]
    fn quantiles_and_ranges() {
        let samples = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&samples, 0.5), Some(3.0));
        assert_eq!(quantile(&samples, 0.9), Some(5.0));
        assert_eq!(quantile(&samples, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(range([2.0, -1.0, 7.0]), Some((-1.0, 7.0)));
    }

    #[test]
    fn goals_met_missed_and_unmeasured() {
        let goal = |measured| Goal {
            name: "p90".into(),
            limit: 0.02,
            measured,
            unit: "ms",
        };
        assert_eq!(goal(Some(0.01)).met(), Some(true));
        assert_eq!(goal(Some(-0.05)).met(), Some(true));
        assert_eq!(goal(Some(0.05)).met(), Some(false));
        assert!((goal(Some(0.05)).excess().unwrap() - 0.03).abs() < 1e-12);
        assert_eq!(goal(None).met(), None);
    }
}
