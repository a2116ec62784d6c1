#!/usr/bin/env python3
"""Writes a tiny random Hugging Face Whisper folder for voxshard's model test, with the expected
canonical (CTranslate2-named) tensors computed independently in numpy.

The safetensors file is written by hand (u64 header length, JSON header, raw data) with mixed
dtypes: the embedding in F16, conv weights in BF16, the rest F32; proj_out is left out (tied).

usage: make_hf_whisper.py OUT_DIR TOKENIZER_JSON [--bad-shape HF_NAME] [--drop HF_NAME]
Writes OUT_DIR/{model.safetensors,config.json,generation_config.json,tokenizer.json,expected.json}.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

D, HEADS, ENC_LAYERS, DEC_LAYERS, MELS, VOCAB, ACTX, TCTX = 128, 2, 2, 2, 80, 51864, 1500, 448


def bf16_bits(a):
    """float32 -> bfloat16 bits, rounding to nearest even, and the float32 value it stands for."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r, (r.astype(np.uint32) << 16).view(np.float32)


def main():
    out, tok = sys.argv[1], sys.argv[2]
    bad = drop = None
    args = sys.argv[3:]
    while args:
        if args[0] == "--bad-shape":
            bad = args[1]
        elif args[0] == "--drop":
            drop = args[1]
        args = args[2:]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    hf = {}  # name -> (dtype string, bytes, value as float32 the loader must see)

    def put(name, shape, kind="F32"):
        a = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if name == bad:
            shape = (shape[0] + 1,) + tuple(shape[1:])
            a = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if kind == "F16":
            h = a.astype(np.float16)
            hf[name] = ("F16", h.tobytes(), h.astype(np.float32), list(shape))
        elif kind == "BF16":
            bits, val = bf16_bits(a)
            hf[name] = ("BF16", bits.tobytes(), val, list(shape))
        else:
            hf[name] = ("F32", a.tobytes(), a, list(shape))

    def linear(p, o, i, bias=True):
        put(p + ".weight", (o, i))
        if bias:
            put(p + ".bias", (o,))

    def norm(p):
        put(p + ".weight", (D,))
        put(p + ".bias", (D,))

    put("model.encoder.conv1.weight", (D, MELS, 3), "BF16")
    put("model.encoder.conv1.bias", (D,))
    put("model.encoder.conv2.weight", (D, D, 3), "BF16")
    put("model.encoder.conv2.bias", (D,))
    put("model.encoder.embed_positions.weight", (ACTX, D))
    for stack, n in (("encoder", ENC_LAYERS), ("decoder", DEC_LAYERS)):
        for i in range(n):
            p = "model.%s.layers.%d." % (stack, i)
            for att in ("self_attn",) + (("encoder_attn",) if stack == "decoder" else ()):
                linear(p + att + ".q_proj", D, D)
                linear(p + att + ".k_proj", D, D, bias=False)
                linear(p + att + ".v_proj", D, D)
                linear(p + att + ".out_proj", D, D)
                norm(p + att + "_layer_norm")
            linear(p + "fc1", 4 * D, D)
            linear(p + "fc2", D, 4 * D)
            norm(p + "final_layer_norm")
    norm("model.encoder.layer_norm")
    put("model.decoder.embed_tokens.weight", (VOCAB, D), "F16")
    put("model.decoder.embed_positions.weight", (TCTX, D))
    norm("model.decoder.layer_norm")
    if drop:
        del hf[drop]

    header, blobs, off = {}, [], 0
    for name, (kind, raw, _, shape) in hf.items():
        header[name] = dict(dtype=kind, shape=shape, data_offsets=[off, off + len(raw)])
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)

    json.dump(dict(model_type="whisper", d_model=D, encoder_attention_heads=HEADS,
                   decoder_attention_heads=HEADS, encoder_layers=ENC_LAYERS,
                   decoder_layers=DEC_LAYERS, num_mel_bins=MELS, vocab_size=VOCAB,
                   suppress_tokens=[1, 2, 7, 50361], begin_suppress_tokens=[220, 50256]),
              open(os.path.join(out, "config.json"), "w"))
    json.dump(dict(alignment_heads=[[1, 0], [1, 1]], begin_suppress_tokens=[220, 50256],
                   suppress_tokens=[1, 2, 7, 50361]),
              open(os.path.join(out, "generation_config.json"), "w"))
    shutil.copy(tok, os.path.join(out, "tokenizer.json"))

    def val(n):
        return hf[n][2] if n in hf else None

    expected = {}

    def canon(name, arrays):
        a = np.concatenate([x.reshape(x.shape[0], -1) for x in arrays]).reshape(
            (sum(x.shape[0] for x in arrays),) + arrays[0].shape[1:]).astype(np.float32)
        n = a.size
        idx = sorted(set([0, 1, n // 3, n // 2, n - 1]))
        flat = a.reshape(-1)
        expected[name] = dict(shape=list(a.shape), sum=float(flat.astype(np.float64).sum()),
                              samples=[[int(i), float(flat[i])] for i in idx])

    def clin(c, p):
        canon(c + "/weight", [val(p + ".weight")])
        canon(c + "/bias", [val(p + ".bias")])

    def cnorm(c, p):
        canon(c + "/gamma", [val(p + ".weight")])
        canon(c + "/beta", [val(p + ".bias")])

    if bad is None and drop is None:
        clin("encoder/conv1", "model.encoder.conv1")
        clin("encoder/conv2", "model.encoder.conv2")
        canon("encoder/position_encodings/encodings", [val("model.encoder.embed_positions.weight")])
        canon("decoder/embeddings/weight", [val("model.decoder.embed_tokens.weight")])
        canon("decoder/position_encodings/encodings", [val("model.decoder.embed_positions.weight")])
        cnorm("encoder/layer_norm", "model.encoder.layer_norm")
        cnorm("decoder/layer_norm", "model.decoder.layer_norm")
        for stack, n in (("encoder", ENC_LAYERS), ("decoder", DEC_LAYERS)):
            for i in range(n):
                p, c = "model.%s.layers.%d." % (stack, i), "%s/layer_%d/" % (stack, i)
                sa = p + "self_attn."
                canon(c + "self_attention/linear_0/weight",
                      [val(sa + x + "_proj.weight") for x in "qkv"])
                canon(c + "self_attention/linear_0/bias",
                      [val(sa + "q_proj.bias"), np.zeros(D, np.float32), val(sa + "v_proj.bias")])
                clin(c + "self_attention/linear_1", sa + "out_proj")
                cnorm(c + "self_attention/layer_norm", p + "self_attn_layer_norm")
                if stack == "decoder":
                    ea = p + "encoder_attn."
                    clin(c + "attention/linear_0", ea + "q_proj")
                    canon(c + "attention/linear_1/weight", [val(ea + "k_proj.weight"), val(ea + "v_proj.weight")])
                    canon(c + "attention/linear_1/bias", [np.zeros(D, np.float32), val(ea + "v_proj.bias")])
                    clin(c + "attention/linear_2", ea + "out_proj")
                    cnorm(c + "attention/layer_norm", p + "encoder_attn_layer_norm")
                clin(c + "ffn/linear_0", p + "fc1")
                clin(c + "ffn/linear_1", p + "fc2")
                cnorm(c + "ffn/layer_norm", p + "final_layer_norm")
    json.dump(dict(hparams=dict(n_mels=MELS, n_audio_ctx=ACTX, n_audio_state=D, n_audio_head=HEADS,
                                n_audio_layer=ENC_LAYERS, n_text_ctx=TCTX, n_text_state=D,
                                n_text_head=HEADS, n_text_layer=DEC_LAYERS, n_vocab=VOCAB),
                   tensors=expected), open(os.path.join(out, "expected.json"), "w"))


if __name__ == "__main__":
    main()
