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
# joulecut's errors name the library's options; the example shows its own flags for them.
if "$prefix/consumer-build/deploy_pipeline" "$prefix/share/joulecut/models/lenet5.pt" "$prefix/x.pt" "fold-bn" \
    --input-shape 1,x,28 2>"$prefix/err"; then
  echo "FAIL: a bad --input-shape was accepted"; exit 1
fi
grep -q "deploy_pipeline: --input-shape '1,x,28': 'x' is not an integer" "$prefix/err" && ! grep -q "DataSource::" "$prefix/err" \
  || { echo "FAIL: the error does not name the example's flag: $(cat "$prefix/err")"; exit 1; }

# Any model the CLI takes: a traced two-input sentence encoder (forward(input_ids, attention_mask),
# a tuple out) with a folder of train.npz and test.npz, made by Debian's Python PyTorch.
if /usr/bin/python3 -c "import torch, numpy" 2>/dev/null; then
  mkdir -p "$prefix/pairs"
  /usr/bin/python3 - "$prefix" <<'PY'
import sys, numpy as np, torch
from torch import nn
out = sys.argv[1]
torch.manual_seed(0)
class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(1000, 32)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 1)
        self.classifier = nn.Linear(32, 3)
    def forward(self, input_ids, attention_mask):
        x = self.encoder(self.embedding(input_ids), src_key_padding_mask=attention_mask == 0)
        return self.classifier(x[:, 0]), x[:, 0]
ids, mask = torch.randint(0, 1000, (2, 16)), torch.ones(2, 16, dtype=torch.long)
torch.jit.trace(Encoder().eval(), (ids, mask), check_trace=False).save(f"{out}/encoder.pt")
rng = np.random.default_rng(0)
for split, n in (("train", 96), ("test", 32)):
    np.savez(f"{out}/pairs/{split}.npz", input_ids=rng.integers(0, 1000, (n, 16)),
             attention_mask=np.ones((n, 16), dtype=np.int64))
PY
  out=$("$prefix/consumer-build/deploy_pipeline" "$prefix/encoder.pt" "$prefix/encoder-int8.pt" \
        "quantize-int8<samples=64,per-layer=all>" "$prefix/pairs" --model-output 0 2>&1) \
    || { echo "FAIL: the example on a two-input encoder: $out"; exit 1; }
  echo "$out"
  grep -q "^quantize-static<samples=64>: .* Conv2d/Linear layer" <<<"$out" || { echo "FAIL: no int8 report for the encoder"; exit 1; }
  grep -Eq "^  after .* mJ/inference (measured|modeled) " <<<"$out" || { echo "FAIL: the encoder was not measured"; exit 1; }
  [ -s "$prefix/encoder-int8.pt" ] || { echo "FAIL: no int8 encoder written"; exit 1; }
  # One file for both splits: calibrated on its first three quarters, judged on the last.
  out=$("$prefix/consumer-build/deploy_pipeline" "$prefix/encoder.pt" "$prefix/e.pt" "quantize-int8<per-layer=all>" \
        "$prefix/pairs/test.npz" --model-output 0 2>&1) || { echo "FAIL: one file was not split: $out"; exit 1; }
  grep -q "the fidelity guard on the last" <<<"$out" && [ -s "$prefix/e.pt" ] \
    || { echo "FAIL: one file: no held-out split said, or no file written: $out"; exit 1; }
  "$prefix/consumer-build/deploy_pipeline" "$prefix/encoder.pt" "$prefix/e.pt" "quantize-int8<samples=64,per-layer=all>" \
    "$prefix/pairs/test.npz" --train-data "$prefix/pairs/train.npz" --model-output 0 >/dev/null \
    || { echo "FAIL: --train-data was not taken"; exit 1; }
else
  echo "consumer_test: no Python PyTorch here, the two-input encoder case is not run"
fi
echo "consumer_test: passed"
