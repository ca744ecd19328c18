//! Line-level filters: `average_line_length_filter` (characters / lines) and
//! `maximum_line_length_filter` (the longest line), lines as Python's `splitlines` gives them.

use crate::clean::op::{Filter, Measure, Range};
use crate::clean::pytext;

pub struct AverageLineLength {
    pub range: Range,
}

impl Filter for AverageLineLength {
    fn stat_name(&self) -> &'static str {
        "avg_line_length"
    }
    fn measure(&self, text: &str) -> Measure {
        let lines = pytext::splitlines(text).len();
        let value = if lines == 0 {
            0.0
        } else {
            pytext::len(text) as f64 / lines as f64
        };
        self.range.measure(value)
    }
}

pub struct MaximumLineLength {
    pub range: Range,
}

impl Filter for MaximumLineLength {
    fn stat_name(&self) -> &'static str {
        "max_line_length"
    }
    fn measure(&self, text: &str) -> Measure {
        let longest = pytext::splitlines(text)
            .iter()
            .map(|l| pytext::len(l))
            .max()
            .unwrap_or(0);
        self.range.measure(longest as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lengths() {
        let range = Range {
            min: Some(10.0),
            max: None,
            min_closed: true,
            max_closed: true,
            reversed: false,
        };
        // 13 characters (the newline counts) over 2 lines.
        assert_eq!(
            AverageLineLength { range }.measure("a test.\nabcde").value,
            6.5
        );
        assert_eq!(AverageLineLength { range }.measure("").value, 0.0);
        assert_eq!(
            MaximumLineLength { range }.measure("ab\r\n中文字\n").value,
            3.0
        );
    }
}
