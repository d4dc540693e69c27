"""Token tables: ``tokens/<table>/data/<split>/part-NNNNN.parquet`` with the manifest in
``tokens/<table>/meta/<split>.json`` (format version 2), or ``tokens/<table>/<split>/`` holding
parts and ``table.json`` (version 1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _split_dir(table: Path, split: str) -> tuple[Path, Path]:
    """(part folder, manifest) of ``split``: today's layout unless only version 1 is there."""
    current = (table / "data" / split, table / "meta" / f"{split}.json")
    legacy = (table / split, table / split / "table.json")
    return legacy if not current[1].is_file() and legacy[1].is_file() else current


def table_splits(table) -> list[str]:
    """The splits of ``table`` with a complete table (either layout), sorted."""
    table = Path(table)
    found = {p.stem for p in (table / "meta").glob("*.json") if not p.stem.endswith("-stats")}
    found |= {p.parent.name for p in table.glob("*/table.json")}
    return sorted(found)


def table_manifests(table) -> list[Path]:
    return [_split_dir(Path(table), s)[1] for s in table_splits(table)]


class TokenTable:
    """One split of a token table.

    ``manifest``: the split's manifest (latent grid, codebook size, checkpoint SHA-256, parts);
    ``tokens()``: uint16 ``[N, t, h, w]``; ``arrow()``: every column as a pyarrow Table;
    ``len(table)``: clips.
    """

    def __init__(self, table, split: str = "train"):
        self.table = Path(table)
        self.split = split
        self.dir, manifest_path = _split_dir(self.table, split)
        if not manifest_path.is_file():
            have = table_splits(self.table)
            raise FileNotFoundError(f"{manifest_path}: no complete `{split}` table (splits here: {have or 'none'})")
        self.manifest = json.loads(manifest_path.read_text())
        self.grid = tuple(self.manifest["latent_grid"])
        self.codebook_size = int(self.manifest["codebook_size"])
        self.parts = [self.dir / p["file"] for p in self.manifest["parts"]]
        self._arrow = None

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def arrow(self):
        if self._arrow is None:
            import pyarrow.parquet as pq

            self._arrow = pq.read_table(self.parts) if self.parts else None
        return self._arrow

    def tokens(self) -> np.ndarray:
        """uint16 ``[N, t, h, w]`` (flat or nested ``tokens`` column alike)."""
        if not self.parts:
            return np.zeros((0, *self.grid), np.uint16)
        column = self.arrow().column("tokens").combine_chunks()
        while hasattr(column, "flatten") and hasattr(column.type, "value_type"):
            column = column.flatten()
        return column.to_numpy(zero_copy_only=False).astype(np.uint16).reshape(-1, *self.grid)

    def column(self, name: str):
        """A column as a Python list (``label``, ``text``, ``clip_id``...), or None if absent."""
        if not self.parts or name not in self.arrow().column_names:
            return None
        return self.arrow().column(name).to_pylist()
