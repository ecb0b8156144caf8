"""Shapes, chat templates, completion-only labels and packing of the generative family's examples."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from modelloop.errors import ConfigError, DataError
from modelloop.families.generative.data import (
    IGNORE,
    Shape,
    as_messages,
    data_profile,
    detect_shape,
    encode_examples,
    examples_of,
    pack,
)


def _data(**keys):
    return SimpleNamespace(**{"prompt": None, "completion": None, "messages": None, "text": None, **keys})


def test_shape_from_column_names_and_from_config():
    assert detect_shape(_data(), ["prompt", "completion", "id"]).kind == "pairs"
    assert detect_shape(_data(), ["messages"]).kind == "chat"
    assert detect_shape(_data(), ["text", "lang"]).kind == "text"
    chosen = detect_shape(_data(prompt="q", completion="a"), ["q", "a"])
    assert (chosen.kind, chosen.prompt, chosen.completion) == ("pairs", "q", "a")
    with pytest.raises(ConfigError, match=r"data.messages: column 'chat' is not in the data"):
        detect_shape(_data(messages="chat"), ["prompt", "completion"])
    with pytest.raises(ConfigError, match=r"^data: no column says what to learn"):
        detect_shape(_data(), ["question", "answer"])
    # data.target is the answer; the one other column asks for it (a text_generation inferred at ingest)
    assert detect_shape(_data(target="answer"), ["question", "answer"]) == Shape("pairs", prompt="question",
                                                                                completion="answer")
    with pytest.raises(ConfigError, match=r"^data: no column says what to learn"):  # which column is the prompt?
        detect_shape(_data(target="answer"), ["question", "topic", "answer"])


def test_messages_are_checked_naming_the_position():
    assert as_messages('[{"role": "user", "content": "hi"}]') == [{"role": "user", "content": "hi"}]
    with pytest.raises(DataError, match=r"messages\[1\].role: must be one of system, user, assistant"):
        as_messages([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])
    with pytest.raises(DataError, match="non-empty list"):
        as_messages([])


def test_completion_is_what_the_template_adds_and_only_it_is_learned(tiny_llama, pairs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    shape = Shape("pairs", prompt="prompt", completion="completion")
    ex = examples_of(pairs.head(3), shape, tok)
    assert ex[0].prompt.endswith("<|im_start|>assistant\n")
    assert ex[0].completion == pairs["completion"][0] + "<|im_end|>\n"
    ids, labels, cut = encode_examples(tok, ex, 64)
    n_prompt = len(tok(ex[0].prompt, add_special_tokens=False)["input_ids"])
    assert labels[0][:n_prompt] == [IGNORE] * n_prompt
    assert labels[0][n_prompt:] == ids[0][n_prompt:] and cut == 0
    _, _, cut = encode_examples(tok, ex, 8)
    assert cut == 3


def test_chat_rows_learn_the_last_assistant_turn(tiny_llama, chats):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ex = examples_of(chats.head(1), Shape("chat", messages="messages"), tok)[0]
    assert "You are a helpdesk." in ex.prompt and ex.completion.startswith(chats["messages"][0][-1]["content"])


def test_packing_fits_examples_and_keeps_each_to_itself(tiny_llama, pairs):
    """A packed batch has the same loss as the examples one by one: attention stays within an example."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelloop.families.generative.sequences import batch_tensors, loss_sums

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    net = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids, labels, _ = encode_examples(tok, examples_of(pairs.head(6), Shape("pairs", "prompt", "completion"), tok), 64)
    packed = pack(ids, labels, 80, packing=True)
    assert len(packed) < len(ids) and all(sum(len(i) for i, _ in seq) <= 80 for seq in packed)
    assert sorted(len(i) for seq in packed for i, _ in seq) == sorted(len(i) for i in ids)
    with torch.no_grad():
        together, n1 = loss_sums(net, batch_tensors(packed, tok.pad_token_id))
        alone = [loss_sums(net, batch_tensors([[pair]], tok.pad_token_id)) for pair in zip(ids, labels, strict=True)]
    assert n1 == sum(n for _, n in alone)
    assert float(together) == pytest.approx(sum(float(v) for v, _ in alone), rel=1e-4)


def test_profile_counts_duplicates_empty_answers_and_long_prompts(tiny_llama, pairs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    frame = pairs.head(12).copy()
    frame.loc[0, "completion"] = ""
    frame.loc[1, "prompt"] = "退货 " * 40
    profile = data_profile(frame, Shape("pairs", "prompt", "completion"), tok, context=32)
    assert profile["empty_answers"] == 1
    assert profile["prompts_over_context"] == 1
    assert profile["duplicates"] == int(frame.duplicated(["prompt", "completion"]).sum())
    assert 0 < profile["language_mix"]["cjk"] < 1
    assert profile["tokens"]["prompt"]["max"] >= 32


def test_the_config_names_the_shape_columns_and_a_wrong_one_exits_2(tmp_path, capsys, pairs):
    import yaml
    from clirun import cli

    from modelloop.config import parse_config

    renamed = pairs.rename(columns={"prompt": "question", "completion": "answer"})
    renamed.to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    raw = {"name": "qa", "task": "text_generation", "split": {"strategy": "random"},
           "data": {"source": "qa.jsonl", "target": "answer", "prompt": "question", "completion": "answer"}}
    cfg = parse_config(raw, root=tmp_path)
    assert detect_shape(cfg.data, list(renamed.columns)) == Shape("pairs", prompt="question", completion="answer")
    raw["data"]["prompt"] = "query"
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 2 and "data.prompt: column 'query' is not in the data" in err


@pytest.mark.parametrize("content", [b"GGUF" + bytes([3, 0, 0, 0]) + bytes([9] * 8) + bytes([4] * 8) + b"\x05",
                                     b"not a model at all\n"], ids=["truncated", "not-gguf"])
def test_a_backbone_file_that_is_not_a_causal_lm_gguf_exits_2_naming_it_and_writes_nothing(
        tmp_path, capsys, monkeypatch, pairs, content):
    """A truncated GGUF file, or any other file named .gguf, is refused before training: exit 2 naming
    the file and what model.backbone takes; no converted folder is left in the cache, no model registered."""
    import yaml
    from clirun import cli

    from modelloop.project import Project

    cache = tmp_path / "cache"
    monkeypatch.setenv("MODELLOOP_CACHE", str(cache))
    (tmp_path / "weights.gguf").write_bytes(content)
    pairs.head(12).to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    raw = {"name": "qa", "task": "text_generation", "split": {"strategy": "random"},
           "data": {"source": "qa.jsonl", "target": "completion"}, "model": {"backbone": "weights.gguf"}}
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 2, err
    assert f"model.backbone: {tmp_path / 'weights.gguf'} is not a causal language model GGUF file" in err
    assert "model.backbone takes 'bundled', a GGUF file of a causal language model" in err
    assert "Traceback" not in err
    assert not (cache / "gguf").exists() or not any((cache / "gguf").iterdir())  # no folder, no temporary
    assert Project.load(str(tmp_path / "modelloop.yaml")).workspace.catalog.list_models() == []
