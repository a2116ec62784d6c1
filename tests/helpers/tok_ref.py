#!/usr/bin/env python3
"""Reference token ids for voxshard's tokenizer test, from Hugging Face `tokenizers` (the Rust
implementation) on the same tokenizer.json.

usage: tok_ref.py TOKENIZER_JSON OUT.json
Writes {"cases": [{"text": ..., "ids": [...], "decoded": ...}, ...]} for ~200 varied strings.
"""
import json
import random
import sys

from tokenizers import Tokenizer

BASE = [
    "", " ", "  ", "\n", "Hello world", " Hello world", "Hello  world", "Hello   world  ",
    "hello, world!", "HELLO WORLD", "I'm here.", "you're", "they've", "we'll", "she'd", "it's",
    "I'M HERE", "don't stop", "rock 'n' roll", "'s", "''quoted''", "\"double\" quotes",
    "The year 2024 had 366 days.", "3.14159", "1,000,000", "$12.50", "50%", "#hashtag", "@user",
    "e-mail: someone@example.com", "https://example.com/path?q=1&r=2", "C:\\Windows\\System32",
    "tab\there", "line1\nline2", "line1\r\nline2", "trailing space ", "  leading", "multiple\n\n\nnewlines",
    "Ünïcödé àccents", "naïve café", "Straße", "Ελληνικά", "русский текст", "日本語のテキスト",
    "中文字符", "한국어", "עברית", "العربية", "हिन्दी", "ไทย", "emoji 😀🎉👍🏽", "👨‍👩‍👧‍👦 family",
    "math: ∑ ∫ √ ∞ ≠ ≤", "arrows → ← ↑", "nbsp\u00a0here", "ideographic\u3000space", "zero\u200bwidth",
    "mixed123abc", "abc123", "123abc", "a1b2c3", "CamelCaseWord", "snake_case_word", "kebab-case",
    "...", "!!!", "?!?", "---", "((()))", "[brackets]", "{braces}", "<angle>", "a/b\\c|d",
    "Mr. Smith went to Washington.", "It was the best of times, it was the worst of times.",
    "  And so, my fellow Americans: ask not what your country can do for you.",
    "supercalifragilisticexpialidocious", "antidisestablishmentarianism", "xxxxxxxxxxxxxxxxxxxx",
    "aaaaaaaaaaaaaaaaaaa", " the the the the", "Whisper", " transcription", "speech recognition",
    "1st 2nd 3rd 4th", "10:30 am", "3/4 cup", "25°C", "€100 £50 ¥1000", "½ ¼ ¾", "©®™",
    "O'Neil's", "'tis", "ma'am", "y'all'd've", "I'll've", "’curly’ apostrophes’s",
    "\u0301combining", "e\u0301", "ﬁ ligature", "ＦＵＬＬ ｗｉｄｔｈ", "१२३ digits", "٣٤٥",
]
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "I'm", "you'll", "42",
         "3.5", "naïve", "über", "東京", "мир", "!", "?", ",", "...", "  ", "\n", "'s", "😀", "x2",
         "HELLO", "don't", "—", "–", "“quoted”"]


def main():
    tok = Tokenizer.from_file(sys.argv[1])
    rng = random.Random(7)
    texts = list(BASE)
    while len(texts) < 220:
        n = rng.randint(1, 12)
        s = ""
        for _ in range(n):
            s += rng.choice(["", " ", " ", "  "]) + rng.choice(WORDS)
        texts.append(s)
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        cases.append(dict(text=t, ids=ids, decoded=tok.decode(ids)))
    json.dump(dict(cases=cases), open(sys.argv[2], "w"), ensure_ascii=False)


if __name__ == "__main__":
    main()
