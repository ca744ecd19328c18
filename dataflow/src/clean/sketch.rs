//! Quantiles of a filter's statistic in bounded memory: a log-bucket histogram (the idea of
//! DDSketch). Values are grouped into buckets `(γ^(i-1), γ^i]` with `γ = 1.01`, so a reported
//! quantile is within 0.5% of a true value of the sample; min and max are exact. Counts are
//! added in input order, so the result never depends on the number of threads.

use serde::Serialize;
use std::collections::BTreeMap;

const GAMMA: f64 = 1.01;

#[derive(Clone, Debug, Default)]
pub struct Sketch {
    positive: BTreeMap<i32, u64>,
    negative: BTreeMap<i32, u64>,
    zeros: u64,
    count: u64,
    min: f64,
    max: f64,
}

/// The quantiles a report shows.
pub const QUANTILES: [(&str, f64); 7] = [
    ("p01", 0.01),
    ("p05", 0.05),
    ("p25", 0.25),
    ("p50", 0.5),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
];

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    /// `(name, value)` for each of `QUANTILES`.
    pub quantiles: Vec<(String, f64)>,
}

fn bucket(magnitude: f64) -> i32 {
    magnitude.log(GAMMA).ceil() as i32
}

/// A representative value of bucket `i`: the midpoint of its bounds, in relative terms.
fn value_of(index: i32) -> f64 {
    2.0 * GAMMA.powi(index) / (GAMMA + 1.0)
}

impl Sketch {
    pub fn add(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        if value > 0.0 {
            *self.positive.entry(bucket(value)).or_default() += 1;
        } else if value < 0.0 {
            *self.negative.entry(bucket(-value)).or_default() += 1;
        } else {
            self.zeros += 1;
        }
    }

    /// The value at rank `q · (count - 1)`, clamped to the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * (self.count - 1) as f64).round() as u64;
        let mut seen = 0;
        // Ascending: most negative first, then zeros, then positives.
        for (&index, &n) in self.negative.iter().rev() {
            seen += n;
            if rank < seen {
                return Some((-value_of(index)).clamp(self.min, self.max));
            }
        }
        seen += self.zeros;
        if rank < seen {
            return Some(0.0);
        }
        for (&index, &n) in &self.positive {
            seen += n;
            if rank < seen {
                return Some(value_of(index).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn summary(&self) -> Option<Summary> {
        (self.count > 0).then(|| Summary {
            count: self.count,
            min: self.min,
            max: self.max,
            quantiles: QUANTILES
                .iter()
                .map(|(name, q)| (name.to_string(), self.quantile(*q).expect("non-empty")))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_relative_accuracy() {
        let mut sketch = Sketch::default();
        for i in 0..=1000 {
            sketch.add(i as f64);
        }
        for (q, exact) in [(0.5, 500.0), (0.25, 250.0), (0.99, 990.0), (0.01, 10.0)] {
            let got = sketch.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= exact * 0.005 + 1e-9,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(sketch.quantile(0.0), Some(0.0));
        assert_eq!(sketch.quantile(1.0), Some(1000.0));
        let summary = sketch.summary().unwrap();
        assert_eq!(
            (summary.count, summary.min, summary.max),
            (1001, 0.0, 1000.0)
        );
        assert!(Sketch::default().summary().is_none());
    }

    #[test]
    fn negative_values_sort_below_zero() {
        let mut sketch = Sketch::default();
        for v in [-5.0, -1.0, 0.0, 2.0, 8.0] {
            sketch.add(v);
        }
        assert!((sketch.quantile(0.0).unwrap() + 5.0).abs() < 0.03);
        assert_eq!(sketch.quantile(0.5), Some(0.0));
    }
}
