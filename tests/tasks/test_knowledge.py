"""Knowledge questions (issue 19): the coverage metric on planted replies, the committed file (formats, splits,
size, solver replies, the everyday commands) and the extraction functions on small inline samples. No network,
no packages."""
import json
import os
import sys
from pathlib import Path

import pytest

from qwen3mini.tasks.knowledge import (DEFAULT_PATH, FORMATS, content_words, covered_share, covers,
                                       knowledge_reply, load_knowledge, question_of, subject_of)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from train.data import knowledge as build  # noqa: E402


# ------------------------------------------------------------------------------------------------ the metric

def test_content_words():
    assert content_words("The memcpy() function copies n bytes, e.g. 2 of them.") == \
        ["memcpy", "function", "copies", "bytes", "2"]
    assert content_words("It is what it is.") == []


@pytest.mark.parametrize("reference, reply, share, expected", [
    ("list directory contents", "ls lists directory contents.", 0.5, True),
    ("list directory contents", "ls lists directory contents.", 1.0, True),
    ("copy memory area", "It copies memory.", 0.5, True),                  # 2 of 3
    ("copy memory area", "It copies things.", 0.5, False),                 # 1 of 3
    ("copy memory area", "It copies memory.", 0.7, False),
    ("a small fast memory holding recently accessed data", "A fast memory for recent data.", 0.5, False),   # 3 of 7
    ("a small fast memory holding recently accessed data", "A small, fast memory holding recently used data.", 0.5,
     True),
    ("the caches of a processor", "a cache", 0.5, True),                    # caches / cache
    ("list the directories", "listing a directory", 0.5, True),             # directories / directory only
    ("lasting a very short time", "LASTING A SHORT TIME", 0.5, True),      # case does not matter
    ("lasting a very short time", "", 0.5, False),
    ("it is what it is", "it is what it is", 0.5, False),                  # no content words: never covered
])
def test_covers_planted_replies(reference, reply, share, expected):
    assert covers(reference, reply, share) is expected


def test_covered_share_counts_distinct_words():
    assert covered_share("memory memory area", "memory") == 0.5
    assert covered_share("processes", "process") == 1.0 and covered_share("process", "processes") == 1.0


# ------------------------------------------------------------------------------------------------ the formats

def test_questions_round_trip_and_nothing_else_matches():
    for kind, subject in (("function", "memcpy"), ("command", "ld.so"), ("word", "ephemeral"), ("term", "cache")):
        question = question_of(kind, subject)
        assert subject_of(question) == (kind, subject) and question == FORMATS[kind].format(subject)
    assert question_of("function", "memcpy") == "What does the C function memcpy do?"
    assert question_of("command", "ls") == "What does the ls command do?"
    assert question_of("word", "ephemeral") == 'What does the word "ephemeral" mean?'
    assert question_of("term", "cache") == 'What is a "cache" in computing?'
    for other in ("What does the C function memcpy do", "what does the ls command do?",
                  'What does the word "Ephemeral" mean?', "What is 347 * 86?", 'What is a "x" in computing? '):
        assert subject_of(other) is None
    with pytest.raises(ValueError):
        question_of("function", "not a name")


def test_knowledge_reply_examples():
    item = {"question": "What does the ls command do?", "answer": "list directory contents"}
    assert knowledge_reply(item) == "ls lists directory contents."
    item = {"question": "What does the C function malloc do?", "answer": "allocate and free dynamic memory"}
    assert knowledge_reply(item) == "malloc allocates and frees dynamic memory."
    item = {"question": "What does the C function errno do?", "answer": "number of last error"}
    assert knowledge_reply(item) == "errno: number of last error."
    item = {"question": 'What does the word "ephemeral" mean?', "answer": "lasting a very short time"}
    assert knowledge_reply(item) == '"ephemeral" means lasting a very short time.'
    item = {"question": 'What is a "cache" in computing?', "answer": "A small fast memory holding data."}
    assert knowledge_reply(item) == 'In computing, "cache" is a small fast memory holding data.'


# ----------------------------------------------------------------------------------------- the committed file

def test_committed_file_formats_splits_and_size():
    items = load_knowledge()
    assert os.path.getsize(DEFAULT_PATH) <= 2_000_000
    assert all(set(item) == {"question", "answer", "source", "kind", "split"} for item in items)
    sources = {"function": {"manpages-en"}, "command": {"manpages-en", *build.COMMAND_PACKAGES},
               "word": {"wordnet"}, "term": {"foldoc"}}
    for item in items:
        found = subject_of(item["question"])
        assert found is not None and found[0] == item["kind"], item
        assert item["source"] in sources[item["kind"]] and item["split"] in ("train", "test")
        assert 1 <= len(item["answer"].split()) <= 40 and item["answer"] == " ".join(item["answer"].split())
        assert covers(item["answer"], knowledge_reply(item), share=1.0), item     # the solver reply is right
    questions = [item["question"] for item in items]
    assert len(set(questions)) == len(questions)
    train, test = load_knowledge(split="train"), load_knowledge(split="test")
    assert len(train) + len(test) == len(items) and 0.05 < len(test) / len(items) < 0.15
    assert not {i["question"] for i in train} & {i["question"] for i in test}
    counts = {kind: sum(item["kind"] == kind for item in items) for kind in FORMATS}
    assert counts["word"] >= 2000 and counts["term"] >= 1000 and counts["function"] >= 1000
    assert counts["command"] >= 500
    answers = {item["question"]: item["answer"] for item in items}
    for name, answer in (("ls", "list directory contents"), ("cp", "copy files and directories"),
                         ("grep", "print lines that match patterns"), ("ldd", "print shared object dependencies")):
        assert answers[question_of("command", name)] == answer
    for name in ("tar", "find", "ps", "sed", "gzip", "ssh", "curl", "git-commit", "sudo", "systemctl"):
        assert question_of("command", name) in answers, name
    assert answers[question_of("function", "memcpy")] == "copy memory area"        # memcpy(3), not bstring(3)
    with pytest.raises(ValueError):
        load_knowledge(split="val")


def test_load_knowledge_reads_a_given_path(tmp_path):
    path = tmp_path / "k.jsonl"
    rows = [{"question": question_of("word", "zinc"), "answer": "a metallic element", "source": "wordnet",
             "kind": "word", "split": split} for split in ("train", "test")]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert load_knowledge(str(path)) == rows and load_knowledge(str(path), split="test") == rows[1:]
    with pytest.raises(FileNotFoundError, match="train.data.knowledge"):
        load_knowledge(str(tmp_path / "missing.jsonl"))


# ------------------------------------------------------------------------------------------------- extraction

MEMCPY_PAGE = """memcpy(3)                  Library Functions Manual                  memcpy(3)

NAME
       memcpy, mempcpy - copy memory area

LIBRARY
       Standard C library (libc, -lc)

SYNOPSIS
       #include <string.h>

       void *memcpy(void dest[restrict .n], const void src[restrict .n],
                    size_t n);

DESCRIPTION
       The memcpy() function copies n bytes from memory area src to memory
       area dest.
"""
LDD_PAGE = """ldd(1)                      General Commands Manual                     ldd(1)

NAME
       ldd - print shared object
       dependencies

SYNOPSIS
       ldd [option]... file...
"""


def test_man_page_sections_and_names():
    assert build.man_name_line(MEMCPY_PAGE) == (["memcpy", "mempcpy"], "copy memory area")
    assert build.man_name_line(LDD_PAGE) == (["ldd"], "print shared object dependencies")  # wrapped line joined
    assert "#include <string.h>" in build.man_section(MEMCPY_PAGE, "SYNOPSIS")
    assert build.man_section(MEMCPY_PAGE, "EXAMPLES") is None
    assert build.man_name_line("NAME\n       foo\n") is None
    synopsis = build.man_section(MEMCPY_PAGE, "SYNOPSIS")
    assert build.is_called("memcpy", synopsis) and not build.is_called("mempcpy", synopsis)
    assert not build.is_called("cpy", synopsis)


BZIP2_PAGE = """bzip2(1)                    General Commands Manual                   bzip2(1)

NAME
       bzip2, bunzip2 - a block-sorting file compressor, v1.0.8
       bzcat - decompresses files to stdout
       bzip2recover - recovers data from damaged bzip2 files

SYNOPSIS
       bzip2 [ -cdfkqstvzVL123456789 ] [ filenames ...  ]
"""
WRITE_PAGE = """WRITE(1)                         User Commands                        WRITE(1)

NAME
       write - send a message to another user

       write user [ttyname]

DESCRIPTION
       write allows you to communicate with other users.
"""
SUDO_PAGE = """SUDO(8)                   BSD System Manager's Manual                  SUDO(8)

NAME
     sudo, sudoedit \u2014 execute a command as another user

SYNOPSIS
     sudo -h | -K | -k | -V
"""
WRAPPED_NAMES_PAGE = """NAME
       acosh, acoshf,
       acoshl - inverse hyperbolic cosine function
"""


def test_man_name_entries():
    assert build.man_name_entries(BZIP2_PAGE) == [(["bzip2", "bunzip2"], "a block-sorting file compressor"),
                                                  (["bzcat"], "decompresses files to stdout"),
                                                  (["bzip2recover"], "recovers data from damaged bzip2 files")]
    assert build.man_name_line(BZIP2_PAGE) == (["bzip2", "bunzip2"], "a block-sorting file compressor")
    assert build.man_name_entries(WRITE_PAGE) == [(["write"], "send a message to another user")]  # not the synopsis
    assert build.man_name_entries(SUDO_PAGE) == [(["sudo", "sudoedit"], "execute a command as another user")]
    assert build.man_name_entries(WRAPPED_NAMES_PAGE) == [(["acosh", "acoshf", "acoshl"],
                                                           "inverse hyperbolic cosine function")]
    assert build.man_name_entries("NAME\n       rbash - restricted bash, see bash(1)\n") == [
        (["rbash"], "restricted bash")]
    assert build.man_name_entries(LDD_PAGE) == [(["ldd"], "print shared object dependencies")]
    assert build.man_name_entries("SYNOPSIS\n       foo\n") == []


def test_program_names():
    installed = {"ls", "wget", "which.debianutils", "nc.openbsd", "fsck", "fsck.minix"}
    assert [build.program_name(n, installed) for n in ("ls", "Wget", "which", "nc", "fsck", "fsck.minix")] == [
        "ls", "wget", "which", "nc", "fsck", "fsck.minix"]
    assert build.program_name("ip-address", installed) is None and build.program_name("lzma", installed) is None
    assert build.page_name("manpages/usr/share/man/man8/ld.so.8.gz") == "ld.so"
    assert build.page_name("openssl/usr/share/man/man1/openssl.1ssl.gz") == "openssl"


def test_man_items():
    items = build.man_items(("manpages-dev/usr/share/man/man3/memcpy.3.gz", MEMCPY_PAGE))
    assert [(i["question"], i["answer"], i["kind"]) for i in items] == [
        ("What does the C function memcpy do?", "copy memory area", "function")]   # mempcpy: not in SYNOPSIS
    items = build.man_items(("manpages/usr/share/man/man1/ldd.1.gz", LDD_PAGE))
    assert [(i["question"], i["kind"]) for i in items] == [("What does the ldd command do?", "command")]
    assert build.man_items(("manpages/usr/share/man/man1/intro.1.gz", LDD_PAGE)) == []
    # a command package's page: each name the package installs, one group per page, the package as source
    items = build.man_items(("bzip2/usr/share/man/man1/bzip2.1.gz", BZIP2_PAGE), {"bzip2", "bzcat"}, "bzip2")
    assert [(i["question"], i["answer"], i["source"], i["group"]) for i in items] == [
        ("What does the bzip2 command do?", "a block-sorting file compressor", "bzip2",
         "bzip2/usr/share/man/man1/bzip2.1.gz"),
        ("What does the bzcat command do?", "decompresses files to stdout", "bzip2",
         "bzip2/usr/share/man/man1/bzip2.1.gz")]                           # bunzip2, bzip2recover: not installed
    assert build.man_items(("manpages-dev/usr/share/man/man3/memcpy.3.gz", MEMCPY_PAGE), {"memcpy"}, "x") == []


def test_named_first():
    def record(name, page):
        return {"question": question_of("function", name), "group": f"manpages-dev/usr/share/man/man3/{page}.3.gz"}
    items = [record("memcpy", "bstring"), record("bzero", "bstring"), record("memcpy", "memcpy"),
             record("isnan", "finite"), record("isnan", "fpclassify")]
    assert build.named_first(items) == [items[2], items[0], items[1], items[3], items[4]]
    out = build.select([dict(i, answer=a, source="manpages-en", kind="function") for i, a in zip(
        build.named_first(items), ("copy memory area", "byte string operations", "byte string operations",
                                   "BSD floating-point classification", "floating-point classification macros"))])
    assert {i["question"]: i["answer"] for i in out}[question_of("function", "memcpy")] == "copy memory area"


WORDNET_DATA = ('01756293 00 s 01 ephemeral 0 002 & 01754421 a 0000 + 05058140 n 0101 | lasting a very short time; '
                '"youth\'s ephemeral joys"; "ephemeral flowers"  ')
WORDNET_SLUR = ('09676490 18 n 02 Abo 0 abo 0 001 ;u 06718862 n 0000 | an offensive word  ')
WORDNET_NAME = ('09676491 18 n 01 Abo 0 001 @ 09691279 n 0000 | a member of a people  ')


def test_wordnet_parsers():
    assert build.wordnet_definition(WORDNET_DATA) == "lasting a very short time"
    assert build.wordnet_definition("x 00 n 01 w 0 000 | a small; brief thing  ") == "a small; brief thing"
    assert build.wordnet_definition("x 00 n 01 w 0 000 | a small fast memory; a store  ") == "a small fast memory"
    index = build.wordnet_index(["  1 This software and database is being provided", "ephemeral a 1 2 & + 1 1 "
                                 "01756293  ", "cache n 3 4 @ ~ + ; 3 1 02934888 13366912 02935017  "])
    assert index == {"ephemeral": (1, "01756293"), "cache": (3, "02934888")}
    total, first = build.sense_counts(["cache%1:06:00:: 1 4", "cache%1:21:00:: 2 1", "cache%2:35:00:: 1 2",
                                       "ephemeral%5:00:00:impermanent:00 1 1"])
    assert total == {"cache": 7, "ephemeral": 1}
    assert first == {("cache", "n"): 4, ("cache", "v"): 2, ("ephemeral", "a"): 1}
    assert build.wordnet_synset_ok("ephemeral", WORDNET_DATA)
    assert not build.wordnet_synset_ok("abo", WORDNET_SLUR) and not build.wordnet_synset_ok("abo", WORDNET_NAME)


FOLDOC = """compiler

   <programming, tool> A program that converts another program
   from some {source language} (or {programming language}) to
   {machine language} (object code).  Some compilers output
   {assembly language}.

   (1994-11-07)

cache
cache memory

   <memory management> /kash/ A small fast memory holding
   recently accessed data, e.g. pages, designed to speed up access.
   More text.

abbrev

   /*-breev'/, /*-brev'/ Common abbreviation for "abbreviation".

Ada

   1. <language> (Or "Ada 83") A {Pascal
   (http://x.org/)}-descended language.

   2. Something else.
"""


def test_foldoc_parsers():
    entries = list(build.foldoc_entries(FOLDOC))
    assert [heads for heads, _ in entries] == [["compiler"], ["cache", "cache memory"], ["abbrev"], ["Ada"]]
    definitions = [build.foldoc_definition(body) for _, body in entries]
    assert definitions == [
        "A program that converts another program from some source language (or programming language) to "
        "machine language (object code).",
        "A small fast memory holding recently accessed data, e.g. pages, designed to speed up access.",
        'Common abbreviation for "abbreviation".',
        "A Pascal-descended language."]
    assert build.first_sentence("Written by J. Smith in 1990. Later.") == "Written by J. Smith in 1990."
    assert build.first_sentence("no end") == "no end"


def test_select_dedupes_caps_and_splits_by_group():
    items = [{"question": question_of("function", f"f{i}"), "answer": "copy memory area", "source": "manpages-en",
              "kind": "function", "group": f"page{i // 3}"} for i in range(60)]
    items.append(dict(items[0], answer="a different answer for the same question"))   # a duplicate question
    items.append({"question": question_of("function", "g"), "answer": "x", "source": "manpages-en",
                  "kind": "function", "group": "g"})                                  # no two content words
    out = build.select([dict(i) for i in items])
    assert len(out) == 60 and all(i["answer"] == "copy memory area" for i in out)
    assert out == build.select([dict(i) for i in items])                           # deterministic
    by_group = {}
    for item in out:
        number = int(subject_of(item["question"])[1][1:])
        by_group.setdefault(number // 3, set()).add(item["split"])
    assert all(len(splits) == 1 for splits in by_group.values())                   # a page's names stay together
