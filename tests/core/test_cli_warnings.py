"""What a command prints: other packages' deprecation notices are not the user's to act on, ours are."""

from __future__ import annotations

import sys
import warnings

from modelloop import cli


def _command(standalone_mode: bool) -> None:
    for category in (FutureWarning, DeprecationWarning):
        warnings.warn_explicit("`is_gradient_checkpointing` is deprecated", category, "modeling_utils.py", 3303,
                               module="transformers.modeling_utils")
    warnings.warn_explicit("modelloop's own notice", FutureWarning, "stage.py", 1, module="modelloop.families.x")
    warnings.warn_explicit("a library's other warning", UserWarning, "x.py", 1, module="sklearn.x")


def _shown(monkeypatch, warnoptions: list[str]) -> list[str]:
    monkeypatch.setattr(cli, "app", _command)
    monkeypatch.setattr(sys, "warnoptions", warnoptions)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # what Python would show with no filter at all
        cli.main()
    return [str(w.message) for w in seen]


def test_library_deprecation_notices_are_hidden_from_a_command(monkeypatch):
    assert _shown(monkeypatch, []) == ["modelloop's own notice", "a library's other warning"]


def test_python_w_leaves_the_filters_to_the_user(monkeypatch):
    assert len(_shown(monkeypatch, ["default"])) == 4
