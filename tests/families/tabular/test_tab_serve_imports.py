"""A server of a tabular model loads its ONNX graph: starting it imports neither scikit-learn nor SciPy
(~1.5 s of each server process's start, twice with two workers); the native model's modules load only
when a model is served natively or converted."""

from __future__ import annotations

import subprocess
import sys


def test_the_tabular_serving_modules_do_not_import_scikit_learn():
    code = ("import sys\n"
            "import modelloop.serving.app, modelloop.families.tabular.serve\n"
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
