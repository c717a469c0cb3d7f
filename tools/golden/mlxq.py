"""MLX affine quantisation in numpy (mx.quantize(w, group_size, bits), mode "affine").

Algorithm (mlx/ops.cpp, affine_quantize), per group of `group_size` consecutive
input elements, computed in float32 here:
    n_bins = 2**bits - 1
    scale  = max((w_max - w_min) / n_bins, 1e-7), negated unless |w_min| > |w_max|
    edge   = w_min if |w_min| > |w_max| else w_max
    q0     = round(edge / scale);  if q0 != 0: scale = edge / q0
    bias   = 0 if q0 == 0 else edge
    q      = clip(round((w - bias) / scale), 0, n_bins)
so that w ~= scale * q + bias. q is packed into uint32 words as one little-endian
bit stream: element j of a row occupies bits [j*bits, (j+1)*bits) (4-bit: element
j of a word is (word >> 4j) & 15; 3/5/6-bit elements straddle words).
Scales and biases are stored in the checkpoint's float dtype (bf16 here); the
dequantised value an engine must reproduce uses those stored (rounded) values.

check_against_mlx() compares with the real mlx package when it is importable.
"""

import numpy as np

from stio import bf16_round

SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)


def quantize(w, group_size, bits):
    """w: float32 [..., in]. Returns (packed uint32 [..., in*bits/32], scales f32, biases f32 [..., in/gs])."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits {bits} not supported by MLX")
    w = np.asarray(w, dtype=np.float32)
    din = w.shape[-1]
    if din % group_size or (din * bits) % 32:
        raise ValueError(f"input dim {din} not divisible by group {group_size} / packing for {bits} bits")
    n_bins = np.float32((1 << bits) - 1)
    g = w.reshape(*w.shape[:-1], din // group_size, group_size)
    w_max = g.max(-1, keepdims=True)
    w_min = g.min(-1, keepdims=True)
    mask = np.abs(w_min) > np.abs(w_max)
    scales = np.maximum((w_max - w_min) / n_bins, np.float32(1e-7)).astype(np.float32)
    scales = np.where(mask, scales, -scales)
    edge = np.where(mask, w_min, w_max)
    q0 = np.round(edge / scales)
    scales = np.where(q0 != 0, edge / np.where(q0 != 0, q0, 1), scales).astype(np.float32)
    biases = np.where(q0 == 0, np.float32(0), edge).astype(np.float32)
    q = np.clip(np.round((g - biases) / scales), 0, n_bins).astype(np.uint64)
    q = q.reshape(*w.shape[:-1], din)
    return pack(q, bits), scales[..., 0], biases[..., 0]


def pack(q, bits):
    """q: integer array [..., n] with values < 2**bits -> uint32 [..., n*bits/32], LSB-first bit stream."""
    n = q.shape[-1]
    lead = q.shape[:-1]
    q = q.reshape(-1, n).astype(np.uint64)
    nwords = n * bits // 32
    out = np.zeros((q.shape[0], nwords), dtype=np.uint64)
    for j in range(n):
        bit = j * bits
        w, s = divmod(bit, 32)
        out[:, w] |= (q[:, j] << np.uint64(s)) & np.uint64(0xFFFFFFFF)
        if s + bits > 32:
            out[:, w + 1] |= q[:, j] >> np.uint64(32 - s)
    return out.astype(np.uint32).reshape(*lead, nwords)


def unpack(packed, bits, n):
    lead = packed.shape[:-1]
    p = packed.reshape(-1, packed.shape[-1]).astype(np.uint64)
    mask = np.uint64((1 << bits) - 1)
    q = np.zeros((p.shape[0], n), dtype=np.uint64)
    for j in range(n):
        bit = j * bits
        w, s = divmod(bit, 32)
        v = p[:, w] >> np.uint64(s)
        if s + bits > 32:
            v |= p[:, w + 1] << np.uint64(32 - s)
        q[:, j] = v & mask
    return q.reshape(*lead, n)


def dequantize(packed, scales, biases, group_size, bits):
    """float32 w = scale * q + bias (scales/biases as given, e.g. already bf16-rounded)."""
    n = packed.shape[-1] * 32 // bits
    q = unpack(packed, bits, n).astype(np.float32)
    q = q.reshape(*q.shape[:-1], n // group_size, group_size)
    w = scales[..., None].astype(np.float32) * q + biases[..., None].astype(np.float32)
    return w.reshape(*q.shape[:-2], n).astype(np.float32)


def quantize_bf16(w, group_size, bits):
    """quantize() then round scales/biases to bf16 as the checkpoint stores them.
    Returns (packed, scales_bf16_as_f32, biases_bf16_as_f32, dequantised f32)."""
    p, s, b = quantize(w, group_size, bits)
    s, b = bf16_round(s), bf16_round(b)
    return p, s, b, dequantize(p, s, b, group_size, bits)


def check_against_mlx(seed=0):
    """Bit-exact comparison with mx.quantize / mx.dequantize if mlx is installed. Returns a message."""
    try:
        import mlx.core as mx
    except Exception as e:  # noqa: BLE001
        return f"mlx not importable ({type(e).__name__}); numpy quantiser not cross-checked"
    rng = np.random.default_rng(seed)
    msgs = []
    for bits in SUPPORTED_BITS:
        for gs in (32, 64, 128):
            w = (rng.standard_normal((6, 256)) * 0.05).astype(np.float32)
            w[0, :gs] = 0.0  # an all-zero group
            w[1, :gs] = np.abs(w[1, :gs])  # one-signed groups
            w[2, :gs] = -np.abs(w[2, :gs])
            p, s, b = quantize(w, gs, bits)
            mp, ms, mb = mx.quantize(mx.array(w), group_size=gs, bits=bits)
            mp, ms, mb = np.array(mp), np.array(ms), np.array(mb)
            if mp.dtype != np.uint32 or mp.shape != p.shape:
                raise AssertionError(f"mlx packed {mp.dtype}{mp.shape} vs ours {p.shape}")
            if not (np.array_equal(mp, p) and np.array_equal(ms, s) and np.array_equal(mb, b)):
                nq = int(np.sum(unpack(mp, bits, 256) != unpack(p, bits, 256)))
                raise AssertionError(f"mismatch vs mlx at bits={bits} gs={gs}: {nq} q values differ, "
                                     f"scales eq {np.array_equal(ms, s)}, biases eq {np.array_equal(mb, b)}")
            # dequantisation with bf16 scales/biases, as an MLX bf16 checkpoint stores them
            sb, bb = bf16_round(s), bf16_round(b)
            ours = dequantize(p, sb, bb, gs, bits)
            theirs = np.array(mx.dequantize(mx.array(p), mx.array(sb), mx.array(bb), group_size=gs, bits=bits))
            err = float(np.max(np.abs(ours - theirs)))
            if err > 1e-6:
                raise AssertionError(f"dequantize differs from mlx by {err} (bits={bits} gs={gs})")
    msgs.append(f"numpy quantiser bit-exact with mlx {mx.__version__} for bits {SUPPORTED_BITS}, groups 32/64/128")
    return "; ".join(msgs)


if __name__ == "__main__":
    print(check_against_mlx())
