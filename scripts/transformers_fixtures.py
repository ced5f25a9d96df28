#!/usr/bin/env python3
"""Small random-initialized checkpoints with Hugging Face transformers' own outputs, for the
parity tests of crates/peftlab-models (tests/models/tiny.rs).

    python3 scripts/transformers_fixtures.py crates/peftlab-models/tests/fixtures

writes, per architecture, DIR/<name>/{config.json, model.safetensors, io.safetensors} and a PEFT
LoRA adapter DIR/<name>/lora/ with the model's outputs under it (io.safetensors: ids, mask,
logits, hidden (encoders), lora_logits). The decoders (tiny_gpt2, tiny_llama) also get
generate.json: transformers' `generate` outputs for greedy and beam settings. Seeded
(torch.manual_seed(0)); needs torch, transformers, peft.
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
    os.remove(os.path.join(out, "lora", "README.md"))  # PEFT's model-card template
    save_file({"ids": ids.to(torch.int64), "mask": mask.to(torch.float32), "logits": o.logits,
               "hidden": o.hidden_states[-1], "lora_logits": lo}, os.path.join(out, "io.safetensors"))
    if not roberta:
        word_tokenizer(out, 50, {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2})


def word_tokenizer(out, vocab_size, specials=None):
    """A word-level tokenizer.json over "w0" … "w{V-1}" (specials replace the first words), so
    the CLI can be driven with text: "w5 w9" → [5, 9] (+ [CLS]/[SEP] for encoders)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    vocab = {f"w{i}": i for i in range(vocab_size)}
    for tok, i in (specials or {}).items():
        del vocab[f"w{i}"]
        vocab[tok] = i
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=next(iter(specials)) if specials else "w0"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if specials:
        cls, sep = specials["[CLS]"], specials["[SEP]"]
        tk.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tk.save(os.path.join(out, "tokenizer.json"))


def perturb(model, scale):
    """The default init is near-uniform: make every weight matter and every choice clear-cut."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.add_(torch.randn(p.shape) * scale)


def lora_outputs(model, out, targets, heads, ids, mask, fan_in_fan_out=False):
    g = torch.Generator().manual_seed(1)
    lcfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=targets, modules_to_save=heads,
                           fan_in_fan_out=fan_in_fan_out, task_type=None)
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
    os.remove(os.path.join(out, "lora", "README.md"))  # PEFT's model-card template
    return lo


def decoder(out, kind):
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=64, n_positions=48, n_embd=16, n_layer=2, n_head=4,
                                      bos_token_id=0, eos_token_id=0)
        cls = transformers.GPT2LMHeadModel
        targets = ["c_attn", "c_fc"]
    else:
        cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, max_position_embeddings=64,
                                       rms_norm_eps=1e-5, rope_theta=500.0,
                                       tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
                                       pad_token_id=0)
        cls = transformers.LlamaForCausalLM
        targets = ["q_proj", "v_proj", "down_proj"]
    torch.manual_seed(0)
    model = cls(cfg).eval()
    perturb(model, 0.3)
    model.save_pretrained(out, safe_serialization=True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 64, (2, 9), generator=g)
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    prompt = ids[:1, :5]
    runs = []
    greedy = model.generate(prompt, do_sample=False, num_beams=1, max_new_tokens=12,
                            eos_token_id=None, pad_token_id=0)[0, 5:].tolist()
    eos = greedy[4]  # a token the model does produce, so EOS handling is exercised
    settings = [
        dict(num_beams=1, max_new_tokens=12, no_repeat_ngram_size=0, length_penalty=1.0, eos_token_id=None),
        dict(num_beams=1, max_new_tokens=12, no_repeat_ngram_size=2, length_penalty=1.0, eos_token_id=None),
        dict(num_beams=4, max_new_tokens=10, no_repeat_ngram_size=2, length_penalty=0.8, eos_token_id=eos),
        dict(num_beams=3, max_new_tokens=8, no_repeat_ngram_size=0, length_penalty=1.0, eos_token_id=None),
        dict(num_beams=5, max_new_tokens=14, no_repeat_ngram_size=3, length_penalty=0.9, eos_token_id=eos),
    ]
    for st in settings:
        o = model.generate(prompt, do_sample=False, early_stopping=False, pad_token_id=0,
                           **st)[0, 5:].tolist()
        runs.append(dict(st, prompt=prompt[0].tolist(), output=o))
    with open(os.path.join(out, "generate.json"), "w") as f:
        json.dump(runs, f, indent=1)
    lo = lora_outputs(model, out, targets, [], ids, mask, fan_in_fan_out=(kind == "gpt2"))
    save_file({"ids": ids.to(torch.int64), "mask": mask.to(torch.float32), "logits": logits,
               "lora_logits": lo}, os.path.join(out, "io.safetensors"))
    word_tokenizer(out, 64)


def deberta(out, v3):
    common = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=24, max_position_embeddings=32, num_labels=3,
                  relative_attention=True, pooler_hidden_size=16, pooler_hidden_act="gelu",
                  hidden_act="gelu", layer_norm_eps=1e-7, pad_token_id=0)
    if v3:  # microsoft/deberta-v3-base settings, scaled down
        cfg = transformers.DebertaV2Config(**common, type_vocab_size=0, position_buckets=4,
                                           max_relative_positions=-1, norm_rel_ebd="layer_norm",
                                           share_att_key=True, pos_att_type=["p2c", "c2p"],
                                           position_biased_input=False)
    else:  # v2 without buckets: separate positional projections, absolute positions too
        cfg = transformers.DebertaV2Config(**common, type_vocab_size=2, position_buckets=-1,
                                           max_relative_positions=6, norm_rel_ebd="none",
                                           share_att_key=False, pos_att_type=["p2c", "c2p"],
                                           position_biased_input=True)
    torch.manual_seed(0)
    model = transformers.DebertaV2ForSequenceClassification(cfg).eval()
    perturb(model, 0.1)
    model.save_pretrained(out, safe_serialization=True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 50, (2, 11), generator=g)
    mask = torch.tensor([[1] * 11, [1] * 7 + [0] * 4])
    ids[1, 7:] = 0
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    lo = lora_outputs(model, out, ["query_proj", "value_proj", "intermediate.dense"],
                      ["pooler.dense", "classifier"], ids, mask)
    save_file({"ids": ids.to(torch.int64), "mask": mask.to(torch.float32), "logits": o.logits,
               "hidden": o.hidden_states[-1], "lora_logits": lo}, os.path.join(out, "io.safetensors"))


if __name__ == "__main__":
    root = sys.argv[1]
    only = sys.argv[2:]
    jobs = {
        "tiny_bert": lambda p: bert(p),
        "tiny_roberta": lambda p: bert(p, roberta=True),
        "tiny_gpt2": lambda p: decoder(p, "gpt2"),
        "tiny_llama": lambda p: decoder(p, "llama"),
        "tiny_deberta_v3": lambda p: deberta(p, v3=True),
        "tiny_deberta_v2": lambda p: deberta(p, v3=False),
    }
    for name, job in jobs.items():
        if not only or name in only:
            job(os.path.join(root, name))
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__}))
