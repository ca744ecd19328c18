//! The human-readable summary of a conversion, printed on stderr.

use crate::convert::ConvertSummary;
use std::fmt;

impl fmt::Display for ConvertSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_width = self
            .files
            .iter()
            .map(|s| s.file.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "{:<name_width$}  {:<15}  {:>9}  {:>9}  {:>8}  {:>9}",
            "file", "format", "docs in", "docs out", "rejected", "MB in"
        )?;
        for file in &self.files {
            let format = match &file.detected_from {
                Some(_) => format!("{} (auto)", file.format),
                None => file.format.clone(),
            };
            writeln!(
                f,
                "{:<name_width$}  {:<15}  {:>9}  {:>9}  {:>8}  {:>9.2}",
                file.file,
                format,
                file.docs_in,
                file.docs_out,
                file.rejected,
                file.bytes_in as f64 / 1e6
            )?;
        }
        for file in self.files.iter().filter(|f| f.detected_from.is_some()) {
            let fields = file.detected_from.as_deref().unwrap_or_default().join(", ");
            writeln!(
                f,
                "auto: {} is {} (fields: {fields})",
                file.file, file.format
            )?;
        }
        for skipped in &self.skipped_files {
            writeln!(f, "skipped (not a type we read): {skipped}")?;
        }
        let reasons: Vec<String> = self
            .reject_reasons
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        writeln!(
            f,
            "{} docs in, {} out, {} rejected{} in {:.2}s on {} threads ({:.1} MB/s)",
            self.docs_in,
            self.docs_out,
            self.rejected,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            },
            self.seconds,
            self.threads,
            self.bytes_in as f64 / 1e6 / self.seconds.max(1e-9)
        )?;
        let shard_bytes: u64 = self.shards.iter().map(|s| s.bytes).sum();
        write!(
            f,
            "output: {} ({} {} shards, {:.2} MB); rejects: {}",
            self.output,
            self.shards.len(),
            self.output_format,
            shard_bytes as f64 / 1e6,
            self.rejects_file
        )
    }
}
