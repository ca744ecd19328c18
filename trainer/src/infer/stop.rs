//! Stop strings: the generated text ends just before the first one (it is not part of the
//! output). While streaming, text that could be the start of a stop string is held back until
//! the next tokens show whether it is one, so nothing of a stop string is ever emitted.

#[derive(Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text received but not emitted: a possible start of a stop string.
    held: String,
}

/// What one piece of text gives.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    /// Text safe to emit now.
    pub text: String,
    /// A stop string was found: the generation ends, `text` is what came before it.
    pub stopped: bool,
}

impl StopStrings {
    /// Empty strings are ignored (they would stop everything at once).
    pub fn new(stops: &[String]) -> StopStrings {
        StopStrings {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Take the next piece of generated text.
    pub fn push(&mut self, piece: &str) -> Checked {
        self.held.push_str(piece);
        // The held text had no stop string, so any is new: the earliest one ends the text.
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Checked {
                text,
                stopped: true,
            };
        }
        // Hold the longest tail that some stop string starts with.
        let keep = self
            .stops
            .iter()
            .flat_map(|stop| {
                (1..stop.len())
                    .rev()
                    .filter(|&n| stop.is_char_boundary(n) && self.held.ends_with(&stop[..n]))
                    .take(1)
            })
            .max()
            .unwrap_or(0);
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Checked {
            text,
            stopped: false,
        }
    }

    /// The held text, at the end of a generation that stopped for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut checker = StopStrings::new(&stops);
        let mut emitted = Vec::new();
        for piece in pieces {
            let checked = checker.push(piece);
            emitted.push(checked.text);
            if checked.stopped {
                return (emitted, true, String::new());
            }
        }
        (emitted, false, checker.finish())
    }

    #[test]
    fn text_ends_before_a_stop_string_split_across_pieces() {
        // "\n\n用户" split as "好\n", "\n用", "户：": the held "\n" and "\n用" never come out.
        let (emitted, stopped, _) = run(&["\n\n用户"], &["你好\n", "\n用", "户：", "x"]);
        assert_eq!(emitted, ["你好", "", ""]);
        assert!(stopped);
        // The earliest of several stop strings wins.
        let (emitted, stopped, _) = run(&["END", "b"], &["aEN", "Db"]);
        assert_eq!((emitted.concat(), stopped), ("a".to_string(), true));
    }

    #[test]
    fn held_text_that_is_no_stop_string_comes_out() {
        let (emitted, stopped, rest) = run(&["STOP"], &["a ST", "Ob", "c ST"]);
        assert_eq!(emitted, ["a ", "STOb", "c "]);
        assert!(!stopped);
        assert_eq!(rest, "ST");
        // No stop strings: everything passes at once.
        let (emitted, _, rest) = run(&[""], &["中文"]);
        assert_eq!(
            (emitted.concat(), rest),
            ("中文".to_string(), String::new())
        );
    }
}
