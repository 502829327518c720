#!/usr/bin/env bash
# Installs joulecut into a temporary prefix and builds examples/consumer (and the deployment
# example) against it with find_package(joulecut), as a deployment pipeline would, then runs them.
# Usage: consumer_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$src/examples/consumer" -B "$prefix/consumer-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" -j 2
"$prefix/consumer-build/consumer" "$prefix/share/joulecut/models/lenet5.pt"

# The deployment pipeline: static int8 with calibration, measured before and after, saved.
out=$("$prefix/consumer-build/deploy_pipeline" "$prefix/share/joulecut/models/lenet5.pt" "$prefix/lenet5-int8.pt" \
      "quantize-int8<samples=256>")
echo "$out"
grep -q "^quantize-static<samples=256>: 5 of 5 Conv2d/Linear layer" <<<"$out" || { echo "FAIL: no int8 report"; exit 1; }
grep -Eq "^  before .* mJ/inference (measured|modeled) " <<<"$out" || { echo "FAIL: no energy window before"; exit 1; }
grep -Eq "^  after .* mJ/inference (measured|modeled) " <<<"$out" || { echo "FAIL: no energy window after"; exit 1; }
[ -s "$prefix/lenet5-int8.pt" ] || { echo "FAIL: no output model"; exit 1; }
# Bad input: one line naming the problem, a non-zero exit, nothing written.
if "$prefix/consumer-build/deploy_pipeline" "$prefix/share/joulecut/models/lenet5.pt" "$prefix/x.pt" "prune<spars=1>" 2>"$prefix/err"; then
  echo "FAIL: a bad pipeline was accepted"; exit 1
fi
grep -q "unknown option 'spars'" "$prefix/err" && [ ! -e "$prefix/x.pt" ] || { echo "FAIL: $(cat "$prefix/err")"; exit 1; }
echo "consumer_test: passed"
