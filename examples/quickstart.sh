#!/usr/bin/env bash
# One command on a fresh machine: install, start a private Docker engine, build the TAO 5.5 stand-in image,
# and run "Train BEVFusion on my KITTI data": convert -> AutoML review -> confirm -> a small study (4 trials x
# 2 epochs) -> evaluate + inference of its best checkpoint, through the MCP server.
#
# The container is a STAND-IN for nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt (no GPU or NVIDIA image here):
# it behaves like the 5.5 CLI (exit codes, status.json, checkpoints, quirks) but trains nothing.
# For the real thing: docker pull nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt, unset TAO_BEVFUSION_IMAGE and
# drop gpus=[] from the calls (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

# Its own virtual environment (Debian's python3 refuses system-wide pip installs): .venv in the clone, or
# TAO_BEVFUSION_VENV. Works the same from Debian's /usr/bin/python3, an active venv or pyenv.
source scripts/venv.sh
ensure_venv "${TAO_BEVFUSION_VENV:-$REPO/.venv}"
# The plain install (no extras): what the README documents, pictures included.
python3 -m pip install -q --disable-pip-version-check -e .
if ! command -v dockerd >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null \
    || echo "could not install docker.io; falling back to the local backend"
fi
source scripts/dockerd.sh
start_private_dockerd || true

DEMO=$REPO/demo-runs
rm -rf "$DEMO" && mkdir -p "$DEMO"
cp -r "$REPO/tests/data/kitti_sample" "$DEMO/kitti" && chmod -R u+w "$DEMO/kitti"
export TAO_BEVFUSION_HOME=$DEMO/state TAO_BEVFUSION_ROOTS=$DEMO

BACKEND=docker
if docker version >/dev/null 2>&1; then
  TAO_BEVFUSION_IMAGE=$(python3 -m tests.standin.image)
  export TAO_BEVFUSION_IMAGE
  # Engines that may not raise RLIMIT_MEMLOCK (sandboxes) get this host's hard limit instead of unlimited.
  HARD=$(ulimit -Hl)
  if [ "$HARD" != unlimited ]; then export TAO_BEVFUSION_MEMLOCK=$((HARD * 1024)); fi
  echo "== Docker engine reachable; stand-in image $TAO_BEVFUSION_IMAGE"
else
  BACKEND=local
  export TAO_BEVFUSION_LOCAL_CLI="[\"$(command -v python3)\", \"$REPO/tests/standin/bevfusion_standin.py\"]"
  echo "== no Docker engine could be reached or started: running the stand-in through the local backend"
fi
python3 examples/pipeline_demo.py --data-root "$DEMO/kitti" --backend "$BACKEND" "$@"
