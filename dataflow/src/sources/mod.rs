//! Source formats: one module per format, each turning a source record into document text.
//!
//! Readers (see [`crate::input`]) yield records as JSON objects, whatever the container
//! (JSONL, JSON array, parquet row); a format's `render` turns one object into the text of one
//! document or says why it cannot.

pub mod baidu_qa;
pub mod baike;
pub mod belle;
pub mod belle_multiturn;
pub mod chat;
pub mod fields;
pub mod firefly;
pub mod moss;
pub mod normalize;
pub mod starcoder;
pub mod text;
pub mod wanjuan;
pub mod wiki;
pub mod zhihu;

use crate::reject::RecordError;
use fields::Record;
use std::fmt;
use std::str::FromStr;

/// A source format of Steel-LLM's step 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Text,
    Wanjuan,
    Wiki,
    Baike,
    BaiduQa,
    Belle,
    BelleMultiturn,
    Moss,
    Firefly,
    Zhihu,
    Starcoder,
}

impl Format {
    pub const ALL: [Format; 11] = [
        Format::Text,
        Format::Wanjuan,
        Format::Wiki,
        Format::Baike,
        Format::BaiduQa,
        Format::Belle,
        Format::BelleMultiturn,
        Format::Moss,
        Format::Firefly,
        Format::Zhihu,
        Format::Starcoder,
    ];

    /// The name used on the command line and in `meta.source`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Wanjuan => "wanjuan",
            Format::Wiki => "wiki",
            Format::Baike => "baike",
            Format::BaiduQa => "baidu-qa",
            Format::Belle => "belle",
            Format::BelleMultiturn => "belle-multiturn",
            Format::Moss => "moss",
            Format::Firefly => "firefly",
            Format::Zhihu => "zhihu",
            Format::Starcoder => "starcoder",
        }
    }

    /// The fields a record of this format is recognised by (for `auto`), in words.
    pub fn signature(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Wanjuan => "content, or q_main",
            Format::Wiki => "completion",
            Format::Baike => "title + summary + sections",
            Format::BaiduQa => "title + answer",
            Format::Belle => "instruction + output",
            Format::BelleMultiturn => "conversations",
            Format::Moss => "conversation",
            Format::Firefly => "input + target",
            Format::Zhihu => "INSTRUCTION + RESPONSE",
            Format::Starcoder => "content + max_stars_repo_name (or max_stars_repo_path)",
        }
    }

    /// Turn one record into document text. `text_field` is the field the `text` format reads.
    pub fn render(self, record: &Record, text_field: &str) -> Result<String, RecordError> {
        match self {
            Format::Text => text::render(record, text_field),
            Format::Wanjuan => wanjuan::render(record),
            Format::Wiki => wiki::render(record),
            Format::Baike => baike::render(record),
            Format::BaiduQa => baidu_qa::render(record),
            Format::Belle => belle::render(record),
            Format::BelleMultiturn => belle_multiturn::render(record),
            Format::Moss => moss::render(record),
            Format::Firefly => firefly::render(record),
            Format::Zhihu => zhihu::render(record),
            Format::Starcoder => starcoder::render(record),
        }
    }

    /// Decide a record's format from the fields it has; `None` when no format fits.
    ///
    /// The rules are checked in this order, most specific first (so a StarCoder row, which
    /// also has `content`, is not taken for WanJuan):
    ///
    /// ```
    /// use steel_dataflow::sources::Format;
    /// let has = |keys: &'static [&'static str]| move |k: &str| keys.contains(&k);
    /// assert_eq!(Format::detect(has(&["title", "summary", "sections"])), Some(Format::Baike));
    /// assert_eq!(Format::detect(has(&["content", "max_stars_repo_name"])), Some(Format::Starcoder));
    /// assert_eq!(Format::detect(has(&["content"])), Some(Format::Wanjuan));
    /// assert_eq!(Format::detect(has(&["url"])), None);
    /// ```
    pub fn detect(has: impl Fn(&str) -> bool) -> Option<Format> {
        let all = |keys: &[&str]| keys.iter().all(|k| has(k));
        let rules: [(bool, Format); 11] = [
            (has("conversations"), Format::BelleMultiturn),
            (has("conversation"), Format::Moss),
            (all(&["INSTRUCTION", "RESPONSE"]), Format::Zhihu),
            (
                has("content") && (has("max_stars_repo_name") || has("max_stars_repo_path")),
                Format::Starcoder,
            ),
            (has("q_main") || has("content"), Format::Wanjuan),
            (has("completion"), Format::Wiki),
            (all(&["title", "summary", "sections"]), Format::Baike),
            (all(&["instruction", "output"]), Format::Belle),
            (all(&["input", "target"]), Format::Firefly),
            (all(&["title", "answer"]), Format::BaiduQa),
            (has("text"), Format::Text),
        ];
        rules
            .iter()
            .find(|(matches, _)| *matches)
            .map(|(_, format)| *format)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `--format` argument: one format for every file, or `auto` to decide per file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatChoice {
    Auto,
    Fixed(Format),
}

impl FromStr for FormatChoice {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name == "auto" {
            return Ok(FormatChoice::Auto);
        }
        Format::ALL
            .iter()
            .find(|f| f.name() == name)
            .map(|f| FormatChoice::Fixed(*f))
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown format `{name}`; expected auto, {}",
                    names.join(", ")
                )
            })
    }
}
