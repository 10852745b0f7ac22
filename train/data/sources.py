"""The corpus sources: which Debian packages, their licences, and how each becomes documents.

Each `Source` names the Debian packages it needs (fetched with `apt-get download`, unpacked with
`dpkg-deb -x` under `data/raw/root/<package>/`, see `build_corpus.py`), its licence (from the package's
`/usr/share/doc/<package>/copyright`), a domain used by the stage mixes (paper §3: S1 general text, S2 more
STEM, code and synthetic data), and a generator of `(doc_id, text)` pairs. A document id is
"<source>/<path inside the package>[#chunk]" and decides the train/validation split (`split_of`).
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from . import extract

Docs = Iterator[tuple[str, str]]

# Chunk size for sources that are one long list of short entries (dictionaries, glossaries).
DICTIONARY_CHUNK_CHARS = 12_000
# A document shorter than this is boilerplate (index pages, redirects) rather than text.
MIN_DOC_CHARS = 300


@dataclass(frozen=True)
class Source:
    name: str
    packages: tuple[str, ...]
    licence: str
    domain: str  # "prose" | "multilingual" | "tech" | "stem" | "code" (stage mixes weight these)
    description: str
    documents: Callable[[Path], Docs]  # root of the unpacked packages -> (doc_id, text)


def split_of(doc_id: str, val_percent: int = 2) -> str:
    """'val' (validation) for a fixed `val_percent` % of document ids, else 'train' (a hash, so no ordering bias and
    the same document is on the same side in every stage)."""
    bucket = int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:4], "little") % 100
    return "val" if bucket < val_percent else "train"


# ----------------------------------------------------------------------------------------------- helpers

def _files(root: Path, package: str, pattern: str, exclude: tuple[str, ...] = ()) -> list[Path]:
    """Files of an unpacked package matching a glob, sorted (determinism), minus those containing any of
    the `exclude` substrings in their path."""
    base = root / package
    if not base.is_dir():
        raise FileNotFoundError(f"package {package!r} is not unpacked under {base} "
                                f"(run `python -m train.data.build_corpus fetch`)")
    return sorted(p for p in base.glob(pattern) if p.is_file() and not any(e in str(p) for e in exclude))


def _convert_all(convert: Callable[[Path], str], paths: list[Path], desc: str) -> Iterator[tuple[Path, str]]:
    """Apply a converter to many files on all cores, in input order (so the output is deterministic)."""
    workers = min(len(paths), os.cpu_count() or 1) or 1
    with multiprocessing.Pool(workers) as pool:
        texts = pool.imap(convert, paths, chunksize=8)
        yield from zip(paths, tqdm(texts, total=len(paths), desc=desc, unit="file", leave=False))


def _per_file(name: str, root: Path, package: str, paths: Iterable[Path], convert: Callable[[Path], str],
              parallel: bool = False) -> Docs:
    """One document per file, id = source name + path relative to the package root."""
    paths = list(paths)
    pairs = _convert_all(convert, paths, name) if parallel else ((p, convert(p)) for p in paths)
    for path, text in pairs:
        yield f"{name}/{path.relative_to(root / package)}", text


def _chunked(name: str, text: str, sep: str = "\n\n") -> Docs:
    for i, chunk in enumerate(extract.chunk_paragraphs(text, DICTIONARY_CHUNK_CHARS, sep)):
        yield f"{name}#{i:05d}", chunk


def _html_file(path: Path) -> str:
    return extract.html_to_text(extract.read_text(path))


def _text_file(path: Path) -> str:
    return extract.clean_text(extract.read_text(path))


# -------------------------------------------------------------------------------------------- the sources

def _gcide(root: Path) -> Docs:
    yield from _chunked("gcide", extract.dictd_entries(root / "dict-gcide/usr/share/dictd/gcide.dict.dz"))


def _wordnet(root: Path) -> Docs:
    for pos in ("noun", "verb", "adj", "adv"):
        text = extract.wordnet_glosses(root / f"wordnet-base/usr/share/wordnet/data.{pos}")
        yield from _chunked(f"wordnet/{pos}", text, sep="\n")


def _dictd(package: str, name: str) -> Callable[[Path], Docs]:
    def documents(root: Path) -> Docs:
        yield from _chunked(name, extract.dictd_entries(root / f"{package}/usr/share/dictd/{name}.dict.dz"))
    return documents


def _jargon(root: Path) -> Docs:
    yield from _chunked("jargon", _text_file(root / "jargon-text/usr/share/doc/jargon-text/jargon.txt.gz"))


def _handbook(root: Path, english: bool) -> Docs:
    """The Debian Administrator's Handbook: en-US pages, or the translated pages minus the paragraphs that
    the translation left in English (`extract.drop_paragraphs_of` the en-US page of the same name)."""
    pkg = "debian-handbook"
    paths = [p for p in _files(root, pkg, "usr/share/doc/debian-handbook/html/*/*.html")
             if (p.parent.name == "en-US") == english]
    for doc_id, text in _per_file("debian-handbook", root, pkg, paths, _html_file, parallel=True):
        if not english:
            original = root / pkg / "usr/share/doc/debian-handbook/html/en-US" / Path(doc_id).name
            text = extract.drop_paragraphs_of(text, _html_file(original)) if original.exists() else text
        yield doc_id, text


def _debian_reference(languages: tuple[str, ...]) -> Callable[[Path], Docs]:
    """Debian Reference chapters; translations minus their untranslated English paragraphs."""
    def documents(root: Path) -> Docs:
        for lang in languages:
            pkg = f"debian-reference-{lang}"
            paths = _files(root, pkg, "usr/share/debian-reference/*.html", exclude=("index.",))
            for doc_id, text in _per_file("debian-reference", root, pkg, paths, _html_file):
                if lang != "en":
                    original = root / f"debian-reference-en/usr/share/debian-reference/{Path(doc_id).name}"
                    original = original.with_name(original.name.replace(f".{lang}.", ".en."))
                    text = extract.drop_paragraphs_of(text, _html_file(original)) if original.exists() else text
                yield doc_id, text
    return documents


def _manpages(packages: tuple[str, ...]) -> Callable[[Path], Docs]:
    def documents(root: Path) -> Docs:
        for pkg in packages:
            paths = _files(root, pkg, "usr/share/man/**/*.gz")
            yield from _per_file(pkg, root, pkg, paths, extract.render_manpage, parallel=True)
    return documents


def _html_package(package: str, pattern: str, exclude: tuple[str, ...] = ()) -> Callable[[Path], Docs]:
    def documents(root: Path) -> Docs:
        paths = _files(root, package, pattern, exclude)
        yield from _per_file(package, root, package, paths, _html_file, parallel=True)
    return documents


def _text_package(package: str, pattern: str, exclude: tuple[str, ...] = ()) -> Callable[[Path], Docs]:
    def documents(root: Path) -> Docs:
        yield from _per_file(package, root, package, _files(root, package, pattern, exclude), _text_file)
    return documents


def _perl_doc(root: Path) -> Docs:
    paths = _files(root, "perl-doc", "usr/share/perl/*/pod/*.pod")
    yield from _per_file("perl-doc", root, "perl-doc", paths, extract.render_pod, parallel=True)


def _linux_doc(root: Path) -> Docs:
    pkg = "linux-doc-6.1"
    paths = [p for p in _files(root, pkg, "usr/share/doc/linux-doc-6.1/Documentation/**/*.gz")
             if p.name.endswith((".rst.gz", ".txt.gz"))]
    yield from _per_file("linux-doc", root, pkg, paths, _text_file)


def _python_code(packages: tuple[str, ...], exclude: tuple[str, ...] = ()) -> Callable[[Path], Docs]:
    def documents(root: Path) -> Docs:
        for pkg in packages:
            yield from _per_file(pkg, root, pkg, _files(root, pkg, "usr/lib/python3*/**/*.py", exclude), _text_file)
    return documents


_TRANSLATED_MANPAGES = ("manpages-de", "manpages-fr", "manpages-es", "manpages-it", "manpages-pl", "manpages-ru",
                        "manpages-pt-br", "manpages-nl", "manpages-ja")

SOURCES: tuple[Source, ...] = (
    Source("gcide", ("dict-gcide",), "GPL-3+", "prose",
           "GNU Collaborative International Dictionary of English (Webster's 1913 + WordNet), dictd format",
           _gcide),
    Source("wordnet", ("wordnet-base",), "WordNet 3.0 licence (permissive, BSD-like)", "prose",
           "WordNet 3.0 synsets rendered as 'words (pos): gloss' lines", _wordnet),
    Source("foldoc", ("dict-foldoc",), "GFDL-1.1+ (no invariant sections)", "tech",
           "Free On-line Dictionary of Computing", _dictd("dict-foldoc", "foldoc")),
    Source("devil", ("dict-devil",), "public domain", "prose",
           "Ambrose Bierce, The Devil's Dictionary (1911)", _dictd("dict-devil", "devil")),
    Source("jargon", ("jargon-text",), "public domain", "tech", "The Jargon File 4.4.7", _jargon),
    Source("debian-handbook-en", ("debian-handbook",), "GPL-2+ or CC-BY-SA-3.0", "tech",
           "The Debian Administrator's Handbook, English, one document per HTML page",
           lambda root: _handbook(root, english=True)),
    Source("debian-handbook-intl", ("debian-handbook",), "GPL-2+ or CC-BY-SA-3.0", "multilingual",
           "The Debian Administrator's Handbook in its other ~20 translations",
           lambda root: _handbook(root, english=False)),
    Source("debian-reference-en", ("debian-reference-en",), "GPL-2+", "tech",
           "Debian Reference (Osamu Aoki), English, one document per chapter", _debian_reference(("en",))),
    Source("debian-reference-intl", tuple(f"debian-reference-{l}" for l in ("en", "de", "fr", "es", "it", "ja", "zh-cn")),
           "GPL-2+", "multilingual", "Debian Reference in de, fr, es, it, ja, zh-cn",
           _debian_reference(("de", "fr", "es", "it", "ja", "zh-cn"))),
    Source("manpages-en", ("manpages", "manpages-dev"), "GPL-2+ and various free licences (see copyright)", "tech",
           "Linux man-pages project (sections 1-8), rendered with groff", _manpages(("manpages", "manpages-dev"))),
    Source("manpages-intl", _TRANSLATED_MANPAGES, "GPL-3+ (translations); upstream pages' licences", "multilingual",
           "manpages-l10n translations (de, fr, es, it, pl, ru, pt-BR, nl) and Japanese man pages",
           _manpages(_TRANSLATED_MANPAGES)),
    Source("linux-doc", ("linux-doc-6.1",), "GPL-2", "tech",
           "Linux kernel 6.1 Documentation/ (reStructuredText and text files)", _linux_doc),
    Source("perl-doc", ("perl-doc",), "GPL-1+ or Artistic", "tech",
           "Perl 5.36 documentation (perlfunc, perlop, perlre, tutorials...), POD rendered by pod2text", _perl_doc),
    Source("postgresql-doc", ("postgresql-doc-15",), "PostgreSQL licence (BSD-like)", "tech",
           "PostgreSQL 15 manual, one document per HTML page",
           _html_package("postgresql-doc-15", "usr/share/doc/postgresql-doc-15/html/*.html")),
    Source("git-doc", ("git-doc",), "GPL-2", "tech", "Git documentation (AsciiDoc sources)",
           _text_package("git-doc", "usr/share/doc/git-doc/**/*.txt")),
    Source("bash-doc", ("bash-doc",), "GPL-3+", "tech", "Bash reference manual (HTML)",
           _html_package("bash-doc", "usr/share/doc/bash/bash.html")),
    Source("gnu-standards", ("gnu-standards",), "GFDL-1.3+ (no invariant sections)", "tech",
           "GNU Coding Standards and GNU maintainer information",
           _text_package("gnu-standards", "usr/share/doc/gnu-standards/*.text.gz")),
    Source("python-doc", ("python3.11-doc",), "PSF-2.0", "stem",
           "Python 3.11 documentation (tutorial, library reference, HOWTOs; reStructuredText sources)",
           _text_package("python3.11-doc", "usr/share/doc/python3.11/html/_sources/**/*.rst.txt",
                         exclude=("whatsnew/changelog",))),
    Source("django-doc", ("python-django-doc",), "BSD-3-Clause", "tech", "Django 3.2 documentation (HTML)",
           _html_package("python-django-doc", "usr/share/doc/python-django-doc/html/**/*.html",
                         exclude=("genindex", "py-modindex", "/_modules/"))),
    Source("sqlite-doc", ("sqlite3-doc",), "public domain", "tech", "SQLite 3.40 documentation (HTML)",
           _html_package("sqlite3-doc", "usr/share/doc/sqlite3/**/*.html")),
    Source("maxima-doc", ("maxima-doc",), "GPL-2+", "stem", "Maxima computer-algebra manual (HTML)",
           _html_package("maxima-doc", "usr/share/doc/maxima-doc/html/*.html")),
    Source("octave-doc", ("octave-doc",), "GPL-3+", "stem", "GNU Octave manual and liboctave reference (HTML)",
           _html_package("octave-doc", "usr/share/doc/octave/**/*.html")),
    Source("gnuplot-doc", ("gnuplot-doc",), "gnuplot licence (free, modifications as patches)", "stem",
           "gnuplot 5.4 manual (HTML)", _html_package("gnuplot-doc", "usr/share/doc/gnuplot/htmldocs/*.html")),
    Source("python-stdlib", ("libpython3.11-stdlib", "libpython3.11-minimal"), "PSF-2.0", "code",
           "CPython 3.11 standard library source (.py)",
           _python_code(("libpython3.11-stdlib", "libpython3.11-minimal"))),
    Source("python-libs", ("python3-sympy", "python3-numpy", "python3-networkx", "python3-django"),
           "BSD-3-Clause (sympy, numpy, networkx, django)", "code",
           "Source of SymPy 1.11, NumPy 1.24, NetworkX 2.8 and Django 3.2 (.py, tests included)",
           _python_code(("python3-sympy", "python3-numpy", "python3-networkx", "python3-django"))),
)


def packages() -> list[str]:
    """Every Debian package the corpus needs, sorted."""
    return sorted({p for s in SOURCES for p in s.packages})


def source_documents(source: Source, root: Path) -> Docs:
    """A source's documents without the ones too short to be text and without exact duplicates (the first
    in path order is kept: man page aliases are symbolic links to the same page, and some translated pages
    are identical in several packages)."""
    return unique(d for d in source.documents(root) if len(d[1]) >= MIN_DOC_CHARS)


def unique(docs: Iterable[tuple[str, str]]) -> Docs:
    seen = set()
    for doc_id, text in docs:
        digest = hashlib.sha1(text.encode()).digest()
        if digest not in seen:
            seen.add(digest)
            yield doc_id, text
