//! ARPA back-off language models: parse, score, write.
//!
//! `log10 p(w | h)` is the listed probability of the longest `h' w` in the model (`h'` a
//! suffix of `h`), plus the back-off weights of the longer contexts that are listed — what
//! KenLM computes. Unknown words score as `<unk>`.

use crate::clean::lm::{BOS, EOS, UNK};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Bits per word id in a packed n-gram key: up to 6 words in a `u128`, ids below 2^21.
const ID_BITS: u32 = 21;
const MAX_ORDER: usize = 6;

/// An n-gram as one integer: `(id + 1)` of each word in `ID_BITS`-bit fields, so n-grams of
/// different lengths never share a key.
fn pack(ids: &[u32]) -> u128 {
    ids.iter()
        .fold(0u128, |key, &id| key << ID_BITS | (id as u128 + 1))
}

/// A fast hasher for integer keys that are already well spread (packed n-grams, rolling
/// hashes): one multiply mixes them.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, key: u64) {
        let mixed = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 32);
    }
    fn write_u128(&mut self, key: u128) {
        let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
        let mixed = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 32);
    }
}

type GramTable = HashMap<u128, Entry, BuildHasherDefault<KeyHasher>>;

/// One n-gram's log10 probability and log10 back-off weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    pub prob: f32,
    pub backoff: f32,
}

#[derive(Debug)]
pub struct NgramModel {
    pub order: usize,
    pub vocab: HashMap<String, u32, Xxh3DefaultBuilder>,
    /// `grams[n - 1]`: the n-grams, keyed by their packed word ids.
    grams: Vec<GramTable>,
    unk: u32,
    bos: u32,
    eos: u32,
}

/// KenLM's probability for `<unk>` when a model lists none.
const MISSING_UNK_PROB: f32 = -100.0;

impl NgramModel {
    pub fn load(path: &Path) -> Result<NgramModel, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read language model `{}`: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("language model `{}`: {e}", path.display()))
    }

    /// Parse ARPA text.
    pub fn parse(text: &str) -> Result<NgramModel, String> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        let mut counts: Vec<usize> = Vec::new();
        // Header: skip to \data\, then "ngram N=COUNT" lines.
        loop {
            match lines.next() {
                Some((_, "\\data\\")) => break,
                Some(_) => continue,
                None => return Err("no \\data\\ section; is this an ARPA file?".into()),
            }
        }
        let mut section = None;
        for (number, line) in lines.by_ref() {
            if let Some(spec) = line.strip_prefix("ngram ") {
                let (n, count) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("line {number}: expected `ngram N=COUNT`"))?;
                let n: usize = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("line {number}: bad order `{n}`"))?;
                if n != counts.len() + 1 {
                    return Err(format!("line {number}: ngram counts out of order"));
                }
                counts.push(
                    count
                        .trim()
                        .parse()
                        .map_err(|_| format!("line {number}: bad count"))?,
                );
            } else if line.ends_with("-grams:") {
                section = Some((number, line.to_string()));
                break;
            }
        }
        if counts.is_empty() {
            return Err("no `ngram N=COUNT` lines after \\data\\".into());
        }
        let order = counts.len();
        if order > MAX_ORDER {
            return Err(format!("order {order} is above the supported {MAX_ORDER}"));
        }
        let mut vocab: HashMap<String, u32, Xxh3DefaultBuilder> =
            HashMap::with_capacity_and_hasher(counts[0] + 3, Xxh3DefaultBuilder);
        let mut grams: Vec<GramTable> = counts
            .iter()
            .map(|&c| GramTable::with_capacity_and_hasher(c, Default::default()))
            .collect();
        let mut ids: Vec<u32> = Vec::with_capacity(order);
        let mut n = 0;
        let mut seen_end = false;
        if let Some((number, header)) = section {
            n = section_order(&header)
                .ok_or_else(|| format!("line {number}: bad section `{header}`"))?;
        }
        for (number, line) in lines {
            if line.is_empty() {
                continue;
            }
            if line == "\\end\\" {
                seen_end = true;
                break;
            }
            if line.ends_with("-grams:") {
                n = section_order(line)
                    .ok_or_else(|| format!("line {number}: bad section `{line}`"))?;
                if n == 0 || n > order {
                    return Err(format!(
                        "line {number}: section {n}-grams but the model has order {order}"
                    ));
                }
                continue;
            }
            if n == 0 {
                return Err(format!("line {number}: n-gram outside a section"));
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != n + 1 && fields.len() != n + 2 {
                return Err(format!(
                    "line {number}: expected a {n}-gram line, found `{line}`"
                ));
            }
            let prob: f32 = fields[0]
                .parse()
                .map_err(|_| format!("line {number}: bad probability `{}`", fields[0]))?;
            let backoff: f32 = match fields.get(n + 1) {
                Some(b) => b
                    .parse()
                    .map_err(|_| format!("line {number}: bad back-off `{b}`"))?,
                None => 0.0,
            };
            ids.clear();
            for word in &fields[1..=n] {
                let id = match vocab.get(*word) {
                    Some(&id) => id,
                    None => {
                        let id = vocab.len() as u32;
                        if id >= (1 << ID_BITS) - 4 {
                            return Err(format!(
                                "line {number}: more than {} words",
                                (1 << ID_BITS) - 4
                            ));
                        }
                        vocab.insert((*word).to_string(), id);
                        id
                    }
                };
                ids.push(id);
            }
            grams[n - 1].insert(pack(&ids), Entry { prob, backoff });
        }
        if !seen_end {
            return Err("missing \\end\\ (truncated file?)".into());
        }
        for (n, (count, table)) in counts.iter().zip(&grams).enumerate() {
            if *count != table.len() {
                return Err(format!(
                    "header says {count} {}-grams, found {}",
                    n + 1,
                    table.len()
                ));
            }
        }
        let id_of = |word: &str, vocab: &mut HashMap<String, u32, Xxh3DefaultBuilder>| {
            let next = vocab.len() as u32;
            *vocab.entry(word.to_string()).or_insert(next)
        };
        let unk = id_of(UNK, &mut vocab);
        let bos = id_of(BOS, &mut vocab);
        let eos = id_of(EOS, &mut vocab);
        grams[0].entry(pack(&[unk])).or_insert(Entry {
            prob: MISSING_UNK_PROB,
            backoff: 0.0,
        });
        Ok(NgramModel {
            order,
            vocab,
            grams,
            unk,
            bos,
            eos,
        })
    }

    /// `log10 p(word | context)`; `context` holds at most `order - 1` ids, oldest first.
    fn log_prob(&self, context: &[u32], word: u32) -> f32 {
        let mut backoff = 0.0;
        for start in 0..=context.len() {
            let history = &context[start..];
            let key = pack(history) << ID_BITS | (word as u128 + 1);
            if let Some(entry) = self.grams[history.len()].get(&key) {
                return backoff + entry.prob;
            }
            if !history.is_empty()
                && let Some(entry) = self.grams[history.len() - 1].get(&pack(history))
            {
                backoff += entry.backoff;
            }
        }
        // Only an unknown id reaches here, and `<unk>` is always listed.
        backoff + self.grams[0][&pack(&[self.unk])].prob
    }

    /// log10 probability of `<s> pieces </s>` (KenLM's `score(line, bos=True, eos=True)`).
    pub fn score(&self, pieces: &[&str]) -> f64 {
        self.score_ids(self.ids(pieces).chain([self.eos]))
    }

    /// log10 probability of `pieces` after `<s>`, without the end of sentence.
    pub fn score_prefix(&self, pieces: &[&str]) -> f64 {
        self.score_ids(self.ids(pieces))
    }

    fn ids<'a>(&'a self, pieces: &'a [&str]) -> impl Iterator<Item = u32> + 'a {
        pieces
            .iter()
            .map(|p| self.vocab.get(*p).copied().unwrap_or(self.unk))
    }

    fn score_ids(&self, ids: impl Iterator<Item = u32>) -> f64 {
        let mut context: Vec<u32> = vec![self.bos];
        let mut total = 0.0f64;
        for id in ids {
            let keep = context.len().min(self.order - 1);
            let history = &context[context.len() - keep..];
            total += self.log_prob(history, id) as f64;
            context.push(id);
        }
        total
    }

    /// Perplexity of one document as data-juicer computes it: `10^(-score / (pieces + 1))`,
    /// 0 for a document without pieces, rounded to one decimal.
    pub fn perplexity(&self, pieces: &[&str]) -> f64 {
        if pieces.is_empty() {
            return 0.0;
        }
        let ppl = 10f64.powf(-self.score(pieces) / (pieces.len() + 1) as f64);
        (ppl * 10.0).round() / 10.0
    }
}

fn section_order(header: &str) -> Option<usize> {
    header
        .strip_prefix('\\')?
        .strip_suffix("-grams:")?
        .parse()
        .ok()
}

/// Write n-grams as ARPA text. `grams[n - 1]` holds `(words, log10 prob, log10 back-off)`,
/// already in the order to write; back-off is written for every order but the highest.
pub fn write(grams: &[Vec<(Vec<String>, f64, f64)>]) -> String {
    let mut out = String::from("\\data\\\n");
    for (n, table) in grams.iter().enumerate() {
        let _ = writeln!(out, "ngram {}={}", n + 1, table.len());
    }
    for (n, table) in grams.iter().enumerate() {
        let _ = write!(out, "\n\\{}-grams:\n", n + 1);
        let highest = n + 1 == grams.len();
        for (words, prob, backoff) in table {
            let _ = write!(out, "{prob:.6}\t{}", words.join(" "));
            if !highest {
                let _ = write!(out, "\t{backoff:.6}");
            }
            out.push('\n');
        }
    }
    out.push_str("\n\\end\\\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made bigram model.
    const MODEL: &str = "\\data\\\nngram 1=5\nngram 2=3\n\n\\1-grams:\n-1.0\t<unk>\t0\n-99\t<s>\t-0.5\n-0.7\t</s>\t0\n-0.3\ta\t-0.2\n-0.6\tb\t-0.1\n\n\\2-grams:\n-0.1\t<s> a\n-0.4\ta b\n-0.2\tb </s>\n\n\\end\\\n";

    #[test]
    fn scores_with_backoff_like_kenlm() {
        let model = NgramModel::parse(MODEL).unwrap();
        // <s> a b </s>: p(a|<s>) -0.1, p(b|a) -0.4, p(</s>|b) -0.2.
        assert!((model.score(&["a", "b"]) - (-0.7)).abs() < 1e-6);
        // <s> b a </s>: p(b|<s>) = bo(<s>) + p(b) = -0.5 - 0.6; p(a|b) = bo(b) + p(a) = -0.1 - 0.3;
        // p(</s>|a) = bo(a) + p(</s>) = -0.2 - 0.7.
        assert!((model.score(&["b", "a"]) - (-2.4)).abs() < 1e-6);
        // Unknown word: p(<unk>|<s>) = -0.5 + -1.0, then p(</s>|<unk>) = p(</s>) = -0.7.
        assert!((model.score(&["zzz"]) - (-2.2)).abs() < 1e-6);
        // Perplexity of "a b": 10^(0.7/3) = 1.71 -> 1.7.
        assert_eq!(model.perplexity(&["a", "b"]), 1.7);
        assert_eq!(model.perplexity(&[]), 0.0);
    }

    #[test]
    fn rejects_broken_files_with_a_line_number() {
        assert!(NgramModel::parse("hello").unwrap_err().contains("\\data\\"));
        let truncated = &MODEL[..MODEL.len() - 7];
        assert!(
            NgramModel::parse(truncated)
                .unwrap_err()
                .contains("\\end\\")
        );
        let bad = MODEL.replace("-0.4\ta b", "x\ta b");
        assert!(NgramModel::parse(&bad).unwrap_err().contains("line 14"));
    }
}
