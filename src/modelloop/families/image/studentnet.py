"""The student networks of the ``distilled`` variant (trained by ``student.py``), which a registered
student's packed weights load into (``model.unpack_network``): pixels 0-255 in, normalisation inside.

* :class:`TruncatedEfficientNet`: an EfficientNet teacher's stem and first ``TRUNCATE`` blocks, starting
  from its weights, average-pooled;
* :class:`StudentCNN`: a plain CNN from scratch (``WIDTHS``), for a teacher on a transformers backbone.
"""

from __future__ import annotations

from typing import Any

import torch

from .backbone import ImageNetwork

__all__ = ["TRUNCATE", "WIDTHS", "StudentCNN", "TruncatedEfficientNet", "student_body", "student_network"]

WIDTHS = (16, 32, 64, 128)
TRUNCATE = 8  # an EfficientNet teacher's student keeps its first 8 of 16 blocks (to stride 16, 80 channels)
_MEAN, _STD = [127.5] * 3, [64.0] * 3


class StudentCNN(torch.nn.Module):
    """pixels, normalised (N, 3, S, S) -> pooled features (N, widths[-1])."""

    def __init__(self, widths: tuple[int, ...] | list[int] = WIDTHS):
        super().__init__()
        layers: list[torch.nn.Module] = []
        before = 3
        for i, width in enumerate(widths):
            strides = (2,) if i < 2 else (2, 1)  # the two widest stages get a second, stride-1 convolution
            for stride in strides:
                layers += [torch.nn.Conv2d(before, width, 3, stride=stride, padding=1, bias=False),
                           torch.nn.BatchNorm2d(width), torch.nn.ReLU(inplace=True)]
                before = width
        self.spec = {"arch": "cnn", "widths": list(widths)}
        self.blocks = torch.nn.Sequential(*layers)

    def forward(self, x: Any) -> Any:
        return self.blocks(x).mean(dim=(2, 3))


class TruncatedEfficientNet(torch.nn.Module):
    """The stem and first ``blocks`` blocks of an EfficientNet, average-pooled: a shallower, narrower
    network that starts from the teacher's own (ImageNet-pretrained, possibly fine-tuned) weights."""

    def __init__(self, body: Any, blocks: int, name: str = "efficientnet-lite0"):
        super().__init__()
        self.stem, self.bn0, self.swish = body._conv_stem, body._bn0, body._swish
        kept = list(body._blocks)[:blocks]
        self.blocks = torch.nn.ModuleList(kept)
        self.spec = {"arch": "efficientnet", "name": name, "blocks": blocks}
        self.dim = int(kept[-1]._project_conv.out_channels)

    def forward(self, x: Any) -> Any:
        x = self.swish(self.bn0(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))


def student_network(n_classes: int, widths: tuple[int, ...] | list[int] = WIDTHS, seed: int = 0,
                    teacher: Any = None) -> ImageNetwork:
    """A freshly initialised (seeded) student, pixels 0-255 in, logits out: the teacher's first
    ``TRUNCATE`` EfficientNet blocks when ``teacher`` is an EfficientNet network, else a small CNN."""
    import copy

    torch.manual_seed(seed)
    if teacher is not None and teacher.kind == "efficientnet":
        body = TruncatedEfficientNet(copy.deepcopy(teacher.body), TRUNCATE,
                                     getattr(teacher, "backbone_name", "efficientnet-lite0"))
        return ImageNetwork(body, body.dim, n_classes, teacher.mean.flatten().tolist(),
                            teacher.std.flatten().tolist(), kind="student")
    cnn = StudentCNN(widths)
    return ImageNetwork(cnn, int(widths[-1]), n_classes, _MEAN, _STD, kind="student")


def student_body(spec: dict[str, Any], image_size: int) -> torch.nn.Module:
    """The untrained body a packed student's weights load into (``model.unpack_network``)."""
    if spec["arch"] == "cnn":
        return StudentCNN(spec["widths"])
    import contextlib
    import io

    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        body = EfficientNet.from_name(spec["name"], image_size=image_size)
    return TruncatedEfficientNet(body, int(spec["blocks"]), spec["name"])
