//! A small YAML tree for recipes, built from `yaml-rust2`'s event parser.
//!
//! We do not use `yaml-rust2`'s own tree because it rejects a key given twice, and
//! data-juicer's recipes (Steel's code recipe among them) repeat keys: PyYAML lets the last one
//! win, and so do we, remembering the repeat so the run can say so.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML value. Maps keep every entry in file order, repeats included.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// A short description for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

/// A value as a recipe would write it (YAML flow style), for error messages: `"twenty"`,
/// `20`, `0.5`, `true`, `null`, `[2, 3]`, `{a: 1}`.
impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Null => f.write_str("null"),
            Node::Bool(b) => write!(f, "{b}"),
            Node::Int(i) => write!(f, "{i}"),
            Node::Float(x) if x.is_nan() => f.write_str(".nan"),
            Node::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { ".inf" } else { "-.inf" })
            }
            // `{:?}` of an f64 is its shortest round-trip form with a decimal point (`1.0`).
            Node::Float(x) => write!(f, "{x:?}"),
            Node::Str(s) => write!(f, "{}", serde_json::Value::from(s.as_str())),
            Node::Seq(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Node::Map(entries) => {
                f.write_str("{")?;
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Parse the first document of `source`.
pub fn parse(source: &str) -> Result<Node, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(source)
        .load(&mut builder, false)
        .map_err(|e| e.to_string())?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or(Node::Null))
}

/// The value of a plain (unquoted) scalar, resolved as PyYAML does for the common cases.
fn resolve_plain(text: &str) -> Node {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Node::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Node::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Node::Bool(false);
        }
        ".inf" | "+.inf" | ".Inf" => return Node::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => return Node::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let digits = text.replace('_', "");
    if let Ok(int) = digits.parse::<i64>() {
        return Node::Int(int);
    }
    let looks_numeric = digits
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if looks_numeric && let Ok(float) = digits.parse::<f64>() {
        return Node::Float(float);
    }
    Node::Str(text.to_string())
}

/// Containers under construction, innermost last; a map holds its pending key.
enum Open {
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>, Option<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    error: Option<String>,
}

impl Builder {
    fn add(&mut self, node: Node, mark: Marker) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq(items)) => items.push(node),
            Some(Open::Map(entries, key)) => match key.take() {
                Some(key) => entries.push((key, node)),
                None => match node {
                    Node::Str(text) => *key = Some(text),
                    Node::Int(i) => *key = Some(i.to_string()),
                    Node::Bool(b) => *key = Some(b.to_string()),
                    other => {
                        self.error.get_or_insert(format!(
                            "line {}: a mapping key must be a plain value, found {}",
                            mark.line(),
                            other.kind()
                        ));
                        *key = Some(String::new());
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, style, _, _) => {
                let node = if style == TScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    Node::Str(text)
                };
                self.add(node, mark);
            }
            Event::SequenceStart(..) => self.stack.push(Open::Seq(Vec::new())),
            Event::MappingStart(..) => self.stack.push(Open::Map(Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Seq(items)) => Node::Seq(items),
                    Some(Open::Map(entries, _)) => Node::Map(entries),
                    None => return,
                };
                self.add(node, mark);
            }
            Event::Alias(_) => {
                self.error.get_or_insert(format!(
                    "line {}: YAML aliases are not supported in recipes",
                    mark.line()
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recipe_shapes_and_keeps_repeated_keys() {
        let node = parse(
            "np: 4\ntext_keys: 'a'\ntext_keys: text\nprocess:\n  - clean_email_mapper:\n  - x_filter:\n      min_ratio: 0.25\n      flag: true\n      name: '1'\n",
        )
        .unwrap();
        let Node::Map(entries) = node else {
            panic!("not a map")
        };
        assert_eq!(entries[0], ("np".into(), Node::Int(4)));
        assert_eq!(entries[1], ("text_keys".into(), Node::Str("a".into())));
        assert_eq!(entries[2], ("text_keys".into(), Node::Str("text".into())));
        let Node::Seq(ops) = &entries[3].1 else {
            panic!("process is not a list")
        };
        assert_eq!(
            ops[0],
            Node::Map(vec![("clean_email_mapper".into(), Node::Null)])
        );
        assert_eq!(
            ops[1],
            Node::Map(vec![(
                "x_filter".into(),
                Node::Map(vec![
                    ("min_ratio".into(), Node::Float(0.25)),
                    ("flag".into(), Node::Bool(true)),
                    ("name".into(), Node::Str("1".into())),
                ])
            )])
        );
    }

    #[test]
    fn reports_syntax_errors() {
        assert!(parse("process: [a, b").is_err());
    }
}
