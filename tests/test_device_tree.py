"""bench/device_tree.sh: a shipped model left out of a device call and put back, never committed away."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}


def run(repo, *command, check=True):
    return subprocess.run(command, cwd=repo, env=GIT_ENV, capture_output=True, text=True, check=check)


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    run(tmp_path, "git", "init", "-q")
    (tmp_path / "bench").mkdir()
    shutil.copy(os.path.join(ROOT, "bench", "device_tree.sh"), tmp_path / "bench")
    for name in ("base", "chat"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "model.safetensors").write_bytes(os.urandom(1 << 20))
    run(tmp_path, "git", "add", "-A")
    run(tmp_path, "git", "commit", "-q", "-m", "start")
    return tmp_path


def tracked(repo):
    return run(repo, "git", "ls-files").stdout.split()


def test_hide_leaves_the_files_and_travels_less_then_restore(repo):
    out = run(repo, "bash", "bench/device_tree.sh", "hide", "checkpoints/chat").stdout
    assert "hidden: /checkpoints/chat" in out and "would travel: 1.0 MiB" in out
    assert "checkpoints/chat/model.safetensors" not in tracked(repo)
    assert (repo / "checkpoints" / "chat" / "model.safetensors").exists()
    assert run(repo, "git", "status", "--porcelain", "--untracked-files=all").stdout.strip() == \
        "D  checkpoints/chat/model.safetensors"                     # staged removal; not untracked: ignored
    refused = run(repo, "git", "commit", "-q", "-m", "oops", check=False)
    assert refused.returncode != 0 and "device_tree.sh restore" in refused.stderr
    out = run(repo, "bash", "bench/device_tree.sh", "restore").stdout
    assert out.startswith("hidden: \n")
    assert "checkpoints/chat/model.safetensors" in tracked(repo)
    assert run(repo, "git", "status", "--porcelain").stdout == ""
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert "device_tree" not in (repo / ".git" / "info" / "exclude").read_text()


def test_hiding_an_untracked_path_is_one_line(repo):
    bad = run(repo, "bash", "bench/device_tree.sh", "hide", "checkpoints/nope", check=False)
    assert bad.returncode == 2 and bad.stderr == "device_tree.sh hide: checkpoints/nope: not tracked\n"
