#!/usr/bin/env python3
"""Reference values for crates/peftlab-eval/tests/eval/parity.rs, computed with the reference
implementations on seeded generated cases (ties, constant predictions, empty hypotheses,
multiple references, tricky tokenization).

    python3 scripts/metric_references.py crates/peftlab-eval/tests/fixtures/references.json [WORDNET_DIR]

WORDNET_DIR (default: the fetched `data/wordnet-3.0` in the peftlab cache — `cargo xtask fetch
--only wordnet`) is the WordNet 3.0 database nltk's METEOR reads.
Needs: scikit-learn, scipy, sacrebleu==2.5.1, nltk==3.10.4, pycocoevalcap==1.2 (tested: scikit-learn 1.9.1, scipy 1.17.1, numpy 2.4.6).
"""
import json
import random
import sys
import warnings

import numpy as np
import sacrebleu
import scipy
import sklearn
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

warnings.filterwarnings("ignore")
rng = random.Random(0)


def nan_to_none(x):
    x = float(x)
    return None if x != x else x


def classification_cases():
    cases = []
    for i in range(12):
        n = rng.choice([2, 5, 17, 100, 333])
        k = [2, 2, 3, 6][i % 4]
        label = [rng.randrange(k) for _ in range(n)]
        if i % 6 == 5:
            pred = [label[0]] * n  # constant prediction
        elif i % 6 == 4:
            pred = list(label)  # perfect
        else:
            pred = [l if rng.random() < 0.7 else rng.randrange(k) for l in label]
        c = {"pred": pred, "label": label,
             "accuracy": accuracy_score(label, pred),
             "f1_macro": f1_score(label, pred, average="macro"),
             "mcc": matthews_corrcoef(label, pred)}
        if k == 2:
            c["f1_binary"] = f1_score(label, pred, average="binary", pos_label=1)
        cases.append(c)
    return cases


def regression_cases():
    cases = []
    for i in range(10):
        n = rng.choice([2, 3, 10, 57, 400])
        if i % 5 == 0:  # heavy ties (STS-B style 0..5 in 0.2 steps)
            x = [round(rng.randrange(26) * 0.2, 1) for _ in range(n)]
        else:
            x = [rng.gauss(0, 1) for _ in range(n)]
        if i % 5 == 3:
            y = [1.5] * n  # constant
        else:
            y = [a * rng.uniform(0.5, 2) + rng.gauss(0, 0.5) for a in x]
            if i % 5 == 0:
                y = [round(v, 1) for v in y]
        cases.append({"x": x, "y": y,
                      "pearson": nan_to_none(pearsonr(x, y)[0]),
                      "spearman": nan_to_none(spearmanr(x, y)[0])})
    return cases


WORDS = ("the a cat dog sat on mat restaurant food is cheap near river Alimentum 's "
         "family-friendly 5 out of 3.50 £20-25 city centre , . ! ? ( ) \" ' - U.S. e.g. "
         "1,000 x-ray 2-3 & < > &amp; &quot; It In The").split(" ")


def sentence(lo=0, hi=25):
    n = rng.randint(lo, hi)
    toks = [rng.choice(WORDS) for _ in range(n)]
    out = ""
    for t in toks:  # sometimes glue punctuation to the previous word
        out += ("" if out and rng.random() < 0.3 else " ") + t
    return out.strip()


def bleu_cases():
    cases = []
    for i in range(10):
        n = rng.choice([1, 3, 20, 150])
        n_refs = [1, 2, 3][i % 3]
        refs = [[sentence(3, 25) for _ in range(n)] for _ in range(n_refs)]
        hyps = []
        for j in range(n):
            r = refs[0][j].split(" ")
            if i == 4 and j == 0:
                hyps.append("")  # empty hypothesis
            elif rng.random() < 0.5:  # perturbed reference
                h = [w for w in r if rng.random() > 0.2]
                h += [rng.choice(WORDS) for _ in range(rng.randint(0, 3))]
                hyps.append(" ".join(h))
            else:
                hyps.append(sentence(0, 20))
        lowercase = i == 7
        b = sacrebleu.corpus_bleu(hyps, refs, lowercase=lowercase)
        t = sacrebleu.metrics.TER().corpus_score(hyps, refs)
        cases.append({"ter": t.score, "ter_edits": t.num_edits, "ter_ref_length": t.ref_length,"hyps": hyps, "refs": [list(x) for x in zip(*refs)], "lowercase": lowercase,
                      "bleu": b.score, "counts": b.counts, "totals": b.totals,
                      "sys_len": b.sys_len, "ref_len": b.ref_len})
    return cases


def generation_cases():
    """ROUGE-L and CIDEr-D (pycocoevalcap 1.2), NIST (nltk corpus_nist, n = 5) on lowercased,
    space-tokenized E2E-like segments with 1-4 references each."""
    from nltk.translate.nist_score import corpus_nist
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    cases = []
    for i in range(8):
        n = rng.choice([2, 5, 30, 120])
        refs = [[" ".join(sentence(4, 25).lower().split()) for _ in range(rng.randint(1, 4))]
                for _ in range(n)]
        hyps = []
        for j in range(n):
            r = refs[j][0].split()
            if i == 3 and j == 1:
                hyps.append("")
            elif rng.random() < 0.6:
                h = [w for w in r if rng.random() > 0.25] + [rng.choice(WORDS).lower()
                                                            for _ in range(rng.randint(0, 3))]
                hyps.append(" ".join(h))
            else:
                hyps.append(" ".join(sentence(1, 20).lower().split()))
        gts = {k: refs[k] for k in range(n)}
        res = {k: [hyps[k]] for k in range(n)}
        rouge, rouge_per = Rouge().compute_score(gts, res)
        cider, cider_per = Cider().compute_score(gts, res)
        nist = corpus_nist([[r.split() for r in rs] for rs in refs], [h.split() for h in hyps], n=5)
        cases.append({"hyps": hyps, "refs": refs, "rouge_l": float(rouge),
                      "rouge_l_per": [float(x) for x in rouge_per], "cider_d": float(cider),
                      "cider_d_per": [float(x) for x in cider_per], "nist": float(nist)})
    return cases


def ter_cases():
    """TER on word-order-scrambled hypotheses (many shifts), long segments (beam and the
    1000-candidate budget), empty sides."""
    from sacrebleu.metrics import TER
    cases = []
    for i in range(6):
        n = rng.choice([1, 5, 40])
        refs = [[sentence(2, 60 if i == 5 else 25) for _ in range(n)] for _ in range([1, 2][i % 2])]
        hyps = []
        for j in range(n):
            w = refs[0][j].split(" ")
            if i == 2 and j == 0:
                hyps.append("")
                continue
            k = rng.randrange(len(w))
            w = w[k:] + w[:k]  # rotate: one long shift
            if rng.random() < 0.5:
                a, b = rng.randrange(len(w)), rng.randrange(len(w))
                w[a], w[b] = w[b], w[a]
            hyps.append(" ".join(w + [rng.choice(WORDS) for _ in range(rng.randint(0, 2))]))
        if i == 3:
            refs[0][0] = ""
        if i == 4:  # tiny vocabulary: many repeated words, shifts up to the end of the segment
            refs = [[" ".join(rng.choice("a b c".split()) for _ in range(rng.randint(3, 14)))
                     for _ in range(n)] for _ in range(len(refs))]
            hyps = []
            for j in range(n):
                w = refs[0][j].split(" ")
                k = rng.randrange(len(w))
                hyps.append(" ".join(w[k:] + w[:k] + [rng.choice("a b c".split())]))
        t = TER().corpus_score(hyps, refs)
        cases.append({"hyps": hyps, "refs": [list(x) for x in zip(*refs)], "ter": t.score,
                      "ter_edits": t.num_edits, "ter_ref_length": t.ref_length})
    return cases


def tokenizer_cases():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    tok = Tokenizer13a()
    lines = [sentence(0, 30) for _ in range(200)] + [
        "It costs $3.50, ok?", "1-2 a-b &amp; x", "e.g. U.S.A.", "3.,4", "a.,b", "x\u00a0y\u2003z",
        "tab\there", "end-\nline", "<skipped>gone", "quote &quot;q&quot; &lt;tag&gt;", "1,000.5-7",
        "ümlaut café, naïve.", "a\u001cb", "..", ",,,", "-", "5-", "-5", "{curly}~[sq]`^_|\\",
    ]
    return [{"line": l, "tokens": tok(l)} for l in lines]


M_WORDS = ("the a an The It restaurant restaurants eatery eateries cheap inexpensive low-cost near "
           "close located situated sits lies serves served serving offers offered food foods meal "
           "meals family-friendly kid friendly kids children child rated rating ratings high highly "
           "good excellent great fine customer customers pub pubs coffee shop shops river riverside "
           "centre center city town price prices priced range moderate average low is are was it "
           "its there they called named name Alimentum Aromi Italian Chinese English French fast "
           "by next to not and with but also which running ran runs happily happiness generalization "
           "bought buying geese mice better best leaves").split(" ")
SYN = {"restaurant": ["eatery", "restaurants"], "cheap": ["inexpensive", "cheaper", "low-cost"],
       "near": ["close", "nearby", "nearer"], "serves": ["serve", "served", "offers", "serving"],
       "food": ["foods", "meal", "nutrient"], "rated": ["rating", "ratings", "rate"],
       "high": ["highly", "higher", "eminent"], "good": ["excellent", "great", "better", "well"],
       "customer": ["customers", "client"], "shop": ["shops", "store", "shopping"],
       "centre": ["center", "centers", "middle"], "city": ["town", "cities", "metropolis"],
       "price": ["prices", "priced", "cost"], "kids": ["children", "child", "kid"],
       "located": ["situated", "locate", "placed"], "running": ["ran", "runs", "run"],
       "happily": ["happy", "happiness", "felicitous"], "bought": ["buy", "buying", "purchased"],
       "geese": ["goose"], "mice": ["mouse"], "leaves": ["leaf", "left", "leave"],
       "river": ["rivers", "riverside"], "fast": ["quick", "firm", "fasting"]}


def meteor_sentence():
    n = rng.randint(3, 22)
    return " ".join(rng.choice(M_WORDS) for _ in range(n))


def meteor_perturb(ref):
    out = []
    for w in ref.split():
        r = rng.random()
        if r < 0.1:
            continue
        if r < 0.45 and w.lower() in SYN:
            out.append(rng.choice(SYN[w.lower()]))
        elif r < 0.5:
            out.append(w.upper() if rng.random() < 0.5 else w)
            out.append(rng.choice(M_WORDS))
        else:
            out.append(w)
    if rng.random() < 0.3 and len(out) > 3:  # move a chunk: fragmentation
        k = rng.randrange(1, len(out) - 1)
        out = out[k:] + out[:k]
    return " ".join(out)


def wordnet_reader(path):
    """nltk's reader on the WordNet 3.0 files in `path`. nltk >= 3.10 opens files only below its
    data paths and maps the loaded WordNet to its `corpora/wordnet`, so the files are presented
    as that corpus of a temporary nltk_data directory (a copy: symlinks are resolved)."""
    import os
    import tempfile
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    root = tempfile.mkdtemp()
    import shutil
    shutil.copytree(path, os.path.join(root, "corpora", "wordnet"))  # a symlink is resolved
    nltk.data.path.insert(0, root)
    return WordNetCorpusReader(os.path.join(root, "corpora", "wordnet"), None)


def meteor_cases(wn):
    """nltk meteor_score (defaults alpha 0.9, beta 3, gamma 0.5) with WordNet 3.0 on
    whitespace-tokenized segments with 1-3 references: synonyms, inflections, upper case,
    shuffled chunks, an empty hypothesis, an empty reference, no match at all."""
    from nltk.translate.meteor_score import meteor_score
    cases = []
    for i in range(8):
        n = rng.choice([3, 10, 40, 120])
        refs = [[meteor_sentence() for _ in range(rng.randint(1, 3))] for _ in range(n)]
        hyps = [meteor_perturb(rng.choice(rs)) if rng.random() < 0.8 else meteor_sentence()
                for rs in refs]
        if i == 2:
            hyps[0] = ""
            refs[1] = ["", refs[1][0]] if refs[1] else [""]
            hyps[2] = "zzz qqq"
        per = [meteor_score([r.split() for r in rs], h.split(), wordnet=wn)
               for h, rs in zip(hyps, refs)]
        cases.append({"hyps": hyps, "refs": refs, "per": per, "mean": sum(per) / len(per)})
    # the docstring example of nltk
    h = ("It is a guide to action which ensures that the military always obeys the commands of "
         "the party")
    r = "It is a guide to action that ensures that the military will forever heed Party commands"
    cases.append({"hyps": [h], "refs": [[r]],
                  "per": [meteor_score([r.split()], h.split(), wordnet=wn)],
                  "mean": meteor_score([r.split()], h.split(), wordnet=wn)})
    return cases


def index_lemmas(wn_dir, every):
    import os
    words = []
    for suffix in ["noun", "verb", "adj", "adv"]:
        with open(os.path.join(wn_dir, "index." + suffix)) as f:
            for k, line in enumerate(f):
                if not line.startswith(" ") and k % every == 0:
                    w = line.split()[0]
                    if "_" not in w:
                        words.append(w)
    return words


def porter_cases(wn_dir):
    """nltk PorterStemmer() (NLTK_EXTENSIONS) on WordNet lemmas and inflected forms."""
    from nltk.stem.porter import PorterStemmer
    p = PorterStemmer()
    base = index_lemmas(wn_dir, 71)
    words = list(base)
    for w in base[::11]:
        words += [w + "s", w + "es", w + "ed", w + "ing", w + "ly", w + "ness", w + "ational",
                  w + "iveness", w + "alli", w + "logi", w + "y", w + "ies", w + "ied", w + "eed"]
    words += ["sky", "skies", "dying", "lying", "news", "innings", "proceed", "exceeding", "ay",
              "yy", "by", "Yelling", "SKIES", "a", "ab", "xyz", "bowlers", "agreed", "feed",
              "hopping", "hissing", "fizzed", "failing", "filing", "conflated", "troubled",
              "sized", "happy", "sky", "analogousli", "criticism", "electriciti", "über", "naïve"]
    return [{"word": w, "stem": p.stem(w)} for w in words]


def wordnet_cases(wn, wn_dir):
    """Lemma names of synsets(word) for METEOR vocabulary, WordNet lemmas and inflections."""
    words = [w.lower() for w in M_WORDS] + [x for v in SYN.values() for x in v]
    lem = index_lemmas(wn_dir, 211)
    words += lem + [w + "s" for w in lem[::3]] + [w + "ed" for w in lem[::5]] + [
        w + "er" for w in lem[::5]] + ["axes", "oxen", "were", "better", "worst", "children",
                                       "zzz", "", "galore", "ate", "stripped", "men", "dresses"]
    out = []
    for w in dict.fromkeys(words):
        names = sorted({l.name() for s in wn.synsets(w) for l in s.lemmas()})
        out.append({"word": w, "names": names})
    return out


def main():
    out = {
        "versions": {"scikit-learn": sklearn.__version__, "scipy": scipy.__version__,
                     "sacrebleu": sacrebleu.__version__, "numpy": np.__version__,
                     "nltk": __import__("nltk").__version__, "pycocoevalcap": "1.2"},
        "classification": classification_cases(),
        "regression": regression_cases(),
        "bleu": bleu_cases(),
        "tokenize_13a": tokenizer_cases(),
        "generation": generation_cases(),
        "ter": ter_cases(),
    }
    import os
    cache = os.environ.get("PEFTLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "peftlab")
    wn_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(cache, "data", "wordnet-3.0")
    wn = wordnet_reader(wn_dir)
    out["versions"]["wordnet"] = wn.get_version()
    out["meteor"] = meteor_cases(wn)
    out["porter"] = porter_cases(wn_dir)
    out["wordnet"] = wordnet_cases(wn, wn_dir)
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=0, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
