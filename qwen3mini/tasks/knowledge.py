"""Knowledge questions grounded in the pre-training corpus (paper §4.4, general RL): what a man page, WordNet
or FOLDOC says, asked in one of four exact formats, and a rule-based metric for the reply. (The report scores
answers against a reference with a reward model; at our scale a word-overlap rule stands in for it.)

The question/answer pairs are built by ``python -m train.data.knowledge`` from the same Debian packages the
pre-training corpus reads (``train/data/knowledge/README.md``) and committed as
``train/data/knowledge/knowledge.jsonl``: one JSON object per line with ``question``, ``answer``, ``source``
(the corpus source: manpages-en, wordnet, foldoc; or, for everyday commands, the Debian package of the man
page), ``kind`` (``FORMATS``'s keys) and ``split``
(train/test). Pure Python: this module reads that file; it never imports the script.

The metric, ``covers(reference, reply, share=0.5)``: the reply covers the reference when at least ``share``
of the reference's distinct content words occur in the reply. Content words (``content_words``): the text
lower-cased, cut into runs of ASCII letters and digits, minus single letters and ``STOPWORDS``. A reference
word occurs in the reply when their *forms* share one (plural / third-person endings): a word's forms are
itself and, for a word of 4+ letters ending in ``s`` but not ``ss``, the word without its ``s``, without
``es`` when it ends so, and with ``ies`` turned into ``y`` when it ends so (``lists``/``list``,
``caches``/``cache``, ``copies``/``copy``, ``processes``/``process``; not ``listing``/``list``). A
reference without content words is covered by nothing.
Nothing caps the reply's length here; a reward should (a reply listing every word covers everything).
"""
import json
import os
import re

FORMATS: dict[str, str] = {       # kind -> the question, exactly
    "function": "What does the C function {} do?",
    "command": "What does the {} command do?",
    "word": 'What does the word "{}" mean?',
    "term": 'What is a "{}" in computing?',
}
_SUBJECT = {"function": r"[A-Za-z_][A-Za-z0-9_]*", "command": r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
            "word": r"[a-z]+", "term": r"[^\"\n]+"}
_PATTERNS = {kind: re.compile(re.escape(fmt).replace(r"\{\}", f"({_SUBJECT[kind]})"))
             for kind, fmt in FORMATS.items()}
DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "train", "data", "knowledge", "knowledge.jsonl")
SPLITS = ("train", "test")

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each either etc few for from further had has have having he
her here hers him his how however i if in into is it its itself just may me might more most must my neither no
nor not of off on once one only or other our ours out over own same shall she should so some such than that the
their theirs them then there these they this those through thus to too under until up upon us used using very via
was we were what when where whether which while who whom whose why will with within without would you your
""".split())


def question_of(kind: str, subject: str) -> str:
    """The question of ``kind`` about ``subject`` (``question_of("function", "memcpy")``)."""
    question = FORMATS[kind].format(subject)
    if subject_of(question) != (kind, subject):
        raise ValueError(f"knowledge: {subject!r} cannot be asked as a {kind} question")
    return question


def subject_of(question: str) -> tuple[str, str] | None:
    """``(kind, subject)`` of a question in one of the four formats, exactly; None otherwise."""
    for kind, pattern in _PATTERNS.items():
        found = pattern.fullmatch(question)
        if found:
            return kind, found.group(1)
    return None


def load_knowledge(path: str | None = None, split: str | None = None) -> list[dict]:
    """The question/answer records of the committed file (or ``path``), in file order; only ``split``'s
    ("train" or "test") when given."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"knowledge: split must be one of {SPLITS}, not {split!r}")
    path = path or DEFAULT_PATH
    if not os.path.exists(path):
        raise FileNotFoundError(f"knowledge: {path} is missing (rebuild: python -m train.data.knowledge)")
    with open(path, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    return [item for item in items if split is None or item["split"] == split]


def content_words(text: str) -> list[str]:
    """The content words of ``text`` in order, repeats kept (module docstring)."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower())
            if w not in STOPWORDS and not (len(w) == 1 and w.isalpha())]


def _forms(word: str) -> set[str]:
    """The word and what it is without a plural / third-person ending."""
    forms = {word}
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
        if word.endswith("es"):
            forms.add(word[:-2])
        if word.endswith("ies"):
            forms.add(word[:-3] + "y")
    return forms


def covered_share(reference: str, reply: str) -> float:
    """The share of the reference's distinct content words found in the reply (0.0 without any)."""
    wanted = set(content_words(reference))
    if not wanted:
        return 0.0
    found = set().union(*(_forms(w) for w in content_words(reply)))
    return sum(1 for w in wanted if _forms(w) & found) / len(wanted)


def covers(reference: str, reply: str, share: float = 0.5) -> bool:
    """Whether the reply holds at least ``share`` of the reference's content words (module docstring)."""
    return bool(content_words(reference)) and covered_share(reference, reply) >= share


# Verbs that open man pages' NAME descriptions ("copy memory area"): the solver's reply conjugates them
# ("memcpy copies memory area."); a description that opens otherwise ("number of last error") is quoted.
VERBS = frozenset("""
accept access acquire add adjust allocate allow apply assign associate attach bind block bring build calculate
call cancel catch cause change check choose classify clear close compare compile compute concatenate configure
connect construct control convert copy count create decode decrement define delete deliver destroy detach
determine disable discard display divide drop dump duplicate enable encode encrypt end enforce ensure enter
establish evaluate examine exchange execute exit expand extract fill find flush force format free generate get
give handle hash increment initialize initiate insert inspect install interpret invoke issue join keep kill
list listen load locate lock look make manage manipulate map mark match measure modify monitor mount move
multiply notify obtain open operate output parse pass perform place poll post prepare print process produce
profile protect provide push put query read reallocate receive record reduce register release reload remap
remove rename reorder replace report reposition request reserve reset resolve restart restore resume retrieve
return reverse round run save scale scan search seek select send set share shut signal skip sleep sort split
start stop store submit suspend swap switch synchronize terminate test transfer translate truncate try tune
unlink unload unlock unmap unmount unregister unset update use validate verify wait walk write yield zero
""".split())


def _third_person(verb: str) -> str:
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    return verb + "s"


def _verbs(word: str) -> bool:
    return all(part in VERBS for part in word.rstrip(",").split("/"))


def _conjugated(description: str) -> str | None:
    """The description with its leading verbs in the third person (``get and set`` -> ``gets and sets``,
    ``set/get`` -> ``sets/gets``, ``open, read, or write`` -> ``opens, reads, or writes``), None if it does
    not open with a verb of ``VERBS``."""
    words, out, expect_verb = description.split(" "), [], True
    for i, word in enumerate(words):
        if out and word in ("and", "or") and i + 1 < len(words) and _verbs(words[i + 1]):
            out.append(word)
            expect_verb = True
        elif expect_verb and _verbs(word):
            comma = "," if word.endswith(",") else ""
            out.append("/".join(map(_third_person, word.rstrip(",").split("/"))) + comma)
            expect_verb = bool(comma)
        else:
            return " ".join(out + words[i:]) if out else None
    return " ".join(out) if out else None


def knowledge_reply(item: dict) -> str:
    """The solver's one-sentence reply to a knowledge record, for SFT: ``memcpy copies memory area.``,
    ``"ephemeral" means lasting a very short time.``, ``In computing, "cache" is a small fast memory ...``."""
    kind, subject = subject_of(item["question"])
    answer = item["answer"].rstrip(".")
    if re.match(r"[A-Z][a-z]", answer):          # "Record changes ..." -> "record changes ..." (not "GNU ...")
        answer = answer[0].lower() + answer[1:]
    if kind in ("function", "command"):
        conjugated = _conjugated(answer)
        return f"{subject} {conjugated}." if conjugated else f"{subject}: {answer}."
    if kind == "word":
        return f'"{subject}" means {answer}.'
    if re.match(r"(A|An|The) ", answer):
        return f'In computing, "{subject}" is {answer[0].lower()}{answer[1:]}.'
    return f'In computing, "{subject}" means: {answer}.'
