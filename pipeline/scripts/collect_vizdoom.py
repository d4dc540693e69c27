"""Record ViZDoom gameplay with the real engine (PyPI `vizdoom`, which ships
the engine, Freedoom and the scenarios) for `vgpt-data prepare vizdoom`.

Writes, under --out:
  episodes/<scenario>/episode-NNNNN.mkv  every observed frame, lossless (FFV1 through the ffmpeg CLI)
  actions.parquet                         episode (path under --out), frame, action (float32 x buttons)
  collection.json                         the settings below, the button names, per-episode frame counts

Every scenario is played with the same button set (BUTTONS), so the action
vectors have one meaning across scenarios. The policy is either `random`
(a uniformly drawn movement button, with ATTACK added 20% of the time,
held for 1 to 8 steps, as exploration data is usually collected) or `scripted` (walk forward, turn in bursts, shoot now and
then). Everything is seeded: the engine (`DoomGame.set_seed`) and the policy
(numpy's PCG64 seeded per scenario and episode), so the same arguments record
the same episodes.

    .venv/bin/python pipeline/scripts/collect_vizdoom.py --out datasets/vizdoom/raw \
        --scenarios health_gathering_supreme,defend_the_center --episodes 20 --seed 0
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import vizdoom as vzd

BUTTONS = [
    "MOVE_FORWARD",
    "MOVE_BACKWARD",
    "TURN_LEFT",
    "TURN_RIGHT",
    "MOVE_LEFT",
    "MOVE_RIGHT",
    "ATTACK",
]
RESOLUTIONS = {
    "160x120": vzd.ScreenResolution.RES_160X120,
    "256x192": vzd.ScreenResolution.RES_256X192,
    "320x240": vzd.ScreenResolution.RES_320X240,
    "640x480": vzd.ScreenResolution.RES_640X480,
}
TICS_PER_SECOND = 35


def random_policy(rng):
    """A random movement button (ATTACK added 20% of the time), held for 1-8 steps."""
    moves = [i for i, b in enumerate(BUTTONS) if b != "ATTACK"]
    while True:
        action = [0.0] * len(BUTTONS)
        action[moves[rng.integers(len(moves))]] = 1.0
        if rng.random() < 0.2:
            action[BUTTONS.index("ATTACK")] = 1.0
        for _ in range(rng.integers(1, 9)):
            yield action


def scripted_policy(rng):
    """Forward for 8-30 steps, then a 3-12 step turn; shoots 10% of steps."""
    index = {b: i for i, b in enumerate(BUTTONS)}
    while True:
        for phase, steps in (("MOVE_FORWARD", rng.integers(8, 31)), (None, rng.integers(3, 13))):
            turn = "TURN_LEFT" if rng.random() < 0.5 else "TURN_RIGHT"
            for _ in range(steps):
                action = [0.0] * len(BUTTONS)
                action[index[phase or turn]] = 1.0
                if phase is None:
                    action[index["MOVE_FORWARD"]] = 1.0
                if rng.random() < 0.1:
                    action[index["ATTACK"]] = 1.0
                yield action


POLICIES = {"random": random_policy, "scripted": scripted_policy}


def make_game(scenario, resolution, seed):
    cfg = os.path.join(vzd.scenarios_path, f"{scenario}.cfg")
    if not os.path.isfile(cfg):
        known = sorted(f[:-4] for f in os.listdir(vzd.scenarios_path) if f.endswith(".cfg"))
        sys.exit(f"collect_vizdoom: unknown scenario `{scenario}`; the vizdoom package has: {', '.join(known)}")
    game = vzd.DoomGame()
    game.load_config(cfg)
    game.set_window_visible(False)
    game.set_sound_enabled(False)
    game.set_screen_resolution(RESOLUTIONS[resolution])
    game.set_screen_format(vzd.ScreenFormat.RGB24)
    game.set_render_hud(False)
    game.set_available_buttons([getattr(vzd.Button, b) for b in BUTTONS])
    game.set_mode(vzd.Mode.PLAYER)
    game.set_seed(seed)
    game.init()
    return game


def record_episode(game, policy, path, max_steps, frame_skip):
    """Plays one episode, piping frames into ffmpeg; returns the actions."""
    fps = TICS_PER_SECOND / frame_skip
    width, height = game.get_screen_width(), game.get_screen_height()
    tmp = path + ".tmp.mkv"
    encoder = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-", "-c:v", "ffv1", "-level", "3", tmp],
        stdin=subprocess.PIPE,
    )
    actions = []
    while not game.is_episode_finished() and len(actions) < max_steps:
        frame = game.get_state().screen_buffer
        action = next(policy)
        encoder.stdin.write(np.ascontiguousarray(frame).tobytes())
        actions.append(action)
        game.make_action(action, frame_skip)
    encoder.stdin.close()
    if encoder.wait() != 0:
        sys.exit(f"collect_vizdoom: ffmpeg failed to encode {path}")
    os.replace(tmp, path)
    return actions


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="datasets/vizdoom/raw")
    ap.add_argument("--scenarios", default="health_gathering_supreme,defend_the_center",
                    help="comma-separated scenario names of the vizdoom package")
    ap.add_argument("--episodes", type=int, default=20, help="episodes per scenario")
    ap.add_argument("--max-steps", type=int, default=300, help="recorded frames per episode at most")
    ap.add_argument("--frame-skip", type=int, default=4, help="engine tics per recorded frame (35 tics/s)")
    ap.add_argument("--resolution", default="160x120", choices=sorted(RESOLUTIONS))
    ap.add_argument("--policy", default="random", choices=sorted(POLICIES))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.episodes < 1 or args.max_steps < 1 or args.frame_skip < 1:
        sys.exit("collect_vizdoom: --episodes, --max-steps and --frame-skip must be at least 1")

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    # The engine writes _vizdoom/ and _vizdoom.ini into the working directory.
    workdir = tempfile.mkdtemp(prefix="vizdoom-")
    os.chdir(workdir)
    rows_episode, rows_frame, rows_action, counts = [], [], [], {}
    started = time.time()
    for s, scenario in enumerate(args.scenarios.split(",")):
        game = make_game(scenario, args.resolution, args.seed * 1_000_003 + s)
        os.makedirs(os.path.join(out, "episodes", scenario), exist_ok=True)
        for e in range(args.episodes):
            rng = np.random.default_rng([args.seed, s, e])
            game.new_episode()
            rel = f"episodes/{scenario}/episode-{e:05d}.mkv"
            actions = record_episode(game, POLICIES[args.policy](rng), os.path.join(out, rel),
                                     args.max_steps, args.frame_skip)
            counts[rel] = len(actions)
            rows_episode += [rel] * len(actions)
            rows_frame += list(range(len(actions)))
            rows_action += actions
            done = s * args.episodes + e + 1
            total = args.episodes * len(args.scenarios.split(","))
            rate = done / (time.time() - started)
            print(f"\r{done}/{total} episodes ({rate:.2f}/s, ETA {(total - done) / rate:.0f} s) "
                  f"{rel}: {len(actions)} frames", end="", file=sys.stderr, flush=True)
        game.close()
    print(file=sys.stderr)
    table = pa.table({
        "episode": pa.array(rows_episode, pa.string()),
        "frame": pa.array(rows_frame, pa.int32()),
        "action": pa.FixedSizeListArray.from_arrays(
            pa.array(np.asarray(rows_action, np.float32).reshape(-1)), len(BUTTONS)),
    }).replace_schema_metadata({"videogpt.buttons": json.dumps(BUTTONS)})
    pq.write_table(table, os.path.join(out, "actions.parquet.tmp"), compression="zstd")
    os.replace(os.path.join(out, "actions.parquet.tmp"), os.path.join(out, "actions.parquet"))
    collection = {
        "engine": f"vizdoom {vzd.__version__}",
        "scenarios": args.scenarios.split(","),
        "episodes_per_scenario": args.episodes,
        "max_steps": args.max_steps,
        "frame_skip": args.frame_skip,
        "fps": TICS_PER_SECOND / args.frame_skip,
        "resolution": args.resolution,
        "policy": args.policy,
        "seed": args.seed,
        "buttons": BUTTONS,
        "video_codec": "ffv1 (lossless)",
        "frames": counts,
    }
    with open(os.path.join(out, "collection.json"), "w") as f:
        json.dump(collection, f, indent=1)
    print(f"collect_vizdoom: {len(counts)} episodes, {len(rows_frame)} frames -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
