#!/usr/bin/env python3
"""PyTorch reference for crates/peftlab-models/benches/forward.rs, same inputs and shapes:

  minilm   all-MiniLM-L6-v2 BertModel forward, B=32, T=64 (ids 1000..21000, full mask)
  smollm2  SmolLM2-135M-Instruct (the Q4_1 GGUF dequantized to f32 by transformers) causal-LM
           forward with logits, B=8, T=64 (ids 1000..21000); and decoding: `generate` continuing
           a 32-token prompt by exactly 32 tokens with the KV cache, greedy and 4 beams

Median of N runs after a warm-up, in inference mode, torch's default threads (all cores).

Usage: bench_torch_forward.py --minilm DIR --smollm2 FILE.gguf [--runs 10] [--out JSON]
Needs: torch, transformers, gguf (tested: torch 2.15.0, transformers 5.24.0, gguf 0.19.0).
"""
import argparse
import json
import os
import time

import torch
import transformers


def median_time(fn, runs):
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm")
    ap.add_argument("--smollm2")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "threads": torch.get_num_threads(), "results": {}}
    if a.minilm:
        model = transformers.BertModel.from_pretrained(a.minilm).eval()
        ids = torch.randint(1000, 21000, (32, 64), generator=g)
        mask = torch.ones_like(ids)
        out["results"]["minilm/forward/b32_t64"] = median_time(
            lambda: model(input_ids=ids, attention_mask=mask), a.runs)
    if a.smollm2:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(a.smollm2), gguf_file=os.path.basename(a.smollm2),
            dtype=torch.float32).eval()
        ids = torch.randint(1000, 21000, (8, 64), generator=g)
        out["results"]["smollm2/forward/b8_t64"] = median_time(
            lambda: model(input_ids=ids, use_cache=False).logits, a.runs)
        prompt = torch.randint(1000, 21000, (1, 32), generator=g)
        for name, beams in (("greedy", 1), ("beam4", 4)):
            out["results"][f"smollm2/{name}/p32_n32"] = median_time(
                lambda: model.generate(prompt, max_new_tokens=32, min_new_tokens=32,
                                       do_sample=False, num_beams=beams, eos_token_id=None,
                                       pad_token_id=0, length_penalty=1.0),
                a.runs)
    text = json.dumps(out)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
