#!/usr/bin/env bash
# Runs the README's "Bring your own model" commands exactly as written (the first ```sh block
# of that section), in a scratch directory holding links to the repository's tests/ and the
# built compress, so the section cannot rot. Skipped (77) without python3-torchvision.
# Usage: readme_byom_test.sh SOURCE_DIR COMPRESS
set -euo pipefail
src=$1 compress=$2
/usr/bin/python3 -c "import torchvision, numpy, PIL" 2>/dev/null || { echo "SKIPPED: no python3-torchvision"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^## Bring your own model/ {in_section = 1} in_section && /^```sh/ {grab = 1; next} grab && /^```/ {exit} grab {print}' \
  "$src/README.md" >"$tmp/commands.sh"
[ "$(wc -l <"$tmp/commands.sh")" -gt 10 ] || { echo "the README section's commands were not found"; exit 1; }
mkdir -p "$tmp/build/compress"
ln -s "$compress" "$tmp/build/compress/compress"
ln -s "$src/tests" "$tmp/tests"
cd "$tmp"
bash -euo pipefail -x commands.sh >log.txt 2>&1 || { tail -40 log.txt; echo "FAILED: a README command failed (above)"; exit 1; }
echo "README 'Bring your own model': $(grep -c '^+ build/compress/compress ' log.txt) compress commands ran"
