"""Corpus building: the deterministic, disjoint train/validation split, the S3 long-document grouping, the
stage sampling, and the format converters on small inputs."""
import gzip
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from train.data import build_corpus, extract, sources  # noqa: E402


def test_split_is_deterministic_disjoint_and_about_two_percent():
    ids = [f"src/dir{i % 37}/file{i}.html" for i in range(20_000)]
    first = {i: sources.split_of(i) for i in ids}
    assert first == {i: sources.split_of(i) for i in ids}
    val = {i for i, s in first.items() if s == "val"}
    train = {i for i, s in first.items() if s == "train"}
    assert not val & train and len(val) + len(train) == len(ids)
    assert 0.015 < len(val) / len(ids) < 0.025


def test_stage_sampling_is_deterministic_and_salted():
    ids = [f"doc{i}" for i in range(10_000)]
    a = [build_corpus.keep_fraction(i, 0.25, "s2") for i in ids]
    assert a == [build_corpus.keep_fraction(i, 0.25, "s2") for i in ids]
    assert 0.23 < sum(a) / len(a) < 0.27
    assert a != [build_corpus.keep_fraction(i, 0.25, "s1") for i in ids]
    assert all(build_corpus.keep_fraction(i, 1.0, "s1") for i in ids)
    assert not any(build_corpus.keep_fraction(i, 0.0, "s1") for i in ids)


def test_long_documents_group_related_docs_and_respect_bounds(monkeypatch):
    monkeypatch.setattr(build_corpus, "S3_MIN_CHARS", 100)
    monkeypatch.setattr(build_corpus, "S3_MAX_CHARS", 400)
    para = "word " * 9 + "end."  # 49 characters
    docs = ([{"id": f"pkg/manual/page{i}.html", "text": para} for i in range(12)]       # one group, 12 pages
            + [{"id": "pkg/other/alone.html", "text": para}]                           # too short alone
            + [{"id": f"dict#{i:05d}", "text": para * 3} for i in range(2)])           # chunked file: one group
    out = list(build_corpus.long_documents(docs))
    assert all(100 <= len(d["text"]) <= 400 for d in out)
    assert {d["id"].split("@")[0] for d in out} == {"pkg/manual", "dict"}
    manual = "\n\n".join(d["text"] for d in out if d["id"].startswith("pkg/manual"))
    assert manual == "\n\n".join([para] * 12)  # cut at paragraph boundaries, nothing lost or repeated
    assert not any("alone" in d["id"] for d in out)


def test_clean_text_normalises_and_removes_added_token_strings():
    text = "Cafe\u0301\r\n<|endoftext|>a<think>b</think>\x00\t\n\n\n\nend   "
    assert extract.clean_text(text) == "Café\nab    \n\nend".replace("    \n", "\n")


def test_html_to_text_drops_navigation_keeps_code():
    page = """<html><head><title>T</title><style>p{}</style></head><body>
    <div class="related"><a href="x">previous</a> | <a>next</a></div>
    <h1>Title&para;</h1><p>Some   <b>bold</b>
    text.<p>Second &amp; last.</p>
    <pre>def f(x):
        return x</pre><script>var a;</script><div id="ft">footer</div></body></html>"""
    assert extract.html_to_text(page) == "Title\n\nSome bold text.\n\nSecond & last.\n\ndef f(x):\n        return x"


def test_chunks_and_paragraph_dedup():
    text = "\n\n".join(f"para {i} " + "x" * 20 for i in range(10))
    chunks = extract.chunk_paragraphs(text, 60)
    assert "\n\n".join(chunks) == text and all(len(c) >= 60 for c in chunks[:-1])
    assert extract.drop_paragraphs_of("Hallo Welt.\n\nSame in English.", "Same in English.\n\nOther.") == "Hallo Welt."


def test_wordnet_gloss_lines(tmp_path):
    data = tmp_path / "data.noun"
    data.write_text("  1 This software and database is being provided\n"
                    "00001740 03 n 02 entity 0 physical_entity 0 003 ~ 00001930 n 0000 | that which exists  \n"
                    "00002000 00 s 01 big(a) 0 000 | large in size\n")
    assert extract.wordnet_glosses(data) == ("entity, physical entity (noun): that which exists\n"
                                             "big (adjective): large in size")


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_manpage_rendering_is_left_adjusted(tmp_path):
    page = tmp_path / "demo.1.gz"
    page.write_bytes(gzip.compress(b'.TH DEMO 1\n.SH NAME\ndemo \\- show a page\n.SH DESCRIPTION\n'
                                   b'This is a long sentence that certainly needs more than one output line '
                                   b'to be formatted, so justification would add spaces.\n.B \\-\\-flag\n'))
    text = extract.render_manpage(page)
    assert "NAME\n       demo - show a page" in text and "--flag" in text
    body = [line for line in text.split("\n") if line.startswith("       This")]
    assert body and "  " not in body[0].strip()
    redirect = tmp_path / "alias.1.gz"
    redirect.write_bytes(gzip.compress(b".so man1/demo.1\n"))
    assert extract.render_manpage(redirect) == ""


def test_every_source_is_documented_and_packages_are_listed():
    readme = (Path(build_corpus.__file__).parent / "README.md").read_text()
    for src in sources.SOURCES:
        assert f"`{src.name}`" in readme, f"{src.name} missing from train/data/README.md"
        assert set(src.packages) <= set(sources.packages())
    assert len({s.name for s in sources.SOURCES}) == len(sources.SOURCES)


def _fake_sources(src_dir: Path) -> None:
    """A few documents per source (and synthetic), with ids shaped like the real ones."""
    src_dir.mkdir(parents=True)
    for s in list(sources.SOURCES) + [None]:
        name = s.name if s else "synthetic"
        docs = [{"id": f"{name}/dir{i % 3}/page{i:03d}", "text": "\n\n".join([f"{name} page {i}."] * 150)}
                for i in range(60)]
        build_corpus.write_jsonl(src_dir / f"{name}.jsonl", docs)


def test_mix_is_deterministic_and_splits_are_disjoint(tmp_path, monkeypatch):
    import json

    _fake_sources(tmp_path / "src")
    build_corpus.mix(tmp_path / "src", tmp_path / "a")
    build_corpus.mix(tmp_path / "src", tmp_path / "b")
    for stage in ("s1", "s2", "s3"):
        for split in build_corpus.SPLITS:
            a = (tmp_path / "a" / stage / f"{split}.jsonl").read_bytes()
            assert a == (tmp_path / "b" / stage / f"{split}.jsonl").read_bytes()
        texts = {split: {json.loads(l)["text"] for l in open(tmp_path / "a" / stage / f"{split}.jsonl")}
                 for split in build_corpus.SPLITS}
        assert texts["train"] and texts["val"] and not texts["train"] & texts["val"]
    ids = {json.loads(l)["id"] for l in open(tmp_path / "a" / "s1" / "val.jsonl")}
    assert all(sources.split_of(i) == "val" for i in ids)
    train_ids = {f"{n}/dir{i % 3}/page{i:03d}" for n in [s.name for s in sources.SOURCES] for i in range(60)
                 if sources.split_of(f"{n}/dir{i % 3}/page{i:03d}") == "train"}
    for line in open(tmp_path / "a" / "s3" / "train.jsonl"):  # long documents only, built from train documents
        doc = json.loads(line)
        assert len(doc["text"]) >= build_corpus.S3_MIN_CHARS
        for name, i in re.findall(r"^(\S+) page (\d+)\.$", doc["text"], re.M):
            assert f"{name}/dir{int(i) % 3}/page{int(i):03d}" in train_ids


def test_no_steps_runs_fetch_extract_synth_mix(monkeypatch):
    """`python -m train.data.build_corpus` as the README prints it: no steps means all four, in order (argparse
    rejected an empty list of steps against `choices`)."""
    ran = []
    monkeypatch.setattr(build_corpus, "fetch", lambda: ran.append("fetch"))
    monkeypatch.setattr(build_corpus, "extract_sources", lambda names: ran.append("extract"))
    monkeypatch.setattr(build_corpus, "synth", lambda out, n_docs, seed: ran.append("synth"))
    monkeypatch.setattr(build_corpus, "mix", lambda src: ran.append("mix"))
    build_corpus.main([])
    assert ran == ["fetch", "extract", "synth", "mix"]
    ran.clear()
    build_corpus.main(["mix", "synth"])
    assert ran == ["mix", "synth"]
    for argv in (["--sources", "no-such-source", "extract"], ["fetch", "tokenize"]):
        with pytest.raises(SystemExit):
            build_corpus.main(argv)


def test_pack_carries_a_share_and_mix_rebuilds_from_it(tmp_path):
    """`pack --share F` carries, per source, the documents some stage uses that an id hash keeps (about F of
    them, the same ones every time); `mix` rebuilds stage corpora from the carried files alone."""
    _fake_sources(tmp_path / "src")
    build_corpus.pack(tmp_path / "src", tmp_path / "all")
    build_corpus.pack(tmp_path / "src", tmp_path / "half", share=0.5)
    build_corpus.pack(tmp_path / "src", tmp_path / "again", share=0.5)
    assert not (tmp_path / "all" / "synthetic.jsonl.xz").exists()        # regenerated there, not carried
    kept, total = 0, 0
    for s in sources.SOURCES:
        every = {d["id"] for d in build_corpus.read_jsonl(tmp_path / "all" / f"{s.name}.jsonl.xz")}
        half = {d["id"] for d in build_corpus.read_jsonl(tmp_path / "half" / f"{s.name}.jsonl.xz")}
        again = {d["id"] for d in build_corpus.read_jsonl(tmp_path / "again" / f"{s.name}.jsonl.xz")}
        assert half == again and half <= every
        assert every == {d["id"] for d in build_corpus.read_jsonl(tmp_path / "src" / f"{s.name}.jsonl")
                         if build_corpus.in_any_stage(d["id"], s.name, s.domain)}
        kept, total = kept + len(half), total + len(every)
    assert 0.35 < kept / total < 0.65
    shutil.copy(tmp_path / "src" / "synthetic.jsonl", tmp_path / "half" / "synthetic.jsonl")
    build_corpus.mix(tmp_path / "half", tmp_path / "mixed")
    assert (tmp_path / "mixed" / "s1" / "train.jsonl").stat().st_size > 0
