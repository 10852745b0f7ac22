"""Text -> pre-tokens: NFC normalisation, Qwen's split regex and GPT-2's byte <-> unicode map (docs/qwen3.md §3).

Byte-level BPE never merges across pre-token boundaries, so the regex decides what *can* become one token:
a word with its leading space (" hello"), a single digit, a run of punctuation, a run of whitespace.
"""
import unicodedata

import regex

# Qwen2/Qwen3's pre-tokenizer (tokenizer.json `Split`, behaviour `Isolated`). Unlike GPT-2's, digits are split
# one at a time (\p{N}) and a letter run may absorb one leading non-letter, non-digit, non-newline character.
PRETOKENIZE_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                       r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_PRETOKENIZE_RE = regex.compile(PRETOKENIZE_PATTERN)


def normalize(text: str) -> str:
    """NFC, as the slow tokenizer's ``prepare_for_tokenization`` and tokenizer.json's normalizer do."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def pretokenize(text: str) -> list:
    """Split (already normalised) text into the pieces that BPE merges inside of."""
    return _PRETOKENIZE_RE.findall(text)


def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable character map, so that every token is a visible string.

    The 188 printable bytes map to themselves; the other 68 (controls, space, 127-160, 173) map, in increasing
    order, to chr(256), chr(257), ...  So a space becomes 'Ġ' (U+0120) and a newline 'Ċ' (U+010A).
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_TO_UNICODE = bytes_to_unicode()
UNICODE_TO_BYTE = {c: b for b, c in BYTE_TO_UNICODE.items()}
# str.translate table: byte-level character -> the Latin-1 character of its byte, so that
# ``token.translate(table).encode("latin-1")`` gives the bytes; characters that are not byte-level (such as a
# raw space) are sent to U+FFFF, which Latin-1 cannot encode, so they fail loudly.
_TO_LATIN1 = {cp: "\uffff" for cp in range(256)}
_TO_LATIN1.update({ord(c): chr(b) for c, b in UNICODE_TO_BYTE.items()})


def token_to_bytes(token: str) -> bytes:
    """A byte-level token string (as in vocab.json) -> the raw bytes it stands for."""
    try:
        return token.translate(_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError as e:
        raise ValueError(f"token {token!r} contains {token[e.start]!r}, which is not a byte-level character") \
            from None


def bytes_to_token(data: bytes) -> str:
    """Raw bytes -> the byte-level token string used in vocab.json / merges.txt / tokenizer.json."""
    return "".join(BYTE_TO_UNICODE[b] for b in data)
