"""Files written by the Python ecosystem, read by the Rust pipeline."""
import json
import subprocess

import numpy as np
import zstandard

from conftest import BINARY


def test_mnist_test_seq_npy_written_by_numpy(tmp_path, prepared_root):
    # Same layout as the canonical file: uint8 [20, N, 64, 64].
    rng = np.random.default_rng(0)
    seqs = rng.integers(0, 256, size=(20, 10, 64, 64), dtype=np.uint8)
    raw = tmp_path / "raw"
    raw.mkdir()
    np.save(raw / "mnist_test_seq.npy", seqs)
    root = tmp_path / "datasets"
    subprocess.run(
        [str(BINARY), "prepare", "moving-mnist", "--root", str(root), "--raw", str(raw),
         "--npy-test-sequences", "3", "--start", "first", "--no-progress"],
        check=True,
    )
    split = root / "moving-mnist" / "clips" / "test"
    index = json.loads((split / "index.json").read_text())
    assert index["num_clips"] == 3
    data = (split / index["shards"][0]["file"]).read_bytes()
    n = int.from_bytes(data[-16:-8], "little")
    offsets = np.frombuffer(data, "<u8", count=n + 1, offset=len(data) - 16 - 8 * (n + 1))
    for k in range(3):
        clip = np.frombuffer(zstandard.ZstdDecompressor().decompress(data[offsets[k]:offsets[k + 1]]), np.uint8)
        expect = seqs[:16, 7 + k][..., None]  # test split = the last 3 sequences
        np.testing.assert_array_equal(clip.reshape(16, 64, 64, 1), expect)
