#!/usr/bin/env bash
# The README's test command: formatting, vet, staticcheck, then every test
# with the race detector. Long soak tests are behind `-tags soak` (see docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...
go tool staticcheck ./...
go test -race -timeout 15m ./...
