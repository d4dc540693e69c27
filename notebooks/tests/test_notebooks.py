"""Runs every notebook headlessly against data the tests prepare, and checks
that the Parquet tables open unchanged in pyarrow and polars."""
import hashlib
import json
import os
from pathlib import Path

import nbformat
import polars as pl
import pyarrow.parquet as pq
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1]).glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_notebook_runs_without_error(notebook, prepared_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPS_DIR", str(prepared_root / "moving-mnist" / "clips" / "train"))
    monkeypatch.setenv("FRAME_GRID_PNG", str(tmp_path / "grid.png"))
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    if notebook.name == "clip_shards.ipynb":
        assert (tmp_path / "grid.png").stat().st_size > 1000


def test_clips_table_opens_in_pyarrow_and_polars(prepared_root):
    split = prepared_root / "moving-mnist" / "clips" / "test"
    index = json.loads((split / "index.json").read_text())
    table = pq.read_table(split / "clips.parquet")
    assert table.num_rows == index["num_clips"] == 16
    assert table.schema.field("clip_id").type == "uint64"
    frame = pl.read_parquet(split / "clips.parquet")
    assert frame["clip_id"].to_list() == list(range(16))
    assert frame["start_frame"].max() <= 4


def test_shard_checksums_match_hashlib(prepared_root):
    split = prepared_root / "moving-mnist" / "clips" / "train"
    index = json.loads((split / "index.json").read_text())
    for entry in index["shards"]:
        data = (split / entry["file"]).read_bytes()
        assert len(data) == entry["bytes"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
