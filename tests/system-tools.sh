#!/usr/bin/env bash
# The system tools the tests use, installed when missing: promtool (Debian's prometheus) and
# systemd-analyze (systemd) for the deploy tests, chromium for the report screenshot test.
# Installs with apt-get as root, or through sudo without a password; otherwise says what to run.
set -euo pipefail
packages=()
command -v promtool >/dev/null || packages+=(prometheus)
command -v systemd-analyze >/dev/null || packages+=(systemd)
command -v chromium >/dev/null || packages+=(chromium)
[ ${#packages[@]} -eq 0 ] && exit 0
install="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${packages[*]}"
if [ "$(id -u)" -eq 0 ]; then
    bash -c "$install"
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo bash -c "$install"
else
    echo "the tests need ${packages[*]} (Debian packages); install them with: sudo bash -c '$install'" >&2
    exit 1
fi
