# VideoGPT workspace: the user's entry points. `just --list` shows them.

set positional-arguments := false

cargo := "cargo"
data := "target/release/vgpt-data"
vgpt := "target/release/vgpt"

# List the recipes.
default:
    @just --list

# Build the release binaries.
build:
    {{cargo}} build --release --workspace --bins

# Prepare a dataset's clip shards: `just prepare moving-mnist`, `just prepare bair [raw-path] [--flags]`.
prepare dataset *args: build
    {{data}} prepare {{dataset}} {{args}}

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

# Plot a run's loss, NMSE and codebook usage to runs/<run>/loss.png.
plot-run run:
    .venv/bin/python notebooks/plot_metrics.py {{run}}

# The whole chain at laptop scale. For now: Moving MNIST shards from real MNIST digits, verified.
demo: build
    {{data}} prepare moving-mnist
    {{data}} verify moving-mnist
    {{data}} info moving-mnist
    @echo "clip shards: datasets/moving-mnist/clips/ (read them in notebooks/clip_shards.ipynb)"

# Run every test: Rust unit and end-to-end tests, then the notebooks and Python readers.
test:
    if command -v cargo-nextest >/dev/null; then {{cargo}} nextest run --release --workspace; else {{cargo}} test --release --workspace; fi
    .venv/bin/python -m pytest -q notebooks/tests

# Benchmarks (JSON under target/bench/): prepare throughput, VQ-VAE train steps.
bench:
    {{cargo}} bench -p videogpt-pipeline --bench prepare
    {{cargo}} bench -p videogpt-model --bench vqvae
