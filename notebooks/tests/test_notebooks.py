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

from conftest import REPO

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1]).glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_notebook_runs_without_error(notebook, prepared_root, token_tables, tmp_path, monkeypatch):
    table, run = token_tables
    monkeypatch.setenv("CLIPS_DIR", str(prepared_root / "moving-mnist" / "clips" / "train"))
    monkeypatch.setenv("FRAME_GRID_PNG", str(tmp_path / "grid.png"))
    monkeypatch.setenv("TOKENS_DIR", str(table / "train"))
    monkeypatch.setenv("CHECKPOINT", str(run))
    monkeypatch.setenv("FIG_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("REPO", str(REPO))
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    if notebook.name == "clip_shards.ipynb":
        assert (tmp_path / "grid.png").stat().st_size > 1000
    if notebook.name == "token_stats.ipynb":
        for figure in ["code_usage.png", "entropy_per_position.png", "code_patches.png"]:
            assert (tmp_path / "figures" / figure).stat().st_size > 1000, figure


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


def test_token_tables_open_unchanged_in_pyarrow_and_polars(token_tables):
    table, _ = token_tables
    split = table / "train"
    manifest = json.loads((split / "table.json").read_text())
    grid = manifest["latent_grid"]
    length = grid[0] * grid[1] * grid[2]
    parts = sorted(split.glob("part-*.parquet"))
    assert [p.name for p in parts] == [p["file"] for p in manifest["parts"]]
    arrow = pq.read_table(parts)
    assert arrow.num_rows == manifest["rows"] == 64
    assert str(arrow.schema.field("tokens").type) == f"fixed_size_list<item: uint16 not null>[{length}]"
    assert arrow.schema.field("clip_id").type == "uint64"
    meta = {k.decode(): v.decode() for k, v in pq.read_metadata(parts[0]).metadata.items()}
    assert meta["videogpt.format"] == "videogpt-token-table"
    assert json.loads(meta["videogpt.latent_grid"]) == grid
    assert int(meta["videogpt.codebook_size"]) == manifest["codebook_size"]
    assert meta["videogpt.checkpoint_sha256"] == manifest["checkpoint_sha256"]
    frame = pl.read_parquet(parts)
    assert frame.schema["tokens"] == pl.Array(pl.UInt16, length)
    assert frame["clip_id"].to_list() == list(range(64))
    # Same tokens through both readers, all inside the codebook.
    tokens = frame["tokens"].to_numpy()
    assert (tokens == arrow.column("tokens").combine_chunks().flatten().to_numpy().reshape(64, length)).all()
    assert tokens.max() < manifest["codebook_size"]
