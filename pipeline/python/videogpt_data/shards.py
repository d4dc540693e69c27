"""Clip shards: ``index.json`` + ``shard-NNNNN.clips`` (byte layout in ``datasets/README.md``)."""
from __future__ import annotations

import hashlib
import json
import mmap
from pathlib import Path

import numpy as np
import zstandard

MAGIC = b"VGCLIPS1"


class ClipShards:
    """A prepared split. ``len(shards)`` clips; ``shards[i]`` is clip ``i`` as uint8 ``[T, H, W, C]``."""

    def __init__(self, split_dir):
        self.dir = Path(split_dir)
        index_path = self.dir / "index.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{self.dir}: no index.json (not a prepared split, or still being prepared)")
        self.index = json.loads(index_path.read_text())
        self.shape = tuple(self.index["clip_shape"])
        self._first = np.cumsum([0] + [s["clips"] for s in self.index["shards"]])
        self._open: dict[int, tuple[mmap.mmap, np.ndarray]] = {}
        self._decompressor = None

    @property
    def dataset(self) -> str:
        return self.index["dataset"]

    @property
    def split(self) -> str:
        return self.index["split"]

    def __len__(self) -> int:
        return int(self.index["num_clips"])

    def _shard(self, k: int):
        if k not in self._open:
            path = self.dir / self.index["shards"][k]["file"]
            with open(path, "rb") as f:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if data[:8] != MAGIC or data[-8:] != MAGIC:
                raise ValueError(f"{path}: not a complete clip shard")
            n = int.from_bytes(data[-16:-8], "little")
            offsets = np.frombuffer(data, "<u8", count=n + 1, offset=len(data) - 16 - 8 * (n + 1)).copy()
            if n != self.index["shards"][k]["clips"]:
                raise ValueError(f"{path}: {n} clips, index.json says {self.index['shards'][k]['clips']}")
            self._open[k] = (data, offsets)
        return self._open[k]

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"clip {i} of a split of {len(self)}")
        k = int(np.searchsorted(self._first, i, side="right") - 1)
        data, offsets = self._shard(k)
        j = i - int(self._first[k])
        if self._decompressor is None:  # one per process: safe with DataLoader workers
            self._decompressor = zstandard.ZstdDecompressor()
        raw = self._decompressor.decompress(data[offsets[j]:offsets[j + 1]])
        return np.frombuffer(raw, np.uint8).reshape(self.shape)

    def __getstate__(self):  # picklable for DataLoader workers: shards reopen lazily
        return {"dir": self.dir, "index": self.index, "shape": self.shape, "_first": self._first}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open, self._decompressor = {}, None

    def metadata(self):
        """``clips.parquet`` as a pyarrow Table (one row per clip, in clip-id order)."""
        import pyarrow.parquet as pq

        return pq.read_table(self.dir / "clips.parquet")

    def verify(self) -> None:
        """Checks every shard's size and SHA-256 against ``index.json``."""
        for entry in self.index["shards"]:
            data = (self.dir / entry["file"]).read_bytes()
            if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise ValueError(f"{self.dir / entry['file']}: size or SHA-256 differs from index.json")
