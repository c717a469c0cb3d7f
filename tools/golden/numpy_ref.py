#!/usr/bin/env python3
"""Independent float64 numpy forward of the Qwen3.5-MoE text model, written from
shared/docs/qwen35-moe.md (token-by-token DeltaNet recurrence, no chunking), checked
against the golden logits. It shows the doc's math reproduces transformers and is a
readable second reference when debugging the C++ engine.

    python3 tools/golden/numpy_ref.py tests/data/golden/basic [more fixture dirs]

Reads HF CausalLM snapshots (prefix `model.`, fused experts) only.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stio  # noqa: E402


def rms(x, eps):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)


def silu(x):
    return x / (1 + np.exp(-x))


def softplus(x):
    return np.log1p(np.exp(x))


def forward(W, c, ids, k=None):
    H, eps = c["hidden_size"], c["rms_norm_eps"]
    nl = c["num_hidden_layers"]
    types = c.get("layer_types") or ["full_attention" if (i + 1) % c.get("full_attention_interval", 4) == 0
                                     else "linear_attention" for i in range(nl)]
    rp = c.get("rope_parameters") or {}
    theta = rp.get("rope_theta", c.get("rope_theta", 10000.0))
    prf = rp.get("partial_rotary_factor", c.get("partial_rotary_factor", 0.25))
    K = k or c["num_experts_per_tok"]
    T = len(ids)
    x = W["model.embed_tokens.weight"][ids]
    for i, t in enumerate(types):
        p = f"model.layers.{i}."
        h = rms(x, eps) * (1 + W[p + "input_layernorm.weight"])
        if t == "full_attention":
            a = p + "self_attn."
            nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
            qg = (h @ W[a + "q_proj.weight"].T).reshape(T, nh, 2 * hd)
            q, gate = qg[..., :hd], qg[..., hd:].reshape(T, nh * hd)
            kk = (h @ W[a + "k_proj.weight"].T).reshape(T, nkv, hd)
            v = (h @ W[a + "v_proj.weight"].T).reshape(T, nkv, hd)
            q = rms(q, eps) * (1 + W[a + "q_norm.weight"])
            kk = rms(kk, eps) * (1 + W[a + "k_norm.weight"])
            rot = int(hd * prf)
            inv = theta ** (-np.arange(0, rot, 2) / rot)
            ang = np.arange(T)[:, None] * inv[None]
            cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]

            def rope(z):
                z = z.copy()
                a1, a2 = z[..., : rot // 2].copy(), z[..., rot // 2: rot].copy()
                z[..., : rot // 2] = a1 * cos - a2 * sin
                z[..., rot // 2: rot] = a2 * cos + a1 * sin
                return z
            q, kk = rope(q), rope(kk)
            out = np.zeros((T, nh, hd))
            g = nh // nkv
            for hh in range(nh):
                s = q[:, hh] @ kk[:, hh // g].T / np.sqrt(hd)
                s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
                s = np.exp(s - s.max(-1, keepdims=True))
                out[:, hh] = (s / s.sum(-1, keepdims=True)) @ v[:, hh // g]
            mix = (out.reshape(T, -1) * (1 / (1 + np.exp(-gate)))) @ W[a + "o_proj.weight"].T
        else:
            a = p + "linear_attn."
            kh, vh = c["linear_num_key_heads"], c["linear_num_value_heads"]
            kd, vd = c["linear_key_head_dim"], c["linear_value_head_dim"]
            qkv = h @ W[a + "in_proj_qkv.weight"].T
            z = (h @ W[a + "in_proj_z.weight"].T).reshape(T, vh, vd)
            b = h @ W[a + "in_proj_b.weight"].T
            al = h @ W[a + "in_proj_a.weight"].T
            cw = W[a + "conv1d.weight"][:, 0, :]  # [C, Kc]
            Kc = cw.shape[1]
            pad = np.concatenate([np.zeros((Kc - 1, qkv.shape[1])), qkv], 0)
            conv = silu(sum(cw[:, j] * pad[j: j + T] for j in range(Kc)))
            q = conv[:, : kh * kd].reshape(T, kh, kd)
            kk = conv[:, kh * kd: 2 * kh * kd].reshape(T, kh, kd)
            v = conv[:, 2 * kh * kd:].reshape(T, vh, vd)
            q = q / np.sqrt((q * q).sum(-1, keepdims=True) + 1e-6) / np.sqrt(kd)
            kk = kk / np.sqrt((kk * kk).sum(-1, keepdims=True) + 1e-6)
            beta = 1 / (1 + np.exp(-b))
            g = -np.exp(W[a + "A_log"]) * softplus(al + W[a + "dt_bias"])
            o = np.zeros((T, vh, vd))
            r = vh // kh
            for hh in range(vh):
                S = np.zeros((kd, vd))
                for tt in range(T):
                    kv, qv = kk[tt, hh // r], q[tt, hh // r]
                    S = np.exp(g[tt, hh]) * S
                    delta = beta[tt, hh] * (v[tt, hh] - S.T @ kv)
                    S = S + np.outer(kv, delta)
                    o[tt, hh] = S.T @ qv
            o = W[a + "norm.weight"] * rms(o, eps) * silu(z)
            mix = o.reshape(T, -1) @ W[a + "out_proj.weight"].T
        x = x + mix
        h = rms(x, eps) * (1 + W[p + "post_attention_layernorm.weight"])
        m = p + "mlp."
        logits = h @ W[m + "gate.weight"].T
        pr = np.exp(logits - logits.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        I = c["moe_intermediate_size"]
        out = np.zeros_like(h)
        for tt in range(T):
            top = np.argsort(-pr[tt], kind="stable")[:K]
            wts = pr[tt, top] / pr[tt, top].sum()
            for e, wt in zip(top, wts):
                gu = W[m + "experts.gate_up_proj"][e] @ h[tt]
                out[tt] += wt * (W[m + "experts.down_proj"][e] @ (silu(gu[:I]) * gu[I:]))
        sh = (silu(h @ W[m + "shared_expert.gate_proj.weight"].T) * (h @ W[m + "shared_expert.up_proj.weight"].T)) \
            @ W[m + "shared_expert.down_proj.weight"].T
        sg = 1 / (1 + np.exp(-(h @ W[m + "shared_expert_gate.weight"].T)))
        x = x + out + sg * sh
    return (rms(x, eps) * (1 + W["model.norm.weight"])) @ W["lm_head.weight"].T


def main():
    worst = 0.0
    for d in sys.argv[1:]:
        c = json.load(open(os.path.join(d, "config.json")))
        W = {n: a.astype(np.float64) for n, (_, _, a) in stio.read_file(os.path.join(d, "model.safetensors")).items()}
        g = json.load(open(os.path.join(d, "golden.json")))
        for case in g["cases"]:
            ref = np.load(os.path.join(d, case["logits"]))
            got = forward(W, c, case["prompt_ids"], case["k"])
            err = float(np.abs(got - ref).max())
            worst = max(worst, err)
            print(f"{os.path.basename(d):14s} {case['name']:10s} max|numpy - transformers| = {err:.2e}  "
                  f"argmax equal: {bool(np.array_equal(got.argmax(-1), ref.argmax(-1)))}")
    print(f"worst {worst:.2e}")


if __name__ == "__main__":
    main()
