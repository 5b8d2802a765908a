#!/usr/bin/env bash
# Install Debian's chromium (and a font package so pages render text) for the
# headless browser tests. Idempotent: does nothing when everything is present.
# Needs root (or passwordless sudo) only when something is missing.
#
# The browser tests start chromium as root with:
#   --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
#   --disable-background-networking --disable-component-update --disable-sync
#   --user-data-dir=<fresh temporary directory>
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
PACKAGES=(chromium fonts-liberation)

die() { echo "install-chromium: $*" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [[ -x $CHROMIUM && ${#missing[@]} -eq 0 ]]; then
	echo "install-chromium: $CHROMIUM present ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown')), nothing to do"
	exit 0
fi
if [[ ! -x $CHROMIUM ]]; then
	missing+=(chromium)
fi
# De-duplicate while keeping order.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')

command -v apt-get >/dev/null || die "$CHROMIUM is missing and apt-get is not available; install chromium yourself"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || die "need root to install ${missing[*]} (no sudo found)"
	sudo=(sudo -n)
fi

# Other processes may hold the dpkg lock for a while on a shared machine: wait for it.
apt_opts=(-o DPkg::Lock::Timeout=600)
echo "install-chromium: installing ${missing[*]}"
start=$SECONDS
"${sudo[@]}" apt-get "${apt_opts[@]}" update -q || die "apt-get update failed"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}" ||
	die "apt-get install ${missing[*]} failed"

[[ -x $CHROMIUM ]] || die "$CHROMIUM still missing after installing ${missing[*]}"
echo "install-chromium: installed ${missing[*]} in $((SECONDS - start))s: $("$CHROMIUM" --version 2>/dev/null || echo 'version unknown')"
