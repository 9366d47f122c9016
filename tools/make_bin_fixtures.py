#!/usr/bin/env python3
"""Writes the tiny torch.save fixtures under tests/data/torch_bin/ with real PyTorch.

Run from the repository root:  python3 tools/make_bin_fixtures.py
The files are committed, so tests need no Python; rerun only to change them. Values are
deterministic (a formula of the element index), and expected.json records each tensor's dtype,
shape, element sum and first values so the C++ tests can check the bytes they load.

Fixtures:
  tiny_llama/          config.json + pytorch_model.bin (f16, untied lm_head, includes the
                       rotary_emb.inv_freq buffers old checkpoints carry)
  tiny_llama_sharded/  config.json + two .bin shards + pytorch_model.bin.index.json (f32, tied)
  misc.bin             dtypes f32/f16/bf16/i64/i32/u8/bool, a 0-d and an empty tensor, a view
                       with a storage offset, two names sharing one storage, an nn.Parameter
  noncontiguous.bin    a transposed tensor (must be refused)
  hf_transformers/     a tiny LlamaForCausalLM saved by transformers' own save_pretrained
                       (its config.json and model.safetensors writer, whatever version runs)
  hf_transformers_bin/ the same model's config.json + torch.save(model.state_dict()), which
                       pickles the OrderedDict _metadata attribute (BUILD) as HF's .bin did
  malicious.bin        a pickle whose reduce calls os.system (must be refused, never run)
  compressed.bin       a deflate-compressed archive (must be refused)
"""
import collections
import json
import os
import zipfile

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "torch_bin")

# Tiny LLaMA: H=8, I=12, L=2, heads=2, kv heads=1, head_dim=4, V=16.
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 8,
    "intermediate_size": 12,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "vocab_size": 16,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float16",
}


def values(n, k):
    """Deterministic, non-zero, distinct per tensor index k."""
    i = torch.arange(n, dtype=torch.float64)
    return (((i * 37 + k * 11) % 101) / 64.0 - 0.75).float()


def llama_state(cfg, dtype, tied):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = H // nh
    shapes = [("model.embed_tokens.weight", (V, H))]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes += [
            (p + "input_layernorm.weight", (H,)),
            (p + "self_attn.q_proj.weight", (nh * hd, H)),
            (p + "self_attn.k_proj.weight", (nkv * hd, H)),
            (p + "self_attn.v_proj.weight", (nkv * hd, H)),
            (p + "self_attn.o_proj.weight", (H, nh * hd)),
            (p + "post_attention_layernorm.weight", (H,)),
            (p + "mlp.gate_proj.weight", (I, H)),
            (p + "mlp.up_proj.weight", (I, H)),
            (p + "mlp.down_proj.weight", (H, I)),
        ]
    shapes.append(("model.norm.weight", (H,)))
    if not tied:
        shapes.append(("lm_head.weight", (V, H)))
    sd = collections.OrderedDict()
    for k, (name, shape) in enumerate(shapes):
        n = 1
        for d in shape:
            n *= d
        sd[name] = values(n, k).reshape(shape).to(dtype)
    return sd


def describe(sd):
    out = {}
    for name, t in sd.items():
        flat = t.detach().reshape(-1)
        out[name] = {
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "sum": float(flat.double().sum()) if t.dtype != torch.bool else int(flat.sum()),
            "first": [float(x) for x in flat[:4].double()],
        }
    return out


def main():
    os.makedirs(ROOT, exist_ok=True)
    expected = {}

    # Single-file f16 checkpoint with the old rotary buffers.
    d = os.path.join(ROOT, "tiny_llama")
    os.makedirs(d, exist_ok=True)
    sd = llama_state(CONFIG, torch.float16, tied=False)
    expected["tiny_llama"] = describe(sd)
    with_rotary = collections.OrderedDict()
    for name, t in sd.items():
        with_rotary[name] = t
        if name.endswith("input_layernorm.weight"):
            layer = name[: -len("input_layernorm.weight")]
            with_rotary[layer + "self_attn.rotary_emb.inv_freq"] = torch.ones(2)
    torch.save(with_rotary, os.path.join(d, "pytorch_model.bin"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)

    # Sharded f32 checkpoint with tied embeddings.
    d = os.path.join(ROOT, "tiny_llama_sharded")
    os.makedirs(d, exist_ok=True)
    cfg = dict(CONFIG, tie_word_embeddings=True, torch_dtype="float32")
    sd = llama_state(cfg, torch.float32, tied=True)
    expected["tiny_llama_sharded"] = describe(sd)
    names = list(sd)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map, total = {}, 0
    for k, part in enumerate(halves):
        fname = f"pytorch_model-{k + 1:05d}-of-00002.bin"
        torch.save(collections.OrderedDict((n, sd[n]) for n in part), os.path.join(d, fname))
        for n in part:
            weight_map[n] = fname
            total += sd[n].numel() * sd[n].element_size()
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    # Assorted dtypes and storage layouts.
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1.0
    shared = torch.arange(5, dtype=torch.int64) * 1000000007
    misc = collections.OrderedDict()
    misc["f32"] = base
    misc["f16"] = (base * 0.25).half()
    misc["bf16"] = (base * 2).bfloat16()
    misc["i64"] = shared
    misc["i64_alias"] = shared  # same storage, second name
    misc["i32"] = torch.tensor([-3, 0, 7], dtype=torch.int32)
    misc["u8"] = torch.tensor([0, 255, 9], dtype=torch.uint8)
    misc["bool"] = torch.tensor([True, False, True, True])
    misc["scalar"] = torch.tensor(2.5)
    misc["empty"] = torch.zeros(0, 3)
    misc["row1"] = base[1]  # a view: storage offset 4 into the 12-element storage
    misc["param"] = torch.nn.Parameter(torch.tensor([1.5, -2.0]))
    expected["misc"] = describe(misc)
    torch.save(misc, os.path.join(ROOT, "misc.bin"))

    # Real transformers output, safetensors and .bin, of one tiny model.
    import shutil
    import transformers
    torch.manual_seed(0)
    tcfg = transformers.LlamaConfig(hidden_size=8, intermediate_size=12, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=1, vocab_size=16,
                                    max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(tcfg)
    d = os.path.join(ROOT, "hf_transformers")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    for extra in os.listdir(d):
        if extra not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(d, extra))
    db = os.path.join(ROOT, "hf_transformers_bin")
    os.makedirs(db, exist_ok=True)
    shutil.copy(os.path.join(d, "config.json"), db)
    torch.save(model.state_dict(), os.path.join(db, "pytorch_model.bin"))

    torch.save({"t": base.t()}, os.path.join(ROOT, "noncontiguous.bin"))

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    torch.save({"x": Exploit()}, os.path.join(ROOT, "malicious.bin"))

    # A deflate-compressed copy of misc.bin's entries.
    src = zipfile.ZipFile(os.path.join(ROOT, "misc.bin"))
    with zipfile.ZipFile(os.path.join(ROOT, "compressed.bin"), "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename))

    with open(os.path.join(ROOT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
