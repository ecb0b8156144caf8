"""The train stage's warning when the fine-tune made too few optimizer steps to change the model.

Seen on SmolLM2 with ``train.budget: 20``: loading the model took most of the search's share of the budget,
the fine-tune made one optimizer step and ``modelloop train`` registered a "fine-tuned" model with the base
model's chrF and perplexity without a word. A handful of steps (fewer than :data:`FEW_STEPS`) moves LoRA
adapters or a full fine-tune too little to tell from the base model, so the summary's ``warnings`` say so,
naming what to raise: ``train.budget`` when the budget stopped the run, else the examples or
``model.epochs``.

Enough steps do not make a fine-tune either: at a learning rate far too low, or with LoRA adapters on
modules that do not move the loss, every step leaves the loss where it was and the registered "fine-tuned"
model is the base model. :func:`flat_loss_warning` reads the run's epoch history (``fit.run_params``'
``history``, each epoch's ``train_loss``) and warns when no later epoch's training loss fell below the
first's by :data:`LOSS_FALL` of it, naming ``model.learning_rate`` and, for LoRA, what the adapters train.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["FEW_STEPS", "LOSS_FALL", "few_steps_warning", "flat_loss_warning"]

FEW_STEPS = 5  # optimizer steps below which the fine-tuned model is all but the base model
LOSS_FALL = 0.01  # the share of the first epoch's training loss a later epoch's must fall by (flat_loss_warning)


def few_steps_warning(*, steps_run: int, stopped_by_budget: bool, search_seconds: float | None,
                      load_seconds: float | None, fit_examples: int, epochs: int) -> str | None:
    """The warning line for a fine-tune of fewer than :data:`FEW_STEPS` optimizer steps (None: enough).
    ``search_seconds``: the fine-tune's share of ``train.budget`` (``eval_budget.search_budget``);
    ``load_seconds``: what loading the model took of it."""
    if steps_run >= FEW_STEPS:
        return None
    made = f"the fine-tune made {steps_run} optimizer step{'' if steps_run == 1 else 's'}"
    if stopped_by_budget and search_seconds is not None:
        loading = f" (loading the model took {_seconds(load_seconds)} s)" if load_seconds is not None else ""
        return (f"{made} in its {_seconds(search_seconds)} s of train.budget{loading}: the model is barely changed "
                "from the base model; raise train.budget")
    return (f"{made} ({fit_examples} training examples, model.epochs {epochs}): the model is barely changed "
            "from the base model; add examples or raise model.epochs (or lower model.batch_size / "
            "model.grad_accum)")


def flat_loss_warning(history: Sequence[dict[str, Any]], *, method: str, learning_rate: float) -> str | None:
    """The warning line when the fine-tune's training loss did not fall (None: it fell, or too few whole
    epochs to tell). ``history``: the run's epoch records (``fit.run_params``), each with its ``train_loss``,
    the mean over the epoch's labelled tokens (pairs, for DPO); ``learning_rate``: the run's own (searched
    or ``model.learning_rate``).

    Only whole epochs are compared: a partial one (the budget stopped it, its record has ``batches``)
    averages a subset of the examples, whose difficulty alone can move its mean by more than learning did.
    The first whole epoch's mean, which holds the steps before the model learnt anything, is compared with
    the lowest of the later ones; fewer than two whole epochs: no warning (one mean has nothing to compare).
    A later epoch must be below the first by :data:`LOSS_FALL` (1 %) of it. Why 1 %: with the weights
    unchanged an epoch's mean is the same whatever the order of its batches (it weighs every labelled token
    once), so between whole epochs only dropout moves it, far under 1 %. On the tiny random Llama of the tests
    (tests/gen_toy.py; 40 pairs, batch 2, 12 epochs) a learning rate of 1e-9 kept it at 5.98641 to the fifth
    decimal, a full fine-tune at 1e-5 lowered it 0.4 % and LoRA at its default 2e-4 0.2 % (the validation loss
    moved as little: models all but the base), LoRA at 1e-2 3.3 %, and the tests' full fine-tune at 1e-2
    from 5.14 to 0.05: 1 % sits well above the noise and below any fine-tune that learnt something."""
    whole = [float(h["train_loss"]) for h in history
             if "batches" not in h and h.get("train_loss") is not None and math.isfinite(float(h["train_loss"]))]
    if len(whole) < 2:
        return None
    first, lowest = whole[0], min(whole[1:])
    if lowest < first * (1.0 - LOSS_FALL):
        return None
    later = len(whole) - 1
    what = (" and model.lora_r, model.lora_alpha, model.lora_target_modules and model.lora_layers (what the LoRA "
            "adapters train)") if method == "lora" else ""
    return (f"the training loss did not fall: {first:.4g} in the first epoch, {lowest:.4g} at its lowest in the "
            f"{later} after (a fall under {LOSS_FALL:.0%}): the fine-tuned model is all but the base model; check "
            f"model.learning_rate ({learning_rate:.3g} in this run; too low leaves the weights where they were)"
            f"{what}")


def _seconds(value: float) -> str:
    """16 s as "16", a fraction of a second as "0.008": whole seconds hide a sub-second budget."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"
