"""One fine-tuning configuration of a causal language model: LoRA adapters (PEFT) or every weight, the loss
on completion tokens only, packed sequences, gradient accumulation (and checkpointing), early stopping on
the validation loss, mixed precision on CUDA, and a checkpoint after each epoch, so a killed run resumes
at its next epoch. The optimizer is the text family's (``make_optimizer``), the schedule a warm-up whose
first step already has a learning rate above 0, then linear or cosine decay (``make_scheduler``'s values) over a length that a deadline can shorten: after
``PLAN_AFTER`` optimizer steps (or the first epoch, if shorter) and after each epoch's validation, the
seconds per step so far say how many steps fit before the deadline, and the schedule is cut to that
(never lengthened), so the decay ends at the deadline instead of being stopped halfway. The search
(``search.py``) calls :func:`run_params` once per trial.

Preference pairs (``GenJob.preference``) are learned by DPO instead (``preference.DpoObjective``); both
objectives share the epoch loop, the schedule, early stopping and the checkpoints.

A packed sequence holds several examples; each attends only to its own tokens (a block-diagonal causal
mask, positions restarting at 0), so packing changes the speed, not what is learned.

``GenJob.ddp_processes > 1`` (``train.ddp_processes``) runs the same loop in that many data-parallel processes
(``training/distributed.py``): each global batch is split over the ranks, each rank's loss weighted by its
share of the batch's labelled tokens (of its pairs, for DPO), so the averaged gradient is the one-process
step's. Rank 0 is this process: it validates, checkpoints, calls ``on_epoch`` and takes every decision
that reads a clock (the deadline, the shortened schedule, early stopping), which it sends to the other
ranks after each optimizer step and each epoch, so they leave together and step on the same schedule.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...training.checkpoint import load_checkpoint, save_checkpoint
from ...training.distributed import SINGLE, Group, run_ranks
from ..text.backbone import require_torch
from ..text.fit import make_optimizer
from .backbone import load_causal_lm
from .config import GenerativeModelConfig
from .data import IGNORE, pack
from .layer_cache import FrozenLayers
from .preference import DpoObjective, PreferencePairs
from .sequences import batch_tensors, loss_sums, sequence_nll

__all__ = ["GenJob", "SftObjective", "network_for", "run_params"]

DEFAULT_TARGETS = ("q_proj", "v_proj")
PLAN_AFTER = 10  # optimizer steps timed before a deadline first shortens the schedule


@dataclass
class GenJob:
    """What a trial needs: settings, the resolved base model, tokenized fit and validation examples."""

    settings: GenerativeModelConfig
    source: str
    fingerprint: str
    pad_id: int
    fit_ids: list[list[int]]
    fit_labels: list[list[int]]
    val_ids: list[list[int]]
    val_labels: list[list[int]]
    seed: int
    device: str
    preference: PreferencePairs | None = None  # the rejected answers: DPO on (fit_ids[i], rejected[i]) pairs
    ddp_processes: int = 1  # train.ddp_processes: fine-tune in this many processes (training/distributed.py)
    ray_address: str | None = None  # compute.engine: ray: the ranks are Ray Train workers on this cluster


def device_of(preference: str) -> str:
    torch = require_torch()
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def params_of(settings: GenerativeModelConfig) -> dict[str, Any]:
    """The configured values, in search-space names (the first trial of every search)."""
    params: dict[str, Any] = {"learning_rate": settings.resolved_learning_rate(), "epochs": settings.epochs}
    if settings.method == "lora":
        params.update(lora_r=settings.lora_r, lora_alpha=settings.lora_alpha,
                      lora_targets=",".join(settings.lora_target_modules or DEFAULT_TARGETS))
    return params


def network_for(job: GenJob, params: dict[str, Any]) -> Any:
    """The base model, with fresh LoRA adapters for ``method: lora`` (seeded)."""
    torch = require_torch()
    torch.manual_seed(job.seed)
    net = load_causal_lm(job.source)
    if job.settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        net = get_peft_model(net, LoraConfig(task_type="CAUSAL_LM", **lora_settings(job.settings, params, net)))
    if job.settings.gradient_checkpointing:
        net.gradient_checkpointing_enable()
        if job.settings.method == "lora":
            net.enable_input_require_grads()
    return net.to(job.device)


def lora_settings(settings: GenerativeModelConfig, params: dict[str, Any], net: Any) -> dict[str, Any]:
    """PEFT ``LoraConfig`` arguments of a trial (recorded with the model, which rebuilds them on load)."""
    out: dict[str, Any] = {"r": int(params["lora_r"]), "lora_alpha": int(params["lora_alpha"]),
                           "lora_dropout": settings.lora_dropout,
                           "target_modules": str(params["lora_targets"]).split(",")}
    if settings.lora_layers is not None:
        n = int(getattr(net.config, "num_hidden_layers", settings.lora_layers))
        out["layers_to_transform"] = list(range(max(n - settings.lora_layers, 0), n))
    return out


def _autocast(device: str, enabled: bool) -> Any:
    import contextlib

    torch = require_torch()
    if device != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def trainable_state(net: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in net.named_parameters() if v.requires_grad}


def _load_trainable(net: Any, state: dict[str, Any]) -> None:
    params = dict(net.named_parameters())
    torch = require_torch()
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v.to(params[k].device))


def params_key(job: GenJob, params: dict[str, Any]) -> str:
    blob = json.dumps([job.fingerprint, job.settings.model_dump(mode="json", exclude={"search"}), params,
                       job.seed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_params(job: GenJob, params: dict[str, Any], *, checkpoint: Path | None = None, deadline: float = math.inf,
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fine-tune one configuration: epochs until early stopping, ``params["epochs"]`` or the deadline
    (``time.monotonic()``), which stops the run after the optimizer step that passes it, mid-epoch too:
    that partial epoch is validated and counts like any other (``stopped_by_budget``; its history row
    says ``batches`` of ``of_batches``). With a deadline the schedule is shortened to the steps that fit
    (:func:`_replan`) and the run also stops at its end. Returns the best epoch's validation loss, its
    trainable weights, the history, tokens/s, the seconds loading the model took (``load_seconds``) and the
    schedule's ``steps_configured``, ``steps_planned``, ``steps_run`` and ``last_step_lr``."""
    require_torch()
    # on Ray, rank 0 runs on the cluster too: on_epoch sees each epoch's record once the run has ended, so
    # there it cannot stop the run
    return run_ranks(job.ddp_processes, job.device,
                     functools.partial(_fine_tune, job, params, checkpoint=checkpoint), _ddp_worker,
                     (job, params, checkpoint), deadline=deadline, ray_address=job.ray_address,
                     storage=checkpoint.parent if checkpoint is not None else None,
                     preload=("transformers.modeling_utils", "peft"), in_process={"on_epoch": on_epoch},
                     replay=None if on_epoch is None else functools.partial(_each, on_epoch))


def _each(on_epoch: Callable[[dict[str, Any]], None], history: list[dict[str, Any]]) -> None:
    for record in history:
        on_epoch(record)


def _ddp_worker(group: Group, job: GenJob, params: dict[str, Any], checkpoint: Path | None) -> None:
    """Ranks 1..N-1 of a data-parallel fine-tune: step on their share of each batch; rank 0 decides the rest."""
    _fine_tune(job, params, checkpoint=checkpoint, deadline=math.inf, on_epoch=None, group=group)


def _fine_tune(job: GenJob, params: dict[str, Any], *, checkpoint: Path | None, deadline: float,
               on_epoch: Callable[[dict[str, Any]], None] | None, group: Group) -> dict[str, Any]:
    s = job.settings
    loading = time.monotonic()  # the budget's seconds spent before the first step (few_steps.py reports them)
    net = network_for(job, params)
    # DPO's reference log-probabilities are the untouched network's: computed here, before any step
    objective = DpoObjective(job, net) if job.preference is not None else SftObjective(job)
    load_seconds = time.monotonic() - loading
    batches_per_epoch = math.ceil(len(objective.items) / s.batch_size)
    steps = math.ceil(batches_per_epoch / s.grad_accum) * int(params["epochs"])
    opt = make_optimizer(net, float(params["learning_rate"]), s.weight_decay)
    key = params_key(job, params)
    state: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": 0, "bad": 0, "history": [],
                             "tokens": 0, "seconds": 0.0, "best_weights": None, "steps_planned": steps,
                             "last_step_lr": 0.0}
    sched = _scheduler(opt, s.schedule, s.warmup_ratio, state)  # reads state["steps_planned"] at every step
    resumed = _load_checkpoint(checkpoint, key, net, opt, sched, state)  # every rank reads rank 0's file
    model = group.wrap(net)  # DDP: rank 0's weights on every rank; the steps train through it
    clock = (time.monotonic(), int(sched.last_epoch))  # when and at which step this process began stepping
    # the first epoch that fills the frozen layers' cache is slower than the rest: the schedule is first
    # planned on the steps after it (layer_cache.py)
    warm_up = state["epoch"] if getattr(objective, "warms_up", lambda _net: False)(model) else None
    while state["epoch"] < int(params["epochs"]):
        epoch = state["epoch"]
        warming = epoch == warm_up
        t0 = time.perf_counter()
        train_loss, n_tokens, stopped, used_lr = _epoch(model, job, objective, epoch, opt, sched, deadline,
                                                        None if warming else state, clock, group=group)
        state["last_step_lr"] = used_lr
        seconds = time.perf_counter() - t0
        state["epoch"], end = epoch + 1, _GO
        if group.main:  # validation, the schedule, early stopping and the checkpoint are rank 0's
            val, figures = objective.validation(net)
            if not warming:
                _replan(state, int(sched.last_epoch), clock, deadline)  # validation time counts from now on too
            state["tokens"] += n_tokens
            state["seconds"] += seconds
            record = {"epoch": epoch + 1, "train_loss": round(train_loss, 5), "val_loss": round(val, 5),
                      "tokens_per_s": round(n_tokens / max(seconds, 1e-9), 1), **figures}
            if stopped is not None:  # the deadline passed inside the epoch: its batches done, of how many
                record.update(batches=stopped, of_batches=batches_per_epoch)
                state["stopped_by_budget"] = True
            state["history"].append(record)
            if state["best"] is None or val < state["best"] - 1e-6:
                state.update(best=val, best_epoch=epoch + 1, bad=0, best_weights=trainable_state(net))
            else:
                state["bad"] += 1
            if stopped is None:  # a partial epoch is not a resume point: a killed run replays it whole
                _save_checkpoint(checkpoint, key, net, opt, sched, state)
            if on_epoch is not None:
                on_epoch(record)
            if state["bad"] >= s.early_stopping_patience:
                end = _STOP
            elif time.monotonic() > deadline or sched.last_epoch >= state["steps_planned"]:
                state["stopped_by_budget"] = state.get("stopped_by_budget") or state["epoch"] < int(params["epochs"])
                end = _STOP
        end, state["steps_planned"] = group.decide_all([end, int(state["steps_planned"])])
        if end == _STOP:
            break
        if warming:
            clock = (time.monotonic(), int(sched.last_epoch))
    if not group.main:
        return {}
    return {"value": float(state["best"]), "weights": state["best_weights"], "history": state["history"],
            "stopped_by_budget": bool(state.get("stopped_by_budget")),
            "epochs_run": state["epoch"], "best_epoch": state["best_epoch"], "resumed_from_epoch": resumed,
            "tokens_per_s": round(state["tokens"] / max(state["seconds"], 1e-9), 1),
            "train_tokens": int(state["tokens"]), "train_seconds": round(state["seconds"], 2),
            "steps_configured": steps, "steps_planned": int(state["steps_planned"]),
            "steps_run": int(sched.last_epoch), "load_seconds": round(load_seconds, 2),
            # the learning rate the last optimizer step took (near 0 when the schedule ran to its end), as it
            # stepped: a schedule shortened after it would tell another one
            "last_step_lr": float(state["last_step_lr"])}


_GO, _STOP = 0, 1  # rank 0's decision after an optimizer step or an epoch, sent to every rank


def _scheduler(opt: Any, schedule: str, warmup_ratio: float, plan: dict[str, Any]) -> Any:
    """``make_scheduler``'s schedule (the same learning rates after the warm-up, step for step, while the plan
    keeps its length) over ``plan["steps_planned"]`` steps, read at every step so that :func:`_replan` can shorten it;
    the warm-up is ``warmup_ratio`` of the planned steps. Past its end the learning rate stays 0.

    The warm-up ramps (step + 1) / (warm-up + 1), not ``make_scheduler``'s step / warm-up, whose first step
    has learning rate 0: a ``train.budget`` that model loading had nearly spent once allowed one optimizer
    step, planned as the first of a long warm-up, and the "fine-tuned" model was the base model (same chrF
    and perplexity). The warm-up is sized to the planned steps, which a deadline shortens (:func:`_replan`),
    so a short run has a short one; past the warm-up the values are ``make_scheduler``'s."""
    torch = require_torch()

    def factor(step: int) -> float:
        total = int(plan["steps_planned"])
        warmup = int(total * warmup_ratio)
        step = min(step, total)
        if step < warmup:  # step 0 above 0 already: a budget that allows one step still learns
            return float(step + 1) / float(warmup + 1)
        if schedule == "cosine":
            progress = float(step - warmup) / float(max(1, total - warmup))
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _replan(plan: dict[str, Any], step: int, clock: tuple[float, int], deadline: float) -> None:
    """Shorten ``plan["steps_planned"]`` (never lengthen it) to the steps that fit before ``deadline`` at
    the seconds per step this process has taken since ``clock`` (its start time and step). No deadline,
    or no step timed yet: unchanged."""
    started, first = clock
    if math.isinf(deadline) or step <= first:
        return
    now = time.monotonic()
    per_step = (now - started) / (step - first)
    fit = int(max(deadline - now, 0.0) / max(per_step, 1e-9))
    plan["steps_planned"] = max(step, min(int(plan["steps_planned"]), step + fit))


class SftObjective:
    """Supervised fine-tuning: next-token cross-entropy on the completion tokens of packed sequences."""

    def __init__(self, job: GenJob):
        self.job = job
        self.items = pack(job.fit_ids, job.fit_labels, job.settings.max_length, packing=job.settings.packing)

    def warms_up(self, net: Any) -> bool:
        """Whether this run keeps the frozen layers' output (``model.lora_layers``, one process, without
        gradient checkpointing, whose re-run of a layer needs inputs that require a gradient): its first
        epoch then runs them and the later epochs do not."""
        if "frozen" not in self.__dict__:
            s = self.job.settings
            self.frozen = FrozenLayers.of(net, s.lora_layers) \
                if s.method == "lora" and not s.gradient_checkpointing else None
        return self.frozen is not None

    def step_loss(self, net: Any, seqs: list) -> tuple[Any, int, int]:
        """A batch's mean loss per labelled token, their count (its weight) and the tokens read; below
        ``model.lora_layers`` through the frozen layers' kept output (``layer_cache.py``)."""
        self.warms_up(net)
        batch = batch_tensors(seqs, self.job.pad_id, self.job.device)
        loss, n = loss_sums(net, batch, labelled_only=True) if self.frozen is None else \
            self.frozen.loss_sums(net, seqs, batch)
        return loss / max(n, 1), n, sum(len(ids) for seq in seqs for ids, _ in seq)

    @staticmethod
    def weights(seqs: list) -> np.ndarray:
        """Each packed sequence's labelled tokens that :func:`loss_sums` counts (all but its first token's
        label): a data-parallel rank's share of a batch's loss per token."""
        return np.array([sum(t != IGNORE for _, lab in seq for t in lab) - (seq[0][1][0] != IGNORE)
                         for seq in seqs], dtype=float)

    def validation(self, net: Any) -> tuple[float, dict[str, float]]:
        """The validation loss per completion token (nothing else to report)."""
        nll, count = sequence_nll(net, self.job.val_ids, self.job.val_labels, self.job.pad_id, self.job.device,
                                  labelled_only=True)
        return nll / max(count, 1), {}


def _epoch(net: Any, job: GenJob, objective: Any, epoch: int, opt: Any, sched: Any, deadline: float = math.inf,
           plan: dict[str, Any] | None = None, clock: tuple[float, int] = (0.0, 0), group: Group = SINGLE
           ) -> tuple[float, int, int | None, float]:
    """One pass over the objective's items (packed sequences, or preference pairs), shuffled by (seed,
    epoch): a replayed epoch after a resume is the epoch an uninterrupted run would have had. Returns the
    weighted mean loss (per labelled token, or per pair), the tokens read (padding excluded), when
    ``deadline`` passed before the end, the batches done (the pass stops after the optimizer step that
    follows the deadline, or that ends ``plan``'s schedule; None: the whole pass ran), and the learning
    rate of its last optimizer step. With a deadline,
    the pass's ``PLAN_AFTER``-th step of the run, or its last if fewer, shortens ``plan`` (:func:`_replan`).

    In a data-parallel run (``group``) each rank steps on its share of every global batch, its loss scaled
    by its share of the batch's weight (``objective.weights``) times the ranks; rank 0's stop and
    shortened plan reach every rank after each optimizer step; the loss and tokens are summed over the ranks."""
    torch = require_torch()
    s = job.settings
    seqs = objective.items
    torch.manual_seed(job.seed * 1009 + epoch)
    order = np.random.default_rng([job.seed, epoch]).permutation(len(seqs))
    batches = [order[i:i + s.batch_size] for i in range(0, len(order), s.batch_size)]
    params = [p for p in net.parameters() if p.requires_grad]
    net.train()
    opt.zero_grad(set_to_none=True)
    total, labelled, read, done, used_lr = 0.0, 0, 0, None, 0.0
    for i, rows in enumerate(batches):
        items = [seqs[j] for j in rows]
        at = np.arange(len(items))
        mine, share = (at, 1.0) if group.world == 1 else group.split(at, objective.weights(items))
        with _autocast(job.device, s.mixed_precision):
            loss, n, tokens = objective.step_loss(net, [items[j] for j in mine])
        (loss * share / s.grad_accum).backward()
        if share > 0:  # a rank without rows of its own stepped on borrowed ones, weighted 0
            total, labelled, read = total + float(loss.detach()) * n, labelled + n, read + tokens
        if (i + 1) % s.grad_accum == 0 or i == len(batches) - 1:
            torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
            used_lr = float(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if plan is not None and (sched.last_epoch - clock[1] == PLAN_AFTER or i == len(batches) - 1):
                _replan(plan, int(sched.last_epoch), clock, deadline)
            ended = plan is not None and sched.last_epoch >= plan["steps_planned"]
            stop = int(i < len(batches) - 1 and (time.monotonic() > deadline or ended))
            if group.world > 1:
                stop, planned = group.decide_all([stop, int(plan["steps_planned"]) if plan is not None else 0])
                if plan is not None:
                    plan["steps_planned"] = planned
            if stop:
                done = i + 1
                break
    return group.sum(total) / max(group.sum(labelled), 1), int(group.sum(read)), done, used_lr


def _save_checkpoint(path: Path | None, key: str, net: Any, opt: Any, sched: Any, state: dict[str, Any]) -> None:
    """Trainable weights, optimizer, schedule and early-stopping state after an epoch."""
    save_checkpoint(path, key, {"weights": trainable_state(net), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "state": state})


def _load_checkpoint(path: Path | None, key: str, net: Any, opt: Any, sched: Any, state: dict[str, Any]) -> int:
    """Resume from a checkpoint of the same configuration; returns the epoch resumed from (0: none)."""
    blob = load_checkpoint(path, key)
    if blob is None:
        return 0
    _load_trainable(net, blob["weights"])
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    state.update(blob["state"])
    return int(state["epoch"])
