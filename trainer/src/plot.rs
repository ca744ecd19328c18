//! The loss curve as an SVG picture, rewritten next to `metrics.jsonl` as training goes.

use std::fmt::Write as _;

/// An SVG line chart of `(step, loss)` for training (blue) and validation (orange) losses.
pub fn loss_svg(train: &[(u64, f32)], validation: &[(u64, f32)]) -> String {
    let (width, height, margin) = (640.0f64, 360.0f64, 48.0f64);
    let all = train.iter().chain(validation);
    let max_step = all.clone().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1 as f64), hi.max(p.1 as f64))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo, hi.max(lo + 1e-6))
    } else {
        (0.0, 1.0)
    };
    let x = |step: u64| margin + (step as f64 / max_step) * (width - 2.0 * margin);
    let y = |loss: f32| height - margin - (loss as f64 - lo) / (hi - lo) * (height - 2.0 * margin);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{margin}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{margin}\" y1=\"{margin}\" x2=\"{margin}\" y2=\"{b}\" stroke=\"black\"/>",
        b = height - margin,
        r = width - margin
    );
    let _ = writeln!(
        svg,
        "<text x=\"4\" y=\"{}\">{hi:.3}</text><text x=\"4\" y=\"{}\">{lo:.3}</text>",
        margin + 4.0,
        height - margin
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\">step {}</text>",
        width - margin - 60.0,
        height - 16.0,
        max_step as u64
    );
    for (points, colour, label, row) in [
        (train, "#1f77b4", "train loss", 0.0),
        (validation, "#ff7f0e", "validation loss", 16.0),
    ] {
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{label}</text>",
            width - margin - 120.0,
            margin + row
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_curves_within_the_frame() {
        let svg = loss_svg(&[(1, 7.0), (2, 6.0), (3, 5.5)], &[(2, 6.5)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Step 1 of 3 at x = 48 + (1/3)·544; the highest loss at the top margin.
        assert!(svg.contains("229.3,48.0"), "{svg}");
        assert!(loss_svg(&[], &[]).contains("</svg>"));
    }
}
