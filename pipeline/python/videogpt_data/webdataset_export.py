"""Clips of a prepared split as WebDataset tar shards, which ``webdataset.WebDataset`` (and any tar
reader) opens: per clip ``<key>.npy`` (uint8 ``[T, H, W, C]``) and ``<key>.json`` (its
``clips.parquet`` row), ``<key>.cls`` with the label where there is one.

    python -m videogpt_data.webdataset_export datasets/demo/clips/train out/ [--clips-per-shard 1000]
"""
from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np

from .shards import ClipShards


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # the same clips give the same bytes
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def export(split_dir, out_dir, clips_per_shard: int = 1000) -> list[Path]:
    """Writes ``<out>/<dataset>-<split>-NNNNNN.tar``; returns the files in order."""
    if clips_per_shard < 1:
        raise ValueError(f"clips_per_shard {clips_per_shard}: must be at least 1")
    shards = ClipShards(split_dir)
    rows = shards.metadata().to_pylist()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for first in range(0, len(shards), clips_per_shard):
        path = out / f"{shards.dataset}-{shards.split}-{first // clips_per_shard:06d}.tar"
        tmp = path.with_suffix(".tar.tmp")
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(first, min(first + clips_per_shard, len(shards))):
                key = f"{i:09d}"
                buf = io.BytesIO()
                np.save(buf, shards[i])
                _add(tar, f"{key}.npy", buf.getvalue())
                row = rows[i]
                _add(tar, f"{key}.json", json.dumps(row, sort_keys=True).encode())
                if row.get("label") is not None:
                    _add(tar, f"{key}.cls", str(row["label"]).encode())
        tmp.replace(path)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split_dir", help="a prepared split, e.g. datasets/demo/clips/train")
    parser.add_argument("out_dir", help="folder for the .tar shards")
    parser.add_argument("--clips-per-shard", type=int, default=1000, help="clips per tar file (default 1000)")
    args = parser.parse_args()
    for path in export(args.split_dir, args.out_dir, args.clips_per_shard):
        print(path)


if __name__ == "__main__":
    main()
