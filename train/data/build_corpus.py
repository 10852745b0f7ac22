"""Build the pre-training corpora of the three stages (paper §3) from Debian packages and synthetic text.

    python -m train.data.build_corpus            # all steps: fetch, extract, synth, mix
    python -m train.data.build_corpus fetch      # apt-get download + dpkg-deb -x   -> data/raw/
    python -m train.data.build_corpus extract    # packages -> documents            -> data/corpus/sources/*.jsonl
    python -m train.data.build_corpus synth      # synthetic S2 text                -> data/corpus/sources/synthetic.jsonl
    python -m train.data.build_corpus mix        # stage mixes                       -> data/corpus/{s1,s2,s3}/{train,val}.jsonl
    python -m train.data.build_corpus pack       # xz the per-source files           -> data/carry/sources/*.jsonl.xz
    python -m train.data.build_corpus pack --share 0.45   # a share of each source's documents (distillation)

Every file is JSON Lines, one document per line: {"id": ..., "text": ...}. Everything is deterministic: sorted
file lists, ordered parallel maps, hash-based split and sampling, seeded generators. The stage mixes follow
the report's recipe at our scale:

* S1 general: the prose, technical and STEM sources, half of the translations, the standard library and a
  quarter of the other Python code, plus a little synthetic text.
* S2 reasoning: STEM manuals, code, all synthetic problems, and a sample of the general text so S1's
  knowledge is rehearsed.
* S3 long context: long documents only, from the documents of S1 and S2: natural ones and concatenations of
  related documents (same manual directory, same Python package, consecutive dictionary chunks), each at
  least `S3_MIN_CHARS` long.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from . import sources, synthetic

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
SPLITS = ("train", "val")
STEPS = ("fetch", "extract", "synth", "mix", "pack")
ALL_STEPS = STEPS[:4]                                   # what `python -m train.data.build_corpus` runs

# Fraction of each domain's documents that goes into a stage (documents chosen by a salted hash, never
# repeated); a source name overrides its domain. S1 keeps half of the translations (mostly man pages) and a
# quarter of the library code; S2 doubles down on STEM, code and synthetic problems.
STAGE_MIX = {
    "s1": {"prose": 1.0, "tech": 1.0, "multilingual": 0.5, "stem": 1.0, "code": 1.0, "python-libs": 0.25,
           "synthetic": 0.05},
    "s2": {"prose": 0.25, "tech": 0.25, "multilingual": 0.1, "stem": 1.0, "code": 1.0, "python-libs": 0.5,
           "synthetic": 1.0},
}
# S3 document lengths: log-uniform between these bounds (from a few hundred to tens of thousands of tokens of
# our 16k BPE), so that the length buckets of the S3 sampler (L/8-L/2 and L/2-L tokens, `shards.py`) have
# documents for any training length L from 2k to 32k tokens.
S3_MIN_CHARS = 2_000
S3_MAX_CHARS = 128_000


# --------------------------------------------------------------------------------------------------- I/O

def write_jsonl(path: Path, docs: Iterable[dict]) -> int:
    """Write documents atomically (tmp file + rename); returns the number written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, n = path.with_suffix(path.suffix + ".tmp"), 0
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_jsonl(path: Path) -> Iterator[dict]:
    """Documents of a .jsonl or .jsonl.xz file."""
    with (lzma.open if path.suffix == ".xz" else open)(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def keep_fraction(doc_id: str, fraction: float, salt: str) -> bool:
    """Deterministic Bernoulli(fraction) selection of a document, independent per stage (`salt`)."""
    h = int.from_bytes(hashlib.sha1(f"{salt}:{doc_id}".encode()).digest()[:8], "little")
    return h < fraction * 2**64


# ------------------------------------------------------------------------------------------------- steps

def fetch(raw: Path = DATA / "raw", packages: list[str] | None = None) -> None:
    """Download the Debian packages (`apt-get download`, needs `apt-get update` once) and unpack them into
    raw/root/<package>: every source's, or only ``packages``."""
    debs, root = raw / "debs", raw / "root"
    debs.mkdir(parents=True, exist_ok=True)
    wanted = packages or sources.packages()
    missing = [p for p in wanted if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    for pkg in tqdm(wanted, desc="unpack", unit="pkg"):
        (deb,) = sorted(debs.glob(f"{pkg}_*.deb"))[-1:]
        target = root / pkg
        if not target.is_dir():
            tmp = root / f".{pkg}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
            tmp.rename(target)


def extract_sources(names: list[str] | None = None, root: Path = DATA / "raw" / "root",
                    out: Path = DATA / "corpus" / "sources") -> None:
    """Convert every source (or the named ones) into data/corpus/sources/<name>.jsonl."""
    chosen = [s for s in sources.SOURCES if names is None or s.name in names]
    for src in tqdm(chosen, desc="sources", unit="src"):
        docs = ({"id": i, "text": t} for i, t in sources.source_documents(src, root))
        n = write_jsonl(out / f"{src.name}.jsonl", docs)
        tqdm.write(f"{src.name}: {n} documents, {(out / f'{src.name}.jsonl').stat().st_size / 1e6:.1f} MB")


def _synthetic_doc(seed_and_index: tuple[int, int]) -> dict:
    seed, i = seed_and_index
    doc_id, text = synthetic.corpus_document(i, seed)
    return {"id": doc_id, "text": text}


def synth(out: Path = DATA / "corpus" / "sources", n_docs: int = synthetic.DEFAULT_DOCS, seed: int = 0) -> None:
    """Write the synthetic S2 corpus (see synthetic.py), deterministic in `seed`, on all cores."""
    with multiprocessing.Pool() as pool:
        docs = pool.imap(_synthetic_doc, ((seed, i) for i in range(n_docs)), chunksize=64)
        write_jsonl(out / "synthetic.jsonl", tqdm(docs, total=n_docs, desc="synthetic", unit="doc"))


def _source_files(src_dir: Path) -> list[tuple[str, str, Path]]:
    """(name, domain, file) of every source in `src_dir`, as .jsonl or as the carried .jsonl.xz."""
    found = []
    for name, domain in [(s.name, s.domain) for s in sources.SOURCES] + [("synthetic", "synthetic")]:
        candidates = [src_dir / f"{name}.jsonl", src_dir / f"{name}.jsonl.xz"]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise FileNotFoundError(f"{candidates[0]} is missing: run `python -m train.data.build_corpus extract synth`")
        found.append((name, domain, path))
    return found


def in_stage(stage: str, doc_id: str, name: str, domain: str) -> bool:
    fractions = STAGE_MIX[stage]
    return keep_fraction(doc_id, fractions.get(name, fractions[domain]), stage)


def in_any_stage(doc_id: str, name: str, domain: str) -> bool:
    """Used by S1 or S2: the documents that S3 draws from and that are carried to the GPU machine."""
    return any(in_stage(stage, doc_id, name, domain) for stage in STAGE_MIX)


def mix_stage(stage: str, src_dir: Path, out: Path) -> dict[str, int]:
    """Write data/corpus/<stage>/{train,val}.jsonl for S1 or S2 from the per-source files."""
    counts = {}
    for split in SPLITS:
        def docs():
            for name, domain, path in _source_files(src_dir):
                for doc in read_jsonl(path):
                    if sources.split_of(doc["id"]) == split and in_stage(stage, doc["id"], name, domain):
                        yield doc
        counts[split] = write_jsonl(out / stage / f"{split}.jsonl", tqdm(docs(), desc=f"{stage}/{split}", unit="doc"))
    return counts


def group_key(doc_id: str) -> str:
    """Documents that belong together: same directory inside a package, or same chunked file (ids '...#n')."""
    return doc_id.split("#")[0] if "#" in doc_id else doc_id.rsplit("/", 1)[0]


def s3_target_chars(key: str, start: int) -> int:
    """Length of the S3 piece of group `key` that begins at character `start`: log-uniform in
    [S3_MIN_CHARS, S3_MAX_CHARS], from a hash (deterministic)."""
    u = int.from_bytes(hashlib.sha1(f"s3:{key}:{start}".encode()).digest()[:8], "little") / 2**64
    return int(S3_MIN_CHARS * (S3_MAX_CHARS / S3_MIN_CHARS) ** u)


def long_documents(docs: Iterable[dict]) -> Iterator[dict]:
    """S3 documents: concatenate related documents (same `group_key`, in id order) and cut the result at
    paragraph boundaries into pieces of `s3_target_chars` characters; drop a remainder shorter than
    `S3_MIN_CHARS`. `docs` must come sorted by id (the per-source files are), so groups are contiguous runs.
    """
    def pieces(key, texts):
        text, start = "\n\n".join(texts), 0
        while len(text) - start >= S3_MIN_CHARS:
            target = s3_target_chars(key, start)
            end = len(text) if len(text) - start <= target else text.rfind("\n\n", start + S3_MIN_CHARS, start + target)
            end = start + target if end < 0 else end
            yield {"id": f"{key}@{start}", "text": text[start:end]}
            start = end + 2 if text.startswith("\n\n", end) else end

    key, texts = None, []
    for doc in docs:
        k = group_key(doc["id"])
        if k != key and texts:
            yield from pieces(key, texts)
            texts = []
        key = k
        texts.append(doc["text"])
    if texts:
        yield from pieces(key, texts)


def mix_long(src_dir: Path, out: Path) -> dict[str, int]:
    """Write data/corpus/s3/{train,val}.jsonl: long documents built from the non-synthetic documents
    of S1 and S2. Concatenation happens within a split, so train and validation stay disjoint."""
    counts = {}
    for split in SPLITS:
        def docs():
            for name, domain, path in _source_files(src_dir):
                if domain != "synthetic":
                    yield from long_documents(d for d in read_jsonl(path) if sources.split_of(d["id"]) == split
                                              and in_any_stage(d["id"], name, domain))
        counts[split] = write_jsonl(out / "s3" / f"{split}.jsonl", tqdm(docs(), desc=f"s3/{split}", unit="doc"))
    return counts


def mix(src_dir: Path = DATA / "corpus" / "sources", out: Path = DATA / "corpus") -> None:
    """Write the three stage corpora, one process per stage (each reads the source files on its own)."""
    with multiprocessing.Pool(3) as pool:
        jobs = {stage: pool.apply_async(mix_stage, (stage, src_dir, out)) for stage in STAGE_MIX}
        jobs["s3"] = pool.apply_async(mix_long, (src_dir, out))
        stats = {stage: job.get() for stage, job in jobs.items()}
    for stage, counts in stats.items():
        sizes = {s: f"{(out / stage / f'{s}.jsonl').stat().st_size / 1e6:.1f} MB" for s in SPLITS}
        print(f"{stage}: documents {counts}, sizes {sizes}")


def pack(src_dir: Path = DATA / "corpus" / "sources", out: Path = DATA / "carry" / "sources",
         share: float = 1.0) -> None:
    """Write what travels to the GPU machine: data/carry/sources/<name>.jsonl.xz with the documents some
    stage uses (`in_any_stage`), xz-compressed. The synthetic documents are not carried: `synth` regenerates
    them there, and `mix --sources-dir data/carry/sources` then rebuilds byte-identical stage corpora. With
    ``share`` < 1 only that share of each source's documents travels (chosen by id hash), for a call whose tree
    leaves less room: the distillation students' shortened pre-training, beside the teacher's weights; the
    stage corpora rebuilt from it are then that share of the full ones."""
    out.mkdir(parents=True, exist_ok=True)
    for name, domain, path in tqdm(_source_files(src_dir), desc="pack", unit="source"):
        if domain == "synthetic":
            continue
        target = out / f"{name}.jsonl.xz"
        docs = (d for d in read_jsonl(path)
                if in_any_stage(d["id"], name, domain) and (share >= 1 or keep_fraction(d["id"], share, "carry")))
        payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode()
        with open(target.with_suffix(".xz.tmp"), "wb") as f:
            subprocess.run(["xz", "-9", "-T0", "-c"], input=payload, stdout=f, check=True)
        target.with_suffix(".xz.tmp").replace(target)
    total = sum(p.stat().st_size for p in out.glob("*.jsonl.xz"))
    print(f"{out}: {total / 2**20:.1f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Checked below, not with `choices`: argparse tests an empty optional positional's value (its default,
    # or []) against `choices` as a whole and rejects it, whatever the Python version.
    parser.add_argument("steps", nargs="*", help=f"steps to run, in order, of {' '.join(STEPS)} "
                                                 f"(default: {' '.join(ALL_STEPS)})")
    parser.add_argument("--sources-dir", type=Path, default=DATA / "corpus" / "sources",
                        help="where `synth` writes and `mix` reads the per-source files "
                             "(data/carry/sources on the GPU machine)")
    parser.add_argument("--sources", nargs="*", help="extract only these sources (default: all)")
    parser.add_argument("--synthetic-docs", type=int, default=synthetic.DEFAULT_DOCS,
                        help="documents the synth step writes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic generators")
    parser.add_argument("--share", type=float, default=1.0,
                        help="pack: the share of each source's documents that travels (default 1: all)")
    args = parser.parse_args(argv)
    unknown = [step for step in args.steps if step not in STEPS]
    if unknown:
        parser.error(f"unknown step {unknown[0]!r}: expected some of {' '.join(STEPS)}")
    if not 0 < args.share <= 1:
        parser.error(f"--share {args.share}: expected a share in (0, 1]")
    if args.synthetic_docs < 1:
        parser.error(f"--synthetic-docs {args.synthetic_docs}: expected a positive number")
    unknown = sorted(set(args.sources or ()) - {s.name for s in sources.SOURCES})
    if unknown:
        parser.error(f"--sources: unknown {unknown}; the sources are {sorted(s.name for s in sources.SOURCES)}")
    for step in args.steps or ALL_STEPS:
        if step == "fetch":
            fetch()
        elif step == "extract":
            extract_sources(args.sources)
        elif step == "synth":
            synth(args.sources_dir, n_docs=args.synthetic_docs, seed=args.seed)
        elif step == "mix":
            mix(args.sources_dir)
        elif step == "pack":
            pack(share=args.share)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:      # apt-get (needs `apt-get update` once) or dpkg-deb
        sys.exit(f"build_corpus: error: `{' '.join(error.cmd[:2])} ...` failed with exit status {error.returncode}")
    except (OSError, ValueError) as error:               # a missing input names its file and the command to run
        sys.exit(f"build_corpus: error: {error}")
