"""A small multilingual test corpus: every script and whitespace/control case docs/qwen3.md §3 cares about.

Imported by the tokenizer tests (the file name is unique so that pytest's rootdir imports cannot collide),
with their hypothesis settings: QWEN3MINI_TOKENIZER_EXAMPLES=2000 for a thorough run (default 60)."""
import os

from hypothesis import settings

HYPOTHESIS = settings(max_examples=int(os.environ.get("QWEN3MINI_TOKENIZER_EXAMPLES", "60")), deadline=None)

CORPUS = {
    "english": "The quick brown fox jumps over the lazy dog. It's John's book; they'll say we've I'm he'd IT'S.",
    "code": 'def fib(n: int) -> int:\n    """Return F(n)."""\n    if n < 2:\n        return n\n'
            "    return fib(n - 1) + fib(n - 2)\n\nprint({k: v ** 2 for k, v in x.items()}) # 0x1F == 31\n",
    "chinese": "你好，世界！今天天气很好，我们去公园散步吧。机器学习是人工智能的一个分支。",
    "japanese": "こんにちは、世界。東京は日本の首都です。カタカナとひらがな、漢字を混ぜて書きます。",
    "korean": "안녕하세요, 세계! 한국어 텍스트를 토큰화합니다.",
    "arabic": "مرحبا بالعالم. اللغة العربية تكتب من اليمين إلى اليسار.",
    "hindi": "नमस्ते दुनिया। हिन्दी देवनागरी लिपि में लिखी जाती है।",
    "russian": "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "emoji": "Family: 👨‍👩‍👧‍👦 flags 🇯🇵🇺🇸 skin 👍🏽 heart ❤️ keycap 1️⃣ 🏳️‍🌈 done😀😀😀",
    "combining": "Cafe\u0301 nai\u0308ve A\u030a e\u0301\u0301 \u1100\u1161\u11a8 Z\u0351\u0352 n\u0303",
    "crlf_tabs": "line one\r\nline two\r\n\r\n\tindented\t\ttabs\n\n\n  \n end\r",
    "spaces_digits": "a" + " " * 37 + "b    c \n    \n" + "1234567890" * 7 + " 3.14159 1,000,000 ٣٤٥ ⅷ ²",
    "controls": "nul\x00 bell\x07 esc\x1b[31m del\x7f \x1c\x1d\x1e\x1f sep\u2028para\u2029 nbsp\xa0x \ufeffbom",
    "added_tokens": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nhmm\n</think>\n\n"
                    "<tool_call>{}</tool_call><|endoftext|><|im_end|><|im_end|>x<|fim_prefix|><|im_start",
    "contractions_edge": "'s 'S 'ſ 'RE 're' ''ll 'LL 'Ve 'd'm 'x ' s",
    "mixed_scripts": "GPT-4o和Claude3.5在2024年发布了。Ünïcödé ΑΒΓ αβγ Ελληνικά שלום עולם ไทย",
    "whitespace_only": " \t \n\u3000 \u2003",
    "punctuation": "!!!??? ...,,, --- *** ((([[[{{{ ''' \"\"\" ``` ~~~ @@@ ### $$$ %%%\n\n;;;\r\n",
}
