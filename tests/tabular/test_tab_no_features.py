"""A table a tabular model cannot read says which columns it has and what reads them."""

from __future__ import annotations

import pandas as pd
import pytest

from modelloop.data.schema import Schema
from modelloop.errors import DataError
from modelloop.families.tabular.model import prepare_features


def test_a_table_of_chinese_text_under_task_classification_names_the_text_column():
    # 'init --source intents.csv --target 意图 --task classification' then run: the error said only 'the
    # schema has no feature columns (numeric, categorical, boolean or datetime)'
    frame = pd.DataFrame({"消息": ["帮我取消这笔订单", "我的银行卡不见了"], "意图": ["取消订单", "挂失"]})
    with pytest.raises(DataError) as exc:
        prepare_features(frame, Schema(columns={"消息": "text", "意图": "categorical"}, target="意图"))
    assert str(exc.value) == (
        "the table has no column a tabular model reads (numeric, categorical, boolean or datetime); its columns "
        "besides the target and id: 消息 (text); a text column (消息) is read by a text model: set task: "
        "text_classification")
    with pytest.raises(DataError, match=r"columns besides the target and id: 评论 \(identifier\); set data.columns"):
        prepare_features(frame, Schema(columns={"评论": "identifier", "意图": "categorical"}, target="意图"))
