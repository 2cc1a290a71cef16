//! The p90-latency-against-connections plot (like the paper's Figure 4),
//! drawn with `plotters` to SVG.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::results::Results;
use crate::topology::Kind;

/// Draws p90 latency (mean over rounds, ms) against concurrent connections
/// for both configurations, with each round's value as a small mark, to
/// `path` (SVG).
pub fn draw_p90(results: &Results, path: &Path) -> Result<()> {
    let svg = render_p90_svg(results)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)?;
    Ok(())
}

/// The SVG text of the plot.
pub fn render_p90_svg(results: &Results) -> Result<String> {
    let counts = results.connection_counts();
    let series: Vec<(Kind, Vec<(f64, f64)>)> = [Kind::Baseline, Kind::Mazu]
        .into_iter()
        .map(|kind| {
            let points = counts
                .iter()
                .filter_map(|&c| Some((f64::from(c), results.latency(kind, c)?.p90)))
                .collect();
            (kind, points)
        })
        .collect();
    let rounds: Vec<(Kind, f64, f64)> = results
        .latency
        .iter()
        .map(|r| (r.kind, f64::from(r.connections), r.summary.latency.p90))
        .collect();
    let max_y = rounds.iter().map(|r| r.2).fold(0.0f64, f64::max).max(0.1) * 1.25;
    let max_x = counts.last().copied().map_or(80.0, |c| f64::from(c) * 1.15);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "p90 latency, {} req/s, HTTP/1.1 keep-alive, {} B bodies",
                    results.conditions.rate, results.conditions.body_bytes
                ),
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("concurrent connections")
            .y_desc("p90 latency (ms)")
            .x_labels(8)
            .y_labels(8)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(plot_error)?;
        for (kind, points) in &series {
            let color = colour(*kind);
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(match kind {
                    Kind::Baseline => "plain mTLS (CA-signed, no filter)",
                    Kind::Mazu => "Mazu (handshake validator + filter inbound)",
                })
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 5, color.filled())),
                )
                .map_err(plot_error)?;
        }
        // Each round's p90, slightly apart so the two configurations show.
        chart
            .draw_series(rounds.iter().map(|&(kind, x, y)| {
                let dx = if kind == Kind::Baseline { -0.8 } else { 0.8 };
                Cross::new((x + dx, y), 3, colour(kind).stroke_width(1))
            }))
            .map_err(plot_error)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn colour(kind: Kind) -> RGBColor {
    match kind {
        Kind::Baseline => RGBColor(0x1f, 0x77, 0xb4),
        Kind::Mazu => RGBColor(0xd6, 0x27, 0x28),
    }
}

fn plot_error(error: impl core::fmt::Debug) -> anyhow::Error {
    anyhow!("drawing the plot: {error:?}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::oha::Summary;
    use crate::results::LatencyRun;
    use crate::stats::Percentiles;

    #[test]
    fn draws_an_svg_with_both_series() {
        let mut results = Results::default();
        for (kind, p90) in [(Kind::Baseline, 0.8), (Kind::Mazu, 0.85)] {
            for connections in [16, 64] {
                results.latency.push(LatencyRun {
                    kind,
                    connections,
                    round: 0,
                    summary: Summary {
                        requests: 1,
                        success_rate: 1.0,
                        requests_per_sec: 1.0,
                        latency: Percentiles {
                            p50: 0.5,
                            p90,
                            p99: 1.0,
                        },
                        status_codes: BTreeMap::new(),
                        errors: BTreeMap::new(),
                    },
                });
            }
        }
        let svg = render_p90_svg(&results).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("Mazu (handshake validator"));
        assert!(svg.contains("p90 latency (ms)"));
    }
}
