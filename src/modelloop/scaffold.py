"""``modelloop init`` and ``modelloop demo``: new projects from the bundled examples."""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["EXAMPLES", "init_project"]

EXAMPLES: tuple[str, ...] = ("fraud", "intents", "sentiment", "anomaly")
EXAMPLES += ("assistant",)  # generative: bilingual customer-service pairs (examples/assistant.py)
EXAMPLES += ("images",)  # image classification: generated part images, a folder per class (examples/images.py)
EXAMPLES += ("recommend",)  # a shop's ratings with latent taste structure (examples/recommend.py)
# examples whose table a seeded generator writes: module of modelloop.examples, its function, the file
_GENERATED_TABLES = {"fraud": ("fraud", "generate_transactions", "transactions.csv"),
                     "anomaly": ("sensors", "generate_sensors", "sensors.csv"),
                     "recommend": ("recommend", "generate_interactions", "ratings.csv")}
_TEXT_EXAMPLES = ("intents", "sentiment")  # data/NAME.jsonl shipped in the package, config NAME.yaml

_BLANK = """\
# modelloop project. Every key but data.source and data.target has a default;
# `modelloop init --example fraud` writes a complete, commented example.
name: {name}
# task: classification        # classification | regression; left out, inferred from the target
data:
  source: data/train.csv      # CSV, Parquet, JSONL path, or a SQLAlchemy URL (then `query:`)
  target: label               # the column to predict
  id: null                    # optional row id column (never used as a feature)
train:
  budget: 120                 # seconds for the whole search
  # metric: f1_macro          # default: f1_macro for classification, rmse for regression
"""


def init_project(directory: Path | str, *, example: str | None = None) -> dict[str, Any]:
    """Write ``modelloop.yaml`` (and the example's data) into ``directory``; never overwrites."""
    root = Path(directory)
    cfg_path = root / "modelloop.yaml"
    if cfg_path.exists():
        raise ConfigError(f"{cfg_path} already exists; choose another folder or edit it")
    if example is not None and example not in EXAMPLES:
        raise ConfigError(f"--example: unknown example '{example}'; allowed: {', '.join(EXAMPLES)}")
    root.mkdir(parents=True, exist_ok=True)
    files = [str(cfg_path)]
    if example in _GENERATED_TABLES:  # a seeded generator writes data/<file>; <example>.yaml is the config
        module, function, name = _GENERATED_TABLES[example]
        generate = getattr(importlib.import_module(f"{__package__}.examples.{module}"), function)
        (root / "data").mkdir(exist_ok=True)
        data = root / "data" / name
        generate(seed=0).to_csv(data, index=False)
        text = resources.files("modelloop.examples").joinpath(f"{example}.yaml").read_text()
        files.append(str(data))
    elif example == "images":
        from .examples.images import generate_images

        counts = generate_images(root / "data" / "parts", per_class=60, size=64, seed=0)
        text = resources.files("modelloop.examples").joinpath("images.yaml").read_text()
        files += [str(root / "data" / "parts" / k) for k in counts]
    elif example == "assistant":
        from .examples.assistant import generate_assistant

        (root / "data").mkdir(exist_ok=True)
        data = root / "data" / "assistant.jsonl"
        generate_assistant(seed=0).to_json(data, orient="records", lines=True, force_ascii=False)
        text = resources.files("modelloop.examples").joinpath("assistant.yaml").read_text()
        files.append(str(data))
    elif example in _TEXT_EXAMPLES:
        (root / "data").mkdir(exist_ok=True)
        src = resources.files("modelloop.examples")
        data = root / "data" / f"{example}.jsonl"
        data.write_bytes(src.joinpath(f"{example}.jsonl").read_bytes())
        text = src.joinpath(f"{example}.yaml").read_text()
        files.append(str(data))
    else:
        text = _BLANK.format(name=root.resolve().name.replace(" ", "_") or "model")
    tmp = cfg_path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(cfg_path)
    return {"config": str(cfg_path), "files": files, "example": example}
