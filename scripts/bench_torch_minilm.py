#!/usr/bin/env python3
"""PyTorch reference for crates/peftlab-models/benches/forward.rs: BertModel forward of
all-MiniLM-L6-v2 at B=32, T=64 on the CPU, median of 10 runs after a warm-up.

Usage: bench_torch_minilm.py MODEL_DIR  (needs torch and transformers; threads = torch default)
"""
import json
import sys
import time

import torch
from transformers import BertModel

model = BertModel.from_pretrained(sys.argv[1]).eval()
g = torch.Generator().manual_seed(0)
ids = torch.randint(1000, 21000, (32, 64), generator=g)
mask = torch.ones_like(ids)
with torch.inference_mode():
    model(input_ids=ids, attention_mask=mask)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        model(input_ids=ids, attention_mask=mask)
        times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"median_s": times[5], "threads": torch.get_num_threads(), "torch": torch.__version__}))
