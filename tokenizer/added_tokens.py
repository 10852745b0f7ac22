"""Added tokens: strings matched verbatim in the raw text before normalisation and BPE (docs/qwen3.md §3).

Every added token is matched, whatever its ``special`` flag (HF's ``split_special_tokens=False``); ``special``
only decides whether ``decode(skip_special_tokens=True)`` drops it. So ``<think>`` is one token in the input
and survives skipping on output.
"""
import re
from dataclasses import dataclass

QWEN_BPE_VOCAB_SIZE = 151643  # ids 0..151642 are BPE tokens; the added tokens follow.

# (content, special) in id order, starting at 151643. Qwen3 flags: tool/FIM/repo/think tokens are not special.
QWEN_ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
]


@dataclass(frozen=True)
class AddedToken:
    id: int
    content: str
    special: bool


def qwen_added_tokens(first_id: int = QWEN_BPE_VOCAB_SIZE) -> list:
    """Qwen3's 26 added tokens, numbered from ``first_id`` (a trained vocabulary puts them after its own)."""
    return [AddedToken(first_id + i, content, special) for i, (content, special) in enumerate(QWEN_ADDED_TOKENS)]


class AddedTokenSplitter:
    """Cuts text into plain segments and added-token matches, longest match first (as HF's trie does)."""

    def __init__(self, added_tokens):
        self.ids = {t.content: t.id for t in added_tokens}
        contents = sorted(self.ids, key=len, reverse=True)  # longest first: "<|a|>b" before "<|a|>"
        self.pattern = re.compile("|".join(re.escape(c) for c in contents)) if contents else None

    def split(self, text: str):
        """Yield (segment, None) for plain text and ("", id) for each added token, in order."""
        if self.pattern is None:
            yield text, None
            return
        pos = 0
        for m in self.pattern.finditer(text):
            if m.start() > pos:
                yield text[pos:m.start()], None
            yield "", self.ids[m.group()]
            pos = m.end()
        if pos < len(text):
            yield text[pos:], None
