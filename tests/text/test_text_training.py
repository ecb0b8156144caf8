"""One fine-tuning run: early stopping, schedules, accumulation, class weights, checkpoint resume,
mixed-precision choice."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from modelloop.families.text.backbone import texts_of
from modelloop.families.text.model import TextModel
from modelloop.families.text import stage as T
from modelloop.families.text import estimator as E
from modelloop.families.text import search as S
from modelloop.families.text import fit as F


def _job(backbone, texts, method="full", **extra):
    model = TextModel({"backbone": str(backbone), "method": method, "epochs": 4, "learning_rate": 1e-3,
                       "batch_size": 8, **extra}, text_column="message")
    job, _ = E.prepare_job(model, texts_of(texts, "message"), pd.Series(texts["intent"]))
    return job


def test_validation_split_is_stratified_and_seeded():
    y = pd.Series(["a"] * 40 + ["b"] * 20)
    fit, val = T.validation_split(y, 0.25, seed=0)
    assert len(val) == 15 and sorted(np.r_[fit, val].tolist()) == list(range(60))
    assert (y.iloc[val] == "b").sum() == 5
    assert T.validation_split(y, 0.25, seed=0)[1].tolist() == val.tolist()
    with pytest.raises(Exception, match="at least 4"):
        T.validation_split(pd.Series(["a", "b", "a"]), 0.2, seed=0)


def test_early_stopping_stops_after_patience(tiny_backbone, texts, monkeypatch):
    job = _job(tiny_backbone, texts, epochs=10, early_stopping_patience=2)
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    monkeypatch.setattr(F, "score", lambda metric, y, proba: next(scores))
    result = F.run_params(job, S.default_params(job.settings))
    assert result["epochs_run"] == 4 and result["best_epoch"] == 2 and result["value"] == 0.7
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_warmup_then_decay(tiny_backbone, texts, schedule):
    import torch

    job = _job(tiny_backbone, texts, schedule=schedule)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = F.make_scheduler(opt, schedule, warmup=4, total=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:])) and lrs[-1] < 0.1
    assert job.settings.schedule == schedule


def test_gradient_accumulation_steps_the_optimizer_less_often(tiny_backbone, texts, monkeypatch):
    steps = []
    real = F.make_scheduler

    def counting(opt, schedule, warmup, total):
        sched = real(opt, schedule, warmup, total)
        original = sched.step
        sched.step = lambda *a, **k: (steps.append(1), original(*a, **k))[1]
        steps.append(("total", total))
        return sched

    monkeypatch.setattr(F, "make_scheduler", counting)
    job = _job(tiny_backbone, texts, epochs=1, grad_accum=3, early_stopping_patience=5)
    F.run_params(job, S.default_params(job.settings))
    n_batches = -(-len(job.fit_ids) // 8)
    assert steps[0] == ("total", -(-n_batches // 3))
    assert sum(1 for s in steps if s == 1) == -(-n_batches // 3)


def test_balanced_class_weights(tiny_backbone, texts):
    job = _job(tiny_backbone, texts)
    job.y_fit = np.array([0] * 6 + [1] * 2 + [2] * 2)
    np.testing.assert_allclose(F.class_weights(job), [10 / 18, 10 / 6, 10 / 6])
    job.class_weight = "none"
    np.testing.assert_allclose(F.class_weights(job), [1, 1, 1])


@pytest.mark.parametrize("method", ["full", "lora"])
def test_checkpoint_resume_gives_the_uninterrupted_result(tiny_backbone, texts, tmp_path, monkeypatch, method):
    # lora: with characters added to the vocabulary, whose rows train (and resume) too
    small = texts.groupby("intent").head(12)  # 36 rows: resuming is about state, not accuracy
    data = small if method == "full" else small.assign(message=small["message"] + " 退款")
    job = _job(tiny_backbone, data, method=method, epochs=3, early_stopping_patience=10, dropout=0.1)
    assert bool(job.added) == (method == "lora")
    params = S.default_params(job.settings)
    whole = F.run_params(job, params)

    ckpt = tmp_path / "ckpt.pt"
    real_save = F._save_checkpoint

    def save_then_die(path, key, net, opt, sched, scaler, state):
        real_save(path, key, net, opt, sched, scaler, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(F, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        F.run_params(job, params, checkpoint=ckpt)
    monkeypatch.setattr(F, "_save_checkpoint", real_save)
    resumed = F.run_params(job, params, checkpoint=ckpt)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 3
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    for name, tensor in whole["payload"].items():
        np.testing.assert_allclose(resumed["payload"][name].numpy(), tensor.numpy(), atol=1e-5)
    # a checkpoint of other parameters is ignored
    other = F.run_params(job, {**params, "learning_rate": 5e-4, "epochs": 1}, checkpoint=ckpt)
    assert other["resumed_from_epoch"] == 0


def test_precision_and_device_choice(monkeypatch):
    import torch

    assert F._precision("cpu", True) == "fp32"
    assert F._precision("cuda", False) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert F._precision("cuda", True) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert F._precision("cuda", True) == "fp16"
    if not torch.cuda.is_available():
        assert F._device("auto") == "cpu"
        with pytest.raises(Exception, match="no CUDA device"):
            F._device("cuda")


def test_head_folds_logistic_regression_exactly():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)) * [1, 10, 0.5, 1, 3] + 2
    for k in (2, 3):
        y = rng.integers(0, k, 60)
        W, b = F._fit_head(X, y, k, c=0.5, class_weight="balanced", seed=0)
        z = X @ W.T + b
        got = np.exp(z - z.max(1, keepdims=True))
        got /= got.sum(1, keepdims=True)
        scaler = StandardScaler().fit(X)
        lr = LogisticRegression(C=0.5, class_weight="balanced", max_iter=3000, random_state=0)
        want = lr.fit(scaler.transform(X), y).predict_proba(scaler.transform(X))
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_head_weights_stay_bounded_on_constant_directions():
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=(80, 4)), np.full(80, 0.3) + rng.normal(size=80) * 1e-9]
    y = (X[:, 0] > 0).astype(int)
    W, b = F._fit_head(X, y, 2, c=1.0, class_weight="balanced", seed=0)
    assert np.abs(W).max() < 100 and np.abs(b).max() < 100


def test_the_optimizer_is_fused_adamw_with_no_decay_on_biases_and_norms(tiny_backbone, texts):
    import torch

    job = _job(tiny_backbone, texts, method="full")
    net = F._network_for(job, S.default_params(job.settings))
    opt = F.make_optimizer(net, 1e-3, 0.01)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    assert any("LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == sum(p.requires_grad for p in net.parameters())


def test_lora_trains_only_the_added_characters_rows_and_merges_them(tiny_backbone):
    """LoRA with an extended vocabulary: the added rows are one small parameter laid over the frozen
    table while training, written into it by the merge; every pre-trained row stays as it was."""
    import torch

    from modelloop.families.text.backbone import load_encoder

    rows = pd.DataFrame({"message": ["退款 refund money"] * 12 + ["丢卡 card lost"] * 12})
    job = _job(tiny_backbone, rows.assign(intent=["refund"] * 12 + ["lost_card"] * 12), method="lora")
    assert len(job.added) == 4
    net = F._network_for(job, S.default_params(job.settings))
    trainable = {n: p.shape for n, p in net.named_parameters() if p.requires_grad}
    new_rows = [n for n in trainable if n.endswith("word_embeddings.rows")]
    assert len(new_rows) == 1 and trainable[new_rows[0]][0] == 4          # 4 rows, not the whole table
    assert not any("word_embeddings" in n and n not in new_rows for n in trainable)

    model = TextModel({"backbone": str(tiny_backbone), "method": "lora", "epochs": 3, "learning_rate": 1e-2,
                       "batch_size": 8}, text_column="message").fit(rows, ["refund"] * 12 + ["lost_card"] * 12)
    table = model.network_.encoder.get_input_embeddings()
    assert isinstance(table, torch.nn.Embedding)                            # merged: a plain layer again
    original = load_encoder(str(tiny_backbone)).get_input_embeddings().weight
    n_old = original.shape[0]
    assert table.weight.shape[0] == n_old + 4
    torch.testing.assert_close(table.weight[:n_old], original, rtol=0, atol=0)
    start = F._network_for(job, S.default_params(job.settings)).encoder.get_input_embeddings().rows
    assert not torch.allclose(table.weight[n_old:], start)                  # the new rows trained
    ids = model.encode(["退款"])[0][0][1:-1]
    assert min(ids) >= n_old                                               # and the new characters read them


def test_early_stopping_reads_every_window_of_a_validation_text_as_serving_does(tiny_backbone, texts):
    """The validation score of a fine-tuning epoch is the served model's: each validation text's
    windows' logits averaged (``TextModel.scores_windows``), not its first window alone."""
    from modelloop.families.text.backbone import tokenize_windows
    from modelloop.families.text.pipeline import softmax

    job = _job(tiny_backbone, texts.head(24), method="full")
    val = ["where is my package " * 40 + "refund money back", "my card was stolen"]
    windows, _ = tokenize_windows(job.tokenizer, val, 16)
    assert len(windows[0]) > 3 and len(windows[1]) == 1
    job.max_length, job.y_val = 16, np.array([2, 1])
    job.val_ids, job.val_counts = [w for ws in windows for w in ws], [len(ws) for ws in windows]
    net = F._network_for(job, S.default_params(job.settings))
    got = F._val_probabilities(net, job, "fp32")
    served = TextModel.from_network(network=net, tokenizer=job.tokenizer, classes=job.classes, text_column="message",
                                    target=None, config=job.settings.model_dump(mode="json"), max_length=16)
    served.windows_ = True
    np.testing.assert_allclose(got, served.predict_proba(val), atol=1e-5)
    first_only = softmax(F._logits(net, [ws[0] for ws in windows], job.pad_id, "cpu", "fp32"))
    assert not np.allclose(got[0], first_only[0], atol=1e-4)  # the other windows count
