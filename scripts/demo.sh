#!/usr/bin/env bash
# The project's first set-up command: installs the system packages (SoftHSM,
# p11-kit, OpenSC, OpenSSL, gcc; or prints the apt-get command when not root),
# builds hsmctl into bin/ and runs "hsmctl demo". Without a configuration the
# demo creates a local SoftHSM token in .dev/ (git-ignored) and reuses it on
# later runs; "rm -rf .dev" starts over. Extra arguments go to hsmctl.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "demo.sh: Go is not installed (https://go.dev/doc/install; this module needs Go 1.26)" >&2
	exit 1
fi

scripts/deps.sh
mkdir -p bin
go build -o bin/hsmctl ./cmd/hsmctl
exec bin/hsmctl "$@" demo
