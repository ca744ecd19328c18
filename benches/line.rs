//! The one result line every `steel bench ...` prints as JSON: which benchmark and case,
//! the seconds it took, then that benchmark's own measurements in a fixed order.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct BenchLine {
    /// `convert`, `pack`, `loader`, `clean`, `incremental`, `train`.
    pub bench: &'static str,
    /// What was measured within the benchmark (`floor`, `steel`, `recipe`, an operator, ...).
    pub case: String,
    /// Wall time of the measured work.
    pub seconds: f64,
    /// `(name, value)` in print order: settings, counts, rates, ratios.
    pub measures: Vec<(&'static str, Value)>,
}

impl BenchLine {
    pub fn new(bench: &'static str, case: impl Into<String>, seconds: f64) -> BenchLine {
        BenchLine {
            bench,
            case: case.into(),
            seconds,
            measures: Vec::new(),
        }
    }

    /// The line with one more measurement.
    pub fn with(mut self, name: &'static str, value: impl Into<Value>) -> BenchLine {
        self.measures.push((name, value.into()));
        self
    }

    /// A measurement by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.measures
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a bench line serialises")
    }
}

impl Serialize for BenchLine {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3 + self.measures.len()))?;
        map.serialize_entry("bench", self.bench)?;
        map.serialize_entry("case", &self.case)?;
        map.serialize_entry("seconds", &self.seconds)?;
        for (name, value) in &self.measures {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_prints_its_fields_in_order() {
        let line = BenchLine::new("convert", "steel", 1.5)
            .with("threads", 2)
            .with("mb_per_s", 40.25)
            .with("peak_mem_gb", Value::Null);
        assert_eq!(
            line.to_json(),
            r#"{"bench":"convert","case":"steel","seconds":1.5,"threads":2,"mb_per_s":40.25,"peak_mem_gb":null}"#
        );
        assert_eq!(line.get("threads"), Some(&Value::from(2)));
        assert_eq!(line.get("docs"), None);
    }
}
