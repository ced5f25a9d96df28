//! Corpus metrics on 5,000 generated E2E-like segments with 2 references each (issue 5's
//! benchmark shape): BLEU (13a tokenization included), CIDEr-D, ROUGE-L, TER, and METEOR when
//! the WordNet is fetched (`cargo xtask fetch --only wordnet`; the first run opens the database
//! outside the timing).
//!
//! Run: `cargo bench -p peftlab-eval --bench metrics`, then
//! `python3 scripts/bench_metrics.py target/metrics-bench-corpus.json` for the references on the
//! same corpus (it writes the corpus there on each run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use peftlab_eval::bleu::corpus_bleu;
use peftlab_eval::generation::{cider_d, rouge_l};
use peftlab_eval::meteor::{MeteorParams, meteor};
use peftlab_eval::ter::corpus_ter;
use peftlab_eval::wordnet::WordNet;

const WORDS: &[&str] = &[
    "the",
    "a",
    "restaurant",
    "near",
    "river",
    "is",
    "family-friendly",
    "cheap",
    "food",
    "Alimentum",
    "has",
    "rating",
    "of",
    "5",
    "out",
    "city",
    "centre",
    ",",
    ".",
    "serves",
    "Italian",
    "coffee",
    "shop",
    "named",
    "The",
    "Eagle",
    "price",
    "range",
    "£20-25",
    "high",
    "customer",
    "located",
];

/// Deterministic pseudo-random segments (xorshift), 8–24 words.
fn corpus(n: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let sentence = |next: &mut dyn FnMut() -> u64| {
        let len = 8 + (next() % 17) as usize;
        (0..len)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let refs: Vec<Vec<String>> = (0..n)
        .map(|_| vec![sentence(&mut next), sentence(&mut next)])
        .collect();
    let hyps: Vec<String> = refs
        .iter()
        .map(|r| {
            let w: Vec<&str> = r[0].split(' ').collect();
            let k = (next() % w.len() as u64) as usize;
            [&w[k..], &w[..k]].concat().join(" ")
        })
        .collect();
    (hyps, refs)
}

fn metrics(c: &mut Criterion) {
    let (hyps, refs) = corpus(5000);
    // the same corpus for `scripts/bench_metrics.py` (the Python references, side by side)
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/metrics-bench-corpus.json");
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let json = serde_json::json!({"hyps": hyps, "refs": refs});
    let _ = std::fs::write(&out, json.to_string());
    let mut g = c.benchmark_group("metrics_5k");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("bleu", |b| {
        b.iter(|| black_box(corpus_bleu(&hyps, &refs, false).unwrap()))
    });
    g.bench_function("cider_d", |b| {
        b.iter(|| black_box(cider_d(&hyps, &refs).unwrap()))
    });
    g.bench_function("rouge_l", |b| {
        b.iter(|| black_box(rouge_l(&hyps, &refs).unwrap()))
    });
    g.bench_function("ter", |b| {
        b.iter(|| black_box(corpus_ter(&hyps, &refs).unwrap()))
    });
    let wn_dir = peftlab_data::fetch::cache_dir().join("data/wordnet-3.0");
    match WordNet::open(&wn_dir) {
        Ok(wn) => {
            g.bench_function("meteor", |b| {
                b.iter(|| black_box(meteor(&hyps, &refs, &wn, MeteorParams::default()).unwrap()))
            });
        }
        Err(e) => eprintln!("meteor not benchmarked: {e}"),
    }
    g.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
