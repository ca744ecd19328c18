//! `perplexity_filter`: perplexity of the document under an n-gram model read from an ARPA
//! file (`model_path`, or the run's `--lm-model`), which `steel lm train` can build.
//! data-juicer instead downloads a sentencepiece model and a KenLM binary per language; we
//! never download, and score characters (or words, `unit: word`) instead of sentencepieces.

use crate::clean::lm::Unit;
use crate::clean::lm::arpa::NgramModel;
use crate::clean::op::{Filter, Measure, Range};
use std::sync::Arc;

pub struct Perplexity {
    pub range: Range,
    pub model: Arc<NgramModel>,
    pub unit: Unit,
}

impl Filter for Perplexity {
    fn stat_name(&self) -> &'static str {
        "perplexity"
    }
    fn measure(&self, text: &str) -> Measure {
        let pieces = self.unit.pieces(text);
        self.range.measure(self.model.perplexity(&pieces))
    }
}
