"""The four readers researchers use open the data as it lies on disk: a token table by its folder
and every table by one glob, clip metadata by one glob and by the dataset's card, with `split` and
the table's name as columns and the token grid's shape in the column type (no key-value metadata
read). Measured choice: nested fixed-size lists (`[t][h][w]`) keep the shape in all four; Arrow's
`fixed_shape_tensor` extension becomes a flat list in DuckDB and polars and is refused by
`datasets` 5.x."""
import warnings

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def dataset(prepared_root, token_tables):
    table, _ = token_tables
    # Rewritten by encode-latents; also written by prepare (checked here too).
    return {"dir": prepared_root / "moving-mnist", "table": table, "name": table.name,
            "grid": tuple(pl.read_parquet(next((table / "data" / "train").glob("*.parquet")))["tokens"].dtype.shape)}


def test_pyarrow(dataset):
    d, table = dataset["dir"], dataset["table"]
    by_folder = pq.read_table(table / "data")  # the table's folder: only Parquet below it
    assert set(by_folder.column("split").to_pylist()) == {"train", "test"}
    assert set(by_folder.column("table").to_pylist()) == {dataset["name"]}
    tokens = by_folder.schema.field("tokens").type
    assert (tokens.list_size, tokens.value_type.list_size, tokens.value_type.value_type.list_size) == dataset["grid"]
    every = ds.dataset(sorted(map(str, d.glob("tokens/*/data/*/*.parquet")))).to_table()
    assert every.num_rows == by_folder.num_rows
    clips = ds.dataset(sorted(map(str, d.glob("clips/*/clips.parquet")))).to_table()
    assert sorted(set(clips.column("split").to_pylist())) == ["test", "train"]


def test_polars(dataset):
    d, table = dataset["dir"], dataset["table"]
    by_folder = pl.read_parquet(table / "data")
    assert by_folder.schema["tokens"] == pl.Array(pl.UInt16, dataset["grid"])
    counts = pl.read_parquet(d / "tokens" / "*" / "data" / "*" / "*.parquet").group_by("table", "split").len().sort("split")
    assert counts["split"].to_list() == ["test", "train"] and set(counts["table"]) == {dataset["name"]}
    clips = pl.read_parquet(d / "clips" / "*" / "clips.parquet")
    assert clips.group_by("split").len().sort("split")["len"].to_list() == [16, 64]


def test_duckdb(dataset):
    d, table = dataset["dir"], dataset["table"]
    rows = duckdb.sql(f"SELECT split, \"table\", count(*), len(any_value(tokens)), len(any_value(tokens)[1]), "
                      f"len(any_value(tokens)[1][1]) FROM '{table}/data/**/*.parquet' GROUP BY ALL ORDER BY split").fetchall()
    assert [r[0] for r in rows] == ["test", "train"]
    assert all(r[1] == dataset["name"] and tuple(r[3:]) == dataset["grid"] for r in rows)
    every = duckdb.sql(f"SELECT count(*) FROM '{d}/tokens/*/data/*/*.parquet'").fetchall()[0][0]
    assert every == sum(r[2] for r in rows)
    clips = duckdb.sql(f"SELECT split, count(*) FROM '{d}/clips/*/clips.parquet' GROUP BY 1 ORDER BY 1").fetchall()
    assert clips == [("test", 16), ("train", 64)]


def test_hugging_face_datasets(dataset, tmp_path):
    import datasets

    datasets.disable_progress_bars()
    d, table = dataset["dir"], dataset["table"]
    by_folder = datasets.load_dataset("parquet", data_dir=str(table / "data"), cache_dir=str(tmp_path))
    assert sorted(by_folder) == ["test", "train"]
    feature = by_folder["train"].features["tokens"]
    shape = (feature.length, feature.feature.length, feature.feature.feature.length)
    assert shape == dataset["grid"]
    assert set(by_folder["train"]["table"]) == {dataset["name"]}
    # The dataset card's `configs:`: clips and each table by the dataset's folder.
    clips = datasets.load_dataset(str(d), "clips", cache_dir=str(tmp_path))
    assert (clips["train"].num_rows, clips["test"].num_rows) == (64, 16)
    assert set(clips["test"]["split"]) == {"test"}
    tokens = datasets.load_dataset(str(d), dataset["name"], cache_dir=str(tmp_path))
    assert tokens["train"].num_rows == 64
    own = datasets.load_dataset(str(table), cache_dir=str(tmp_path))
    assert own["test"].num_rows == 16
