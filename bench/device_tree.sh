#!/usr/bin/env bash
# The GPU device tool sends the repository's tracked and untracked-not-ignored files, at most 64 MiB, and the
# shipped models (checkpoints/qwen3mini-base and checkpoints/qwen3mini-chat, 38 MB each; the two students, 9 and
# 18 MB) exceed that together. A device call needs at most one of the large two (post-training starts from the
# base model; distillation's teacher is the chat model), so the others stay behind:
#
#   bash bench/device_tree.sh hide checkpoints/qwen3mini-chat    # out of the index and ignored; files stay on disk
#   bash bench/device_tree.sh restore                            # every hidden path tracked again, as in HEAD
#   bash bench/device_tree.sh status                             # what is hidden, and the size that would travel
#
# While a path is hidden its removal is staged, so a commit would delete it: a pre-commit hook refuses every
# commit until `restore`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
EXCLUDE=$(git rev-parse --git-path info/exclude)
HOOK=$(git rev-parse --git-path hooks/pre-commit)
MARK="# hidden by bench/device_tree.sh"

hidden() { [ -f "$EXCLUDE" ] && awk -v mark="$MARK" 'previous == mark { print } { previous = $0 }' "$EXCLUDE" || true; }

case ${1:-status} in
  hide)
    shift
    [ $# -gt 0 ] || { echo "device_tree.sh hide: name the paths to leave behind" >&2; exit 2; }
    for path in "$@"; do
      [ -n "$(git ls-files -- "$path")" ] || { echo "device_tree.sh hide: $path: not tracked" >&2; exit 2; }
      git rm -r -q --cached -- "$path"
      mkdir -p "$(dirname "$EXCLUDE")"
      printf '%s\n/%s\n' "$MARK" "${path%/}" >> "$EXCLUDE"     # (a pattern line cannot hold a comment)
    done
    if [ ! -e "$HOOK" ]; then
      mkdir -p "$(dirname "$HOOK")"
      printf '#!/bin/sh\n%s\necho "paths are hidden for a device call: bash bench/device_tree.sh restore first" >&2\nexit 1\n' \
        "$MARK" > "$HOOK"
      chmod +x "$HOOK"
    fi ;;
  restore)
    for path in $(hidden); do
      git reset -q -- "${path#/}"
    done
    if [ -f "$EXCLUDE" ]; then     # the marks and the pattern under each
      awk -v mark="$MARK" '$0 == mark { skip = 2 } skip > 0 { skip--; next } { print }' "$EXCLUDE" > "$EXCLUDE.tmp"
      mv "$EXCLUDE.tmp" "$EXCLUDE"
    fi
    if grep -qF "$MARK" "$HOOK" 2>/dev/null; then rm "$HOOK"; fi ;;
  status) ;;
  *) echo "usage: device_tree.sh hide PATH... | restore | status" >&2; exit 2 ;;
esac
echo "hidden: $(hidden | tr '\n' ' ')"
git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -n 1 |
  awk '{printf "would travel: %.1f MiB (limit 64)\n", $1 / 1048576}'
