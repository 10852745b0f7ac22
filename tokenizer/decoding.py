"""Streaming decode: turn token ids into text one at a time without ever emitting half a character.

A byte-level token may end in the middle of a multi-byte UTF-8 character ("你" is 3 bytes and can be split
over two tokens). The incremental decoder keeps such a tail until the next token completes it. Bytes that can
never become valid UTF-8 turn into U+FFFD exactly as a whole-sequence ``decode(errors="replace")`` would, so
concatenating every ``feed`` and the final ``flush`` gives the same string as decoding all ids at once.
"""
import codecs


class IncrementalDecoder:
    def __init__(self, id_to_bytes, special_ids=frozenset(), skip_special_tokens=False):
        self._id_to_bytes = id_to_bytes
        self._skip = special_ids if skip_special_tokens else frozenset()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly "")."""
        token_id = int(token_id)  # a 0-d tensor hashes by identity, which would defeat the skip set
        if token_id in self._skip:
            return ""
        if not 0 <= token_id < len(self._id_to_bytes) or self._id_to_bytes[token_id] is None:
            raise ValueError(f"token id {token_id} is not in the vocabulary")
        return self._utf8.decode(self._id_to_bytes[token_id])

    def flush(self) -> str:
        """End of stream: whatever is still pending becomes U+FFFD."""
        return self._utf8.decode(b"", final=True)
