#!/usr/bin/env python3
"""PyTorch + PEFT reference for crates/peftlab-train/benches/train_step.rs, same configuration:

all-MiniLM-L6-v2 (BertModel) + PEFT LoRA r=8, alpha=16 on query, key, value, attention.output.dense,
intermediate.dense, output.dense; mean pooling; a trained Linear(384, 2) head; B=32, T=64 with the
bench's deterministic ids (1000 + (k*7919) % 20000), full mask, labels i % 2; cross-entropy,
backward, clip_grad_norm_(1.0), AdamW(lr 1e-4, weight_decay 0.01). Median seconds per step over N
steps after 2 warm-up steps; torch threads = the machine's cores unless --threads; peak RSS (and,
with --device cuda, peak CUDA memory allocated; each timed step ends with a synchronize).

With --smollm2 FILE.gguf also the bench's second group: SmolLM2-135M-Instruct from transformers'
GGUF loader (the same Q4_1 file, dequantized to f32), PEFT LoRA r=8, alpha 16 on q/k/v/o/gate/up/
down_proj, B=8, T=128, the same deterministic ids, next-token cross-entropy over all positions,
same clipping and AdamW (result `smollm2_train_step/lora/b8_t128`).

Usage: bench_torch_train.py --minilm DIR [--smollm2 FILE.gguf] [--steps 10] [--threads N]
       [--device cpu|cuda] [--out JSON]
Needs: torch, transformers, peft (tested: torch 2.15.0, transformers 5.24.0, peft 0.21.2).
"""
import argparse
import json
import resource
import time

import peft
import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--smollm2")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, T = 32, 64
    base = transformers.BertModel.from_pretrained(a.minilm, add_pooling_layer=False)
    cfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                          target_modules=["query", "key", "value", "attention.output.dense",
                                          "intermediate.dense", "output.dense"])
    dev = torch.device(a.device)
    model = peft.get_peft_model(base, cfg).to(dev)
    head = torch.nn.Linear(384, 2).to(dev)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ids = torch.tensor([1000 + (k * 7919) % 20000 for k in range(B * T)]).reshape(B, T).to(dev)
    mask = torch.ones(B, T, dtype=torch.long, device=dev)
    labels = torch.tensor([i % 2 for i in range(B)], device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    model.train()

    def step():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        loss = torch.nn.functional.cross_entropy(head(pooled), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    def median_step(step):
        for _ in range(2):
            step()
        sync()
        times = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    results = {"minilm_train_step/lora/b32_t64": median_step(step)}
    if a.smollm2:
        import os
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(a.smollm2), gguf_file=os.path.basename(a.smollm2),
            dtype=torch.float32)
        lcfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj"])
        lm = peft.get_peft_model(lm, lcfg).to(dev)
        lm.train()
        lparams = [p for p in lm.parameters() if p.requires_grad]
        lopt = torch.optim.AdamW(lparams, lr=1e-4, weight_decay=0.01)
        sb, st = 8, 128
        lids = torch.tensor([1000 + (k * 7919) % 20000 for k in range(sb * st)]).reshape(sb, st)
        lids = lids.to(dev)

        def lm_step():
            logits = lm(input_ids=lids, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), lids[:, 1:].reshape(-1))
            lopt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lparams, 1.0)
            lopt.step()

        results["smollm2_train_step/lora/b8_t128"] = median_step(lm_step)
    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "threads": torch.get_num_threads(),
           "results": results,
           "device": str(dev), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    s = json.dumps(out)
    print(s)
    if a.out:
        with open(a.out, "w") as f:
            f.write(s + "\n")


if __name__ == "__main__":
    main()
