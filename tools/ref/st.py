"""Minimal safetensors + npy helpers for the ds3 reference tools (no `safetensors` package needed).

Reading: json header + numpy.frombuffer, dtypes F32 / F16 / BF16 / F8_E4M3 (e4m3fn) / I32 / I64 / U8.
Writing: the same layout as the `safetensors` library (8-byte LE header length, JSON header padded with
spaces to a multiple of 8, tensors sorted by decreasing alignment then name, data_offsets relative to the
start of the data buffer).
"""
import json
import os
import struct

import numpy as np

# ---------------------------------------------------------------- e4m3fn

def _e4m3_table():
    t = np.zeros(256, dtype=np.float64)
    for v in range(256):
        e, m = (v >> 3) & 0xF, v & 7
        if e == 0xF and m == 7:
            t[v] = np.nan
            continue
        r = (1.0 + m / 8.0) * 2.0 ** (e - 7) if e else m * 2.0 ** -9
        t[v] = -r if v & 0x80 else r
    return t

E4M3 = _e4m3_table()          # byte -> value (float64, exact)
_POS = E4M3[:127]             # codes 0x00..0x7E, monotonically increasing, 0 .. 448


def f32_to_e4m3(x):
    """Round float array to e4m3fn codes, round-to-nearest-even, saturating at +-448 (no NaN input)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), 448.0)
    hi = np.searchsorted(_POS, a, side="left")            # first code with value >= a
    hi = np.clip(hi, 0, 126)
    lo = np.clip(hi - 1, 0, 126)
    dlo = a - _POS[lo]
    dhi = _POS[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))  # ties -> even mantissa (even code)
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    code = np.where(a == _POS[hi], hi, code).astype(np.uint8)
    neg = (x < 0) & (code != 0)
    return (code | np.where(neg, 0x80, 0)).astype(np.uint8)


# ---------------------------------------------------------------- bf16

def bf16_bits_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16                # round to nearest even
    return u.astype(np.uint16)


# ---------------------------------------------------------------- reading

_DT = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2), "F8_E4M3": (np.uint8, 1),
       "I32": (np.int32, 4), "I64": (np.int64, 8), "U8": (np.uint8, 1), "F64": (np.float64, 8)}


def read_safetensors(path):
    """Returns {name: (dtype_str, raw numpy array with stored element type)}."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    hdr = json.loads(buf[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in _DT:
            raise ValueError(f"{path}: {name}: unsupported dtype {dt}")
        npdt, size = _DT[dt]
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        cnt = int(np.prod(shape)) if shape else 1
        if e - b != cnt * size:
            raise ValueError(f"{path}: {name}: data_offsets length {e-b} != {cnt}*{size}")
        arr = np.frombuffer(buf, dtype=np.dtype(npdt).newbyteorder("<"), count=cnt, offset=base + b).reshape(shape)
        out[name] = (dt, arr)
    return out


def to_f64(dt, arr):
    if dt == "BF16":
        return bf16_bits_to_f32(arr).astype(np.float64)
    if dt == "F8_E4M3":
        return E4M3[arr]
    return arr.astype(np.float64)


class Checkpoint:
    """HF checkpoint folder: config.json + model.safetensors.index.json (or a single model.safetensors)."""

    def __init__(self, folder):
        self.folder = folder
        with open(os.path.join(folder, "config.json")) as f:
            self.config = json.load(f)
        idx = os.path.join(folder, "model.safetensors.index.json")
        self.raw = {}
        if os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f)["weight_map"]
            shards = {}
            for name, fn in wm.items():
                if fn not in shards:
                    shards[fn] = read_safetensors(os.path.join(folder, fn))
                if name not in shards[fn]:
                    raise KeyError(f"{fn}: tensor {name} listed in index but missing")
                self.raw[name] = shards[fn][name]
        else:
            self.raw = read_safetensors(os.path.join(folder, "model.safetensors"))
        self.used = set()

    def has(self, name):
        return name in self.raw

    def get(self, name):
        """Dequantised weight as float64 (exact stored values; FP8 uses weight_scale_inv 128x128 blocks)."""
        dt, arr = self.raw[name]
        self.used.add(name)
        w = to_f64(dt, arr)
        if dt == "F8_E4M3":
            sname = name + "_scale_inv"
            if sname not in self.raw:
                raise KeyError(f"FP8 tensor {name} without {sname}")
            self.used.add(sname)
            s = to_f64(*self.raw[sname])
            m, n = w.shape
            bm = (m + 127) // 128
            bn = (n + 127) // 128
            if s.shape != (bm, bn):
                raise ValueError(f"{sname}: shape {s.shape} != {(bm, bn)}")
            full = np.repeat(np.repeat(s, 128, axis=0), 128, axis=1)[:m, :n]
            w = w * full
        return w


# ---------------------------------------------------------------- writing

def _align(dt):
    return _DT[dt][1]


def write_safetensors(path, tensors):
    """tensors: {name: (dtype_str, raw numpy array already in the stored element type)}."""
    names = sorted(tensors, key=lambda k: (-_align(tensors[k][0]), k))
    hdr = {"__metadata__": {"format": "pt"}}
    off = 0
    blobs = []
    for k in names:
        dt, arr = tensors[k]
        npdt, size = _DT[dt]
        a = np.ascontiguousarray(arr, dtype=np.dtype(npdt).newbyteorder("<"))
        b = a.tobytes()
        hdr[k] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off
