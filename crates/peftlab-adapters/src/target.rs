//! Which linear layers get an adapter: PEFT's `target_modules` / `exclude_modules` semantics.
//!
//! - A **list** matches a module path when the path equals an entry or ends with `"." + entry`
//!   (`"query"` matches `encoder.layer.0.attention.self.query`).
//! - A **string** is a regular expression that must match the *whole* path
//!   (`re.fullmatch` in PEFT).
//!
//! Unlike PEFT, which only fails when nothing at all matches, every list entry that matches no
//! module is an error naming that entry: a typo in one of six targets would otherwise silently
//! train five.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::AdapterError;

/// A set of module paths, PEFT style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModuleSelector {
    /// Exact names or dotted suffixes.
    List(Vec<String>),
    /// A regular expression matched against the whole path.
    Regex(String),
}

impl ModuleSelector {
    /// A list selector from string slices.
    pub fn list<S: AsRef<str>>(names: &[S]) -> Self {
        Self::List(names.iter().map(|s| s.as_ref().to_string()).collect())
    }
}

/// A compiled [`ModuleSelector`].
#[derive(Debug, Clone)]
enum Compiled {
    List(Vec<String>),
    Regex(Regex),
}

impl Compiled {
    fn new(sel: &ModuleSelector, what: &str) -> Result<Self, AdapterError> {
        Ok(match sel {
            ModuleSelector::List(v) => Compiled::List(v.clone()),
            ModuleSelector::Regex(r) => {
                Compiled::Regex(Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                    AdapterError::Config {
                        key: what.to_string(),
                        reason: format!("invalid regular expression {r:?}: {e}"),
                    }
                })?)
            }
        })
    }

    /// Index of the first list entry matching `path` (`Some(0)` for a regex match).
    fn matching_entry(&self, path: &str) -> Option<usize> {
        match self {
            Compiled::List(v) => v.iter().position(|t| suffix_match(path, t)),
            Compiled::Regex(r) => r.is_match(path).then_some(0),
        }
    }
}

/// `path == entry` or `path` ends with `"." + entry`.
pub fn suffix_match(path: &str, entry: &str) -> bool {
    path == entry
        || (path.len() > entry.len()
            && path.ends_with(entry)
            && path.as_bytes()[path.len() - entry.len() - 1] == b'.')
}

/// Targets plus exclusions, resolved against a model's module paths.
#[derive(Debug, Clone)]
pub struct Targeting {
    targets: Compiled,
    exclude: Option<Compiled>,
    target_sel: ModuleSelector,
}

impl Targeting {
    /// Compile `targets` and optional `exclude`; a bad regex is an error naming the key.
    pub fn new(
        targets: &ModuleSelector,
        exclude: Option<&ModuleSelector>,
    ) -> Result<Self, AdapterError> {
        Ok(Self {
            targets: Compiled::new(targets, "target_modules")?,
            exclude: exclude
                .map(|e| Compiled::new(e, "exclude_modules"))
                .transpose()?,
            target_sel: targets.clone(),
        })
    }

    /// Whether a module at `path` gets an adapter.
    pub fn matches(&self, path: &str) -> bool {
        let excluded = self
            .exclude
            .as_ref()
            .is_some_and(|e| e.matching_entry(path).is_some());
        self.targets.matching_entry(path).is_some() && !excluded
    }

    /// The matched paths among `paths` (in order). Errors if a list entry matches no path, or
    /// a regex matches none.
    pub fn select<'a>(&self, paths: &[&'a str]) -> Result<Vec<&'a str>, AdapterError> {
        let selected: Vec<&str> = paths.iter().copied().filter(|p| self.matches(p)).collect();
        match &self.target_sel {
            ModuleSelector::List(entries) => {
                for e in entries {
                    if !paths.iter().any(|p| suffix_match(p, e)) {
                        return Err(AdapterError::TargetNotFound {
                            entry: e.clone(),
                            available: paths.iter().map(|s| s.to_string()).collect(),
                        });
                    }
                }
            }
            ModuleSelector::Regex(r) => {
                if selected.is_empty() {
                    return Err(AdapterError::TargetNotFound {
                        entry: r.clone(),
                        available: paths.iter().map(|s| s.to_string()).collect(),
                    });
                }
            }
        }
        Ok(selected)
    }
}
