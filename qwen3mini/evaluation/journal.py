"""The finished phases of an evaluation, kept on disk so that a run killed half-way (a device call's time limit,
say) resumes where it stopped instead of starting over: each phase (the greedy replies of one mode and budget,
the samples of one mode, ThinkFollow, each general evaluation) is written once it is complete, and a later run
with the same key (the selection and the model's identity) takes it from the file instead of generating it again.

A journal whose key differs (another selection, another model, retrained weights) is ignored and overwritten.
"""
import json
import os

from ..training.checkpoints import write_atomic


class Journal:
    """Finished phases by name; ``path`` None keeps them in memory only (nothing to resume)."""

    def __init__(self, path: str | None, key: dict):
        self.path, self.key, self.phases = path, json.loads(json.dumps(key)), {}   # as it reads back
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    saved = json.load(f)
            except (OSError, ValueError):     # not a journal, or an unreadable one: start over
                saved = {}
            if saved.get("key") == self.key:
                self.phases = saved.get("phases", {})

    def get(self, phase: str):
        """The saved payload of ``phase``, or None when it has not finished."""
        return self.phases.get(phase)

    def record(self, phase: str, payload):
        """Keep ``payload`` (JSON-ready) as ``phase``'s result; the file holds the old or the new phases only."""
        self.phases[phase] = payload
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        write_atomic(self.path, json.dumps({"key": self.key, "phases": self.phases}))

    def remove(self):
        """Forget the file, once the complete results are written elsewhere."""
        if self.path and os.path.exists(self.path):
            os.remove(self.path)
