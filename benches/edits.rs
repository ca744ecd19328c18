//! Seeded random edits of real texts, for corpora with a known mix of copies, near copies
//! and new documents.

/// A seeded xorshift generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `text` with every `every`-th non-space character (at most `limit` of them) replaced by a
/// random CJK character.
pub fn edit(text: &str, rng: &mut Rng, every: usize, limit: usize) -> String {
    let mut edits = 0;
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % every == every - 1 && edits < limit && !c.is_whitespace() {
                edits += 1;
                char::from_u32(0x4e00 + (rng.next_u64() % 0x5000) as u32).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}
