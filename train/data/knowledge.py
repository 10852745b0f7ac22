"""Build the knowledge questions (issue 19, paper §4.4): what C functions, commands, English words and
computing terms are, as question/answer pairs in the four exact formats of `qwen3mini.tasks.knowledge.FORMATS`,
written to train/data/knowledge/knowledge.jsonl (committed).

    apt-get update                       # once, so that apt-get download finds the packages
    python -m train.data.knowledge       # fetch the packages + extract -> train/data/knowledge/knowledge.jsonl

The packages are fetched and unpacked exactly as `build_corpus.py fetch` does (same `data/raw/` folders, so
a corpus build's packages are reused) and read the way the corpus reads them (`extract.render_manpage`,
`extract.dictd_entries`). The functions, words and terms, and 18 of the commands, are text the pre-training
corpus holds; the other commands come from packages the corpus does not read (git's NAME lines excepted: the
corpus has them in git-doc's AsciiDoc sources):

* man pages of the Linux man-pages project (`manpages`, `manpages-dev`; corpus source manpages-en): the NAME
  line's description ("memcpy - copy memory area" -> "copy memory area"). Sections 2 and 3 give `function`
  questions for each name the SYNOPSIS calls as a function (`name(`); sections 1 and 8 give `command`
  questions (intro pages left out).
* man pages of everyday command packages (`COMMAND_PACKAGES`: coreutils, grep, util-linux, procps, git-man,
  ...; source: the package): sections 1 and 8 give `command` questions, the same way, for each name that
  the package installs as a program (in bin, sbin or git's exec path; `program_name`), so subcommand and
  service pages (`ip-address`, `systemd-journald.service`) give none. A name that several pages document
  is answered by the page named after it (`man_pages`).
* WordNet 3.0 (`wordnet-base`; source wordnet): for single lower-case words of moderate frequency (tagged
  `WORD_MIN_COUNT`..`WORD_MAX_COUNT` times in SemCor, `cntlist.rev`; at most `WORD_MAX_SENSES` senses as
  noun, verb and adjective together; no adverbs), the gloss of the word's first sense in its most frequent
  part of speech, without the examples.
* FOLDOC (`dict-foldoc`; source foldoc): for lower-case headwords of one or two words (3 characters at
  least: no country codes), the first sentence of the entry (of its first sense), without category tags,
  pronunciation, a leading parenthesis and link braces; 4 words at least (shorter ones are redirects) and
  not a "See ..." pointer. Entries of the Debian addendum (category `<Debian>`, under its own licence) are
  left out.

Answers of more than `MAX_ANSWER_WORDS` words or without two content words are dropped; questions are
deduplicated (the first record wins); each kind is capped (`CAPS`) by a seeded hash order; the split is
"test" for `TEST_PERCENT` % of *groups* by hash (a man page's names share one group, so a page's names never
straddle the split; a word or a term is its own group).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import re
from pathlib import Path

from qwen3mini.tasks.knowledge import content_words, question_of, subject_of

from . import build_corpus, extract

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "data" / "raw"
OUT = REPO / "train" / "data" / "knowledge" / "knowledge.jsonl"
MAN_PACKAGES = ("manpages", "manpages-dev")            # the Linux man-pages project: corpus source manpages-en
# Everyday command packages (Debian main): the English pages of sections 1 and 8 give `command` questions, with
# the package as the record's source. Licences: train/data/knowledge/README.md.
COMMAND_PACKAGES = (
    "coreutils", "findutils", "grep", "sed", "tar", "gzip", "bzip2", "xz-utils", "diffutils", "patch", "less",
    "file", "util-linux", "mount", "fdisk", "bsdutils", "bsdextrautils", "procps", "psmisc", "lsof", "strace",
    "bash", "debianutils", "ncurses-bin", "man-db", "cron", "sudo", "passwd", "login", "hostname", "iproute2",
    "net-tools", "iputils-ping", "bind9-dnsutils", "netcat-openbsd", "openssh-client", "curl", "wget", "rsync",
    "git-man", "zip", "unzip", "gawk", "make", "bc", "nano", "tmux", "htop", "tree", "e2fsprogs", "apt", "dpkg",
    "systemd", "openssl")
PROGRAMS_FROM = {"git-man": "git"}   # packages whose programs another package installs (fetched for its file list)
PACKAGES = MAN_PACKAGES + ("wordnet-base", "dict-foldoc") + COMMAND_PACKAGES + tuple(PROGRAMS_FROM.values())
CAPS = {"command": 2000, "function": 1500, "word": 3000, "term": 1500}  # per kind (commands: all there are)
SEED = 0
TEST_PERCENT = 10
MAX_ANSWER_WORDS = 40
WORD_MIN_COUNT, WORD_MAX_COUNT, WORD_MAX_SENSES = 2, 60, 4


def fetch(packages=PACKAGES, raw: Path = RAW) -> Path:
    """`build_corpus.fetch` for these packages only (`apt-get download`, `dpkg-deb -x` into
    raw/root/<package>). Returns the root."""
    build_corpus.fetch(raw, list(packages))
    return raw / "root"


def _words(text: str) -> str:
    return " ".join(text.split())


def _ok(answer: str) -> bool:
    return len(answer.split()) <= MAX_ANSWER_WORDS and len(set(content_words(answer))) >= 2


# ------------------------------------------------------------------------------------------------ man pages

def man_section(page: str, heading: str) -> str | None:
    """The body of a section of a groff-rendered page (`extract.render_manpage`): the lines after the
    unindented heading up to the next unindented line; None if the page has no such section."""
    lines, body, inside = page.split("\n"), [], False
    for line in lines:
        if line and not line[0].isspace():
            if inside:
                break
            inside = line.strip() == heading
        elif inside:
            body.append(line)
    return "\n".join(body) if inside else None


_NAME_SEPARATOR = re.compile(r" [-\u2014] ")  # "ls - list ...", mdoc's em dash: "ssh — OpenSSH remote login client"
_NAME_ENTRY = re.compile(r"[\w.+@:-]+(?:,\s*[\w.+@:-]+)*\s+[-\u2014]\s")   # a line that opens "names - "
_VERSION = re.compile(r",?\s+v?\d+(?:\.\d+)+$")                 # "a block-sorting file compressor, v1.0.8"
_SEE_ALSO = re.compile(r",?\s+see [\w.-]+\(\d\w*\)\.?$")          # "restricted bash, see bash(1)"


def man_name_entries(page: str) -> list[tuple[list[str], str]]:
    """The (names, description) entries of the NAME section's first paragraph (the rest is a synopsis on some
    pages: `write - send a message to another user` then `write user [ttyname]`). One entry usually, wrapped
    lines joined; a page that describes its names line by line (`bzip2, bunzip2 - a block-sorting file
    compressor` / `bzcat - decompresses files to stdout`) gives one entry per line that opens "names - "
    after an entry that has its separator. The separator is " - ", or " — " on mdoc pages; a trailing
    version number and a trailing cross-reference (`, see bash(1)`) are dropped. [] if the section is missing or
    has no separator."""
    section = man_section(page, "NAME")
    if section is None:
        return []
    entries: list[str] = []
    for line in section.split("\n"):
        if not line.strip():
            if entries:
                break
            continue
        if entries and _NAME_SEPARATOR.search(_words(entries[-1])) and _NAME_ENTRY.match(line.strip()):
            entries.append(line)
        elif entries:
            entries[-1] += "\n" + line
        else:
            entries.append(line)
    found = []
    for entry in entries:
        parts = _NAME_SEPARATOR.split(_words(entry), maxsplit=1)
        if len(parts) == 2:
            names = [n.strip() for n in parts[0].split(",") if n.strip()]
            found.append((names, _SEE_ALSO.sub("", _VERSION.sub("", parts[1].strip()))))
    return found


def man_name_line(page: str) -> tuple[list[str], str] | None:
    """(names, description) of the NAME section's first entry, e.g. (["malloc", "free"], "allocate and free
    dynamic memory"); None if the section is missing or has no " - "."""
    entries = man_name_entries(page)
    return entries[0] if entries else None


def is_called(name: str, synopsis: str) -> bool:
    """Whether the SYNOPSIS calls or declares `name` as a function (`name(`)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}\s*\(", synopsis) is not None


_PROGRAM_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/lib/git-core")


def programs(package_root: Path) -> set[str]:
    """The names of the programs an unpacked package installs (files and links in its bin and sbin
    folders, and git's exec path)."""
    return {p.name for folder in _PROGRAM_DIRS for p in (package_root / folder).glob("*")}


def program_name(name: str, installed: set[str]) -> str | None:
    """The program a command page's name stands for, when the package installs it: the name itself, its
    lower-case spelling (`Wget`), or the name of an installed `name.suffix` that Debian offers as an
    alternative (`which` for `which.debianutils`, `nc` for `nc.openbsd`); None otherwise (subcommand and
    service pages: `ip-address`, `systemd-journald.service`)."""
    for candidate in (name, name.lower()):
        if candidate in installed or any(p.startswith(candidate + ".") for p in installed):
            return candidate
    return None


def man_items(path_and_page: tuple[str, str], installed: set[str] | None = None,
              source: str = "manpages-en") -> list[dict]:
    """The questions of one rendered page; `path` is relative to the package root (man/manN/page.N.gz).
    With `installed` (the package's programs, for the command packages), a command page's names are asked
    about only as programs the package installs (`program_name`), and function pages give nothing."""
    path, page = path_and_page
    section = re.search(r"/man(\d)/", path)
    if not section or Path(path).name.startswith("intro."):
        return []
    kind = "command" if section.group(1) in "18" else "function"
    if installed is not None and kind != "command":
        return []
    synopsis = man_section(page, "SYNOPSIS") or ""
    items = []
    for names, description in man_name_entries(page):
        for name in names:
            if kind == "function" and not is_called(name, synopsis):
                continue
            if installed is not None:
                name = program_name(name, installed)
                if name is None:
                    continue
            try:
                question = question_of(kind, name)
            except ValueError:
                continue
            items.append({"question": question, "answer": description, "source": source, "kind": kind,
                          "group": path})
    return items


def _render(path: Path) -> str:
    return extract.render_manpage(path)


def _page_paths(root: Path, package: str, sections: str) -> list[Path]:
    return [p for p in sorted((root / package).glob(f"usr/share/man/man[{sections}]/*"))
            if p.is_file() and not p.is_symlink()]  # aliases are links to the page that documents them


def page_name(path: str) -> str:
    """A page's name: its file name without the section and `.gz` (`ld.so` of `man8/ld.so.8.gz`)."""
    return re.sub(r"\.[1-9][a-z]*(?:\.gz)?$", "", Path(path).name)


def man_pages(root: Path) -> list[dict]:
    """The man-pages project's function and command questions, then the command packages' (in
    `COMMAND_PACKAGES` order). A name that several pages document is answered by the page named after it
    (`memcpy` by memcpy(3), not by bstring(3)'s "byte string operations"; `rtmon` by rtmon(8), not by
    ip-monitor(8)), else by the first: `named_first`, and `select` keeps the first record of a question."""
    jobs = [(path, None, "manpages-en") for pkg in MAN_PACKAGES for path in _page_paths(root, pkg, "1238")]
    for pkg in COMMAND_PACKAGES:
        installed = programs(root / PROGRAMS_FROM.get(pkg, pkg))
        jobs += [(path, installed, pkg) for path in _page_paths(root, pkg, "18")]
    with multiprocessing.Pool() as pool:
        pages = pool.map(_render, [path for path, _, _ in jobs], chunksize=8)
    items = []
    for (path, installed, source), page in zip(jobs, pages):
        items += man_items((str(path.relative_to(root)), page), installed, source)
    return named_first(items)


def named_first(items: list[dict]) -> list[dict]:
    """The man page records with those of a page named after its subject first, otherwise in order."""
    return sorted(items, key=lambda i: subject_of(i["question"])[1] != page_name(i["group"]))  # stable


# -------------------------------------------------------------------------------------------------- WordNet

_WORDNET_FILES = {"noun": "n", "verb": "v", "adj": "a"}
_SENSE_TYPES = {"1": "n", "2": "v", "3": "a", "5": "a"}  # cntlist.rev's ss_type (5: adjective satellite)
# Usage domains (`;u` pointers) of words a chat model should not be taught to define: disparagement, ethnic
# slur, obscenity.
_OFFENSIVE_USAGE = {"06717170", "06718862", "07124340"}


def wordnet_synset_ok(word: str, data_line: str) -> bool:
    """Whether the synset spells `word` in lower case (not only as a name: `Abo`) and is not marked
    disparaging, a slur or obscene."""
    fields = data_line.split(" | ", 1)[0].split()
    count = int(fields[3], 16)
    spelled = {re.sub(r"\([a-z]+\)$", "", fields[4 + 2 * i]) for i in range(count)}
    first_pointer = 5 + 2 * count  # after the words, the pointer count; then (symbol, offset, pos, source/target)
    pointers = fields[first_pointer:first_pointer + 4 * int(fields[first_pointer - 1])]
    usage = {pointers[i + 1] for i in range(0, len(pointers), 4) if pointers[i] == ";u"}
    return word in spelled and not usage & _OFFENSIVE_USAGE


def wordnet_definition(data_line: str) -> str:
    """The first definition of a `data.*` line's gloss: the text before the first `;` (the examples in quotes
    and further definitions follow it), or the whole definition part when that clause has fewer than two
    content words. `... | lasting a very short time; "x"` -> `lasting a very short time`."""
    gloss = data_line.split(" | ", 1)[1].strip()
    definition = re.split(r';\s*"', gloss, maxsplit=1)[0].strip().rstrip(";").strip()
    first = definition.split(";")[0].strip()
    return first if len(set(content_words(first))) >= 2 else definition


def wordnet_index(lines) -> dict[str, tuple[int, str]]:
    """`index.*` lines -> {lemma: (number of senses, offset of the first sense)} (licence lines skipped)."""
    index = {}
    for line in lines:
        if not line.strip() or line.startswith(" "):
            continue
        fields = line.split()
        senses, pointers = int(fields[2]), int(fields[3])
        index[fields[0]] = (senses, fields[6 + pointers])
    return index


def sense_counts(lines) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """`cntlist.rev` lines (`lemma%ss_type:... sense_number tag_count`) -> the tag count of each lemma over
    all senses, and of each (lemma, part of speech)'s first sense."""
    total, first = {}, {}
    for line in lines:
        key, number, count = line.split()
        lemma, sense_key = key.split("%", 1)
        total[lemma] = total.get(lemma, 0) + int(count)
        pos = _SENSE_TYPES.get(sense_key[0])
        if pos and number == "1":
            first[(lemma, pos)] = first.get((lemma, pos), 0) + int(count)
    return total, first


def wordnet_words(root: Path) -> list[dict]:
    base = root / "wordnet-base/usr/share/wordnet"
    total, first = sense_counts(extract.read_text(base / "cntlist.rev").splitlines())
    indexes = {pos: wordnet_index(extract.read_text(base / f"index.{name}").splitlines())
               for name, pos in _WORDNET_FILES.items()}
    data = {pos: (base / f"data.{name}").read_bytes() for name, pos in _WORDNET_FILES.items()}
    items = []
    for word in sorted(total):
        senses = sum(index[word][0] for index in indexes.values() if word in index)
        if not (re.fullmatch(r"[a-z]{3,}", word) and WORD_MIN_COUNT <= total[word] <= WORD_MAX_COUNT
                and 0 < senses <= WORD_MAX_SENSES):
            continue
        # the part of speech whose first sense is tagged most often (ties: noun, verb, adjective)
        pos = max((p for p in "nva" if word in indexes[p]), key=lambda p: (first.get((word, p), 0), -"nva".index(p)))
        offset = int(indexes[pos][word][1])
        line = data[pos][offset:data[pos].index(b"\n", offset)].decode("utf-8", errors="replace")
        if not wordnet_synset_ok(word, line):
            continue
        items.append({"question": question_of("word", word), "answer": wordnet_definition(line),
                      "source": "wordnet", "kind": "word", "group": word})
    return items


# ---------------------------------------------------------------------------------------------------- FOLDOC

def foldoc_entries(text: str):
    """(headwords, body) of each entry of FOLDOC's dictd text (`extract.dictd_entries`): one or more
    unindented headword lines, then the indented body (paragraphs separated by blank lines)."""
    heads, body = [], []
    for line in text.split("\n") + [""]:
        if line and not line[0].isspace():
            if body:
                yield heads, "\n".join(body).strip("\n")
                heads, body = [], []
            heads.append(line.strip())
        elif heads:
            body.append(line.strip())
    if heads and body:
        yield heads, "\n".join(body).strip("\n")


_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "cf.", "vs.", "viz.", "approx.", "esp.", "Inc.", "Ltd.", "Corp.",
                  "Co.", "Dr.", "Mr.", "St.", "No.", "Vol.", "al.")


def first_sentence(text: str) -> str:
    """The text up to the first sentence end: `.`, `!` or `?` followed by a space and a capital (or the
    end), not after a known abbreviation or a single letter (`J. Smith`)."""
    for found in re.finditer(r"[.!?](?=\s+[\"(\[{]?[A-Z0-9]|\s*$)", text):
        before = text[:found.end()]
        word = before.split()[-1] if before.split() else ""
        if word.endswith(_ABBREVIATIONS) or re.fullmatch(r"\(?[A-Za-z]\.", word):
            continue
        return before.strip()
    return text.strip()


def foldoc_definition(body: str) -> str:
    """The first sentence of an entry's first paragraph (of sense 1 when numbered), with the category tags
    (`<programming>`), a leading pronunciation (`/kash/`) and the link braces (`{main memory}`) removed."""
    paragraph = _words(body.split("\n\n")[0])
    paragraph = re.sub(r"^1\.\s*", "", paragraph)
    paragraph = re.sub(r"^(?:<[^<>]*>\s*)+", "", paragraph)
    paragraph = re.sub(r"^(?:,?\s*(?:or\s+)?/[^/\s][^/]*/\s*)+,?\s*", "", paragraph)   # /kash/, /*-brev'/
    paragraph = re.sub(r"^\([^()]*\)\s*", "", paragraph)                                   # (Or "app"), (Purdue)
    paragraph = re.sub(r"\{([^{}]*?)(?:\s*\([^()]*\))?\}", r"\1", paragraph)
    return first_sentence(paragraph)


def foldoc_terms(root: Path) -> list[dict]:
    text = extract.dictd_entries(root / "dict-foldoc/usr/share/dictd/foldoc.dict.dz")
    items = []
    for heads, body in foldoc_entries(text):
        term = heads[0]
        if len(term) < 3 or not re.fullmatch(r"[a-z][a-z0-9+#-]*(?: [a-z][a-z0-9+#-]*)?", term):
            continue
        if re.match(r"(?:1\.\s*)?<[^<>]*\bDebian\b", body):  # Dictionary.debian's entries: another licence
            continue
        answer = foldoc_definition(body)
        if answer.startswith(("See ", "Compare ", "Synonym", "The country code")) \
                or not answer.endswith((".", "!", "?")) or len(answer.split()) < 4:  # redirects: "HTTP cookie."
            continue
        items.append({"question": question_of("term", term), "answer": answer, "source": "foldoc",
                      "kind": "term", "group": term})
    return items


# ----------------------------------------------------------------------------------------------- the file

def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


def select(items: list[dict]) -> list[dict]:
    """Cleaned, deduplicated, capped per source, split: the records of the file, sorted by kind and question."""
    seen, kept = set(), []
    for item in items:
        item["answer"] = _words(item["answer"])
        if item["question"] not in seen and _ok(item["answer"]):
            seen.add(item["question"])
            kept.append(item)
    out = []
    for kind, cap in CAPS.items():
        mine = sorted((i for i in kept if i["kind"] == kind), key=lambda i: _hash(f"{SEED}:{i['question']}"))
        out += mine[:cap]
    for item in out:
        group = item.pop("group")
        item["split"] = "test" if _hash(f"knowledge-split:{group}") % 100 < TEST_PERCENT else "train"
    order = ("function", "command", "word", "term")
    return sorted(out, key=lambda i: (order.index(i["kind"]), i["question"]))


def build(root: Path, out: Path = OUT) -> list[dict]:
    items = select(man_pages(root) + wordnet_words(root) + foldoc_terms(root))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for item in items:
            record = {key: item[key] for key in ("question", "answer", "source", "kind", "split")}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return items


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", type=Path, default=RAW, help="where the packages are fetched and unpacked")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    items = build(fetch(PACKAGES, args.raw), args.out)
    counts = {}
    for item in items:
        counts[(item["source"], item["kind"], item["split"])] = counts.get((item["source"], item["kind"],
                                                                            item["split"]), 0) + 1
    for key in sorted(counts):
        print(*key, counts[key])
    for kind in ("function", "command", "word", "term"):
        print(kind, *(f"{split} {sum(n for k, n in counts.items() if k[1:] == (kind, split))}"
                      for split in ("train", "test")))
    print(f"{len(items)} records, {args.out.stat().st_size / 1e6:.2f} MB -> {args.out}")


if __name__ == "__main__":
    main()
