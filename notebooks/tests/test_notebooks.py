"""Runs every notebook as a user would, against a workspace the tests prepare, and checks that the
Parquet tables open unchanged in pyarrow and polars."""
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import polars as pl
import pyarrow.parquet as pq
import pytest

from conftest import REPO

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1]).glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_notebook_runs_unchanged_with_no_environment_and_shows_its_plots(notebook, workspace, prior_run):
    # As a user runs it: from the workspace's notebooks/ folder, with `jupyter nbconvert --execute`,
    # no variables pointing at the data (they find the demo's), plots shown inline.
    folder = workspace / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(notebook, folder / notebook.name)
    env = {"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    executed = folder / f"executed-{notebook.name}"
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=300", "--output", executed.name, notebook.name],
        cwd=folder, env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(executed, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= {"clip_shards.ipynb": 1, "token_stats.ipynb": 4, "prior_samples.ipynb": 3}[notebook.name], len(images)
    # The figures are saved too.
    assert any((folder / "figures").glob("*.png"))


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
    split = table / "data" / "train"
    manifest = json.loads((table / "meta" / "train.json").read_text())
    t, h, w = manifest["latent_grid"]
    parts = sorted(split.glob("part-*.parquet"))
    assert [p.name for p in parts] == [p["file"] for p in manifest["parts"]]
    assert sorted(p.name for p in split.iterdir()) == [p.name for p in parts], "only Parquet in a data folder"
    arrow = pq.read_table(parts)
    assert arrow.num_rows == manifest["rows"] == 64
    assert arrow.schema.field("tokens").type.list_size == t
    assert arrow.schema.field("clip_id").type == "uint64"
    meta = {k.decode(): v.decode() for k, v in pq.read_metadata(parts[0]).metadata.items()}
    assert meta["videogpt.format"] == "videogpt-token-table"
    assert meta["videogpt.format_version"] == "2"
    assert json.loads(meta["videogpt.latent_grid"]) == [t, h, w]
    assert int(meta["videogpt.codebook_size"]) == manifest["codebook_size"]
    assert meta["videogpt.checkpoint_sha256"] == manifest["checkpoint_sha256"]
    frame = pl.read_parquet(parts)
    assert frame.schema["tokens"] == pl.Array(pl.UInt16, (t, h, w))
    assert frame["clip_id"].to_list() == list(range(64))
    # Same tokens through both readers, all inside the codebook.
    tokens = frame["tokens"].to_numpy()
    column = arrow.column("tokens").combine_chunks()
    for _ in range(3):
        column = column.flatten()
    assert tokens.shape == (64, t, h, w)
    assert (tokens == column.to_numpy().reshape(64, t, h, w)).all()
    assert tokens.max() < manifest["codebook_size"]


@pytest.mark.parametrize("kind", ["vqvae", "prior"])
def test_plot_run_plots_vqvae_and_prior_runs(kind, token_tables, prior_run, tmp_path):
    run = {"vqvae": token_tables[1], "prior": prior_run}[kind]
    out = tmp_path / f"{kind}.png"
    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "notebooks" / "plot_metrics.py"), str(run), str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 5000
