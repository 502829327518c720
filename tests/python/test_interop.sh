#!/usr/bin/env bash
# Files written by joulecut load in stock Python PyTorch: channel-pruned models as they are,
# sparse-lowered models once joulecut's op library is loaded. Exit 77 (skipped) when Debian's
# python3-torch is missing; scripts/setup installs it.
set -euo pipefail
compress=$1 ops_library=$2 source=$3
python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "SKIP: $python cannot import torch (install python3-torch, as scripts/setup does)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { "$compress" --threads 2 "$@" --no-measure --no-progress > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }; }
for kind in scripted traced; do
  run prune "$source/tests/fixtures/python-$kind-resnet18-w8.pt" -o "$work/resnet18-$kind-channel.pt" --method channel --ratio 0.5
done
run prune "$source/models/trained/resnet8.pt" -o "$work/resnet8-channel.pt" --method channel --ratio 0.5 --round-to 8
run prune "$source/models/trained/mobilenet.pt" -o "$work/mobilenet-channel.pt" --method channel
"$compress" --threads 2 quantize "$source/models/trained/mlp.pt" -o "$work/mlp-dynamic.pt" --dynamic --no-measure > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
run prune "$source/models/trained/mlp.pt" -o "$work/mlp-sparse.pt" --sparsity 0.9 --first-last --sparse-runtime --min-speedup 1e-6
"$python" - "$work" "$ops_library" <<'PY'
import sys, torch
work, ops = sys.argv[1], sys.argv[2]
x = torch.randn(4, 1, 28, 28)
for name in ["resnet18-scripted-channel", "resnet18-traced-channel", "resnet8-channel", "mobilenet-channel"]:
    m = torch.jit.load(f"{work}/{name}.pt")
    y = m(x)
    assert y.shape == (4, 10) and torch.isfinite(y).all(), name
    m.train()
    m(x).sum().backward()  # still trainable in Python
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad), name
    print(f"ok {name}: {sum(p.numel() for p in m.parameters())} parameters")
m = torch.jit.load(f"{work}/mlp-dynamic.pt")  # LibTorch's own quantized ops: no joulecut library
assert m(x).shape == (4, 10)
print("ok mlp-dynamic (int8, stock PyTorch)")
try:
    torch.jit.load(f"{work}/mlp-sparse.pt")
    raise SystemExit("a sparse model loaded without joulecut's op library")
except RuntimeError as e:
    assert "joulecut" in str(e), e
torch.ops.load_library(ops)
m = torch.jit.load(f"{work}/mlp-sparse.pt")
assert m(x).shape == (4, 10)
print("ok mlp-sparse with", ops)
PY
