"""The train stage's warning when the fine-tune made too few optimizer steps to change the model.

Seen on SmolLM2 with ``train.budget: 20``: loading the model took most of the search's share of the budget,
the fine-tune made one optimizer step and ``modelloop train`` registered a "fine-tuned" model with the base
model's chrF and perplexity without a word. A handful of steps (fewer than :data:`FEW_STEPS`) moves LoRA
adapters or a full fine-tune too little to tell from the base model, so the summary's ``warnings`` say so,
naming what to raise: ``train.budget`` when the budget stopped the run, else the examples or
``model.epochs``.
"""

from __future__ import annotations

__all__ = ["FEW_STEPS", "few_steps_warning"]

FEW_STEPS = 5  # optimizer steps below which the fine-tuned model is all but the base model


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


def _seconds(value: float) -> str:
    """16 s as "16", a fraction of a second as "0.008": whole seconds hide a sub-second budget."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"
