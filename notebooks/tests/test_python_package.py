"""The `videogpt_data` package (pipeline/python): its clip reader gives the pixels the Rust reader
gives, its token reader reads both table layouts, its PyTorch datasets batch them, and its WebDataset
export opens in the `webdataset` package's own loader."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import videogpt_data as vd
from conftest import BINARY, REPO


def test_clip_reader_gives_the_rust_readers_pixels(prepared_root, tmp_path):
    for split in ["train", "test"]:
        split_dir = prepared_root / "moving-mnist" / "clips" / split
        shards = vd.ClipShards(split_dir)
        assert len(shards) == {"train": 64, "test": 16}[split]
        for i in sorted({0, 19, 20, len(shards) - 1} & set(range(len(shards)))):  # across the 20-clip shard boundary
            out = tmp_path / f"{split}-{i}.npy"
            subprocess.run([str(BINARY), "clip", str(split_dir), str(i), "--out", str(out)], check=True, capture_output=True)
            np.testing.assert_array_equal(shards[i], np.load(out))
        shards.verify()
        assert shards.metadata().column("split").to_pylist() == [split] * len(shards)
    with pytest.raises(IndexError):
        shards[len(shards)]


def _as_version_1(table: Path, split: str, old: Path) -> None:
    """The split as format version 1 stored it: flat tokens, no `table` column, table.json beside."""
    manifest = json.loads((table / "meta" / f"{split}.json").read_text())
    manifest["format_version"] = 1
    manifest.pop("table", None)
    (old / split).mkdir(parents=True)
    for part in manifest["parts"]:
        t = pq.read_table(table / "data" / split / part["file"])
        column = t.column("tokens").combine_chunks()
        while pa.types.is_fixed_size_list(column.type):
            column = column.flatten()
        flat = pa.FixedSizeListArray.from_arrays(column, int(np.prod(manifest["latent_grid"])))
        t = t.drop_columns(["table", "tokens"]).append_column("tokens", flat)
        pq.write_table(t, old / split / part["file"])
    (old / split / "table.json").write_text(json.dumps(manifest))


def test_token_reader_reads_both_layouts(token_tables, tmp_path):
    table, _ = token_tables
    assert vd.table_splits(table) == ["test", "train"]
    old = tmp_path / "old-table"
    _as_version_1(table, "train", old)
    new, legacy = vd.TokenTable(table, "train"), vd.TokenTable(old, "train")
    assert legacy.dir == old / "train" and vd.table_splits(old) == ["train"]
    a, b = new.tokens(), legacy.tokens()
    assert a.shape == (64, *new.grid) and a.dtype == np.uint16
    np.testing.assert_array_equal(a, b)
    assert new.column("table") == [table.name] * 64 and legacy.column("table") is None
    with pytest.raises(FileNotFoundError, match="splits here"):
        vd.TokenTable(table, "validation")


def test_torch_datasets_batch_clips_and_tokens(prepared_root, token_tables):
    table, _ = token_tables
    script = f"""
import numpy as np, torch
from torch.utils.data import DataLoader
import videogpt_data as vd
from videogpt_data.torch_datasets import ClipDataset, TokenDataset
split = {str(prepared_root / "moving-mnist" / "clips" / "train")!r}
clips = ClipDataset(split)
x = next(iter(DataLoader(clips, batch_size=4, num_workers=2)))
assert tuple(x.shape) == (4, 1, 16, 64, 64) and x.dtype == torch.float32, x.shape
raw = vd.ClipShards(split)[3]
assert torch.allclose(x[3], torch.from_numpy(raw.astype(np.float32) / 255 - 0.5).permute(3, 0, 1, 2))
raw_clip, row = ClipDataset(split, raw=True, with_meta=True)[5]
assert raw_clip.dtype == torch.uint8 and row["clip_id"] == 5 and row["split"] == "train"
tokens = TokenDataset({str(table)!r}, "train")
t = next(iter(DataLoader(tokens, batch_size=8)))
assert t.dtype == torch.int64 and t.shape[0] == 8 and t.shape[1:] == tokens.table.grid
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=str(REPO / "pipeline" / "python"))
    try:
        import torch  # noqa: F401
        python = sys.executable
    except ImportError:
        python = REPO / ".venv-torch" / "bin" / "python"
        if not python.exists():
            pytest.skip("torch is in neither .venv nor .venv-torch (./setup.sh --torch-reference makes it)")
    done = subprocess.run([str(python), "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_webdataset_export_opens_in_webdatasets_own_loader(prepared_root, tmp_path):
    import webdataset as wds
    from videogpt_data.webdataset_export import export

    split = prepared_root / "moving-mnist" / "clips" / "train"
    files = export(split, tmp_path / "wds", clips_per_shard=25)
    assert [f.name for f in files] == [f"moving-mnist-train-{k:06d}.tar" for k in range(3)]
    shards = vd.ClipShards(split)
    seen = 0
    for sample in wds.WebDataset([str(f) for f in files], shardshuffle=False).decode():
        i = int(sample["__key__"])
        np.testing.assert_array_equal(sample["npy"], shards[i])
        assert sample["json"]["clip_id"] == i and sample["json"]["split"] == "train"
        seen += 1
    assert seen == 64
    # The same clips give the same bytes.
    again = export(split, tmp_path / "wds2", clips_per_shard=25)
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in again]
