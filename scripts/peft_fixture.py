#!/usr/bin/env python3
"""PEFT interop fixture for peftlab-adapters (tests/matrix/peft.rs).

make  OUT_DIR : build a tiny 2-layer encoder in PyTorch with BERT module paths (single-head
                attention + exact-GELU MLP, the same block as tests/matrix/model.rs), seeded
                random base weights, attach PEFT LoRA (r=4, alpha=8, query/value/intermediate.dense),
                give lora_B random values, and write
                  base.safetensors      torch state dict of the base model ([out, in] weights)
                  io.safetensors        x [2, 5, 8] and y = model(x) with the adapter
                  peft_adapter/         PEFT's save_pretrained output
check DIR ADAPTER_DIR : load ADAPTER_DIR (saved by peftlab) onto the base model of DIR with
                PeftModel.from_pretrained and compare its output on x with DIR/rust_io.safetensors
                (`y` written by the Rust test). Prints the max abs difference; exits 1 above 1e-5.

Needs: torch, peft, safetensors (pip). Versions used for the committed fixture are printed.
"""
import json
import math
import sys

import peft
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

D, D_FF, LAYERS = 8, 12, 2


class SelfAttn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.query = torch.nn.Linear(D, D)
        self.key = torch.nn.Linear(D, D)
        self.value = torch.nn.Linear(D, D)


class Dense(torch.nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.dense = torch.nn.Linear(i, o)


class Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        setattr(self, "self", SelfAttn())
        self.output = Dense(D, D)


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.intermediate = Dense(D, D_FF)
        self.output = Dense(D_FF, D)

    def forward(self, x):
        s = getattr(self.attention, "self")
        q, k, v = s.query(x), s.key(x), s.value(x)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D), dim=2)
        h = x + self.attention.output.dense(att @ v)
        return h + self.output.dense(F.gelu(self.intermediate.dense(h)))


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.ModuleList([Layer() for _ in range(LAYERS)])

    def forward(self, x):
        for l in self.layer:
            x = l(x)
        return x


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()

    def forward(self, x):
        return self.encoder(x)


def base_model(out_dir):
    m = Model()
    m.load_state_dict(load_file(f"{out_dir}/base.safetensors"))
    return m.eval()


def make(out_dir):
    torch.manual_seed(0)
    m = Model().eval()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f"{out_dir}/base.safetensors")
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                          target_modules=["query", "value", "intermediate.dense"],
                          modules_to_save=["layer.1.output.dense"],
                          rank_pattern={"value": 2}, alpha_pattern={"intermediate.dense": 16})
    pm = peft.get_peft_model(m, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif "modules_to_save" in n:  # the trained copy of the head
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    pm.eval()
    x = torch.randn(2, 5, D, generator=g)
    with torch.no_grad():
        y = pm(x)
    save_file({"x": x, "y": y}, f"{out_dir}/io.safetensors")
    pm.save_pretrained(f"{out_dir}/peft_adapter")
    print(json.dumps({"torch": torch.__version__, "peft": peft.__version__}))


def check(out_dir, adapter_dir):
    pm = peft.PeftModel.from_pretrained(base_model(out_dir), adapter_dir).eval()
    io = load_file(f"{out_dir}/rust_io.safetensors")
    with torch.no_grad():
        y = pm(io["x"])
    diff = (y - io["y"]).abs().max().item()
    print(json.dumps({"max_abs_diff": diff, "torch": torch.__version__, "peft": peft.__version__}))
    sys.exit(0 if diff <= 1e-5 else 1)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
