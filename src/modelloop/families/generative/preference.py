"""Preference pairs and Direct Preference Optimization (DPO, Rafailov et al. 2023): from (prompt, chosen,
rejected) rows, the model learns to give the chosen answer more probability than the rejected one,
measured against a frozen reference, without a reward model or sampling.

The loss of a pair, with ``logp`` a sequence's summed log-probability of its answer tokens, ``ref`` the
same under the reference and ``beta`` = ``model.dpo_beta``::

    -log sigmoid(beta * ((logp(chosen) - ref(chosen)) - (logp(rejected) - ref(rejected))))

The reference is the network before its first step: the base model (LoRA adapters start at zero, so the
adapted network is the base until it learns; full fine-tuning starts from the base weights). Its
log-probabilities are computed once per run, before training, so no second model is held in memory (what
TRL's ``precompute_ref_log_probs`` does); a resumed run computes them again from the same fresh network.
Each pair is its own pair of sequences (no packing). The validation loss is the same DPO loss on the
held-out pairs; ``reward_accuracy`` is the share of pairs whose chosen answer gained more log-probability
over the reference than the rejected one, ``margin`` the mean of that gain difference (nats).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..text.backbone import require_torch
from .data import Example, Shape, encode_example, learnable, row_example, split_completion
from .sequences import batch_tensors, sequence_logps

__all__ = ["PreferencePairs", "encode_preferences", "preference_figures", "rejected_example"]


@dataclass
class PreferencePairs:
    """The rejected side of a job's examples: ``rejected_ids[i]`` pairs with the job's ``fit_ids[i]``."""

    fit_ids: list[list[int]]
    fit_labels: list[list[int]]
    val_ids: list[list[int]]
    val_labels: list[list[int]]


def rejected_example(rec: Any, shape: Shape, tokenizer: Any) -> Example:
    """A preference row's prompt with its rejected answer as the completion."""
    chosen = row_example(rec, shape, tokenizer)
    answer = rec.get(str(shape.rejected))
    answer = "" if answer is None or (isinstance(answer, float) and answer != answer) else str(answer)
    messages = [{"role": "user", "content": str(rec.get(str(shape.prompt)) or "")}]
    return Example(chosen.prompt, split_completion(tokenizer, messages, answer) if answer.strip() else "")


def encode_preferences(
    tokenizer: Any, frame: pd.DataFrame, shape: Shape, max_length: int
) -> tuple[list[list[int]], list[list[int]], list[list[int]], list[list[int]], int]:
    """Token ids and labels of the chosen and the rejected answer of each row (aligned; a row without
    both answers, or whose prompt fills ``max_length``, is left out), and how many answers were cut."""
    chosen_ids, chosen_labels, rejected_ids, rejected_labels, cut = [], [], [], [], 0
    for rec in frame.to_dict("records"):
        chosen = encode_example(tokenizer, row_example(rec, shape, tokenizer), max_length)
        rejected = encode_example(tokenizer, rejected_example(rec, shape, tokenizer), max_length)
        if chosen is None or rejected is None:
            continue
        cut += chosen[2] + rejected[2]
        if not (learnable(chosen[1]) and learnable(rejected[1])):
            continue
        chosen_ids.append(chosen[0])
        chosen_labels.append(chosen[1])
        rejected_ids.append(rejected[0])
        rejected_labels.append(rejected[1])
    return chosen_ids, chosen_labels, rejected_ids, rejected_labels, cut


Pairs = tuple[
    list[list[int]], list[list[int]], list[list[int]], list[list[int]]
]  # chosen ids, labels, rejected


def pair_logps(net: Any, pairs: Pairs, rows: Sequence[int], pad_id: int, device: str) -> tuple[Any, Any]:
    """The chosen and rejected answers' log-probabilities of ``rows`` (one forward pass of 2 x rows)."""
    ids, labels, rej_ids, rej_labels = pairs
    seqs = [[(ids[i], labels[i])] for i in rows] + [[(rej_ids[i], rej_labels[i])] for i in rows]
    logps = sequence_logps(net, batch_tensors(seqs, pad_id, device))
    return logps[: len(rows)], logps[len(rows) :]


class DpoObjective:
    """The DPO loss of a job's pairs against the reference log-probabilities of ``net`` as it is now."""

    def __init__(self, job: Any, net: Any):
        self.job, self.beta = job, float(job.settings.dpo_beta)
        pairs: PreferencePairs = job.preference
        self.fit: Pairs = (job.fit_ids, job.fit_labels, pairs.fit_ids, pairs.fit_labels)
        self.val: Pairs = (job.val_ids, job.val_labels, pairs.val_ids, pairs.val_labels)
        self.fit_ref = self._logps(net, self.fit)
        self.val_ref = self._logps(net, self.val)

    @property
    def items(self) -> list[int]:
        """What an epoch shuffles and batches: the fit pairs' indices."""
        return list(range(len(self.fit[0])))

    def _logps(self, net: Any, part: Pairs) -> Any:
        torch = require_torch()
        net.eval()
        size = self.job.settings.batch_size
        chosen, rejected = [], []
        with torch.inference_mode():
            for s in range(0, len(part[0]), size):
                c, r = pair_logps(
                    net, part, range(s, min(s + size, len(part[0]))), self.job.pad_id, self.job.device
                )
                chosen.append(c.cpu())
                rejected.append(r.cpu())
        return torch.cat(chosen), torch.cat(rejected)

    def _gain(self, net: Any, part: Pairs, ref: tuple[Any, Any], rows: Sequence[int]) -> Any:
        """``(logp(chosen) - ref(chosen)) - (logp(rejected) - ref(rejected))`` of ``rows``."""
        c, r = pair_logps(net, part, rows, self.job.pad_id, self.job.device)
        idx = list(rows)
        return (c - ref[0][idx].to(c.device)) - (r - ref[1][idx].to(r.device))

    def step_loss(self, net: Any, rows: Sequence[int]) -> tuple[Any, int, int]:
        """The mean DPO loss of a batch of fit pairs, its weight (pairs) and the tokens read."""
        torch = require_torch()
        gain = self._gain(net, self.fit, self.fit_ref, rows)
        loss = -torch.nn.functional.logsigmoid(self.beta * gain).mean()
        read = sum(len(self.fit[0][i]) + len(self.fit[2][i]) for i in rows)
        return loss, len(rows), read

    @staticmethod
    def weights(rows: Sequence[int]) -> np.ndarray:
        """Every pair weighs the same in a batch's mean loss (a data-parallel rank's share is its pairs)."""
        return np.ones(len(rows))

    def validation(self, net: Any) -> tuple[float, dict[str, float]]:
        """The held-out pairs' mean DPO loss, reward accuracy and margin."""
        torch = require_torch()
        net.eval()
        size, n = self.job.settings.batch_size, len(self.val[0])
        with torch.inference_mode():
            gain = torch.cat(
                [
                    self._gain(net, self.val, self.val_ref, range(s, min(s + size, n))).cpu()
                    for s in range(0, n, size)
                ]
            )
        loss = float(-torch.nn.functional.logsigmoid(self.beta * gain).mean())
        return loss, {
            "val_reward_accuracy": round(float((gain > 0).float().mean()), 4),
            "val_margin": round(float(gain.mean()), 4),
        }


def preference_figures(
    tuned: Any, base: Any, frame: pd.DataFrame, shape: Shape, tokenizer: Any, context: int, pad_id: int
) -> dict[str, Any]:
    """On ``frame``'s pairs: the base and the tuned network's mean log-probability margin of the chosen
    over the rejected answer, and the share of pairs where the tuned model widened it (reward accuracy)."""
    torch = require_torch()
    ids, labels, rej_ids, rej_labels, _ = encode_preferences(tokenizer, frame, shape, context)
    if not ids:
        return {"pairs": 0, "margin": None, "base_margin": None, "reward_accuracy": None}
    margins = []
    for net in (tuned, base):
        net.eval()
        with torch.inference_mode():
            parts = [
                pair_logps(
                    net,
                    (ids, labels, rej_ids, rej_labels),
                    range(s, min(s + 8, len(ids))),
                    pad_id,
                    str(net.device),
                )
                for s in range(0, len(ids), 8)
            ]
        margins.append(np.concatenate([(c - r).cpu().numpy() for c, r in parts]))
    gain = margins[0] - margins[1]
    return {
        "pairs": len(ids),
        "margin": round(float(margins[0].mean()), 4),
        "base_margin": round(float(margins[1].mean()), 4),
        "reward_accuracy": round(float((gain > 0).mean()), 4),
    }
