#!/usr/bin/env bash
# Ensures the system packages the tests need are installed (Debian/Ubuntu).
# Quiet and idempotent when everything is present. Installs missing packages
# when run as root; otherwise prints the command to run and exits 1.
set -euo pipefail

packages=(softhsm2 p11-kit p11-kit-modules opensc openssl gcc)

installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
	# Not a Debian system: check the files the tests use and let the user install them.
	missing=0
	for bin in softhsm2-util p11-kit pkcs11-tool openssl gcc; do
		if ! command -v "$bin" >/dev/null 2>&1; then
			echo "deps.sh: missing $bin" >&2
			missing=1
		fi
	done
	if [[ $missing -ne 0 ]]; then
		echo "deps.sh: install SoftHSM 2, p11-kit (with p11-kit-client.so), OpenSC, OpenSSL and gcc" >&2
		exit 1
	fi
	exit 0
fi

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
	echo "deps.sh: missing packages: ${missing[*]}" >&2
	echo "run: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
