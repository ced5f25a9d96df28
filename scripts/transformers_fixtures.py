#!/usr/bin/env python3
"""Small random-initialized checkpoints with Hugging Face transformers' own outputs, for the
parity tests of crates/peftlab-models (tests/tiny.rs).

    python3 scripts/transformers_fixtures.py crates/peftlab-models/tests/fixtures

writes, per architecture, DIR/<name>/{config.json, model.safetensors, io.safetensors} and a PEFT
LoRA adapter DIR/<name>/lora/ with the model's outputs under it (io.safetensors: ids, mask,
logits, hidden, lora_logits). Seeded (torch.manual_seed(0)); needs torch, transformers, peft.
"""
import json
import os
import sys

import peft
import torch
import transformers
from safetensors.torch import save_file


def bert(out, roberta=False):
    if roberta:
        cfg = transformers.RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=24,
                                         max_position_embeddings=40, type_vocab_size=1,
                                         num_labels=3, pad_token_id=1)
        cls = transformers.RobertaForSequenceClassification
    else:
        cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=24,
                                      max_position_embeddings=32, type_vocab_size=2, num_labels=3)
        cls = transformers.BertForSequenceClassification
    torch.manual_seed(0)
    model = cls(cfg).eval()
    # the default init leaves LayerNorm at (1, 0) and biases at 0: perturb them so they matter
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "LayerNorm" in n or n.endswith("bias"):
                p.add_(torch.randn(p.shape) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 50, (2, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    if roberta:
        ids[1, 5:] = 1  # RoBERTa positions skip pad ids
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    # RoBERTa's classifier is a module of two linears: save those by name
    heads = ["classifier.dense", "classifier.out_proj"] if roberta else ["classifier"]
    lcfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"],
                           modules_to_save=heads, task_type=None)
    pm = peft.get_peft_model(model, lcfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "modules_to_save" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    pm.eval()
    with torch.no_grad():
        lo = pm(input_ids=ids, attention_mask=mask).logits
    pm.save_pretrained(os.path.join(out, "lora"))
    save_file({"ids": ids.to(torch.int64), "mask": mask.to(torch.float32), "logits": o.logits,
               "hidden": o.hidden_states[-1], "lora_logits": lo}, os.path.join(out, "io.safetensors"))


if __name__ == "__main__":
    root = sys.argv[1]
    bert(os.path.join(root, "tiny_bert"))
    bert(os.path.join(root, "tiny_roberta"), roberta=True)
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__}))
