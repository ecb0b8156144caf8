#!/usr/bin/env bash
# Usage: tools/commit-paths.sh NAME "message" path [path ...]
# Commits exactly the working-tree contents of the given paths on top of the CURRENT main, atomically:
# builds the tree from HEAD + those paths in a private index, then moves main only if nobody committed
# in between (git update-ref compare-and-swap); retries otherwise. Never reverts another engineer's commit.
set -euo pipefail
name=$1; msg=$2; shift 2
cd "$(git rev-parse --show-toplevel)"
for attempt in 1 2 3 4 5 6 7 8; do
  old=$(git rev-parse refs/heads/main)
  export GIT_INDEX_FILE="$(git rev-parse --git-dir)/index-$name"
  git read-tree "$old"
  git add -- "$@"
  tree=$(git write-tree)
  unset GIT_INDEX_FILE
  if [ "$tree" = "$(git rev-parse "$old^{tree}")" ]; then echo "nothing to commit for: $*"; exit 0; fi
  new=$(git commit-tree "$tree" -p "$old" -m "$msg")
  if git update-ref refs/heads/main "$new" "$old" 2>/dev/null; then
    git read-tree --reset HEAD 2>/dev/null || true   # refresh the shared index's view (no working-tree change)
    git log --oneline -1 "$new"; exit 0
  fi
  sleep 1
done
echo "could not commit: main kept moving" >&2; exit 1
