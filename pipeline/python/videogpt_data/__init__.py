"""Read the workspace's data from Python.

- :class:`ClipShards`: a prepared split (``datasets/<dataset>/clips/<split>``), clip ``i`` as
  uint8 ``[T, H, W, C]``, its ``clips.parquet`` row as a dict.
- :class:`TokenTable`: one split of a token table (``datasets/<dataset>/tokens/<table>``), tokens
  as uint16 ``[N, t, h, w]``; reads both layouts (``data/<split>`` + ``meta/``, and the one-folder
  layout of format version 1).
- :mod:`videogpt_data.torch_datasets`: ``torch.utils.data.Dataset`` classes for both (torch is
  imported only there).
- :mod:`videogpt_data.webdataset_export`: clips as WebDataset tar shards.
- :mod:`videogpt_data.locate`: the repository, the data root, the demo's or newest data.
"""
from .locate import binary, data_root, default_dataset, default_prior_run, newest_table, repo_root, runs_root
from .shards import ClipShards
from .tokens import TokenTable, table_splits

__all__ = ["binary", "ClipShards", "TokenTable", "table_splits", "data_root", "default_dataset", "default_prior_run", "newest_table", "repo_root", "runs_root"]
