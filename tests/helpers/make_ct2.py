#!/usr/bin/env python3
"""Rewrites a CTranslate2 Whisper model.bin with other dtypes, for voxshard's model test: every
linear weight as int8 with a float32 per-row <name>_scale, layer norms as bfloat16, the rest as
float32, and decoder/layer_1/ffn/layer_norm/beta replaced by an alias of
decoder/layer_0/ffn/layer_norm/beta (aliases must resolve generically). Written with
struct/numpy from the CTranslate2 layout, independently of voxshard.

usage: make_ct2.py SRC_DIR OUT_DIR    (copies config.json and tokenizer.json)
"""
import os
import shutil
import struct
import sys

import numpy as np

NP = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
ALIAS, TARGET = "decoder/layer_1/ffn/layer_norm/beta", "decoder/layer_0/ffn/layer_norm/beta"


def main():
    src, out = sys.argv[1], sys.argv[2]
    data = open(os.path.join(src, "model.bin"), "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v

    def string():
        nonlocal pos
        (n,) = take("H")
        s = data[pos:pos + n - 1].decode()
        pos += n
        return s

    (version,) = take("I")
    spec = string()
    (rev,) = take("I")
    (n,) = take("I")
    variables = []
    for _ in range(n):
        name = string()
        (rank,) = take("B")
        dims = list(take("%dI" % rank)) if rank else []
        (dt,) = take("B")
        (nb,) = take("I")
        arr = np.frombuffer(data, NP[dt], nb // np.dtype(NP[dt]).itemsize, pos).reshape(dims)
        pos += nb
        variables.append((name, dims, dt, arr))
    (na,) = take("I")
    aliases = [(string(), string()) for _ in range(na)]

    outv = []
    for name, dims, dt, arr in variables:
        if name == ALIAS:
            continue
        if not dims or dt != 4:
            outv.append((name, dims, dt, arr.tobytes()))
            continue
        a = arr.astype(np.float32)
        if "/linear_" in name and name.endswith("/weight"):
            amax = np.abs(a.reshape(dims[0], -1)).max(axis=1)
            scale = (127.0 / np.maximum(amax, 1e-12)).astype(np.float32)
            q = np.clip(np.rint(a.reshape(dims[0], -1) * scale[:, None]), -127, 127).astype(np.int8)
            outv.append((name, dims, 1, q.tobytes()))
            outv.append((name + "_scale", [dims[0]], 0, scale.tobytes()))
        elif "layer_norm" in name:
            bits = (a.view(np.uint32) >> 16).astype(np.uint16)  # truncation: any bf16 will do
            outv.append((name, dims, 5, bits.tobytes()))
        else:
            outv.append((name, dims, 0, a.tobytes()))
    aliases.append((ALIAS, TARGET))

    def wstr(f, s):
        b = s.encode()
        f.write(struct.pack("<H", len(b) + 1) + b + b"\0")

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.bin"), "wb") as f:
        f.write(struct.pack("<I", version))
        wstr(f, spec)
        f.write(struct.pack("<II", rev, len(outv)))
        for name, dims, dt, raw in outv:
            wstr(f, name)
            f.write(struct.pack("<B", len(dims)) + struct.pack("<%dI" % len(dims), *dims))
            f.write(struct.pack("<BI", dt, len(raw)) + raw)
        f.write(struct.pack("<I", len(aliases)))
        for a, t in aliases:
            wstr(f, a)
            wstr(f, t)
    for aux in ("config.json", "tokenizer.json"):
        shutil.copy(os.path.join(src, aux), os.path.join(out, aux))


if __name__ == "__main__":
    main()
