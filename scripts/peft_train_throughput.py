#!/usr/bin/env python3
"""PyTorch + PEFT at its best on the cpu profile's LoRA MR-binary job: training wall time,
examples/s and peak RSS, to set beside peftlab's record of the same job (issue 16).

The job (experiments/mtlora/nlu.toml, cpu profile, row `lora`): all-MiniLM-L6-v2 (BertModel),
mean pooling, a trained Linear(384, 2) head, PEFT LoRA r=8, alpha 16, dropout 0.1 on the six
matrices per layer; AdamW lr 5e-4, weight decay 0.1, linear schedule with 6 % warm-up, clip 1.0;
B = 32, 3 epochs over 1,000 training examples (96 steps), max length 64.

Batching, one per process (`--batching`), so that each peak RSS is its own:
- `dynamic`: shuffled batches, each padded to its own longest example (`padding=True`);
- `grouped`: that, with transformers' `group_by_length` order (LengthGroupedSampler: a random
  permutation cut into mega-batches of 50·B, each sorted by length, longest first, the mega-batch
  holding the overall longest example moved to the front), so a batch holds similar lengths —
  as peftlab's `bucket_by_length`.

Timed: the training loop alone (tokenization inside it, as a DataLoader's collate would do;
model loading and evaluation excluded). Peak RSS: `ru_maxrss` of the process at the end.

Data: the fetched VADER movie-review snippets (`cargo xtask fetch --only mr`), label = sign of the
mean score, zeros dropped, 1,000 examples of a seeded shuffle — the same source and length
distribution as peftlab's split, not the same 1,000 rows.

Usage: peft_train_throughput.py --minilm DIR --mr FILE.jsonl --batching dynamic|grouped
       [--threads N] [--seed 0]
Needs: torch, transformers, peft (tested: torch 2.15.0, transformers 5.24.0, peft 0.21.2).
Prints one JSON object.
"""
import argparse
import json
import random
import resource
import time

import peft
import torch
import transformers

from peft_short_budget import B, EPOCHS, T, TARGETS, MeanPoolClassifier, load_mr, train_batch


def grouped_order(lengths, rng):
    """transformers' LengthGroupedSampler order for batch size B."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    mega = 50 * B
    megas = [sorted(idx[i:i + mega], key=lambda j: -lengths[j]) for i in range(0, len(idx), mega)]
    longest = max(range(len(megas)), key=lambda m: lengths[megas[m][0]])
    megas[0], megas[longest] = megas[longest], megas[0]
    return [j for m in megas for j in m]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--mr", required=True)
    ap.add_argument("--batching", choices=["dynamic", "grouped"], required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tok = transformers.AutoTokenizer.from_pretrained(a.minilm)
    train, _ = load_mr(a.mr, 13)
    lengths = [len(tok(t, truncation=True, max_length=T)["input_ids"]) for t, _ in train]
    model = MeanPoolClassifier(a.minilm)
    cfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=TARGETS,
                          modules_to_save=["classifier"])
    model = peft.get_peft_model(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = EPOCHS * ((len(train) + B - 1) // B)
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.1)
    sched = transformers.get_linear_schedule_with_warmup(opt, round(0.06 * steps), steps)
    rng = random.Random(a.seed)
    model.train()
    seen, tokens = 0, 0
    start = time.perf_counter()
    for _ in range(EPOCHS):
        if a.batching == "grouped":
            order = grouped_order(lengths, rng)
        else:
            order = list(range(len(train)))
            rng.shuffle(order)
        for i in range(0, len(order), B):
            batch = [train[j] for j in order[i:i + B]]
            out, enc = train_batch(model, params, opt, sched, tok, batch)
            seen += len(batch)
            tokens += enc["input_ids"].numel()
    wall = time.perf_counter() - start
    print(json.dumps({
        "batching": a.batching, "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__,
        "threads": torch.get_num_threads(), "steps": steps, "examples": seen,
        "padded_tokens": tokens, "train_wall_s": round(wall, 2),
        "examples_per_s": round(seen / wall, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "last_loss": round(out.loss.item(), 4),
    }), flush=True)


if __name__ == "__main__":
    main()
