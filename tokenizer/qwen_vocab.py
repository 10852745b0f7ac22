"""Where the real Qwen vocabulary comes from when no Qwen checkpoint is at hand.

Qwen's 151,643 BPE ranks ship as ``qwen.tiktoken`` inside the ``dashscope`` wheel on PyPI. These helpers fetch
that one file with pip (a package registry, not a model hub), cache it, and build an HF-layout Qwen3 tokenizer
directory from it, which tests of other parts (model, chat) use as "the real Qwen3 tokenizer".
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

DASHSCOPE_WHEEL = "dashscope==2.0.2"
_MEMBER = "dashscope/resources/qwen.tiktoken"


def default_cache_dir() -> str:
    """``$QWEN3MINI_CACHE``, else the repository's ignored ``.cache/``."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.environ.get("QWEN3MINI_CACHE", os.path.join(repo, ".cache"))


def qwen_tiktoken_path(cache_dir=None) -> str:
    """Path of ``qwen.tiktoken``, downloading the dashscope wheel (no dependencies) the first time."""
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, "qwen.tiktoken")
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", DASHSCOPE_WHEEL, "--no-deps", "-q", "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = glob.glob(os.path.join(tmp, "dashscope-*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(f"could not fetch {DASHSCOPE_WHEEL} for qwen.tiktoken: {result.stderr[-500:]}")
        part = os.path.join(tmp, "qwen.tiktoken")
        with zipfile.ZipFile(wheels[0]) as wheel, open(part, "wb") as out:
            out.write(wheel.read(_MEMBER))
        shutil.move(part, path + f".{os.getpid()}")
    os.replace(path + f".{os.getpid()}", path)  # atomic: a concurrent test run never sees half a file
    return path


def qwen3_tokenizer_dir(cache_dir=None, chat_template=None) -> str:
    """An HF-layout Qwen3 tokenizer directory (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json)
    built from ``qwen.tiktoken`` and the 26 added tokens; cached next to it. ``chat_template`` (the Jinja
    text, e.g. tests/tokenizer/qwen3_chat_template.jinja) is written into tokenizer_config.json if given."""
    cache_dir = cache_dir or default_cache_dir()
    directory = os.path.join(cache_dir, "qwen3_tokenizer")
    if not os.path.exists(os.path.join(directory, "tokenizer_config.json")):
        from .tokenizer import from_tiktoken
        tok = from_tiktoken(qwen_tiktoken_path(cache_dir))  # creates cache_dir
        tmp = tempfile.mkdtemp(dir=cache_dir)
        tok.save(tmp, chat_template=chat_template)
        try:
            os.replace(tmp, directory)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    if chat_template is not None:  # callers that need the Jinja template (e.g. for transformers) pass it in
        config_path = os.path.join(directory, "tokenizer_config.json")
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        if config.get("chat_template") != chat_template:
            config["chat_template"] = chat_template
            part = f"{config_path}.{os.getpid()}"
            with open(part, "w", encoding="utf-8") as f:
                json.dump(config, f, ensure_ascii=False, indent=2)
            os.replace(part, config_path)
    return directory
