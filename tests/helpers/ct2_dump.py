#!/usr/bin/env python3
"""Independent reader of CTranslate2's model.bin for voxshard's model test.

Parses the binary layout with struct/numpy (not CTranslate2 and not voxshard) and writes, per
variable: shape, dtype, byte offset of its data, float64 sum and abs-sum of its values as fp32
(int8 divided by its per-row <name>_scale), and a few sample values; plus the alias table and the
folder's config.json decoding lists.

usage: ct2_dump.py MODEL_DIR OUT.json
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def main():
    model_dir, out_path = sys.argv[1], sys.argv[2]
    data = open(os.path.join(model_dir, "model.bin"), "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def string():
        nonlocal pos
        (n,) = take("H")
        s = data[pos:pos + n - 1].decode("utf-8")
        pos += n
        return s

    (version,) = take("I")
    spec = string()
    (revision,) = take("I")
    (n_vars,) = take("I")
    raw = {}
    for _ in range(n_vars):
        name = string()
        (rank,) = take("B")
        dims = list(take("%dI" % rank)) if rank else []
        (dtype,) = take("B")
        (nbytes,) = take("I")
        if dtype == 5:  # bfloat16: the high half of a float32
            u = np.frombuffer(data, np.uint16, nbytes // 2, pos).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(data, DTYPES[dtype], nbytes // np.dtype(DTYPES[dtype]).itemsize, pos)
        raw[name] = dict(dims=dims, dtype=dtype, offset=pos, nbytes=nbytes, arr=arr)
        pos += nbytes
    aliases = {}
    if version >= 6:
        (n_alias,) = take("I")
        for _ in range(n_alias):
            a = string()
            aliases[a] = string()
    assert pos == len(data), "trailing bytes"

    tensors = {}
    for name, v in raw.items():
        if not v["dims"] or name.endswith("_scale"):
            continue
        vals32 = v["arr"].astype(np.float32)
        if v["dtype"] == 1:  # float32 division: one correctly rounded result per value
            scale = raw[name + "_scale"]["arr"].astype(np.float32)
            vals32 = (vals32.reshape(v["dims"][0], -1) / scale[:, None]).reshape(-1)
        n = vals32.size
        idx = sorted(set([0, 1, n // 3, n // 2, n - 1]))
        tensors[name] = dict(
            shape=v["dims"], dtype=v["dtype"], offset=v["offset"], nbytes=v["nbytes"],
            sum=float(vals32.astype(np.float64).sum()),
            abs_sum=float(np.abs(vals32.astype(np.float64)).sum()),
            samples=[[int(i), float(vals32[i])] for i in idx])
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    json.dump(dict(binary_version=version, spec=spec, revision=revision, file_size=len(data),
                   tensors=tensors, aliases=aliases,
                   suppress_ids=cfg.get("suppress_ids", []),
                   suppress_ids_begin=cfg.get("suppress_ids_begin", []),
                   lang_ids=cfg.get("lang_ids", []),
                   alignment_heads=cfg.get("alignment_heads", [])),
              open(out_path, "w"))


if __name__ == "__main__":
    main()
