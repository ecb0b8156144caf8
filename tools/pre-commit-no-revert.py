#!/usr/bin/env python3
"""A git pre-commit hook: refuse a commit that sets a file back to its state before its last change.

Several engineers commit to one checkout at once. A commit made from an index read before another
engineer's commit landed silently undoes that commit's files; this catches it. Install with
``ln -s ../../tools/pre-commit-no-revert.py .git/hooks/pre-commit`` and commit with
``tools/commit-paths.sh``, which builds each commit on the current main atomically.
"""

from __future__ import annotations

import subprocess
import sys


def _rev(spec: str) -> str | None:
    r = subprocess.run(["git", "rev-parse", "-q", "--verify", spec], capture_output=True, text=True)
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def _lines(*args: str) -> list[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.split()


def main() -> int:
    history = _lines("rev-list", "--max-count=60", "HEAD")[1:]
    undone = []
    for path in _lines("diff", "--cached", "--name-only", "HEAD"):
        staged, head = _rev(f":{path}"), _rev(f"HEAD:{path}")
        for commit in history:  # the newest state of the file before HEAD's
            old = _rev(f"{commit}:{path}")
            if old != head:
                if old == staged:
                    undone.append(f"{path} (back to its state at {commit[:7]})")
                break
    if undone:
        sys.stderr.write("pre-commit: this commit would undo later commits (a stale index?): "
                         + ", ".join(undone) + "\nCommit with tools/commit-paths.sh NAME \"message\" paths...\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
