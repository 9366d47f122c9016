#!/usr/bin/env python3
"""Golden data for the LLaMA parity tests (tests/test_llama_parity.cpp).

Creates tiny random LLaMA checkpoints in the Hugging Face folder format and, for each, the
outputs of transformers' LlamaForCausalLM on a fixed right-padded batch. The reference runs in
float64 on the float32 parameters (so the golden numbers carry no fp32 rounding of their own;
what the C++ fp32 engine is compared against is the exact function of its inputs, up to the
fp32 rotary angles HF itself uses). Written per fixture, under tests/data/golden/<name>/:
  config.json, model.safetensors (HF layout), golden.safetensors with
    input_ids, position_ids, ranges (i32 [B,2] valid [begin,end)), labels (pad = -100),
    logits [B,S,V], hidden.embed (layer-0 input), hidden.<l> (output of decoder layer l),
    hidden.final (after the final norm), loss (mean CE over non-pad label positions, [1]),
    grad.<param> (d loss / d param, tied embeddings hold both uses),
    prompt.<i>, greedy.<i> (argmax continuations without EOS stopping, no near-ties).
Extra loader exercises: mha/ also as mha_bin/pytorch_model.bin, gqa/ also as sharded
safetensors with an index in gqa_sharded/. mha/ carries a sentencepiece tokenizer.model so that
`beaver generate` runs on it. gqa/ carries score_golden.safetensors: a safe-rlhf score model
(decoder + Linear(H, 1, bias)) with its end scores on the batch and the gradients of
sum_b c_b * end_score_b.

Ten-step training runs (tests/test_golden_training.cpp), `--train`: from the committed gqa/
fixture, ten AdamW steps of SFT (LM head, mean CE over answer tokens) and ten of the reward
model's pairwise loss (the score head of score_golden.safetensors), written to
gqa/train_golden.safetensors: the per-step batches, the loss and pre-clip gradient norm of
every step, the learning rate each step used, and the final weights. The hyper-parameters
are the SFT/RM stage defaults of train/stages.h (AdamW betas (0.9, 0.95), eps 1e-8,
global-norm clip 1.0, cosine schedule with warmup ratio 0.03, no weight decay on biases and
RMSNorm weights) with a learning rate of 1e-3 and weight decay 0.1, so that ten steps move
the weights measurably and the decay mask matters; they are stored in the file's metadata.
torch.optim.AdamW, torch.nn.utils.clip_grad_norm_ and transformers'
get_cosine_schedule_with_warmup (HF's schedule, which Beaver's train/schedule.h follows) run
in float64 on the float32 fixture weights.

Run from the repository root: python3 tools/make_golden.py [NAME ...]  (PyTorch +
transformers; names select fixtures, none = all), or python3 tools/make_golden.py --train
(reads the gqa/ fixture, writes only gqa/train_golden.safetensors)
"""
import math
import io
import json
import os
import random
import shutil
import sys
from collections import OrderedDict

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join("tests", "data", "golden")
B, S = 3, 16
LENGTHS = [16, 11, 6]
GREEDY_NEW = 40
MIN_MARGIN = 2e-3  # smallest top-1/top-2 logit gap accepted along a greedy path
MIN_DISTINCT = 12  # a continuation that repeats one token tests little

FIXTURES = {
    # (a) multi-head attention, untied head, theta 10000.
    "mha": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, vocab_size=128,
                tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None,
                rms_norm_eps=1e-6, seed=11),
    # (b) grouped-query attention with odd sizes: H=48, 6 heads of 8, 2 kv heads, I=100, V=97.
    "gqa": dict(hidden_size=48, intermediate_size=100, num_hidden_layers=3,
                num_attention_heads=6, num_key_value_heads=2, vocab_size=97,
                tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None,
                rms_norm_eps=1e-5, seed=12),
    # (c) tied embeddings, theta 5e5 and llama3 frequency scaling (head_dim 16 so that one
    # frequency falls in the smoothed band between the low and high wavelength limits).
    "tied_llama3": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, vocab_size=120,
                        tie_word_embeddings=True, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 4.0,
                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 64},
                        rms_norm_eps=1e-5, seed=13, embed_std=0.3),
    # (d), (e) head_dim 64 and 128, the sizes the CUDA attention kernels take (the GPU tests
    # run the model on these): GQA untied, and MHA tied with llama3 scaling.
    "cuda_gqa": dict(hidden_size=128, intermediate_size=176, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=1, vocab_size=151,
                     tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None,
                     rms_norm_eps=1e-5, seed=14),
    "cuda_tied": dict(hidden_size=128, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=1, num_key_value_heads=1, vocab_size=200,
                      tie_word_embeddings=True, rope_theta=500000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 4.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 64},
                      rms_norm_eps=1e-5, seed=15, embed_std=0.3),
}


def legacy_config_json(cfg: dict) -> dict:
    """config.json as LLaMA checkpoints on the Hub spell it (rope_theta / rope_scaling)."""
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": h,
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": nh,
        "num_key_value_heads": cfg["num_key_value_heads"],
        "head_dim": h // nh,
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"],
        "rope_scaling": cfg["rope_scaling"],
        "vocab_size": cfg["vocab_size"],
        "max_position_embeddings": 256,
        "tie_word_embeddings": cfg["tie_word_embeddings"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": None,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
        "initializer_range": 0.02,
    }


def build(cfg: dict) -> LlamaForCausalLM:
    kw = {k: v for k, v in cfg.items()
          if k not in ("seed", "rope_theta", "rope_scaling", "embed_std")}
    rope = {"rope_type": "default", "rope_theta": cfg["rope_theta"]}
    if cfg["rope_scaling"]:
        rope = dict(cfg["rope_scaling"], rope_theta=cfg["rope_theta"])
    c = LlamaConfig(**kw, rope_parameters=rope, max_position_embeddings=256,
                    bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    torch.manual_seed(cfg["seed"])
    m = LlamaForCausalLM(c)
    # Larger-than-default weights so that logits are peaked (clear greedy choices) and every
    # norm weight differs from 1 (a missing multiply shows).
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(0.6 + 0.8 * torch.rand_like(p))
            elif "embed_tokens" in name:
                p.normal_(0.0, cfg.get("embed_std", 1.0))
            else:
                p.normal_(0.0, 1.5 / p.shape[1] ** 0.5)
    return m.float()


def state_dict_of(m: LlamaForCausalLM, tied: bool) -> "OrderedDict[str, torch.Tensor]":
    sd = OrderedDict()
    for k, v in m.state_dict().items():
        if tied and k == "lm_head.weight":
            continue
        if k.endswith("rotary_emb.inv_freq"):
            continue
        sd[k] = v.detach().clone().contiguous().float()
    return sd


def batch(vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, S), generator=g)
    ids[:, 0] = 1  # BOS
    ranges = torch.zeros(B, 2, dtype=torch.int32)
    mask = torch.zeros(B, S, dtype=torch.long)
    pos = torch.zeros(B, S, dtype=torch.long)
    labels = ids.clone()
    for b, n in enumerate(LENGTHS):
        ranges[b, 1] = n
        mask[b, :n] = 1
        pos[b] = torch.arange(S)  # pad positions keep counting; they are never read
        ids[b, n:] = 0
        labels[b, n:] = -100
    return ids, mask, pos, labels, ranges


def capture_forward(m, ids, mask, pos):
    """Runs the model, returning logits and every layer's input/output residual stream."""
    hidden = {}
    hooks = []
    for l, layer in enumerate(m.model.layers):
        hooks.append(layer.register_forward_hook(
            lambda mod, inp, out, l=l: hidden.__setitem__(
                l, (out[0] if isinstance(out, tuple) else out))))
    hooks.append(m.model.embed_tokens.register_forward_hook(
        lambda mod, inp, out: hidden.__setitem__("embed", out)))
    hooks.append(m.model.norm.register_forward_hook(
        lambda mod, inp, out: hidden.__setitem__("final", out)))
    out = m(input_ids=ids, attention_mask=mask, position_ids=pos)
    for h in hooks:
        h.remove()
    return out.logits, hidden


def greedy(m, prompt, n):
    """Argmax continuation by full recomputation (no cache, no EOS stop); returns tokens and
    the smallest top-1/top-2 gap seen."""
    seq = list(prompt)
    margin = float("inf")
    with torch.no_grad():
        for _ in range(n):
            x = torch.tensor([seq])
            logits = m(input_ids=x, position_ids=torch.arange(len(seq))[None]).logits[0, -1]
            top = torch.topk(logits, 2).values
            margin = min(margin, float(top[0] - top[1]))
            seq.append(int(torch.argmax(logits)))
    return seq[len(prompt):], margin


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def train_tokenizer(path: str, vocab: int):
    import sentencepiece as spm
    words = ["the", "a", "river", "beaver", "builds", "dam", "wood", "water", "safe", "help",
             "answer", "question", "user", "assistant", "good", "tree", "stone", "fish", "swim",
             "night", "day", "cold", "warm", "small", "large", "quick", "slow", "and", "is"]
    rnd = random.Random(5)
    lines = [" ".join(rnd.choice(words) for _ in range(rnd.randint(4, 12))) for _ in range(400)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf,
                                   vocab_size=vocab, model_type="bpe", unk_id=0, bos_id=1,
                                   eos_id=2, pad_id=-1, character_coverage=1.0,
                                   hard_vocab_limit=True, minloglevel=2,
                                   normalization_rule_name="identity")
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def write_config(d, cfg):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(legacy_config_json(cfg), f, indent=2)


def make(name: str, cfg: dict):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    m = build(cfg)
    tied = cfg["tie_word_embeddings"]
    sd = state_dict_of(m, tied)
    write_config(d, cfg)
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})

    # Round trip: the folder must load in transformers with the same function.
    re = LlamaForCausalLM.from_pretrained(d, attn_implementation="eager").float()

    md = m.double()
    ids, mask, pos, labels, ranges = batch(cfg["vocab_size"], cfg["seed"] + 100)
    logits, hidden = capture_forward(md, ids, mask, pos)
    with torch.no_grad():
        lf = re(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    for b, n in enumerate(LENGTHS):
        err = (lf[b, :n].double() - logits[b, :n]).abs().max().item()
        assert err < 1e-3, f"{name}: reloaded folder differs ({err})"
    # HF's loss: shift inside, mean over label positions != -100.
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
    md.zero_grad()
    loss.backward()

    g = OrderedDict()
    g["input_ids"] = ids.to(torch.int32)
    g["position_ids"] = pos.to(torch.int32)
    g["ranges"] = ranges
    g["labels"] = labels.to(torch.int32)
    g["logits"] = f32(logits)
    g["loss"] = f32(loss.reshape(1))
    g["hidden.embed"] = f32(hidden["embed"])
    for l in range(cfg["num_hidden_layers"]):
        g[f"hidden.{l}"] = f32(hidden[l])
    g["hidden.final"] = f32(hidden["final"])
    for pname, p in md.named_parameters():
        if tied and pname == "lm_head.weight":
            continue
        g[f"grad.{pname}"] = f32(p.grad)

    rnd = random.Random(cfg["seed"])
    found = 0
    tries = 0
    while found < 3:
        tries += 1
        assert tries < 200, f"{name}: no prompt gives a varied continuation without near-ties"
        plen = rnd.randint(3, 9)
        prompt = [1] + [rnd.randrange(3, cfg["vocab_size"]) for _ in range(plen - 1)]
        cont, margin = greedy(md, prompt, GREEDY_NEW)
        if margin < MIN_MARGIN or len(set(cont)) < MIN_DISTINCT:
            continue
        g[f"prompt.{found}"] = torch.tensor(prompt, dtype=torch.int32)
        g[f"greedy.{found}"] = torch.tensor(cont, dtype=torch.int32)
        found += 1
    save_file(g, os.path.join(d, "golden.safetensors"))
    return sd, md, (ids, mask, pos, ranges)


def score_golden(name, cfg, md, inputs):
    """safe-rlhf score model: decoder + Linear(H, 1, bias); end score at the last valid token."""
    ids, mask, pos, ranges = inputs
    torch.manual_seed(cfg["seed"] + 7)
    head = torch.nn.Linear(cfg["hidden_size"], 1, bias=True).double()
    with torch.no_grad():
        head.weight.normal_(0.0, 0.3)
        head.bias.fill_(0.25)
    md.zero_grad()
    h = md.model(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
    scores = head(h).squeeze(-1)  # [B, S]
    end = torch.stack([scores[b, LENGTHS[b] - 1] for b in range(B)])
    coef = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)
    (end * coef).sum().backward()
    g = OrderedDict()
    g["score_head.weight"] = f32(head.weight)
    g["score_head.bias"] = f32(head.bias)
    g["scores"] = f32(scores)
    g["end_scores"] = f32(end)
    g["coef"] = f32(coef)
    g["grad.score_head.weight"] = f32(head.weight.grad)
    g["grad.score_head.bias"] = f32(head.bias.grad)
    for pname, p in md.model.named_parameters():
        g[f"grad.model.{pname}"] = f32(p.grad)
    save_file(g, os.path.join(OUT, name, "score_golden.safetensors"))


# ---- ten-step training runs ---------------------------------------------------------------
TRAIN = dict(steps=10, lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8,
             max_grad_norm=1.0, warmup_ratio=0.03, regularization=0.001, seed=21)


def train_optimizer(named_params):
    """AdamW with Beaver's decay mask (no decay on biases and RMSNorm weights), the cosine
    schedule with ceil(warmup_ratio * steps) warmup steps."""
    from transformers import get_cosine_schedule_with_warmup
    decay, no_decay = [], []
    for name, p in named_params:
        (no_decay if name.endswith("norm.weight") or name.endswith("bias") else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": TRAIN["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]), eps=TRAIN["eps"],
        foreach=False)
    warmup = math.ceil(TRAIN["warmup_ratio"] * TRAIN["steps"])
    sched = get_cosine_schedule_with_warmup(opt, warmup, TRAIN["steps"])
    return opt, sched


def train_loop(params, opt, sched, loss_of_step):
    """Runs TRAIN["steps"] steps; returns per-step loss, pre-clip grad norm and lr."""
    losses, norms, lrs = [], [], []
    for t in range(TRAIN["steps"]):
        opt.zero_grad()
        loss = loss_of_step(t)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, TRAIN["max_grad_norm"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(loss.item())
        norms.append(float(norm))
    return losses, norms, lrs


def sft_batches(vocab: int, g: torch.Generator):
    """Per step: right-padded rows of random length with a prompt/answer split."""
    ids = torch.randint(3, vocab, (TRAIN["steps"], B, S), generator=g)
    ids[:, :, 0] = 1
    ranges = torch.zeros(TRAIN["steps"], B, 2, dtype=torch.int32)
    label_begin = torch.zeros(TRAIN["steps"], B, dtype=torch.int32)
    for t in range(TRAIN["steps"]):
        for b in range(B):
            n = int(torch.randint(6, S + 1, (1,), generator=g))
            ranges[t, b, 1] = n
            label_begin[t, b] = int(torch.randint(2, n - 1, (1,), generator=g))
            ids[t, b, n:] = 0
    return ids, ranges, label_begin


def pair_batches(vocab: int, g: torch.Generator):
    """Per step: B pairs as 2B rows (better first), a shared prompt, different answers."""
    rows = 2 * B
    ids = torch.randint(3, vocab, (TRAIN["steps"], rows, S), generator=g)
    ids[:, :, 0] = 1
    ranges = torch.zeros(TRAIN["steps"], rows, 2, dtype=torch.int32)
    for t in range(TRAIN["steps"]):
        for i in range(B):
            p = int(torch.randint(2, 6, (1,), generator=g))
            ids[t, B + i, :p] = ids[t, i, :p]
            for r in (i, B + i):
                n = int(torch.randint(p + 1, S + 1, (1,), generator=g))
                ranges[t, r, 1] = n
                ids[t, r, n:] = 0
    return ids, ranges


def masks_of(ranges):
    steps, rows, _ = ranges.shape
    mask = torch.zeros(steps, rows, S, dtype=torch.long)
    for t in range(steps):
        for r in range(rows):
            mask[t, r, :int(ranges[t, r, 1])] = 1
    return mask


def make_train():
    d = os.path.join(OUT, "gqa")
    g = torch.Generator().manual_seed(TRAIN["seed"])
    out = OrderedDict()
    pos = torch.arange(S)[None].expand(B, S)

    # SFT: mean CE over the answer tokens of each step's batch.
    m = LlamaForCausalLM.from_pretrained(d, attn_implementation="eager").double()
    vocab = m.config.vocab_size
    ids, ranges, label_begin = sft_batches(vocab, g)
    mask = masks_of(ranges)
    labels = ids.clone()
    for t in range(TRAIN["steps"]):
        for b in range(B):
            labels[t, b, :int(label_begin[t, b])] = -100
            labels[t, b, int(ranges[t, b, 1]):] = -100
    named = [(n, p) for n, p in m.named_parameters()]
    opt, sched = train_optimizer(named)

    def sft_loss(t):
        logits = m(input_ids=ids[t], attention_mask=mask[t], position_ids=pos).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab),
                                                 labels[t][:, 1:].reshape(-1),
                                                 ignore_index=-100)

    losses, norms, lrs = train_loop([p for _, p in named], opt, sched, sft_loss)
    out["sft.input_ids"] = ids.to(torch.int32)
    out["sft.ranges"] = ranges
    out["sft.label_begin"] = label_begin
    out["sft.loss"] = torch.tensor(losses, dtype=torch.float32)
    out["sft.grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    out["sft.lr"] = torch.tensor(lrs, dtype=torch.float32)
    for n, p in named:
        out[f"sft.final.{n}"] = f32(p)
    print("sft: loss", " ".join(f"{x:.4f}" for x in losses))
    print("sft: grad norm", " ".join(f"{x:.3f}" for x in norms))

    # Reward model: decoder + Linear(H, 1, bias), L = mean -log sigmoid(r_b - r_w)
    # + reg * mean of the 2B squared end scores.
    m = LlamaForCausalLM.from_pretrained(d, attn_implementation="eager").double()
    sg = safe_open_tensors(os.path.join(d, "score_golden.safetensors"))
    head = torch.nn.Linear(m.config.hidden_size, 1, bias=True).double()
    with torch.no_grad():
        head.weight.copy_(sg["score_head.weight"])
        head.bias.copy_(sg["score_head.bias"])
    ids, ranges = pair_batches(vocab, g)
    mask = masks_of(ranges)
    rpos = torch.arange(S)[None].expand(2 * B, S)
    named = [(f"model.{n}", p) for n, p in m.model.named_parameters()]
    named += [(f"score_head.{n}", p) for n, p in head.named_parameters()]
    opt, sched = train_optimizer(named)

    def rm_loss(t):
        h = m.model(input_ids=ids[t], attention_mask=mask[t], position_ids=rpos).last_hidden_state
        scores = head(h).squeeze(-1)
        end = torch.stack([scores[r, int(ranges[t, r, 1]) - 1] for r in range(2 * B)])
        better, worse = end[:B], end[B:]
        return (-torch.nn.functional.logsigmoid(better - worse).mean()
                + TRAIN["regularization"] * (end ** 2).mean())

    losses, norms, lrs = train_loop([p for _, p in named], opt, sched, rm_loss)
    out["rm.input_ids"] = ids.to(torch.int32)
    out["rm.ranges"] = ranges
    out["rm.loss"] = torch.tensor(losses, dtype=torch.float32)
    out["rm.grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    out["rm.lr"] = torch.tensor(lrs, dtype=torch.float32)
    for n, p in named:
        out[f"rm.final.{n}"] = f32(p)
    print("rm: loss", " ".join(f"{x:.4f}" for x in losses))
    print("rm: grad norm", " ".join(f"{x:.3f}" for x in norms))
    save_file(out, os.path.join(d, "train_golden.safetensors"),
              metadata={k: repr(v) for k, v in TRAIN.items()})
    print("gqa/train_golden.safetensors: written")


def safe_open_tensors(path):
    from safetensors.torch import load_file
    return load_file(path)


def main():
    if sys.argv[1:] == ["--train"]:
        make_train()
        return
    os.makedirs(OUT, exist_ok=True)
    names = sys.argv[1:] or list(FIXTURES)
    for name in names:
        cfg = FIXTURES[name]
        sd, md, inputs = make(name, cfg)
        if name == "mha":
            train_tokenizer(os.path.join(OUT, name, "tokenizer.model"), cfg["vocab_size"])
            d = os.path.join(OUT, "mha_bin")
            shutil.rmtree(d, ignore_errors=True)
            write_config(d, cfg)
            torch.save(sd, os.path.join(d, "pytorch_model.bin"))
        if name == "gqa":
            score_golden(name, cfg, md, inputs)
            d = os.path.join(OUT, "gqa_sharded")
            shutil.rmtree(d, ignore_errors=True)
            write_config(d, cfg)
            names = list(sd.keys())
            half = len(names) // 2
            parts = [names[:half], names[half:]]
            weight_map, total = {}, 0
            for k, part in enumerate(parts):
                fname = f"model-{k + 1:05d}-of-{len(parts):05d}.safetensors"
                save_file({n: sd[n] for n in part}, os.path.join(d, fname),
                          metadata={"format": "pt"})
                for n in part:
                    weight_map[n] = fname
                    total += sd[n].numel() * 4
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f,
                          indent=2)
        print(f"{name}: written")


if __name__ == "__main__":
    main()
