"""The content digest that names an ingested version, and the row ids it gives the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from modelloop.data.snapshot import ContentDigest, row_ids


def _table(n: int = 1000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[::7] = np.nan
    return pl.DataFrame({
        "x": x,
        "k": pl.Series(rng.integers(0, 5, n)).set(pl.Series(np.arange(n) % 11 == 0), None),  # gaps
        "c": pl.Series(rng.choice(["a", "bb", "ccc"], n)).set(pl.Series(np.arange(n) % 13 == 0), None),
        "b": rng.random(n) < 0.3,
        "t": pl.datetime_range(pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 1) + pl.duration(hours=n - 1),
                               "1h", eager=True),
        "y": rng.integers(0, 2, n),
    })


def _version_id(df: pl.DataFrame) -> str:
    digest = ContentDigest()
    for name in df.columns:
        digest.add(df.get_column(name))
    return digest.version_id(df.columns)


def test_version_id_follows_the_content_not_the_reader():
    df = _table(300_000)  # longer than a hashing slice, so the slices' order matters too
    first = _version_id(df)
    # another chunking, and the pandas round trip a CSV source takes (NaN and gaps, ints with gaps as floats)
    assert _version_id(pl.concat([df.slice(0, 70_001), df.slice(70_001)], rechunk=False)) == first
    assert _version_id(pl.from_pandas(df.to_pandas(), nan_to_null=True)) == first
    assert _version_id(df.with_columns(pl.col("x").fill_nan(None))) == first  # NaN is missing
    # each of a value, a missing mark, a name, the column order and a type is content
    one_value = pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("zz")).otherwise(pl.col("c")).alias("c")
    changed = [df.with_columns(one_value),
               df.with_columns(pl.col("x").fill_nan(0.0)),
               df.rename({"c": "d"}),
               df.select(["c", *[n for n in df.columns if n != "c"]]),
               df.with_columns(pl.col("c").cast(pl.Categorical))]
    assert len({first, *(_version_id(d) for d in changed)}) == len(changed) + 1


def test_text_bytes_are_hashed_with_their_boundaries():
    a = pl.DataFrame({"s": ["ab", "c"]})
    b = pl.DataFrame({"s": ["a", "bc"]})
    assert _version_id(a) != _version_id(b)


def test_row_ids_keep_duplicates_apart_and_follow_the_occurrence_rule():
    h = np.random.default_rng(1).integers(0, 50, 10_000).astype(np.uint64)
    ids = row_ids(h)
    assert len(np.unique(ids)) == len(ids)
    # the rule ingest has always used: the hash xor its occurrence number times a fixed odd constant
    occurrence = pd.Series(h).groupby(h).cumcount().to_numpy().astype(np.uint64)
    assert (ids == (h ^ occurrence * np.uint64(0x9E3779B97F4A7C15)).view(np.int64)).all()
    df = _table(200)
    digest = ContentDigest()
    for name in df.columns:
        digest.add(df.get_column(name))
    doubled = ContentDigest()
    for name in df.columns:
        doubled.add(pl.concat([df, df]).get_column(name))
    once, twice = digest.row_ids(), doubled.row_ids()
    assert (twice[:200] == once).all() and len(np.unique(twice)) == 400


def test_distinct_hashes_are_their_own_ids_and_count_no_repeat():
    """The shortcut for a table without repeated rows gives what the occurrence rule gives."""
    from modelloop.data.snapshot import _row_ids

    h = np.random.default_rng(2).permutation(2**20).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    ids, repeated = _row_ids(h)
    assert repeated == 0 and (ids == h.view(np.int64)).all() and not np.shares_memory(ids, h)
    h[7] = h[3]
    ids, repeated = _row_ids(h)
    assert repeated == 1 and ids[7] == (h[7] ^ np.uint64(0x9E3779B97F4A7C15)).view(np.int64) and ids[3] == h[3]


def test_a_table_of_chat_messages_has_a_content_id(tmp_path):
    """A chat project's messages column, read back from Parquet as arrays of dicts, is hashed by its JSON
    text: equal conversations give equal ids, another turn another id (pandas refused to hash them, so a
    chat project's retrain failed)."""
    from modelloop.data.snapshot import content_hash

    chats = pd.DataFrame({"messages": [[{"role": "user", "content": "你好"}, {"role": "assistant", "content": "hi"}],
                                       [{"role": "user", "content": "refund?"}]]})
    chats.to_parquet(tmp_path / "c.parquet")
    read = pd.read_parquet(tmp_path / "c.parquet")
    assert isinstance(read["messages"].iloc[0], np.ndarray)  # what the hash met
    assert content_hash(read) == content_hash(pd.read_parquet(tmp_path / "c.parquet"))
    other = read.copy()
    other.loc[1, "messages"] = [{"role": "user", "content": "refund, please"}]
    assert content_hash(other) != content_hash(read)


def test_a_snapshot_keeps_statistics_for_numbers_and_times_but_not_for_text(tmp_path):
    """Text min/max statistics took a fifth of a snapshot's write and no reader filters text by range."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelloop.data.snapshot import snapshot_file, write_snapshot_batches

    batch = pa.record_batch({"x": [1.5, 2.5], "at": [dt.datetime(2024, 1, 1)] * 2, "name": ["a", "b"],
                             "raw": [b"x", b"y"]})
    write_snapshot_batches([batch], tmp_path / "v", {"id": "v"})
    group = pq.ParquetFile(snapshot_file(tmp_path / "v")).metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).is_stats_set for i in range(group.num_columns)}
    assert stats == {"x": True, "at": True, "name": False, "raw": False}
