#!/usr/bin/env bash
# No product function over 80 lines (tests/lint/funclen.sh).
exec bash "$(dirname "$0")/../lint/funclen.sh"
