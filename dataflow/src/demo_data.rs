//! `steel demo-data`: a synthetic corpus with known answers, for tests and the demo.
//!
//! Chinese-like and English-like documents, some planted as exact duplicates or as
//! near-duplicates (a few character edits) of earlier documents, some made junk (HTML, e-mail
//! addresses, links, IP addresses, repeated lines, very short, very long). `truth.jsonl` says
//! which is which, so later stages (cleaning, dedup) can be scored against it. The same seed
//! gives the same bytes on every machine (the generator is xoshiro256++, a fixed algorithm).

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct DemoDataOptions {
    pub docs: usize,
    pub seed: u64,
    /// How many JSONL files the corpus is split into (contiguous runs of documents).
    pub files: usize,
    pub output: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    Zh,
    En,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Original,
    /// The same text as `dup_of`.
    ExactDup,
    /// `dup_of`'s text with `edits` single-character edits.
    NearDup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Junk {
    Html,
    Email,
    Link,
    Ip,
    RepeatedLines,
    TooShort,
    TooLong,
}

/// One line of `truth.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    pub id: String,
    /// The corpus file (relative to the output directory) and 0-based row of the document.
    pub file: String,
    pub row: u64,
    pub lang: Lang,
    pub kind: DocKind,
    pub dup_of: Option<String>,
    pub edits: u32,
    pub junk: Vec<Junk>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DemoDataSummary {
    pub docs: usize,
    pub files: Vec<String>,
    pub truth: String,
    pub originals: usize,
    pub exact_dups: usize,
    pub near_dups: usize,
    pub junk: usize,
}

/// The corpus files live here, below the output directory.
pub const CORPUS_DIR: &str = "corpus";
pub const TRUTH_FILE: &str = "truth.jsonl";

/// Near-duplicates get between 1 and this many character edits.
pub const MAX_EDITS: u32 = 3;

/// Write the corpus and its truth file under `options.output`.
pub fn generate(options: &DemoDataOptions) -> std::io::Result<DemoDataSummary> {
    let corpus_dir = options.output.join(CORPUS_DIR);
    std::fs::create_dir_all(&corpus_dir)?;
    let files = options.files.max(1);
    let per_file = options.docs.div_ceil(files).max(1);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(options.seed);
    let mut truth_out = BufWriter::new(File::create(options.output.join(TRUTH_FILE))?);
    let mut file_names = Vec::new();
    let mut writer: Option<BufWriter<File>> = None;
    // Clean originals that later documents may duplicate: (id, language, text).
    let mut pool: Vec<(String, Lang, String)> = Vec::new();
    let mut summary = DemoDataSummary {
        docs: options.docs,
        files: Vec::new(),
        truth: options.output.join(TRUTH_FILE).display().to_string(),
        originals: 0,
        exact_dups: 0,
        near_dups: 0,
        junk: 0,
    };
    for index in 0..options.docs {
        if index % per_file == 0 {
            if let Some(mut w) = writer.take() {
                w.flush()?;
            }
            let name = format!("{CORPUS_DIR}/part-{:05}.jsonl", index / per_file);
            writer = Some(BufWriter::new(File::create(options.output.join(&name))?));
            file_names.push(name);
        }
        let id = format!("doc-{index:06}");
        let (text, truth) = make_doc(&mut rng, &id, &pool);
        match (truth.kind, truth.junk.is_empty()) {
            (DocKind::Original, true) => {
                summary.originals += 1;
                pool.push((id.clone(), truth.lang, text.clone()));
            }
            (DocKind::Original, false) => summary.junk += 1,
            (DocKind::ExactDup, _) => summary.exact_dups += 1,
            (DocKind::NearDup, _) => summary.near_dups += 1,
        }
        let file = file_names.last().expect("a file is open").clone();
        let truth = Truth {
            file,
            row: (index % per_file) as u64,
            ..truth
        };
        let record = serde_json::json!({ "id": id, "text": text });
        let out = writer.as_mut().expect("a file is open");
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")?;
        serde_json::to_writer(&mut truth_out, &truth)?;
        truth_out.write_all(b"\n")?;
    }
    if let Some(mut w) = writer {
        w.flush()?;
    }
    truth_out.flush()?;
    summary.files = file_names;
    Ok(summary)
}

/// Read `truth.jsonl` back.
pub fn read_truth(dir: &Path) -> std::io::Result<Vec<Truth>> {
    let text = std::fs::read_to_string(dir.join(TRUTH_FILE))?;
    text.lines()
        .map(|line| serde_json::from_str(line).map_err(std::io::Error::other))
        .collect()
}

fn make_doc(
    rng: &mut Xoshiro256PlusPlus,
    id: &str,
    pool: &[(String, Lang, String)],
) -> (String, Truth) {
    let truth = |lang, kind, dup_of: Option<&String>, edits, junk| Truth {
        id: id.to_string(),
        file: String::new(),
        row: 0,
        lang,
        kind,
        dup_of: dup_of.cloned(),
        edits,
        junk,
    };
    let roll: f64 = rng.random();
    let long_enough: Vec<&(String, Lang, String)> = pool
        .iter()
        .filter(|(_, _, t)| t.chars().count() >= 200)
        .collect();
    if pool.len() >= 10 && roll < 0.10 {
        let (source, lang, text) = &pool[rng.random_range(0..pool.len())];
        return (
            text.clone(),
            truth(*lang, DocKind::ExactDup, Some(source), 0, vec![]),
        );
    }
    if long_enough.len() >= 10 && roll < 0.20 {
        let (source, lang, text) = long_enough[rng.random_range(0..long_enough.len())];
        let edits = rng.random_range(1..=MAX_EDITS);
        let edited = edit(rng, text, *lang, edits);
        return (
            edited,
            truth(*lang, DocKind::NearDup, Some(source), edits, vec![]),
        );
    }
    let lang = if rng.random_bool(0.6) {
        Lang::Zh
    } else {
        Lang::En
    };
    if roll < 0.35 {
        let (text, junk) = junk_doc(rng, lang);
        return (text, truth(lang, DocKind::Original, None, 0, junk));
    }
    (
        document(rng, lang, 1..6),
        truth(lang, DocKind::Original, None, 0, vec![]),
    )
}

const ZH_CHARS: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动\
同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机\
当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么\
利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品\
式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任\
取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更\
单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许\
步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响";

const EN_WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "that",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "their",
    "river",
    "city",
    "school",
    "music",
    "history",
    "market",
    "water",
    "system",
    "people",
    "government",
    "energy",
    "family",
    "village",
    "mountain",
    "language",
    "science",
    "library",
    "garden",
    "winter",
    "summer",
    "island",
    "railway",
    "bridge",
    "farmers",
    "students",
    "company",
    "festival",
    "museum",
    "season",
    "report",
    "council",
    "engine",
    "forest",
    "harbor",
    "kingdom",
    "letter",
    "method",
    "network",
    "orchard",
    "palace",
    "quality",
    "record",
    "signal",
    "theory",
    "valley",
    "weather",
    "yellow",
    "ancient",
    "modern",
    "quickly",
    "slowly",
    "carefully",
    "built",
    "opened",
    "studied",
    "described",
    "followed",
    "produced",
    "returned",
    "moved",
    "grew",
    "became",
    "remained",
    "joined",
    "wrote",
    "found",
    "known",
    "called",
    "named",
    "large",
    "small",
    "early",
    "later",
    "local",
    "national",
    "public",
    "several",
    "many",
    "new",
    "old",
    "first",
    "second",
    "main",
    "northern",
    "southern",
    "eastern",
    "western",
    "central",
    "long",
    "short",
    "high",
    "low",
    "during",
    "after",
    "before",
    "between",
    "under",
    "over",
    "through",
    "around",
    "near",
    "about",
    "which",
    "where",
    "when",
    "while",
];

fn zh_char(rng: &mut Xoshiro256PlusPlus) -> char {
    let count = ZH_CHARS.chars().count();
    ZH_CHARS
        .chars()
        .nth(rng.random_range(0..count))
        .expect("index is in range")
}

fn sentence(rng: &mut Xoshiro256PlusPlus, lang: Lang) -> String {
    match lang {
        Lang::Zh => {
            let len = rng.random_range(8..30);
            let mut s = String::new();
            for i in 0..len {
                s.push(zh_char(rng));
                if i > 3 && i + 3 < len && rng.random_bool(0.1) {
                    s.push('，');
                }
            }
            s.push('。');
            s
        }
        Lang::En => {
            let len = rng.random_range(6..18);
            let words: Vec<&str> = (0..len)
                .map(|_| EN_WORDS[rng.random_range(0..EN_WORDS.len())])
                .collect();
            let mut s = words.join(" ");
            if let Some(first) = s.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            s.push('.');
            s
        }
    }
}

fn paragraph(rng: &mut Xoshiro256PlusPlus, lang: Lang) -> String {
    let count = rng.random_range(2..7);
    let sentences: Vec<String> = (0..count).map(|_| sentence(rng, lang)).collect();
    sentences.join(if lang == Lang::Zh { "" } else { " " })
}

fn document(
    rng: &mut Xoshiro256PlusPlus,
    lang: Lang,
    paragraphs: std::ops::Range<usize>,
) -> String {
    let count = rng.random_range(paragraphs);
    let parts: Vec<String> = (0..count).map(|_| paragraph(rng, lang)).collect();
    parts.join("\n")
}

/// `text` with `edits` single-character substitutions, insertions or deletions.
fn edit(rng: &mut Xoshiro256PlusPlus, text: &str, lang: Lang, edits: u32) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..edits {
        let at = rng.random_range(0..chars.len());
        let new_char = match lang {
            Lang::Zh => zh_char(rng),
            Lang::En => char::from(b'a' + rng.random_range(0..26u8)),
        };
        match rng.random_range(0..3) {
            0 => chars[at] = new_char,
            1 => chars.insert(at, new_char),
            _ => {
                chars.remove(at);
            }
        }
    }
    chars.into_iter().collect()
}

fn junk_doc(rng: &mut Xoshiro256PlusPlus, lang: Lang) -> (String, Vec<Junk>) {
    match rng.random_range(0..10) {
        0 => {
            let short = match lang {
                Lang::Zh => sentence(rng, lang).chars().take(4).collect(),
                Lang::En => EN_WORDS[rng.random_range(0..EN_WORDS.len())].to_string(),
            };
            return (short, vec![Junk::TooShort]);
        }
        1 => return (document(rng, lang, 150..200), vec![Junk::TooLong]),
        _ => {}
    }
    let mut text = document(rng, lang, 2..5);
    let kinds = [
        Junk::Html,
        Junk::Email,
        Junk::Link,
        Junk::Ip,
        Junk::RepeatedLines,
    ];
    let first = rng.random_range(0..kinds.len());
    let mut chosen = vec![kinds[first]];
    if rng.random_bool(0.3) {
        let second = rng.random_range(0..kinds.len());
        if second != first {
            chosen.push(kinds[second]);
        }
    }
    chosen.sort_by_key(|k| *k as u8);
    for kind in &chosen {
        text = add_junk(rng, text, *kind, lang);
    }
    (text, chosen)
}

fn add_junk(rng: &mut Xoshiro256PlusPlus, text: String, kind: Junk, lang: Lang) -> String {
    let n = rng.random_range(1..255);
    match kind {
        Junk::Html => {
            let body: Vec<String> = text.lines().map(|p| format!("<p>{p}</p>")).collect();
            format!(
                "<html><body><div class=\"nav\"><a href=\"/index.html\">home</a></div>\n{}\n</body></html>",
                body.join("\n")
            )
        }
        Junk::Email => {
            let label = if lang == Lang::Zh {
                "联系邮箱："
            } else {
                "Contact: "
            };
            format!("{text}\n{label}user{n}@example.com")
        }
        Junk::Link => {
            let label = if lang == Lang::Zh { "详情见" } else { "See" };
            format!("{text}\n{label} https://www.example.com/articles/{n}?from=feed")
        }
        Junk::Ip => format!("{text}\nserver 192.168.{}.{n} / 2001:db8::{n:x}", n / 2),
        Junk::RepeatedLines => {
            let line = sentence(rng, lang);
            let times = rng.random_range(5..10);
            let repeated: Vec<&str> = std::iter::repeat_n(line.as_str(), times).collect();
            format!("{text}\n{}", repeated.join("\n"))
        }
        Junk::TooShort | Junk::TooLong => text,
    }
}
