#!/usr/bin/env bash
# The include graph follows the layering written in tests/lint/layering.sh.
exec bash "$(dirname "$0")/../lint/layering.sh"
