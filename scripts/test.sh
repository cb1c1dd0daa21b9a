#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit + reference parity).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$BUILD"
ctest --output-on-failure -j2 --timeout 900 "$@"
