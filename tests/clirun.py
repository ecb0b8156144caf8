"""Run the ``modelloop`` command in-process, as a user's shell would: argv, working folder, exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from modelloop.cli import main


def cli(args: list[str], capsys, cwd: Path) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``modelloop ARGS`` run in ``cwd``."""
    old, argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    sys.argv = ["modelloop", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
        os.chdir(old)
    out, err = capsys.readouterr()
    return code, out, err
