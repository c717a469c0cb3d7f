"""Minimal safetensors reader/writer and bf16 helpers in plain numpy.

We write the files ourselves (rather than through safetensors.torch) so that the
exact bytes, tensor names, dtypes (F32, BF16, U32) and sharding are under our
control and independent of the torch / safetensors versions. The format is the
public one: u64 little-endian header length, a JSON header mapping each name to
{dtype, shape, data_offsets}, then the packed data with no holes.
"""

import json
import struct

import numpy as np

_NP_OF = {"F32": np.float32, "U32": np.uint32, "I32": np.int32, "U8": np.uint8, "F16": np.float16}
_SIZE_OF = {"F32": 4, "U32": 4, "I32": 4, "BF16": 2, "F16": 2, "U8": 1}


def f32_to_bf16_bits(x):
    """Round float32 -> bfloat16 (round to nearest even), returned as uint16 bits."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    if not np.all(np.isfinite(x)):
        raise ValueError("non-finite value in bf16 conversion")
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(b):
    b = np.ascontiguousarray(b, dtype=np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32)


def bf16_round(x):
    """float32 array rounded to the nearest bf16 value, kept as float32."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x)).reshape(np.shape(x))


class Tensor:
    """A tensor to store: dtype tag and raw little-endian bytes."""

    def __init__(self, dtype, shape, data):
        self.dtype = dtype
        self.shape = [int(s) for s in shape]
        self.data = data
        assert len(data) == _SIZE_OF[dtype] * int(np.prod(self.shape, dtype=np.int64)), (dtype, shape, len(data))


def as_tensor(arr, dtype):
    """numpy array -> Tensor in the given safetensors dtype ("F32", "BF16", "U32")."""
    arr = np.asarray(arr)
    if dtype == "BF16":
        return Tensor("BF16", arr.shape, f32_to_bf16_bits(arr.astype(np.float32)).tobytes())
    return Tensor(dtype, arr.shape, np.ascontiguousarray(arr, dtype=_NP_OF[dtype]).tobytes())


def write_file(path, tensors, metadata=None):
    """tensors: dict name -> Tensor. Larger element types first (keeps data aligned), then by name."""
    names = sorted(tensors, key=lambda n: (-_SIZE_OF[tensors[n].dtype], n))
    header = {"__metadata__": metadata or {"format": "pt"}}
    off = 0
    for n in names:
        t = tensors[n]
        header[n] = {"dtype": t.dtype, "shape": t.shape, "data_offsets": [off, off + len(t.data)]}
        off += len(t.data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for n in names:
            f.write(tensors[n].data)
    return off


def read_file(path):
    """-> dict name -> (dtype, shape, numpy array; BF16 returned as float32)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a : base + b]
        if info["dtype"] == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(buf, dtype=np.uint16)).reshape(info["shape"])
        else:
            arr = np.frombuffer(buf, dtype=_NP_OF[info["dtype"]]).reshape(info["shape"]).copy()
        out[name] = (info["dtype"], info["shape"], arr)
    return out
