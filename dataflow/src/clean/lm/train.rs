//! Train an n-gram model with interpolated modified Kneser-Ney smoothing, as KenLM's `lmplz`
//! estimates it (Chen & Goodman; Heafield et al. 2013):
//!
//! 1. Count the highest-order n-grams of every `<s> pieces </s>` sentence; n-grams that start
//!    at `<s>` and are shorter than the order are counted at their own length.
//! 2. Adjust lower orders: an n-gram's count becomes the number of distinct words seen before
//!    it (its continuation count), except n-grams starting with `<s>`, which keep raw counts.
//! 3. Per order, discounts `D1, D2, D3+` from the counts-of-counts `t1..t4`:
//!    `Y = t1/(t1+2 t2)`, `Dk = k - (k+1) Y t(k+1)/tk`.
//! 4. `p(w|h) = (a(hw) - D(a(hw))) / a(h·) + γ(h) p(w|h')`, `γ(h) = (D1 N1(h) + D2 N2(h) +
//!    D3 N3+(h)) / a(h·)`; unigrams interpolate with the uniform distribution over the
//!    vocabulary (`<unk>` included, which thus gets `γ(ε)/|V|`).
//! 5. Write log10 `p` and log10 `γ` as ARPA; `<s>` gets KenLM's -99.
//!
//! When a corpus is too small for a count-of-counts to be non-zero (lmplz stops there), we fall
//! back to the discounts 0.5 / 1.0 / 1.5 for that order.

use crate::clean::lm::{BOS, EOS, LmError, UNK, Unit, arpa};
use std::collections::{BTreeMap, HashMap};

type Gram = Vec<u32>;

/// Per context: the sum of its continuations' adjusted counts, and how many continuations
/// have count 1, 2 and 3 or more.
type ContextStats = (u64, [u64; 3]);

pub struct Trainer {
    order: usize,
    words: Vec<String>,
    ids: HashMap<String, u32>,
    /// Highest-order counts, and `<s>`-initial shorter n-grams at their own length.
    raw: Vec<HashMap<Gram, u64>>,
}

impl Trainer {
    pub fn new(order: usize) -> Result<Self, String> {
        if !(1..=6).contains(&order) {
            return Err(format!("order {order} is not supported; use 1 to 6"));
        }
        let mut trainer = Trainer {
            order,
            words: Vec::new(),
            ids: HashMap::new(),
            raw: (0..order).map(|_| HashMap::new()).collect(),
        };
        for special in [BOS, EOS, UNK] {
            trainer.id(special);
        }
        Ok(trainer)
    }

    fn id(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = self.words.len() as u32;
        self.words.push(word.to_string());
        self.ids.insert(word.to_string(), id);
        id
    }

    /// Count one sentence (an empty one is skipped).
    pub fn add_sentence(&mut self, pieces: &[&str]) {
        if pieces.is_empty() {
            return;
        }
        let mut sentence: Gram = vec![self.ids[BOS]];
        for piece in pieces {
            let id = self.id(piece);
            sentence.push(id);
        }
        sentence.push(self.ids[EOS]);
        for end in 1..sentence.len() {
            let start = (end + 1).saturating_sub(self.order);
            let gram = sentence[start..=end].to_vec();
            *self.raw[gram.len() - 1].entry(gram).or_default() += 1;
        }
    }

    /// Estimate the model and render it as ARPA text.
    pub fn to_arpa(&self) -> String {
        let adjusted = self.adjusted_counts();
        let discounts: Vec<[f64; 3]> = adjusted.iter().map(discounts).collect();
        let bos = self.ids[BOS];
        // Vocabulary the unigram distribution spreads over: everything but <s>.
        let vocab_size = (self.words.len() - 1) as f64;

        // Per order: context -> (sum of adjusted counts, N1, N2, N3+).
        let context_stats: Vec<HashMap<&[u32], ContextStats>> = adjusted
            .iter()
            .map(|table| {
                let mut stats: HashMap<&[u32], ContextStats> = HashMap::new();
                for (gram, &count) in table {
                    let entry = stats.entry(&gram[..gram.len() - 1]).or_default();
                    entry.0 += count;
                    entry.1[(count.min(3) - 1) as usize] += 1;
                }
                stats
            })
            .collect();
        let gamma = |n: usize, context: &[u32]| -> f64 {
            let (total, buckets) = context_stats[n][context];
            let d = discounts[n];
            (d[0] * buckets[0] as f64 + d[1] * buckets[1] as f64 + d[2] * buckets[2] as f64)
                / total as f64
        };

        // Interpolated probabilities, lowest order first.
        let mut probs: Vec<HashMap<&[u32], f64>> = Vec::with_capacity(self.order);
        for (n, table) in adjusted.iter().enumerate() {
            let mut order_probs: HashMap<&[u32], f64> = HashMap::new();
            for (gram, &count) in table {
                let context = &gram[..gram.len() - 1];
                let (total, _) = context_stats[n][context];
                let d = discounts[n][(count.min(3) - 1) as usize];
                let discounted = (count as f64 - d).max(0.0) / total as f64;
                let lower = if n == 0 {
                    1.0 / vocab_size
                } else {
                    probs[n - 1][&gram[1..]]
                };
                order_probs.insert(gram.as_slice(), discounted + gamma(n, context) * lower);
            }
            if n == 0 {
                order_probs.insert(
                    std::slice::from_ref(&self.ids[UNK]),
                    gamma(0, &[]) / vocab_size,
                );
            }
            probs.push(order_probs);
        }

        // Render, sorted by words for a deterministic file.
        let mut grams: Vec<Vec<(Vec<String>, f64, f64)>> = Vec::with_capacity(self.order);
        for (n, order_probs) in probs.iter().enumerate() {
            let mut rows: Vec<(Vec<String>, f64, f64)> = order_probs
                .iter()
                .map(|(gram, &p)| {
                    let words: Vec<String> = gram
                        .iter()
                        .map(|&id| self.words[id as usize].clone())
                        .collect();
                    let prob = if gram == &[bos] { -99.0 } else { p.log10() };
                    let backoff = if n + 1 < self.order && context_stats[n + 1].contains_key(gram) {
                        gamma(n + 1, gram).log10()
                    } else {
                        0.0
                    };
                    (words, prob, backoff)
                })
                .collect();
            if n == 0 && !order_probs.contains_key([bos].as_slice()) {
                let backoff = context_stats
                    .get(1)
                    .filter(|stats| stats.contains_key([bos].as_slice()))
                    .map_or(0.0, |_| gamma(1, &[bos]).log10());
                rows.push((vec![BOS.to_string()], -99.0, backoff));
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            grams.push(rows);
        }
        arpa::write(&grams)
    }

    /// Step 2: adjusted counts per order (index n-1), from the highest order down.
    fn adjusted_counts(&self) -> Vec<BTreeMap<Gram, u64>> {
        let bos = self.ids[BOS];
        let mut adjusted: Vec<BTreeMap<Gram, u64>> = vec![BTreeMap::new(); self.order];
        adjusted[self.order - 1] = self.raw[self.order - 1]
            .iter()
            .map(|(g, &c)| (g.clone(), c))
            .collect();
        for n in (0..self.order - 1).rev() {
            let mut table: BTreeMap<Gram, u64> = BTreeMap::new();
            for gram in adjusted[n + 1].keys() {
                if gram[1] != bos {
                    *table.entry(gram[1..].to_vec()).or_default() += 1;
                }
            }
            for (gram, &count) in &self.raw[n] {
                if gram[0] == bos {
                    table.insert(gram.clone(), count);
                }
            }
            adjusted[n] = table;
        }
        // <s> is never predicted; it only appears as a context.
        adjusted[0].remove(&vec![bos]);
        adjusted
    }
}

/// A model of the `text` of every unified document in `inputs` (files, directories, globs),
/// one sentence per document: the ARPA text and the number of documents read.
pub fn train_documents(
    inputs: &[String],
    order: usize,
    unit: Unit,
) -> Result<(String, usize), LmError> {
    let mut trainer = Trainer::new(order).map_err(LmError)?;
    let texts = crate::pack::tokenizer::read_texts(inputs)
        .map_err(|e| LmError(format!("reading the reference corpus: {e}")))?;
    for text in &texts {
        trainer.add_sentence(&unit.pieces(text));
    }
    Ok((trainer.to_arpa(), texts.len()))
}

/// Step 3: `[D1, D2, D3+]` for one order's adjusted counts.
fn discounts(table: &BTreeMap<Gram, u64>) -> [f64; 3] {
    let mut t = [0u64; 5];
    for &count in table.values() {
        if (1..=4).contains(&count) {
            t[count as usize] += 1;
        }
    }
    if t[1..=4].contains(&0) {
        return [0.5, 1.0, 1.5];
    }
    let t = t.map(|x| x as f64);
    let y = t[1] / (t[1] + 2.0 * t[2]);
    let d = [
        1.0 - 2.0 * y * t[2] / t[1],
        2.0 - 3.0 * y * t[3] / t[2],
        3.0 - 4.0 * y * t[4] / t[3],
    ];
    if d.iter()
        .enumerate()
        .all(|(k, &dk)| dk > 0.0 && dk < (k + 1) as f64)
    {
        d
    } else {
        [0.5, 1.0, 1.5]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::lm::arpa::NgramModel;

    fn corpus_model(order: usize, sentences: &[&str]) -> NgramModel {
        let mut trainer = Trainer::new(order).unwrap();
        for s in sentences {
            let pieces: Vec<&str> = s.split(' ').collect();
            trainer.add_sentence(&pieces);
        }
        NgramModel::parse(&trainer.to_arpa()).unwrap()
    }

    /// Sum of p(w | context) over every word the model can predict (`<s>` excluded).
    fn mass(model: &NgramModel, context: &[&str]) -> f64 {
        let base = model.score_prefix(context);
        model
            .vocab
            .keys()
            .filter(|w| w.as_str() != BOS)
            .map(|w| {
                let mut pieces: Vec<&str> = context.to_vec();
                pieces.push(w.as_str());
                10f64.powf(model.score_prefix(&pieces) - base)
            })
            .sum()
    }

    #[test]
    fn probabilities_sum_to_one_in_every_context() {
        let model = corpus_model(3, &["a b c", "a b d", "b c a", "c c a b", "d a b c"]);
        for context in [
            &[][..],
            &["a"][..],
            &["a", "b"][..],
            &["c", "c"][..],
            &["z"][..],
        ] {
            let total = mass(&model, context);
            assert!(
                (total - 1.0).abs() < 1e-4,
                "context {context:?}: mass {total}"
            );
        }
    }
}

#[cfg(test)]
mod known_answer {
    use super::*;

    #[test]
    fn unigram_model_matches_hand_computation() {
        // Order 1, sentences "a a" and "b": counts a=2, b=1, </s>=2; t2 = 2 (a, </s>), t1 = 1,
        // t3 = t4 = 0 -> fallback discounts 0.5/1/1.5. Total 5; gamma = (0.5*1 + 1*2)/5 = 0.5;
        // |V| = 4 (</s>, <unk>, a, b). p(a) = (2-1)/5 + 0.5/4 = 0.325.
        let mut trainer = Trainer::new(1).unwrap();
        trainer.add_sentence(&["a", "a"]);
        trainer.add_sentence(&["b"]);
        let arpa = trainer.to_arpa();
        let line = arpa.lines().find(|l| l.ends_with("\ta")).unwrap();
        let prob: f64 = line.split('\t').next().unwrap().parse().unwrap();
        assert!((prob - 0.325f64.log10()).abs() < 1e-6, "{arpa}");
        let unk = arpa.lines().find(|l| l.contains("<unk>")).unwrap();
        let prob: f64 = unk.split('\t').next().unwrap().parse().unwrap();
        assert!((prob - 0.125f64.log10()).abs() < 1e-6, "{arpa}");
    }
}
