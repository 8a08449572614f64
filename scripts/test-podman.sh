#!/usr/bin/env bash
# The container tests again, against Podman: Debian's podman serves its
# Docker-compatible API (`podman system service`) on a private socket, the
# test images are copied in from Docker (there is no registry), and the
# Docker tests of the gateway run with DOCKER_HOST pointing at Podman.
# Installs podman and catatonit when missing and run as root (as in CI);
# otherwise it says what to install. Nothing is skipped: a Podman that
# cannot start fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
[ -x /usr/bin/catatonit ] || [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test-podman: missing ${need[*]}; install them (Debian: sudo apt-get install ${need[*]}) and retry" >&2
    exit 1
  fi
  echo "test-podman: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  install() { apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
  install || { apt-get update -qq; install; }
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/mcpgw-podman.XXXXXX")
# Sandboxes (this project's CI among them) refuse the rlimits Podman sets
# on every container by default; containers keep the engine's own.
printf '[containers]\ndefault_ulimits = []\n' > "$state/containers.conf"
export CONTAINERS_CONF=$state/containers.conf
socket=$state/podman.sock
podman system service --time=0 "unix://$socket" 2> "$state/service.log" &
service=$!
trap 'kill $service 2>/dev/null; wait $service 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do
  [ -S "$socket" ] && podman --url "unix://$socket" version >/dev/null 2>&1 && break
  kill -0 $service 2>/dev/null || { cat "$state/service.log" >&2; exit 1; }
  sleep 0.1
done
podman --url "unix://$socket" version --format 'test-podman: Podman {{.Server.Version}} on unix://'"$socket" >&2

# The images the tests run, as Docker has them (built by `make images`).
for image in mcpgw/testserver:dev mcpgw/python-servers:dev; do
  id=$(docker image inspect --format '{{.Id}}' "$image")
  if [ "$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null)" != "${id#sha256:}" ]; then
    echo "test-podman: copying $image from Docker" >&2
    docker save "$image" | podman load -q >/dev/null
  fi
done

export DOCKER_HOST=unix://$socket
cargo test -p mcpgw --test docker --test supervision --test chaos
