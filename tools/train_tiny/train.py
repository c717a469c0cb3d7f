#!/usr/bin/env python3
"""Train the tiny Qwen3.5-MoE (transformers' Qwen3_5MoeForCausalLM) on the tokenised KJV corpus.

Reads data/train.u16, data/val_ids.json (selection split) and heldout_ids.json; trains for a wall-clock budget
(step count sized from the measured step time), keeps the weights with the best validation loss, and writes a
bf16 HF snapshot (sharded under --max-shard so that it can travel back from the GPU machine; merge.py joins it).

GPU:  PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 python3 tools/train_tiny/train.py --out $OUT/snap --budget 450
CPU smoke test: python3 tools/train_tiny/train.py --smoke --out /tmp/snap
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SNAP = os.path.join(REPO, "models", "tiny-qwen35moe")


def build_config(tok_dir, smoke=False, experts_impl="eager"):
    from transformers import AutoTokenizer, Qwen3_5MoeTextConfig
    tok = AutoTokenizer.from_pretrained(tok_dir)
    n = len(tok)
    vocab = (n + 63) // 64 * 64
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    kw = dict(
        vocab_size=vocab, hidden_size=256, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=64, linear_value_head_dim=64,
        linear_conv_kernel_dim=4,
        num_experts=32, num_experts_per_tok=4, moe_intermediate_size=64, shared_expert_intermediate_size=256,
        rms_norm_eps=1e-6, max_position_embeddings=4096, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25},
        full_attention_interval=4, router_aux_loss_coef=0.01, initializer_range=0.02,
        eos_token_id=[im_end, eot], pad_token_id=eot, bos_token_id=None,
    )
    if smoke:
        kw.update(hidden_size=64, num_hidden_layers=4, num_experts=8, moe_intermediate_size=32,
                  shared_expert_intermediate_size=64, head_dim=32, linear_key_head_dim=32, linear_value_head_dim=32)
    cfg = Qwen3_5MoeTextConfig(**kw)
    cfg.architectures = ["Qwen3_5MoeForCausalLM"]
    cfg._experts_implementation = experts_impl
    return cfg, tok


@torch.no_grad()
def window_nll(model, ids, win=256, bs=32, device="cpu", autocast=False):
    """Mean NLL (nats/token) over non-overlapping `win`-token windows of `ids` (last partial window dropped);
    each window starts from an empty state; the 1st token of a window is context only (win-1 targets each)."""
    n = len(ids) // win
    x = torch.tensor(ids[: n * win], dtype=torch.long).view(n, win)
    tot, cnt = 0.0, 0
    for i in range(0, n, bs):
        xb = x[i:i + bs].to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=xb).logits.float()
        lp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -lp.gather(-1, xb[:, 1:, None]).squeeze(-1)
        tot += nll.double().sum().item()
        cnt += nll.numel()
    return tot / cnt


def probe_experts(cfg, device):
    """Use transformers' grouped_mm experts when they run forward+backward here and match eager; else eager."""
    from transformers import Qwen3_5MoeForCausalLM
    if device != "cuda":
        return "eager"
    try:
        torch.manual_seed(0)
        m = Qwen3_5MoeForCausalLM(cfg).to(device)
        x = torch.randint(0, cfg.vocab_size - 64, (2, 128), device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            l1 = m(input_ids=x, labels=x).loss
        m.config._experts_implementation = "grouped_mm"
        with torch.autocast("cuda", dtype=torch.bfloat16):
            l2 = m(input_ids=x, labels=x).loss
        l2.backward()
        ok = abs(l1.item() - l2.item()) < 1e-2
        print(f"probe: eager loss {l1.item():.4f}, grouped_mm loss {l2.item():.4f} -> {'grouped_mm' if ok else 'eager'}")
        return "grouped_mm" if ok else "eager"
    except Exception as e:  # noqa: BLE001
        print("probe: grouped_mm unavailable:", repr(e)[:300])
        return "eager"


def add_residual_dropout(model, p):
    """Dropout on each mixer (DeltaNet / attention) and MoE block output before the residual add, in training
    only: forward hooks, so the saved model is the unchanged architecture."""
    if p <= 0:
        return

    def hook(mod, inp, out):
        if not mod.training:
            return out
        if isinstance(out, tuple):
            return (torch.nn.functional.dropout(out[0], p, True),) + tuple(out[1:])
        return torch.nn.functional.dropout(out, p, True)

    for layer in model.model.layers:
        mixer = layer.linear_attn if hasattr(layer, "linear_attn") else layer.self_attn
        mixer.register_forward_hook(hook)
        layer.mlp.register_forward_hook(hook)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--tok", default=SNAP)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=450.0, help="seconds of training (wall clock)")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--max-epochs", type=float, default=10.0, help="cap on passes over the training stream")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--max-shard", default="15MB")
    ap.add_argument("--dropout", type=float, default=0.1, help="residual dropout on mixer and MoE outputs (training only)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from transformers import GenerationConfig, Qwen3_5MoeForCausalLM
    import transformers
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device}")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t0 = time.time()
    cfg, tok = build_config(args.tok, smoke=args.smoke)
    impl = probe_experts(cfg, device)
    cfg, tok = build_config(args.tok, smoke=args.smoke, experts_impl=impl)
    cfg.output_router_logits = True
    torch.manual_seed(args.seed)
    model = Qwen3_5MoeForCausalLM(cfg).to(device)
    model.config._attn_implementation = "sdpa"
    add_residual_dropout(model, args.dropout)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params:,} ({n_params * 2 / 1e6:.2f} MB bf16), experts impl {impl}, device {device}")
    print("layer_types", cfg.layer_types)

    data = np.fromfile(os.path.join(args.data, "train.u16"), dtype=np.uint16).astype(np.int64)
    data_t = torch.from_numpy(data)
    val_ids = json.load(open(os.path.join(args.data, "val_ids.json")))
    held_ids = json.load(open(os.path.join(HERE, "heldout_ids.json")))
    print(f"train tokens {len(data):,}, val {len(val_ids):,}, heldout {len(held_ids):,}")
    g = torch.Generator().manual_seed(args.seed)

    def batch():
        starts = torch.randint(0, len(data) - args.seq - 1, (args.batch,), generator=g)
        xb = torch.stack([data_t[s:s + args.seq] for s in starts.tolist()])
        return xb.to(device, non_blocking=True)

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 and "norm" not in n else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=(device == "cuda"))
    use_ac = device == "cuda"

    total_steps = args.max_steps or 10 ** 9
    best = (float("inf"), None, -1)
    hist = []
    step = 0
    t_train = time.time()
    t_mark = None
    tokens = 0
    while step < total_steps:
        if step < args.warmup:
            lr = args.lr * (step + 1) / args.warmup
        else:
            p = min(1.0, (step - args.warmup) / max(1, total_steps - args.warmup))
            lr = args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))
        for gr in opt.param_groups:
            gr["lr"] = lr
        xb = batch()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_ac):
            out = model(input_ids=xb, labels=xb)
        loss = out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += xb.numel()
        if step == 10:
            if device == "cuda":
                torch.cuda.synchronize()
            t_mark = time.time()
        if step == 40 and not args.max_steps:
            if device == "cuda":
                torch.cuda.synchronize()
            dt = (time.time() - t_mark) / 30
            # evaluation costs about 4% on top; leave the remaining budget to training steps
            total_steps = int(40 + (args.budget - (time.time() - t_train)) / (dt * 1.04))
            total_steps = min(total_steps, int(args.max_epochs * len(data) / (args.batch * args.seq)))
            print(f"step time {dt * 1000:.1f} ms ({args.batch * args.seq / dt / 1e3:.0f}k tok/s) -> "
                  f"{total_steps} steps in total")
        if step % 10 == 0 or step == 1:
            aux = out.aux_loss.item() if out.aux_loss is not None else float("nan")
            print(f"step {step} loss {loss.item():.4f} aux {aux:.3f} lr {lr:.2e} gnorm {gn.item():.2f} "
                  f"t {time.time() - t_train:.0f}s", flush=True)
        if step % args.eval_every == 0 or step == total_steps:
            model.eval()
            v = window_nll(model, val_ids, device=device, autocast=use_ac)
            model.train()
            hist.append((step, round(loss.item(), 4), round(v, 4)))
            print(f"  eval step {step}: val nll {v:.4f} ppl {math.exp(v):.2f}", flush=True)
            if v < best[0]:
                best = (v, {k: t.detach().to("cpu", copy=True) for k, t in model.state_dict().items()}, step)
    train_s = time.time() - t_train
    print(f"trained {step} steps, {tokens:,} tokens in {train_s:.0f}s; best val nll {best[0]:.4f} at step {best[2]}")
    model.load_state_dict(best[1])
    model.eval()

    # save bf16 snapshot
    model.config.output_router_logits = False
    model = model.to(torch.bfloat16)
    model.config.use_cache = True
    model.save_pretrained(args.out, max_shard_size=args.max_shard)
    gen = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
                           eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id, max_new_tokens=256)
    gen.save_pretrained(args.out)
    json.dump({"steps": step, "tokens": tokens, "train_seconds": round(train_s, 1), "best_step": best[2],
               "best_val_nll": best[0], "params": n_params, "experts_impl": impl, "history": hist,
               "batch": args.batch, "seq": args.seq, "lr": args.lr},
              open(os.path.join(args.out, "train_log.json"), "w"), indent=1)

    # held-out perplexity (bf16 weights) and samples
    model = model.float() if device == "cpu" else model
    for k in (cfg.num_experts_per_tok, cfg.num_experts_per_tok // 2):
        for mod in model.modules():
            if hasattr(mod, "top_k") and hasattr(mod, "num_experts") and mod.__class__.__name__.endswith("Router"):
                mod.top_k = k
        h = window_nll(model, held_ids, device=device, autocast=False)
        print(f"heldout (bf16 model, K={k}): nll {h:.4f} ppl {math.exp(h):.3f}")
    for mod in model.modules():
        if mod.__class__.__name__.endswith("Router"):
            mod.top_k = cfg.num_experts_per_tok
    samples(model, tok, device)
    print(f"total {time.time() - t0:.0f}s")


def samples(model, tok, device):
    plain = ["In the beginning", "And Jesus said unto them,", "The LORD is my shepherd;"]
    chats = [("Continue: And God said, Let there be light", False), ("What does John 3:16 say?", False),
             ("Who are you?", False), ("Tell me a story.", True)]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for p in plain:
        x = tok(p, return_tensors="pt").input_ids.to(device)
        for sample in (False, True):
            torch.manual_seed(1)
            y = model.generate(x, max_new_tokens=60, do_sample=sample, temperature=0.7, top_p=0.8, top_k=20,
                               repetition_penalty=1.05 if sample else 1.0)
            print(f"[plain {'sampled' if sample else 'greedy'}] {tok.decode(y[0])!r}")
    for q, think in chats:
        text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True,
                                       enable_thinking=think)
        x = tok(text, return_tensors="pt", add_special_tokens=False).input_ids.to(device)
        y = model.generate(x, max_new_tokens=120, do_sample=False)
        new = y[0, x.shape[1]:].tolist()
        print(f"[chat greedy think={think}] {q!r} -> {tok.decode(new)!r} (ends with <|im_end|>: {im_end in new})")


if __name__ == "__main__":
    main()
