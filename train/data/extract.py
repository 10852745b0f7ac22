"""Turn the file formats found in Debian packages into plain-text documents.

Every converter here takes a path (or bytes) and returns a `str`; none of them needs the network. The
formats are the ones the corpus sources (`sources.py`) actually ship: HTML (Sphinx, DocBook and Texinfo
output), roff manual pages, Perl POD, dictd dictionaries and plain text. The goal is readable prose for a
language model, not a faithful rendering: navigation bars, scripts and styles are dropped, paragraphs and
code blocks are kept.
"""
from __future__ import annotations

import gzip
import html.parser
import re
import subprocess
import unicodedata
from pathlib import Path

# ----------------------------------------------------------------------------------------------- plain text

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_RUNS = re.compile(r"\n{3,}")
# Document separators must never appear inside a document (paper §3: `<|endoftext|>` separates documents),
# nor may any other Qwen3 added token, or the tokenizer would turn prose into control tokens.
_ADDED_TOKEN_TEXT = re.compile(r"<\|[a-z_]+\|>|</?(?:think|tool_call|tool_response)>")


def read_text(path: Path) -> str:
    """Read a file that may be gzip- or dictzip-compressed, decoding UTF-8 with replacement."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic; dictzip (.dz) is gzip-compatible
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def clean_text(text: str) -> str:
    """Normalise a document: NFC (what the Qwen3 tokenizer does first), no control characters, no added-token
    strings, no trailing spaces, at most one blank line in a row, no leading/trailing blank lines."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _ADDED_TOKEN_TEXT.sub("", _CONTROL.sub("", text.replace("\t", "    ")))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def drop_paragraphs_of(text: str, reference: str) -> str:
    """`text` without the paragraphs that also occur in `reference`.

    Translations in Debian documentation leave untranslated paragraphs in English; removing the paragraphs
    of the English original keeps the corpus from repeating the English text once per language.
    """
    seen = {p.strip() for p in reference.split("\n\n")}
    return "\n\n".join(p for p in text.split("\n\n") if p.strip() not in seen)


def chunk_paragraphs(text: str, target_chars: int, sep: str = "\n\n") -> list[str]:
    """Split a long text at `sep` (blank lines by default) into pieces of about `target_chars` characters.

    Used for sources that are one huge file of many small entries (dictionaries), so that a "document" has a
    useful size and the train/validation split (by document) does not put a whole dictionary on one side.
    """
    pieces, current, size = [], [], 0
    for para in text.split(sep):
        current.append(para)
        size += len(para) + len(sep)
        if size >= target_chars:
            pieces.append(sep.join(current))
            current, size = [], 0
    if current:
        pieces.append(sep.join(current))
    return pieces


# ----------------------------------------------------------------------------------------------------- HTML

# Paragraph-like blocks are separated by a blank line, line-like ones by a newline.
_PARAGRAPH_TAGS = {"p", "div", "section", "article", "dl", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5",
                   "h6", "pre", "blockquote", "title", "caption", "figure", "hr"}
_LINE_TAGS = {"br", "li", "dt", "dd", "tr"}
_VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}
_SKIP_TAGS = {"script", "style", "head", "nav", "footer", "header", "noscript", "svg", "button", "form"}
# Class names / ids of navigation chrome in the generators these packages use (Sphinx, DocBook, Texinfo, Django).
_SKIP_CLASSES = re.compile(r"\b(sphinxsidebar|related|navheader|navfooter|footer|header|nav-panel|navigation|"
                           r"headerlink|breadcrumbs|toc-backref|menu|search|copyright)\b")
_SKIP_IDS = re.compile(r"^(hd|ft|header|footer|nav|navigation|sidebar|search)$")


class _TextExtractor(html.parser.HTMLParser):
    """Collect the visible text of an HTML page, with a newline at block boundaries.

    Inside <pre> whitespace is kept verbatim (code examples); elsewhere runs of whitespace collapse to one
    space, as a browser would. Elements are skipped by tag (`_SKIP_TAGS`) or by class (`_SKIP_CLASSES`).
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, skipped?) for non-void open elements
        self.skip_depth = 0
        self.pre_depth = 0

    def _break(self, tag):
        if not self.skip_depth:
            self.parts.append("\n\n" if tag in _PARAGRAPH_TAGS else "\n" if tag in _LINE_TAGS else "")

    def handle_starttag(self, tag, attrs):
        self._break(tag)
        if tag in _VOID_TAGS:
            return
        attrs = dict(attrs)
        skipped = (tag in _SKIP_TAGS or bool(_SKIP_CLASSES.search(attrs.get("class") or ""))
                   or bool(_SKIP_IDS.match(attrs.get("id") or "")))
        self.stack.append((tag, skipped))
        self.skip_depth += skipped
        self.pre_depth += tag == "pre"

    def handle_endtag(self, tag):
        # Pop up to the matching open tag; HTML in the wild leaves <p>, <li>, <dd> unclosed.
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                for t, skipped in self.stack[i:]:
                    self.skip_depth -= skipped
                    self.pre_depth -= t == "pre"
                del self.stack[i:]
                break
        self._break(tag)

    def handle_data(self, data):
        if self.skip_depth or not data:
            return
        if not self.pre_depth:
            data = re.sub(r"\s+", " ", data)
            if not self.parts or self.parts[-1].endswith("\n"):
                data = data.lstrip(" ")  # no indentation from the HTML source layout
        self.parts.append(data)


def html_to_text(source: str) -> str:
    """Visible text of an HTML document (see `_TextExtractor`), cleaned with `clean_text`."""
    parser = _TextExtractor()
    parser.feed(source)
    parser.close()
    return clean_text("".join(parser.parts).replace("\u00b6", ""))  # drop Sphinx pilcrow permalinks


# ----------------------------------------------------------------------------------------- man pages, POD

def render_manpage(path: Path) -> str:
    """Format a roff manual page with groff as UTF-8 text: 78 columns, left-adjusted (no justification
    spaces), no hyphenation, no bold/underline.

    Pages that only redirect to another page (`.so man3/foo.3`) return "". groff's `-Tutf8` prints ASCII
    hyphen-minus as U+2010/U+2212; we map them back so that command-line options read as typed.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw.lstrip().startswith(b".so ") and raw.count(b"\n") <= 2:
        return ""
    # groff 1.22's man macros re-enable justification (`.ad b`) at every heading; turning the `ad` request
    # into a no-op after `.ad l` keeps the text left-adjusted, with single spaces between words.
    left_adjust = b".ad l\n.rn ad an-ad-off\n.de ad\n..\n"
    out = subprocess.run(["groff", "-k", "-t", "-man", "-Tutf8", "-P-cbou", "-rLL=78n", "-rHY=0"],
                         input=left_adjust + raw, capture_output=True, timeout=60).stdout
    out = out.decode("utf-8", errors="replace")
    return clean_text(out.replace("\u2010", "-").replace("\u2212", "-"))


def render_pod(path: Path) -> str:
    """Format Perl POD documentation with `pod2text` (ships with perl)."""
    out = subprocess.run(["pod2text", "--utf8", str(path)], capture_output=True, timeout=60).stdout
    return clean_text(out.decode("utf-8", errors="replace"))


# ---------------------------------------------------------------------------------------------- dictionaries

_GCIDE_SOURCE_TAG = re.compile(r"^\s*\[[^\]\n]*(?:Webster|WordNet|PJC|Century|Chambers|Note)[^\]\n]*\]\s*$", re.M)


def dictd_entries(path: Path) -> str:
    """The text of a dictd database (`*.dict.dz`), without its `00-database-*` header entries and without
    GCIDE's per-entry provenance tags ("[1913 Webster]"), which a small model would only learn to parrot."""
    text = read_text(path)
    first_entry = text.find("\n\n", text.rfind("00-database"))  # header entries come first
    text = text[first_entry + 2:] if first_entry > 0 else text
    return clean_text(_GCIDE_SOURCE_TAG.sub("", text))


_WORDNET_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}


def wordnet_glosses(path: Path) -> str:
    """One line per WordNet synset of a `data.*` file: "words (part of speech): gloss".

    Format (wndb(5)): `offset lex_filenum ss_type w_cnt(hex) word lex_id ... | gloss`; header lines start
    with two spaces (the licence).
    """
    lines = []
    for line in read_text(path).split("\n"):
        if not line or line.startswith("  ") or " | " not in line:
            continue
        fields, gloss = line.split(" | ", 1)
        f = fields.split()
        count = int(f[3], 16)
        words = [f[4 + 2 * i].replace("_", " ") for i in range(count)]
        words = [re.sub(r"\([a-z]+\)$", "", w) for w in words]  # adjective markers such as "(a)"
        lines.append(f"{', '.join(words)} ({_WORDNET_POS[f[2]]}): {gloss.strip()}")
    return "\n".join(lines)
