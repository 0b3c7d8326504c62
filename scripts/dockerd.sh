# Sourced by .ci/run and the quick start: start a private dockerd (no systemd, no registry, no bridge).
# Sets DOCKER_HOST and an EXIT trap that stops the daemon and removes its data root.
start_private_dockerd() {
  if [ -n "${DOCKER_HOST:-}" ] && docker version >/dev/null 2>&1; then
    echo "using the Docker engine at $DOCKER_HOST"; return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "no dockerd available (or not root): docker tests will report that no engine could be started"
    return 0
  fi
  DOCKERD_DIR=$(mktemp -d /tmp/tao-dockerd.XXXXXX)
  dockerd --data-root="$DOCKERD_DIR/data" --exec-root="$DOCKERD_DIR/exec" --pidfile="$DOCKERD_DIR/pid" \
    --host="unix://$DOCKERD_DIR/docker.sock" --storage-driver=overlay2 --iptables=false --ip-forward=false \
    --bridge=none >"$DOCKERD_DIR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  trap stop_private_dockerd EXIT
  export DOCKER_HOST="unix://$DOCKERD_DIR/docker.sock"
  for _ in $(seq 1 120); do
    if docker version >/dev/null 2>&1; then echo "dockerd ready at $DOCKER_HOST"; return 0; fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || { cat "$DOCKERD_DIR/dockerd.log"; return 1; }
    sleep 0.25
  done
  cat "$DOCKERD_DIR/dockerd.log"; return 1
}

# Cleanup must never fail the caller (under `set -e` a failing EXIT trap sets the exit status): the engine's
# network namespace mounts are unmounted first, and whatever still cannot be removed is left in /tmp.
stop_private_dockerd() {
  kill -TERM "$DOCKERD_PID" 2>/dev/null || true
  wait "$DOCKERD_PID" 2>/dev/null || true
  umount "$DOCKERD_DIR/exec/netns/default" /run/docker/netns/default 2>/dev/null || true
  rm -rf "$DOCKERD_DIR" 2>/dev/null || true
}
