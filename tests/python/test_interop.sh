#!/usr/bin/env bash
# Files written by joulecut load in stock Python PyTorch: channel-pruned models as they are,
# sparse-lowered models once joulecut's op library is loaded. PYTHON is the Python whose torch
# matches the build's LibTorch (Debian's python3-torch for the 1.13 build, the environment of
# scripts/setup --torch pypi for the 2.x build). Exit 77 (skipped) when it has no torch.
# Usage: test_interop.sh COMPRESS OPS_LIBRARY SOURCE_DIR [PYTHON]
set -euo pipefail
compress=$1 ops_library=$2 source=$3 python=${4:-/usr/bin/python3}
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "SKIP: $python cannot import torch (install python3-torch, as scripts/setup does)"
  exit 77
fi
built=$("$compress" --version | sed -n 's/.*LibTorch \([0-9]*\.[0-9]*\).*/\1/p')
python_torch=$("$python" -c 'import torch; print(".".join(torch.__version__.split(".")[:2]))')
[ "$built" = "$python_torch" ] || { echo "FAIL: $python has torch $python_torch, the build LibTorch $built: pass the matching Python"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { "$compress" --threads 2 "$@" --no-measure --no-progress > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }; }
for kind in scripted traced; do
  run prune "$source/tests/fixtures/python-$kind-resnet18-w8.pt" -o "$work/resnet18-$kind-channel.pt" --method channel --ratio 0.5
done
run prune "$source/models/trained/resnet8.pt" -o "$work/resnet8-channel.pt" --method channel --ratio 0.5 --round-to 8
run prune "$source/models/trained/mobilenet.pt" -o "$work/mobilenet-channel.pt" --method channel
run quantize "$source/models/trained/mlp.pt" -o "$work/mlp-dynamic.pt" --dynamic --backend torch
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

# Static int8, calibrated on Fashion-MNIST's training split (so it needs the data set): the torch
# backend's file runs in stock PyTorch, the onednn backend's file once joulecut's op library is
# loaded; Python and C++ predict the same classes on real test images.
data=${JOULECUT_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -e "$data/train-images-idx3-ubyte.gz" ] || [ ! -e "$data/t10k-images-idx3-ubyte.gz" ]; then
  echo "SKIP static int8 checks (the ones above passed): no Fashion-MNIST in $data (install dataset-fashion-mnist, as scripts/setup does)"
  exit 77
fi
for backend in torch onednn; do
  run quantize "$source/models/trained/lenet5.pt" -o "$work/lenet5-int8-$backend.pt" --backend "$backend" --samples 200
done
"$python" - "$work" "$ops_library" "$source/models/trained/lenet5.pt" "$data" <<'PY'
import gzip, json, struct, sys, torch
work, ops, fp32_path, data = sys.argv[1:5]
n = 512

def read_idx(path):
    raw = gzip.open(path).read()
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3])]
    return torch.frombuffer(bytearray(raw[4 + 4 * len(dims):]), dtype=torch.uint8).reshape(dims)

def write_idx(path, code, t):  # plain (not gzipped) IDX, as `compress eval --images/--labels` reads it
    with open(path, "wb") as f:
        f.write(struct.pack(">I", code) + b"".join(struct.pack(">I", d) for d in t.shape) + t.numpy().tobytes())

images = read_idx(f"{data}/t10k-images-idx3-ubyte.gz")[:n].contiguous()
labels = read_idx(f"{data}/t10k-labels-idx1-ubyte.gz")[:n].long()
extra = {"joulecut/meta.json": ""}
model = torch.jit.load(f"{work}/lenet5-int8-torch.pt", _extra_files=extra)  # stock PyTorch, no joulecut
spec = json.loads(extra["joulecut/meta.json"])["dataset"]
x = ((images.float() / 255 - spec["mean"]) / spec["stddev"]).unsqueeze(1)  # as joulecut's data loader does
with torch.no_grad():
    fp32 = torch.jit.load(fp32_path).eval()(x)
    y_torch = model(x)
ops_used = {node.kind() for node in model.inlined_graph.nodes()}
assert {"quantized::conv2d_relu", "quantized::linear_relu", "quantized::linear"} <= ops_used, ops_used
scale = fp32.std().item()

def check(name, y):
    assert y.shape == (n, 10) and y.dtype == torch.float32 and torch.isfinite(y).all(), (name, y.shape, y.dtype)
    accuracy = (y.argmax(1) == labels).float().mean().item()
    fp32_accuracy = (fp32.argmax(1) == labels).float().mean().item()
    agree = (y.argmax(1) == fp32.argmax(1)).float().mean().item()
    assert agree >= 0.95 and accuracy >= fp32_accuracy - 0.02, (name, agree, accuracy, fp32_accuracy)
    print(f"ok {name}: accuracy {accuracy:.2%} (fp32 {fp32_accuracy:.2%}), same class as fp32 on {agree:.1%} of {n}")

check("lenet5-int8-torch (stock PyTorch)", y_torch)
try:
    torch.jit.load(f"{work}/lenet5-int8-onednn.pt")
    raise SystemExit("an onednn int8 model loaded without joulecut's op library")
except RuntimeError as e:
    assert "joulecut" in str(e), e
torch.ops.load_library(ops)
with torch.no_grad():
    y_onednn = torch.jit.load(f"{work}/lenet5-int8-onednn.pt")(x)
check("lenet5-int8-onednn with joulecut's op library", y_onednn)
# Same calibration, different int8 kernels: logits close, classes nearly always the same.
diff = (y_onednn - y_torch).abs()
agree = (y_onednn.argmax(1) == y_torch.argmax(1)).float().mean().item()
assert diff.max().item() < 0.5 * scale and diff.mean().item() < 0.05 * scale and agree >= 0.95, \
    (diff.max().item(), diff.mean().item(), scale, agree)
print(f"ok onednn vs torch backend: max |logit diff| {diff.max().item():.3f}, mean {diff.mean().item():.4f}"
      f" (fp32 logit std {scale:.2f}), same class on {agree:.1%}")
# For the C++ side: the images, and Python's predictions as labels.
write_idx(f"{work}/images.idx3", 0x803, images)
for name, y in (("torch", y_torch), ("onednn", y_onednn)):
    write_idx(f"{work}/python-{name}.idx1", 0x801, y.argmax(1).to(torch.uint8))
PY
for backend in torch onednn; do
  "$compress" --threads 2 eval --json "$work/lenet5-int8-$backend.pt" --images "$work/images.idx3" \
    --labels "$work/python-$backend.idx1" > "$work/eval.json" 2> "$work/log" || { cat "$work/log"; exit 1; }
  "$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["samples"] == 512 and d["correct"] == 512, (d["samples"], d["correct"])' "$work/eval.json"
  echo "ok lenet5-int8-$backend: C++ predicts Python's class on all 512 images"
done
