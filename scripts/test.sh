#!/usr/bin/env bash
# The project's test command: system dependencies, go vet, the race-enabled
# tests (extra arguments are passed to go test), and one iteration of every
# benchmark so that benchmarks keep compiling and running.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
go vet ./...
go test -race -count=1 "$@" ./...
go test -run '^$' -bench . -benchtime 1x ./...
