#!/usr/bin/env bash
# Installs joulecut into a temporary prefix and builds examples/consumer against it with
# find_package(joulecut), as a deployment pipeline would, then runs it.
# Usage: consumer_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$src/examples/consumer" -B "$prefix/consumer-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" -j 2
"$prefix/consumer-build/consumer" "$prefix/share/joulecut/models/lenet5.pt"
