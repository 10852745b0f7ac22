"""The Qwen3 tokenizer: added tokens -> NFC -> regex pre-tokens -> byte-level BPE, and back (docs/qwen3.md §3).

Loads HF ``tokenizer.json``, ``vocab.json`` + ``merges.txt`` and tiktoken rank files (``qwen.tiktoken``);
saves the HF files, so that ``tokenizers`` and ``transformers`` load what we train.
"""
import base64
import json
import os

from .added_tokens import AddedToken, AddedTokenSplitter, qwen_added_tokens
from .bpe import BPE, merges_from_ranks
from .chat_template import render_chat
from .decoding import IncrementalDecoder
from .pretokenize import PRETOKENIZE_PATTERN, bytes_to_token, normalize, pretokenize, token_to_bytes

_CACHE_LIMIT = 1 << 20  # pre-tokens remembered by the pure-Python path before the cache is reset
# transformers' apply_chat_template arguments that this tokenizer does not implement (refused, never ignored)
_NOT_IMPLEMENTED = ("documents", "chat_template", "sanitize_control_tokens", "padding", "truncation", "max_length",
                    "return_tensors", "return_assistant_tokens_mask", "tokenizer_kwargs")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")  # transformers 5.x reads all three
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "  # transformers' sentinel for continue_final_message


def _load_extension(use_ext):
    """The C++ fast path (csrc/bpe/bpe.cpp), or None for the pure-Python one."""
    if use_ext is False:
        return None
    try:
        from qwen3mini import _bpe
        return _bpe
    except ImportError:
        if use_ext or os.environ.get("QWEN3MINI_REQUIRE_EXT") == "1":
            raise ImportError("qwen3mini._bpe (csrc/bpe/bpe.cpp) is not built; "
                              "run `pip install --no-build-isolation -e .`") from None
        return None


class Tokenizer:
    """Byte-level BPE with added tokens. ``vocab[i]`` is the bytes of BPE token i."""

    def __init__(self, vocab, merges, added_tokens=(), chat_template=None, use_ext=None):
        """vocab: list of bytes (BPE tokens, id = index); merges: (left, right, merged) ids in rank order;
        added_tokens: AddedToken list; use_ext: True/False forces the C++/Python path (None: C++ if built)."""
        self.vocab = list(vocab)
        byte_ids = [None] * 256
        for i, b in enumerate(self.vocab):
            if len(b) == 1:
                byte_ids[b[0]] = i
        missing = [b for b in range(256) if byte_ids[b] is None]
        if missing:
            raise ValueError(f"vocabulary has no single-byte token for bytes {missing[:8]}...; not byte-level")
        self.bpe = BPE(byte_ids, merges)
        self.added_tokens = sorted(added_tokens, key=lambda t: t.id)
        self.chat_template = chat_template  # the Jinja text, kept only to be saved again
        self._splitter = AddedTokenSplitter(self.added_tokens)
        self.special_ids = frozenset(t.id for t in self.added_tokens if t.special)
        self.token_to_id = {t.content: t.id for t in self.added_tokens}  # added tokens only, e.g. "<|im_end|>"
        size = max([len(self.vocab) - 1] + [t.id for t in self.added_tokens]) + 1
        self.id_to_bytes = self.vocab + [None] * (size - len(self.vocab))
        for t in self.added_tokens:
            if t.id < len(self.vocab):
                raise ValueError(f"added token {t.content!r} has id {t.id}, which a BPE token already uses")
            self.id_to_bytes[t.id] = t.content.encode("utf-8")
        ext = _load_extension(use_ext)
        self._fast = ext.Encoder(byte_ids, self.bpe.merges) if ext is not None else None
        self._cache = {}

    # ----------------------------------------------------------------------------------------------- encode
    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (151,669 for Qwen3; the model pads its embedding further)."""
        return len(self.id_to_bytes)

    def encode(self, text: str) -> list:
        """Text -> ids. Added tokens in the text are matched verbatim first; no BOS/EOS is added."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids = []
        for segment, token_id in self._splitter.split(text):
            if token_id is not None:
                ids.append(token_id)
            else:
                ids.extend(self.encode_ordinary(normalize(segment)))
        return ids

    def encode_ordinary(self, text: str) -> list:
        """Ids of already-normalised text, treating added-token strings as plain text."""
        if self._fast is not None:
            return self._fast.encode(text)
        ids, cache = [], self._cache
        for piece in pretokenize(text):
            piece_ids = cache.get(piece)
            if piece_ids is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                piece_ids = cache[piece] = self.bpe.merge(piece.encode("utf-8"))
            ids.extend(piece_ids)
        return ids

    # ----------------------------------------------------------------------------------------------- decode
    def _check_ids(self, ids):
        for i in ids:
            if not 0 <= i < len(self.id_to_bytes) or self.id_to_bytes[i] is None:
                raise ValueError(f"token id {i} is not in the vocabulary (size {self.vocab_size})")

    def decode_bytes(self, ids, skip_special_tokens=False) -> bytes:
        try:
            if skip_special_tokens:
                return b"".join(self.id_to_bytes[i] for i in ids if i not in self.special_ids)
            return b"".join(self.id_to_bytes[i] for i in ids)
        except (IndexError, TypeError):
            self._check_ids(ids)
            raise

    def decode(self, ids, skip_special_tokens=False) -> str:
        """Ids (a list, or a 1-D tensor/array) -> text; invalid UTF-8 becomes U+FFFD. Skipping drops only the
        tokens flagged special."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        if any(i < 0 for i in ids):
            self._check_ids(ids)
        return self.decode_bytes(ids, skip_special_tokens).decode("utf-8", errors="replace")

    def incremental_decoder(self, skip_special_tokens=False) -> IncrementalDecoder:
        """For streaming: ``.feed(id) -> str`` never returns a broken character; ``.flush()`` ends."""
        return IncrementalDecoder(self.id_to_bytes, self.special_ids, skip_special_tokens)

    def id_to_token(self, token_id: int) -> str:
        """The token's string as HF shows it (byte-level characters for BPE tokens)."""
        if token_id < len(self.vocab):
            return bytes_to_token(self.vocab[token_id])
        self._check_ids([token_id])
        return self.id_to_bytes[token_id].decode("utf-8")

    # ------------------------------------------------------------------------------------------------- chat
    def apply_chat_template(self, conversation, tools=None, add_generation_prompt=False,
                            continue_final_message=False, tokenize=True, return_dict=False, **kwargs):
        """Qwen3's chat template (docs/qwen3.md §4), called as ``transformers``' ``apply_chat_template`` is.

        Same argument names and defaults, so a call gives the same result in both libraries: no generation
        prompt unless ``add_generation_prompt=True``; token ids unless ``tokenize=False`` (then the string);
        ``enable_thinking`` and any other keyword reach the template as its variables (Qwen3's reads only
        ``enable_thinking``, thinking when it is not given). ``conversation`` is a list of message dicts, or a
        list of such lists (one result each). ``continue_final_message=True`` (or the name of the field to
        continue, e.g. ``"reasoning_content"``) leaves the last message open for the model to continue.
        ``return_dict=True`` gives ``{"input_ids", "attention_mask"}``; its default is False, transformers 4's
        (5.x switched to True, so pass it explicitly when moving code). transformers' other arguments
        (documents, chat_template, padding, truncation, max_length, return_tensors, assistant masks, ...) are
        refused by name rather than ignored.
        """
        unsupported = sorted(name for name in _NOT_IMPLEMENTED if kwargs.pop(name, None) not in (None, False))
        if unsupported:
            raise ValueError(f"apply_chat_template: {', '.join(unsupported)} not supported by this tokenizer")
        batched = isinstance(conversation, (list, tuple)) and bool(conversation) \
            and isinstance(conversation[0], (list, tuple))
        texts = [self._render_conversation(messages, tools, add_generation_prompt, continue_final_message, kwargs)
                 for messages in (conversation if batched else [conversation])]
        if not tokenize:
            return texts if batched else texts[0]
        ids = [self.encode(text) for text in texts]
        if return_dict:
            masks = [[1] * len(row) for row in ids]
            return {"input_ids": ids, "attention_mask": masks} if batched else \
                {"input_ids": ids[0], "attention_mask": masks[0]}
        return ids if batched else ids[0]

    @staticmethod
    def _render_conversation(messages, tools, add_generation_prompt, continue_final_message, template_kwargs):
        """One conversation as transformers renders it: message fields that are None dropped, ``thinking`` /
        ``reasoning`` read as ``reasoning_content`` (transformers 5.x), and for ``continue_final_message`` the
        text cut right after the last message's field (found with a sentinel, as transformers does)."""
        if not isinstance(messages, (list, tuple)) or not messages:
            raise ValueError("apply_chat_template: the conversation must be a non-empty list of messages")
        messages = [_template_message(m, i) for i, m in enumerate(messages)]
        if continue_final_message:
            if add_generation_prompt:
                raise ValueError("apply_chat_template: continue_final_message and add_generation_prompt exclude "
                                 "each other")
            field = continue_final_message if isinstance(continue_final_message, str) else "content"
            if field in _REASONING_FIELDS:
                field = "reasoning_content"  # the one name of the three that the template reads
            elif field != "content":
                raise ValueError(f"apply_chat_template: continue_final_message: Qwen3's template does not read "
                                 f"{field!r}")
            if not isinstance(messages[-1].get(field), str):
                raise ValueError(f"apply_chat_template: continue_final_message: the last message has no {field!r}")
            messages[-1][field] += _CONTINUE_TAG
        text = render_chat(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                           enable_thinking=template_kwargs.get("enable_thinking", True))
        if continue_final_message:
            if _CONTINUE_TAG not in text:
                raise ValueError("apply_chat_template: continue_final_message: the template dropped the last "
                                 "message (only the current turn keeps its thinking)")
            text = text[:text.rindex(_CONTINUE_TAG)]
        return text

    # ------------------------------------------------------------------------------------------------- save
    def save(self, directory, chat_template=None):
        """Write tokenizer.json, vocab.json, merges.txt and tokenizer_config.json (the HF layout)."""
        os.makedirs(directory, exist_ok=True)
        names = [bytes_to_token(b) for b in self.vocab]
        vocab = {name: i for i, name in enumerate(names)}
        merges = [f"{names[a]} {names[b]}" for a, b, _ in self.bpe.merges]
        added = [{"id": t.id, "content": t.content, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": t.special} for t in self.added_tokens]
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        tokenizer_json = {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": PRETOKENIZE_PATTERN}, "behavior": "Isolated",
                 "invert": False}, byte_level]},
            "post_processor": byte_level, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab, "merges": merges},
        }
        _write_json(os.path.join(directory, "tokenizer.json"), tokenizer_json)
        _write_json(os.path.join(directory, "vocab.json"), vocab)
        with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(m + "\n" for m in merges))
        contents = {t.content for t in self.added_tokens}
        config = {
            "add_bos_token": False, "add_prefix_space": False,
            "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added},
            "additional_special_tokens": [t.content for t in self.added_tokens  # Qwen3: <|im_start|>..<|video_pad|>
                                          if t.special and t.content != "<|endoftext|>"],
            "bos_token": None, "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>" if "<|im_end|>" in contents else None, "errors": "replace",
            "model_max_length": 131072,
            "pad_token": "<|endoftext|>" if "<|endoftext|>" in contents else None,
            "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
        }
        template = chat_template or self.chat_template
        if template:
            config["chat_template"] = template
        _write_json(os.path.join(directory, "tokenizer_config.json"), config)


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)


def _template_message(message, index) -> dict:
    """A copy of the message as transformers hands it to the template: None fields dropped, reasoning aliased."""
    if not isinstance(message, dict):
        raise ValueError(f"apply_chat_template: message {index} is not a dict: {message!r:.60}")
    message = {key: value for key, value in message.items() if value is not None}
    reasoning = next((message[key] for key in _REASONING_FIELDS if key in message), None)
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return message


# ---------------------------------------------------------------------------------------------------- loading
def from_tiktoken(path, added_tokens=None, use_ext=None) -> Tokenizer:
    """A tiktoken rank file (``base64-token rank`` per line, e.g. qwen.tiktoken) plus Qwen's 26 added tokens."""
    vocab = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                token, rank = base64.b64decode(token, validate=True), int(rank)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected 'base64-token rank', got {line[:60]!r}") from None
            if rank != len(vocab):
                raise ValueError(f"{path}:{lineno}: rank {rank} out of order (expected {len(vocab)})")
            vocab.append(token)
    _, merges = merges_from_ranks(vocab)
    if added_tokens is None:
        added_tokens = qwen_added_tokens(len(vocab))
    return Tokenizer(vocab, merges, added_tokens, use_ext=use_ext)


def _vocab_and_merges(vocab_map, merge_list, where):
    """vocab {token string: id} + merges ["a b" or [a, b]] -> (list of bytes, merges as id triples)."""
    vocab = [None] * len(vocab_map)
    for name, i in vocab_map.items():
        if not 0 <= i < len(vocab) or vocab[i] is not None:
            raise ValueError(f"{where}: vocabulary ids must be 0..{len(vocab) - 1} without gaps (bad id {i})")
        vocab[i] = token_to_bytes(name)
    merges = []
    for n, m in enumerate(merge_list):
        a, b = m.split(" ") if isinstance(m, str) else m
        try:
            merges.append((vocab_map[a], vocab_map[b], vocab_map[a + b]))
        except KeyError as e:
            raise ValueError(f"{where}: merge {n} ({a!r} {b!r}) uses {e.args[0]!r}, not in the vocabulary") from None
    return vocab, merges


def _read_json(path):
    """The JSON object in ``path``; a file that is not JSON is named in a ValueError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got a {type(data).__name__}")
    return data


def _check_tokenizer_json(tj, path):
    if not isinstance(tj.get("model"), dict) or not {"vocab", "merges"} <= tj["model"].keys():
        raise ValueError(f"{path}: not a tokenizer.json (no model with a vocab and merges)")
    model = tj["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback") or model.get("ignore_merges") \
            or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise ValueError(f"{path}: only byte-level BPE models like Qwen's are supported")
    pre = tj.get("pre_tokenizer") or {}
    patterns = [p.get("pattern", {}).get("Regex") for p in pre.get("pretokenizers", [pre]) if p.get("type") == "Split"]
    if patterns and patterns != [PRETOKENIZE_PATTERN]:
        raise ValueError(f"{path}: its pre-tokenizer regex {patterns[0]!r} is not Qwen's")


def load_tokenizer(path, use_ext=None) -> Tokenizer:
    """A directory with tokenizer.json, or vocab.json + merges.txt (+ tokenizer_config.json), or a
    tokenizer.json / *.tiktoken file. A file that is none of these gets a ValueError naming it."""
    path = os.fspath(path)
    if os.path.isfile(path):
        if path.endswith(".tiktoken"):
            return from_tiktoken(path, use_ext=use_ext)
        if not path.endswith(".json"):
            raise ValueError(f"{path}: not a tokenizer file (expected a directory, a tokenizer.json or a *.tiktoken)")
        directory, tj_path = os.path.dirname(path), path
    else:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no tokenizer at {path!r}: expected a directory with tokenizer.json "
                                    "or vocab.json + merges.txt")
        directory, tj_path = path, os.path.join(path, "tokenizer.json")
    config_path = os.path.join(directory, "tokenizer_config.json")
    config = _read_json(config_path) if os.path.exists(config_path) else {}
    if os.path.exists(tj_path):
        tj = _read_json(tj_path)
        _check_tokenizer_json(tj, tj_path)
        vocab, merges = _vocab_and_merges(tj["model"]["vocab"], tj["model"]["merges"], tj_path)
        added = [AddedToken(t["id"], t["content"], t["special"]) for t in tj.get("added_tokens", [])]
    else:
        vocab_path, merges_path = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
        for p in (vocab_path, merges_path):
            if not os.path.exists(p):
                raise FileNotFoundError(f"{directory!r} has neither tokenizer.json nor {os.path.basename(p)}")
        with open(merges_path, encoding="utf-8") as f:
            lines = [ln.rstrip("\n") for ln in f if ln.strip() and not ln.startswith("#version")]
        vocab, merges = _vocab_and_merges(_read_json(vocab_path), lines, merges_path)
        decoder = config.get("added_tokens_decoder")
        if decoder is not None:
            added = [AddedToken(int(i), t["content"], t.get("special", False)) for i, t in decoder.items()]
        else:  # a bare vocab.json + merges.txt: assume Qwen's added tokens right after the BPE tokens
            added = qwen_added_tokens(len(vocab))
    return Tokenizer(vocab, merges, added, chat_template=config.get("chat_template"), use_ext=use_ext)
