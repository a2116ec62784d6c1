#!/usr/bin/env python3
"""Reference text normalisation for test_normalizer: runs the Python port of Whisper's
normalisers (PyPI package whisper-normalizer, a copy of openai/whisper's
whisper/normalizers) over a JSON list of strings.

usage: norm_ref.py IN.json OUT.json     writes {"map": <english.json path>,
                                        "english": [...], "basic": [...]}
exit 77 when the package is not installed (the caller then skips the comparison).
"""
import json
import sys

try:
    from importlib.resources import files

    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer
except ImportError as e:  # not installed in this venv
    print(f"norm_ref.py: whisper-normalizer not importable: {e}", file=sys.stderr)
    sys.exit(77)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    eng, basic = EnglishTextNormalizer(), BasicTextNormalizer()
    out = {
        "map": str(files("whisper_normalizer").joinpath("normalizers/english.json")),
        "english": [eng(s) for s in cases],
        "basic": [basic(s) for s in cases],
    }
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
