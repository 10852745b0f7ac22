"""The repository's shape (issue 15, issue 16 item 7): the library never imports a script, its imports form no
cycle, every citation points inside the repository, files stay short, and a clone named `qwen3mini` cannot pass
for the package."""
import ast
import os
import re
import subprocess
import sys

import pytest

from qwen3mini import load_tokenizer


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 470             # "no Python file over ~450 lines"
MAX_CHAT_SCRIPT_LINES = 350  # infer/chat.py keeps arguments, display and the REPL; the protocol is in the library
# Library folder -> the package name it is installed as (setup.py's package_dir).
LIBRARY = {"qwen3mini": "qwen3mini", "tokenizer": "qwen3mini.tokenizer"}
SKIPPED_DIRS = {".git", ".cache", ".hypothesis", ".pytest_cache", "__pycache__", "build", "data", "runs"}


def repository_files(extensions=None):
    """Paths (relative to the root) of the repository's own files: git's list when this is a checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        paths = [p for p in listed.decode().split("\0") if p and os.path.isfile(os.path.join(ROOT, p))]
    except (OSError, subprocess.CalledProcessError):  # an unpacked archive: walk it
        paths = []
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
            paths += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files]
    return sorted(p for p in paths if extensions is None or p.endswith(extensions))


def library_modules():
    """{module name: path} for every Python module of the library (qwen3mini/ and tokenizer/)."""
    modules = {}
    for folder, package in LIBRARY.items():
        for path in repository_files(".py"):
            if path.startswith(folder + "/"):
                parts = path[len(folder) + 1:-len(".py")].split("/")
                parts = parts[:-1] if parts[-1] == "__init__" else parts
                modules[".".join([package] + parts)] = path
    return modules


def extension_modules():
    """The compiled modules setup.py declares (qwen3mini._C, ...): leaves of the import graph, built or not."""
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        return set(re.findall(r'Extension\(\s*"([\w.]+)"', f.read()))


def imported_modules(name, path, modules, extensions):
    """Library modules that module ``name`` imports anywhere in its file, inside functions too."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from a import b` imports the module a.b when there is one, else names from a
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules.keys() | extensions else base
                     for alias in node.names]
        else:
            continue
        for target in names:
            if target in extensions:  # compiled: imports nothing of ours
                continue
            while target and target not in modules:  # `import a.b.c` where c is a name: the module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    return targets


def find_cycle(graph):
    """One import cycle as a list of module names (first == last), or None."""
    state = {}  # module -> "open" while on the DFS stack, "done" after

    def visit(module, stack):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target, stack)):
                return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [])):
            return cycle
    return None


def test_library_imports_form_no_cycle():
    modules, extensions = library_modules(), extension_modules()
    assert "qwen3mini.tokenizer.tokenizer" in modules and "qwen3mini.model" in modules
    graph = {name: imported_modules(name, path, modules, extensions) for name, path in modules.items()}
    assert "qwen3mini.tokenizer.tokenizer" in graph["qwen3mini.tokenizer"]  # the walk sees relative imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_sees_imports_inside_functions(tmp_path):
    """The checker itself: a cycle closed by an import inside a function is found."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n")
    modules = {"p.a": str(tmp_path / "a.py"), "p.b": str(tmp_path / "b.py")}
    graph = {name: imported_modules(name, path, modules, set()) for name, path in modules.items()}
    assert find_cycle(graph) == ["p.a", "p.b", "p.a"]


def test_library_loads_no_script():
    """`import qwen3mini.chat, qwen3mini.generation` in a fresh interpreter leaves no module from infer/ or train/
    in sys.modules (scripts loaded by file path included)."""
    code = ("import os, sys\n"
            "import qwen3mini, qwen3mini.chat, qwen3mini.generation, qwen3mini.tokenizer\n"
            "scripts = [os.path.join(os.getcwd(), d) + os.sep for d in ('infer', 'train')]\n"
            "for name, module in sorted(sys.modules.items()):\n"
            "    path = os.path.abspath(getattr(module, '__file__', None) or '')\n"
            "    if name.split('.')[0] in ('infer', 'train') or path.startswith(tuple(scripts)):\n"
            "        print(name, path)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "", "the library loaded scripts:\n" + result.stdout


def test_citations_stay_inside_the_repository():
    """Code cites the paper, transformers' source or docs/qwen3.md; never a spec or a folder outside the clone."""
    outside = re.compile(r"\bspec" + r" §|\.\./shared\b|/work/" + r"shared\b|shared/" + r"spec\b")
    found = []
    for path in repository_files():
        with open(os.path.join(ROOT, path), "rb") as f:
            data = f.read()
        if b"\0" in data:  # binary (weights, images)
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if outside.search(line):
                found.append(f"{path}:{number}: {line.strip()[:100]}")
    assert not found, "citations outside the repository:\n" + "\n".join(found)


def test_docs_sections_that_code_cites_exist():
    """Every `docs/qwen3.md §N` citation names a section heading of docs/qwen3.md."""
    with open(os.path.join(ROOT, "docs", "qwen3.md"), encoding="utf-8") as f:
        sections = set(re.findall(r"^#+ (\d+(?:\.\d+)?)[. ]", f.read(), re.MULTILINE))
    cited = re.compile(r"docs/qwen3\.md (§[\d.]+(?:,? (?:and )?§[\d.]+)*)")
    missing = []
    for path in repository_files():
        if path.endswith((".py", ".md", ".cpp", ".h", ".cu", ".cuh", ".sh")):
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    for group in cited.findall(line):
                        missing += [f"{path}:{number}: §{s}" for s in re.findall(r"§([\d.]*\d)", group)
                                    if s not in sections]
    assert not missing, "citations of missing sections:\n" + "\n".join(missing)


def test_python_files_stay_short():
    long_files = []
    for path in repository_files(".py"):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        limit = MAX_CHAT_SCRIPT_LINES if path == "infer/chat.py" else MAX_LINES
        if lines > limit:
            long_files.append(f"{path}: {lines} lines (limit {limit})")
    assert not long_files, "\n".join(long_files)


def test_clone_named_like_the_package_imports_the_package(tmp_path):
    """Issue 16 item 7: Python started in the folder that holds a clone called `qwen3mini` (git's default name)
    finds the clone before the installed package. The root's __init__.py makes that import load the real
    package (and qwen3mini.tokenizer from tokenizer/), instead of an empty namespace package ("module
    'qwen3mini' has no attribute 'load_tokenizer'")."""
    clone = tmp_path / "qwen3mini"
    os.symlink(ROOT, clone, target_is_directory=True)  # the clone's real layout, found by its name
    code = ("import sys, qwen3mini, qwen3mini.tokenizer; print(qwen3mini.__file__); "
            "print(qwen3mini.tokenizer.__file__); print(qwen3mini.load_tokenizer(sys.argv[1]).encode('hello world'))")
    expected = load_tokenizer(os.path.join(ROOT, "checkpoints", "tokenizer-16k")).encode("hello world")
    for cwd, checkpoint in ((tmp_path, "qwen3mini/checkpoints/tokenizer-16k"), (clone, "checkpoints/tokenizer-16k")):
        result = subprocess.run([sys.executable, "-c", code, checkpoint], cwd=cwd, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        package, tokenizer, ids = result.stdout.splitlines()
        # the inner package's __init__.py, not the root's own
        assert os.path.realpath(package) == os.path.realpath(os.path.join(ROOT, "qwen3mini", "__init__.py"))
        assert tokenizer.endswith(os.path.join("tokenizer", "__init__.py"))
        assert ids == str(expected)
