#!/usr/bin/env python3
"""PyTorch + PEFT cross-check of the cpu tables' short budget: LoRA r=8 vs AdaLoRA 12->8.

Question it answers: is AdaLoRA's low score in docs/results/triadaptlora/nlu/cpu (MR binary ~70 vs
LoRA ~80 after 3 epochs of 1,000 examples) a property of AdaLoRA under that budget, or a defect of
peftlab's implementation? It trains the reference implementation (PEFT) on the same kind of run and
prints the dev accuracy of both methods.

Same recipe as experiments/triadaptlora/nlu.toml's cpu profile: all-MiniLM-L6-v2 (BertModel), mean
pooling, a trained Linear(384, 2) head (modules_to_save), the six matrices per layer, alpha 16,
dropout 0.1; AdamW lr 5e-4, weight decay 0.1, linear schedule with 6 % warm-up, clip 1.0,
B = 32, 3 epochs over 1,000 training examples (96 steps), max length 64. AdaLoRA: init_r 12,
target_r 8, tinit 10, tfinal 10, deltaT 5, beta 0.85/0.85, orth_reg_weight 0.5,
`update_and_allocate` after every optimizer step (PEFT's documented loop).

Data: the fetched VADER movie-review snippets (`cargo xtask fetch --only mr`), label = sign of the
mean score, zeros dropped. The split here is a seeded shuffle (1,000 train, 1,000 dev), not
peftlab's hash split: the numbers are comparable in size, not example for example.

Usage: peft_short_budget.py --minilm DIR --mr FILE.jsonl [--seeds 0,1,2] [--threads N]
Needs: torch, transformers, peft (tested: torch 2.15.0, transformers 5.24.0, peft 0.21.2).
"""
import argparse
import json
import random

import peft
import torch
import transformers
from transformers.modeling_outputs import SequenceClassifierOutput

TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
B, T, EPOCHS, N_TRAIN, N_DEV = 32, 64, 3, 1000, 1000


class MeanPoolClassifier(torch.nn.Module):
    """BertModel + mean pooling + Linear head; returns a loss so PEFT's AdaLoRA adds its orth reg."""

    def __init__(self, path):
        super().__init__()
        self.bert = transformers.BertModel.from_pretrained(path, add_pooling_layer=False)
        self.classifier = torch.nn.Linear(384, 2)

    def forward(self, input_ids, attention_mask, labels=None):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).float()
        logits = self.classifier((h * m).sum(1) / m.sum(1).clamp_min(1e-9))
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def load_mr(path, seed):
    rows = [json.loads(line) for line in open(path)]
    rows = [(r["text"], int(r["score"] > 0)) for r in rows if r["score"] != 0]
    random.Random(seed).shuffle(rows)
    return rows[:N_TRAIN], rows[N_TRAIN:N_TRAIN + N_DEV]


def train_batch(model, params, opt, sched, tok, batch, after=None):
    """One optimizer step on `batch` ((text, label) pairs), padded to its longest example:
    forward, backward, clip 1.0, step, schedule, `after()` (AdaLoRA's allocation), zero grads.
    Returns the model output and the encoded batch."""
    enc = tok([t for t, _ in batch], truncation=True, max_length=T, padding=True,
              return_tensors="pt")
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                labels=torch.tensor([y for _, y in batch]))
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    if after is not None:
        after()
    opt.zero_grad(set_to_none=True)
    return out, enc


def run(method, seed, a, tok):
    torch.manual_seed(seed)
    train, dev = load_mr(a.mr, 13)
    model = MeanPoolClassifier(a.minilm)
    steps = EPOCHS * ((len(train) + B - 1) // B)
    common = dict(lora_alpha=16, lora_dropout=0.1, target_modules=TARGETS,
                  modules_to_save=["classifier"])
    if method == "lora":
        cfg = peft.LoraConfig(r=8, **common)
    else:
        cfg = peft.AdaLoraConfig(init_r=12, target_r=8, tinit=10, tfinal=10, deltaT=5, beta1=0.85,
                                 beta2=0.85, orth_reg_weight=0.5, total_step=steps, **common)
    model = peft.get_peft_model(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.1)
    sched = transformers.get_linear_schedule_with_warmup(opt, round(0.06 * steps), steps)
    rng = random.Random(seed)
    step = 0
    model.train()
    for _ in range(EPOCHS):
        order = list(range(len(train)))
        rng.shuffle(order)
        for i in range(0, len(order), B):
            batch = [train[j] for j in order[i:i + B]]
            out, _ = train_batch(model, params, opt, sched, tok, batch,
                                 after=(lambda: model.base_model.update_and_allocate(step))
                                 if method == "adalora" else None)
            step += 1
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev), 128):
            batch = dev[i:i + 128]
            enc = tok([t for t, _ in batch], truncation=True, max_length=T, padding=True,
                      return_tensors="pt")
            pred = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            correct += sum(int(p) == y for p, (_, y) in zip(pred.argmax(-1), batch))
    return 100.0 * correct / len(dev), out.loss.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--mr", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tok = transformers.AutoTokenizer.from_pretrained(a.minilm)
    for method in ["lora", "adalora"]:
        for seed in [int(s) for s in a.seeds.split(",")]:
            acc, last = run(method, seed, a, tok)
            print(json.dumps({"method": method, "seed": seed, "dev_accuracy": round(acc, 2),
                              "last_batch_loss": round(last, 4)}), flush=True)


if __name__ == "__main__":
    main()
