#!/usr/bin/env bash
# Installs the system packages `make test` needs when they are missing:
# mmdebstrap (the Python servers' image), python3-venv (the witness client),
# and a real Secret Service for the keyring tests: gnome-keyring, plus
# dbus-daemon and dbus-send to give it a private session bus.
# Installing needs root (as in CI); otherwise it says what to install.
set -euo pipefail

need=()
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
command -v dbus-send >/dev/null 2>&1 || need+=(dbus-bin)
((${#need[@]})) || exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: missing ${need[*]}; install them (Debian: sudo apt-get install ${need[*]}) and retry" >&2
  exit 1
fi
echo "test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
apt-get update -qq
# A package list fetched mid-update can lack a package; one fresh try.
install || { apt-get update; install; }
