"""Not part of the package: this file is here for one accident.

Python run from the folder that holds a clone named ``qwen3mini`` (git's default name) finds the clone before
the installed package, and without this file it would import the repository root as an empty namespace
package (``AttributeError: module 'qwen3mini' has no attribute 'load_tokenizer'``). With it, importing the
root loads the real package from ``qwen3mini/`` (and ``qwen3mini.tokenizer`` from ``tokenizer/``, as setup.py
maps it), so the clone works exactly as the installed package would.
"""
import os as _os

_root = _os.path.dirname(_os.path.abspath(__file__))
__path__ = [_os.path.join(_root, "qwen3mini"), _root]          # subpackages, then tokenizer/ as .tokenizer
__file__ = _os.path.join(_root, "qwen3mini", "__init__.py")
with open(__file__, encoding="utf-8") as _source:
    exec(compile(_source.read(), __file__, "exec"))
