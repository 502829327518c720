#!/usr/bin/env bash
# Files written by PyTorch 2.x (scripted and traced torchvision ResNet-18, MobileNetV2, a ViT and
# an nn.TransformerEncoder text model; tests/fixtures/make_torch2_fixtures.py). A LibTorch 2.x
# build loads, measures, quantizes and prunes them; a LibTorch 1.13 build either does the same
# or refuses in one line naming the op it lacks and the fix. Exit 77 (skipped) without the 2.x
# environment (scripts/setup --torch pypi) and its torchvision.
# Usage: test_torch2_files.sh COMPRESS SOURCE_DIR TORCH2_PYTHON
set -u
compress=$1 src=$2 python=$3
if ! "$python" -c 'import torch, torchvision' 2>/dev/null; then
  echo "SKIP: $python cannot import torch and torchvision (scripts/setup --torch pypi)"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" "$src/tests/fixtures/make_torch2_fixtures.py" "$tmp" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; exit 1; }
libtorch=$("$compress" --version | sed -n 's/.*LibTorch \([0-9.]*\).*/\1/p')
passed=0 failed=0
. "$src/tests/report.sh" || exit 1  # report NAME ok|fail DETAIL, with each case's seconds
step() {  # NAME ARGS...: exit 0, or one stderr line and exit 1 (never a crash)
  local name=$1; shift
  "$compress" --threads 2 "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq 0 ]; then report "$name" ok
  elif [ $rc -ge 128 ]; then report "$name" fail "crashed (exit $rc): $(head -3 "$tmp/err")"
  else report "$name" fail "exit $rc: $(head -3 "$tmp/err")"; fi
}
for name in resnet18 mobilenetv2 vit text; do
  for kind in scripted traced; do
    file=$tmp/torch2-$name-$kind.pt
    if [ "${libtorch%%.*}" = 1 ] && ! "$compress" info "$file" >"$tmp/out" 2>"$tmp/err"; then
      # LibTorch 1.x: a refusal is fine when it is one line naming what is missing and the fix.
      if [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -Eq "torch2-$name-$kind\.pt: (uses [a-z]+::[a-z_]+, which LibTorch $libtorch does not have|written in a newer TorchScript file format).*scripts/setup --torch pypi" "$tmp/err"; then
        report "$name $kind: refused by LibTorch $libtorch, naming what it lacks" ok
      else
        report "$name $kind: refused by LibTorch $libtorch, naming what it lacks" fail "$(head -3 "$tmp/err")"
      fi
      continue
    fi
    step "$name $kind: info" info "$file"
    step "$name $kind: measure" measure "$file" --batch 8 --windows 2 --min-window 0.05 --warmup 0.1 --accuracy-limit 256 --no-progress
    step "$name $kind: quantize (static int8)" quantize "$file" -o "$tmp/$name-$kind-int8.pt" --samples 64 --validation 64 --no-measure --no-progress
    step "$name $kind: prune (magnitude 50%)" prune "$file" -o "$tmp/$name-$kind-pruned.pt" --sparsity 0.5 --no-measure --no-progress
  done
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]  # a run that checked nothing fails
