#!/usr/bin/env bash
# Usage: tools/commit-patch.sh NAME "message" PATCHFILE
# Commits exactly the hunks in PATCHFILE (a `git diff` output) on top of the CURRENT main, atomically, without
# the other engineers' uncommitted hunks in the same files: for shared files (docs/design.md, README.md,
# benchmarks/RESULTS.md, examples' configs). Make the patch with `git diff HEAD -- FILE > p`, delete the hunks that
# are not yours, then run this. Like commit-paths.sh, it moves main by compare-and-swap and retries if main moved.
# The working tree is not touched (it already holds your hunks).
set -euo pipefail
name=$1; msg=$2; patch=$(realpath "$3")
cd "$(git rev-parse --show-toplevel)"
for attempt in 1 2 3 4 5 6 7 8; do
  old=$(git rev-parse refs/heads/main)
  export GIT_INDEX_FILE="$(git rev-parse --git-dir)/index-$name"
  git read-tree "$old"
  if ! git apply --cached --recount "$patch"; then
    unset GIT_INDEX_FILE; echo "the patch does not apply to main $old: refresh it from git diff HEAD" >&2; exit 1
  fi
  tree=$(git write-tree)
  unset GIT_INDEX_FILE
  if [ "$tree" = "$(git rev-parse "$old^{tree}")" ]; then echo "nothing to commit in $patch"; exit 0; fi
  new=$(git commit-tree "$tree" -p "$old" -m "$msg")
  if git update-ref refs/heads/main "$new" "$old" 2>/dev/null; then
    git read-tree --reset HEAD 2>/dev/null || true
    git log --oneline -1 "$new"; exit 0
  fi
  sleep 1
done
echo "could not commit: main kept moving" >&2; exit 1
