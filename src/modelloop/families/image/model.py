"""The registered image model: base64 images in, class probabilities out.

:class:`ImageModel` decodes each image as ingest did (:func:`modelloop.data.images.decode_image`: EXIF
orientation, RGB), resizes it to the network's input and runs the network (PyTorch, or an ONNX Runtime
session that ``modelloop optimize`` built). It pickles compactly: the network travels as its weights
(safetensors bytes) and what rebuilds its architecture without the pretrained files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ...data.images import IMAGE_COLUMN, decode_base64, decode_image, resize
from ...data.schema import Schema

__all__ = ["ImageModel", "images_of"]

_BATCH = 64


def images_of(X: Any, column: str = IMAGE_COLUMN) -> list[Any]:
    """The images of ``X``: a frame's image column, or a list of base64 strings / bytes / arrays."""
    if hasattr(X, "columns"):
        return list(X[column])
    return list(X)


class ImageModel(BaseEstimator):
    """A pretrained backbone + linear layer over images. Learned state: ``classes_``, ``task``, ``schema``,
    ``network_``, ``image_size_``, ``threshold_`` (None: the argmax decides)."""

    def __init__(self, config: dict[str, Any] | None = None, *, image_column: str = IMAGE_COLUMN,
                 target: str = "label") -> None:
        self.config = config
        self.image_column = image_column
        self.target = target

    @classmethod
    def from_network(cls, network: Any, *, classes: list[Any], config: dict[str, Any], target: str,
                     description: dict[str, Any]) -> ImageModel:
        model = cls(config, target=target)
        model.network_ = network.eval()
        model.classes_ = list(classes)
        model.task = "binary" if len(classes) == 2 else "multiclass"
        model.threshold_ = None
        model.image_size_ = int(config["image_size"])
        model.schema = Schema(columns={IMAGE_COLUMN: "text"}, target=target, text=IMAGE_COLUMN)
        model.description_ = description
        return model

    # ---- inputs --------------------------------------------------------------------------------
    def pixels(self, X: Any) -> np.ndarray:
        """uint8 (N, S, S, 3): each image decoded, upright, RGB, resized to the network's input."""
        self._rebuild()
        size = self.image_size_
        out = np.empty((len(images_of(X, self.image_column)), size, size, 3), dtype=np.uint8)
        for i, item in enumerate(images_of(X, self.image_column)):
            out[i] = self.pixels_of(item)
        return out

    def pixels_of(self, item: Any) -> np.ndarray:
        if isinstance(item, np.ndarray):
            return item if item.shape[:2] == (self.image_size_,) * 2 else resize(_pil(item), self.image_size_)
        raw = item if isinstance(item, bytes) else decode_base64(str(item))
        return resize(decode_image(raw), self.image_size_)

    # ---- scores --------------------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        return self.scores_of_pixels(self.pixels(X))

    def scores_of_pixels(self, pixels: np.ndarray, *, session: Any = None) -> np.ndarray:
        """(N, K) probabilities of preprocessed images, through ``session`` (ONNX Runtime) or PyTorch."""
        if session is not None:
            name = session.get_inputs()[0].name
            out = [session.run(None, {name: _nchw(pixels[i:i + _BATCH])})[0] for i in range(0, len(pixels), _BATCH)]
            return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(self.classes_)))
        from .fit import probabilities

        self._rebuild()
        return probabilities(self.network_, pixels)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_, dtype=object)[self.predict_proba(X).argmax(axis=1)]

    def evaluation_html(self, df: Any, evaluation: dict[str, Any], *, title: str,
                        context: dict[str, Any] | None = None) -> str:
        """The evaluation page: the standard figures and charts, plus the misclassified images."""
        from .report import render_image_report

        return render_image_report(self, df, evaluation, title=title, context=context)

    def feature_importances(self) -> dict[str, float]:
        return {}

    def input_columns(self) -> list[str]:
        return [self.image_column]

    def describe(self) -> dict[str, Any]:
        cfg = dict(self.config or {})
        return {"family": "image", "method": cfg.get("method"), "backbone": cfg.get("backbone"),
                "image_size": self.image_size_, "classes": [str(c) for c in self.classes_],
                "families": [cfg.get("method")], **dict(getattr(self, "description_", {}) or {})}

    # ---- compact pickling ----------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("network_", "_sessions")}
        if "network_" in self.__dict__:
            state["_packed"] = pack_network(self.network_)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _rebuild(self) -> None:
        packed = self.__dict__.get("_packed")
        if packed is None or "network_" in self.__dict__:
            return
        self.network_ = unpack_network(packed, len(self.classes_), self.image_size_)
        del self.__dict__["_packed"]


def _nchw(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)


def _pil(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")


def pack_network(net: Any) -> dict[str, Any]:
    """Architecture (no pretrained files needed to rebuild it) and all weights as safetensors bytes."""
    from safetensors.torch import save

    weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    config = net.body.config.to_dict() if net.kind == "transformers" else \
        {"spec": dict(net.body.spec)} if net.kind == "student" else None
    return {"kind": net.kind, "dim": int(net.dim), "config": config, "weights": save(weights), "format": 1,
            "name": getattr(net, "backbone_name", "efficientnet-lite0")}


def unpack_network(packed: dict[str, Any], n_classes: int, image_size: int) -> Any:
    import torch
    from safetensors.torch import load

    from .backbone import ImageNetwork

    weights = load(packed["weights"])
    if packed["kind"] == "efficientnet":
        import contextlib
        import io

        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):
            body = EfficientNet.from_name(packed["name"], num_classes=max(n_classes, 2), image_size=image_size)
        body._fc = torch.nn.Identity()
    elif packed["kind"] == "student":
        from .studentnet import student_body

        body = student_body(packed["config"]["spec"], image_size)
    else:
        from transformers import AutoConfig, AutoModelForImageClassification

        settings = dict(packed["config"])
        body = AutoModelForImageClassification.from_config(AutoConfig.for_model(settings.pop("model_type"),
                                                                                **settings))
        body.classifier = torch.nn.Flatten()
    net = ImageNetwork(body, packed["dim"], n_classes, [0.0] * 3, [1.0] * 3, kind=packed["kind"])
    net.load_state_dict(weights, strict=True)
    return net.eval()
