//! An operator's parameters from the recipe, read by name with data-juicer's defaults.
//!
//! Each read records the name as known; `finish` then rejects any parameter the operator never
//! asked for, naming it and listing the ones it takes.

use crate::clean::yaml::Node;

/// Keyword arguments every data-juicer operator accepts that do not change what it computes
/// here (process counts, batch sizes, accelerators, resource hints). Accepted and ignored.
const IGNORED_BASE_PARAMS: &[&str] = &[
    "num_proc",
    "batch_size",
    "accelerator",
    "cpu_required",
    "mem_required",
    "gpu_required",
    "turbo",
    "skip_op_error",
    "work_dir",
    "audit_usage",
    "index_key",
    "image_key",
    "audio_key",
    "video_key",
    "query_key",
    "response_key",
    "history_key",
    "stats_export_path",
];

#[derive(Debug)]
pub struct Params {
    op: String,
    entries: Vec<(String, Node)>,
    known: Vec<&'static str>,
}

pub type ParamResult<T> = Result<T, String>;

impl Params {
    pub fn new(op: &str, entries: Vec<(String, Node)>) -> Self {
        Params {
            op: op.to_string(),
            entries,
            known: Vec::new(),
        }
    }

    /// Take the last value given for `name` (null counts as not given).
    fn take(&mut self, name: &'static str) -> Option<Node> {
        self.known.push(name);
        let mut found = None;
        self.entries.retain(|(key, value)| {
            if key == name {
                found = Some(value.clone());
                false
            } else {
                true
            }
        });
        found.filter(|node| *node != Node::Null)
    }

    fn wrong(&self, name: &str, expected: &str, got: &Node) -> String {
        format!(
            "{}: parameter `{name}` must be {expected}, found {} {got}",
            self.op,
            got.kind()
        )
    }

    pub fn bool(&mut self, name: &'static str, default: bool) -> ParamResult<bool> {
        match self.take(name) {
            None => Ok(default),
            Some(Node::Bool(b)) => Ok(b),
            Some(other) => Err(self.wrong(name, "true or false", &other)),
        }
    }

    pub fn opt_f64(&mut self, name: &'static str) -> ParamResult<Option<f64>> {
        match self.take(name) {
            None => Ok(None),
            Some(Node::Int(i)) => Ok(Some(i as f64)),
            Some(Node::Float(f)) => Ok(Some(f)),
            Some(other) => Err(self.wrong(name, "a number", &other)),
        }
    }

    pub fn f64(&mut self, name: &'static str, default: f64) -> ParamResult<f64> {
        Ok(self.opt_f64(name)?.unwrap_or(default))
    }

    pub fn opt_usize(&mut self, name: &'static str) -> ParamResult<Option<usize>> {
        match self.take(name) {
            None => Ok(None),
            Some(Node::Int(i)) if i >= 0 => Ok(Some(i as usize)),
            Some(other) => Err(self.wrong(name, "a non-negative integer", &other)),
        }
    }

    pub fn usize(&mut self, name: &'static str, default: usize) -> ParamResult<usize> {
        Ok(self.opt_usize(name)?.unwrap_or(default))
    }

    /// A positive integer (data-juicer's `PositiveInt`).
    pub fn positive(&mut self, name: &'static str, default: usize) -> ParamResult<usize> {
        let value = self.usize(name, default)?;
        if value == 0 {
            return Err(format!("{}: parameter `{name}` must be positive", self.op));
        }
        Ok(value)
    }

    pub fn opt_string(&mut self, name: &'static str) -> ParamResult<Option<String>> {
        match self.take(name) {
            None => Ok(None),
            Some(Node::Str(s)) => Ok(Some(s)),
            Some(Node::Int(i)) => Ok(Some(i.to_string())),
            Some(other) => Err(self.wrong(name, "a string", &other)),
        }
    }

    pub fn string(&mut self, name: &'static str, default: &str) -> ParamResult<String> {
        Ok(self
            .opt_string(name)?
            .unwrap_or_else(|| default.to_string()))
    }

    /// A string, or a list of strings (kept as given).
    pub fn strings(&mut self, name: &'static str) -> ParamResult<Option<Vec<String>>> {
        match self.take(name) {
            None => Ok(None),
            Some(Node::Str(s)) => Ok(Some(vec![s])),
            Some(Node::Seq(items)) => items
                .into_iter()
                .map(|item| match item {
                    Node::Str(s) => Ok(s),
                    other => Err(self.wrong(name, "a list of strings", &other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.wrong(name, "a string or a list of strings", &other)),
        }
    }

    pub fn usize_list(&mut self, name: &'static str, default: &[usize]) -> ParamResult<Vec<usize>> {
        match self.take(name) {
            None => Ok(default.to_vec()),
            Some(Node::Int(i)) if i > 0 => Ok(vec![i as usize]),
            Some(Node::Seq(items)) => items
                .into_iter()
                .map(|item| match item {
                    Node::Int(i) if i > 0 => Ok(i as usize),
                    other => Err(self.wrong(name, "a list of positive integers", &other)),
                })
                .collect(),
            Some(other) => Err(self.wrong(name, "a list of positive integers", &other)),
        }
    }

    /// One of `choices`.
    pub fn choice(
        &mut self,
        name: &'static str,
        default: &str,
        choices: &[&str],
    ) -> ParamResult<String> {
        let value = self.string(name, default)?;
        if !choices.contains(&value.as_str()) {
            return Err(format!(
                "{}: parameter `{name}` is `{value}`; expected one of: {}",
                self.op,
                choices.join(", ")
            ));
        }
        Ok(value)
    }

    /// Fail on any parameter the operator did not read.
    pub fn finish(mut self) -> ParamResult<()> {
        self.entries
            .retain(|(key, _)| !IGNORED_BASE_PARAMS.contains(&key.as_str()));
        if let Some((unknown, _)) = self.entries.first() {
            let mut known = self.known.clone();
            known.sort_unstable();
            known.dedup();
            return Err(format!(
                "{}: unknown parameter `{unknown}`; it takes: {}",
                self.op,
                known.join(", ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_defaults_values_and_rejects_unknown_names() {
        let mut params = Params::new(
            "x_filter",
            vec![
                ("min_ratio".into(), Node::Int(1)),
                ("bogus".into(), Node::Bool(true)),
                ("num_proc".into(), Node::Int(4)),
            ],
        );
        assert_eq!(params.f64("min_ratio", 0.5).unwrap(), 1.0);
        assert_eq!(params.f64("max_ratio", 0.5).unwrap(), 0.5);
        let error = params.finish().unwrap_err();
        assert_eq!(
            error,
            "x_filter: unknown parameter `bogus`; it takes: max_ratio, min_ratio"
        );
    }

    #[test]
    fn wrong_values_are_shown_as_the_recipe_writes_them() {
        let recipe = crate::clean::recipe::Recipe::parse(
            "process:\n  - words_num_filter:\n      min_num: twenty\n  \
             - text_length_filter:\n      max_len: [1, 2.0, \"x\", {a: true}]\n  \
             - character_repetition_filter:\n      rep_len: 2.5\n",
        )
        .unwrap();
        let resources = crate::clean::filters::Resources::default();
        let error = recipe.build_ops(&resources).err().unwrap();
        assert_eq!(
            error,
            "process entry 1 (`words_num_filter`): words_num_filter: parameter `min_num` must \
             be a number, found a string \"twenty\""
        );
        let mut params = Params::new("text_length_filter", recipe.ops[1].params.clone());
        assert_eq!(
            params.opt_f64("max_len").unwrap_err(),
            "text_length_filter: parameter `max_len` must be a number, found a list \
             [1, 2.0, \"x\", {a: true}]"
        );
        let mut params = Params::new("character_repetition_filter", recipe.ops[2].params.clone());
        assert_eq!(
            params.positive("rep_len", 10).unwrap_err(),
            "character_repetition_filter: parameter `rep_len` must be a non-negative integer, \
             found a number 2.5"
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let mut params = Params::new("op", vec![("n".into(), Node::Str("x".into()))]);
        let error = params.usize("n", 1).unwrap_err();
        assert!(
            error.contains("`n` must be a non-negative integer"),
            "{error}"
        );
    }
}
