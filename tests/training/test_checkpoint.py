"""Per-epoch checkpoints (training/checkpoint.py): round trip under the trial's key, and a file that is
torn, foreign, for another key, or would unpickle code is ignored (the trial starts over)."""

from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")

from modelloop.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402


class Payload:
    """Not a tensor or a plain container: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_round_trip_under_its_key(tmp_path):
    path = tmp_path / "ckpt" / "trial.pt"
    save_checkpoint(path, "k1", {"weights": {"w": torch.arange(3.0)}, "state": {"epoch": 2, "history": [0.5]}})
    blob = load_checkpoint(path, "k1")
    assert blob is not None and blob["state"] == {"epoch": 2, "history": [0.5]}
    assert torch.equal(blob["weights"]["w"], torch.arange(3.0))
    assert load_checkpoint(path, "other") is None
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    save_checkpoint(None, "k1", {})  # no path: nothing written, no error


def test_torn_missing_or_code_carrying_files_are_ignored(tmp_path, capsys):
    assert load_checkpoint(tmp_path / "none.pt", "k") is None
    torn = tmp_path / "torn.pt"
    save_checkpoint(torn, "k", {"weights": {"w": torch.ones(1000)}})
    torn.write_bytes(torn.read_bytes()[:100])
    assert load_checkpoint(torn, "k") is None
    evil = tmp_path / "evil.pt"
    torch.save({"key": "k", "state": Payload()}, evil)
    assert load_checkpoint(evil, "k") is None
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"key": "k", "state": Payload()}))
    assert load_checkpoint(plain, "k") is None
    assert "unpickled code ran" not in capsys.readouterr().out


def test_best_trial_weights_files_share_the_safe_reader(tmp_path, capsys):
    """The text and generative searches keep their best trial's weights through save/load_tensors: a torn
    or code-carrying file reads as None (the search trains that configuration again), never as code."""
    from modelloop.training.checkpoint import load_tensors, save_tensors

    path = tmp_path / "w" / "trial_3.pt"
    save_tensors(path, {"lora.w": torch.ones(4)})
    assert torch.equal(load_tensors(path)["lora.w"], torch.ones(4)) and list(path.parent.iterdir()) == [path]
    path.write_bytes(path.read_bytes()[:60])
    assert load_tensors(path) is None and load_tensors(tmp_path / "missing.pt") is None
    evil = tmp_path / "evil.pt"
    torch.save({"w": Payload()}, evil)
    assert load_tensors(evil) is None
    assert "unpickled code ran" not in capsys.readouterr().out
