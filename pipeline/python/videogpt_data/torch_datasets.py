"""``torch.utils.data.Dataset`` classes for clip shards and token tables (imports torch)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .shards import ClipShards
from .tokens import TokenTable


class ClipDataset(Dataset):
    """Clips of a prepared split as float tensors ``[C, T, H, W]`` in ``[-0.5, 0.5]`` (the VQ-VAE's
    input, ``x / 255 - 0.5``), or uint8 ``[T, H, W, C]`` with ``raw=True``. With ``with_meta``,
    items are ``(clip, row)`` with the clip's ``clips.parquet`` row as a dict."""

    def __init__(self, split_dir, raw: bool = False, with_meta: bool = False):
        self.shards = ClipShards(split_dir)
        self.raw = raw
        self.rows = self.shards.metadata().to_pylist() if with_meta else None

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, i: int):
        clip = self.shards[i]
        x = torch.from_numpy(clip.copy()) if self.raw else torch.from_numpy(clip.astype(np.float32) / 255.0 - 0.5).permute(3, 0, 1, 2)
        return (x, self.rows[i]) if self.rows is not None else x


class TokenDataset(Dataset):
    """Token grids of a table split as int64 tensors ``[t, h, w]`` (ready for ``nn.Embedding``);
    with ``condition="label"`` items are ``(tokens, label)``."""

    def __init__(self, table, split: str = "train", condition: str | None = None):
        self.table = TokenTable(table, split)
        self.tokens = self.table.tokens()
        self.condition = self.table.column(condition) if condition else None
        if condition and self.condition is None:
            raise KeyError(f"{self.table.dir}: no `{condition}` column")

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.tokens[i].astype(np.int64))
        return (x, self.condition[i]) if self.condition is not None else x
