#!/usr/bin/env bash
# Models real users bring, made by Python PyTorch (torchvision ResNet-18 scripted at 3x32x32,
# MobileNetV2 traced at 3x224x224, a token-input transformer, a two-input encoder returning a
# tuple), through the input spec: info, measure, compare and prune on synthetic input, and the
# refusals. Skipped (exit 77) without Python's torch and torchvision.
# Usage: test_any_model.sh COMPRESS SOURCE_DIR PYTHON
set -u
compress=$1 src=$2 python=${3:-/usr/bin/python3}
"$python" -c "import torch, torchvision" 2>/dev/null || { echo "SKIPPED: $python has no torch/torchvision"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" "$src/tests/fixtures/make_input_fixtures.py" "$tmp" 2>/dev/null || { echo "fixture script failed"; exit 1; }
cd "$tmp" || exit 1
passed=0 failed=0
. "$src/tests/report.sh" || exit 1  # report NAME ok|fail DETAIL, with each case's seconds
expect_error() {
  local name=$1 regex=$2; shift 2
  "$compress" "$@" >out 2>err
  local rc=$? lines
  lines=$(wc -l <err)
  if [ $rc -eq 0 ]; then report "$name" fail "exit 0";
  elif [ $rc -ge 128 ]; then report "$name" fail "crashed (exit $rc): $(head -3 err)";
  elif [ "$lines" -ne 1 ]; then report "$name" fail "stderr has $lines lines: $(head -5 err)";
  elif ! grep -Eq -- "$regex" err; then report "$name" fail "stderr '$(cat err)' does not match '$regex'";
  else report "$name" ok; fi
}
expect_ok() {
  local name=$1 regex=$2; shift 2
  "$compress" "$@" >out 2>err
  local rc=$?
  if [ $rc -ne 0 ]; then report "$name" fail "exit $rc: $(head -3 err)";
  elif [ -n "$regex" ] && ! grep -Eq -- "$regex" out; then report "$name" fail "stdout does not match '$regex': $(head -8 out)";
  else report "$name" ok; fi
}
tokens=(--input-shape 64 --input-dtype int64 --input-range 0,1000)
pair=(--input-shape "64;64" --input-dtype int64 --input-range "0,1000;0,2")
quick=(--batch 2 --windows 2 --no-progress)

expect_error "info: a 3-channel model on the default input says how to describe it" \
  "resnet18-cifar-scripted\.pt: model fails on an input of shape \[1, 1, 28, 28\].*describe its input with --input-shape" \
  info resnet18-cifar-scripted.pt
# torchvision ResNet-18: 1.82 GMACs at 224x224, so (32/224)^2 of it at 32x32.
expect_ok "info: ResNet-18 (scripted) at 3x32x32, from the flags alone" "MACs +37\.0[0-9]M per inference" \
  info resnet18-cifar-scripted.pt --input-shape 3,32,32
expect_ok "info: MobileNetV2 (traced) at 3x224x224" "MACs +(299|30[0-9])\.[0-9]+M per inference" \
  info mobilenet_v2-traced.pt --input-shape 3,224,224
expect_ok "info: token input, int64 with its range" "^input +\[64\] int64 in \[0,1000\) \(from the flags\)" \
  info text-classifier.pt "${tokens[@]}"
expect_ok "info --json: the spec" '"dtype": "int64"' info text-classifier.pt "${tokens[@]}" --json
expect_ok "info: two inputs" "^input +\[64\] int64 in \[0,1000\), \[64\] int64 in \[0,2\)" info two-input-encoder.pt "${pair[@]}"
expect_ok "measure: token model on synthetic input, accuracy n/a" "text-classifier .*n/a \(no data\)" \
  measure text-classifier.pt "${tokens[@]}" "${quick[@]}"
grep -q "input: synthetic input (no data given)" out && grep -q "input_spec: \[64\] int64 in \[0,1000) (from the flags)" out \
  && report "measure: the manifest says synthetic input and the spec" ok || report "measure: the manifest says synthetic input and the spec" fail "$(grep -E 'input' out)"
expect_ok "measure: two-input encoder with a tuple output" "two-input-encoder +2 " measure two-input-encoder.pt "${pair[@]}" "${quick[@]}"
expect_ok "prune: channel pruning on synthetic input (no data needed)" "wrote r18-half\.pt" \
  prune resnet18-cifar-scripted.pt --input-shape 3,32,32 --method channel --ratio 0.5 -o r18-half.pt "${quick[@]}"
expect_ok "info: the output records its input spec" "^input +\[3,32,32\] float32 \(from the model metadata\)" info r18-half.pt
expect_ok "compare: ResNet-18 against its pruned copy, side by side" "r18-half +2 .* [0-9.]+x" \
  compare resnet18-cifar-scripted.pt r18-half.pt --input-shape 3,32,32 "${quick[@]}"
expect_error "quantize: calibration on synthetic input is refused" \
  "no data for its input \[3,32,32\] float32: calibration and training need real data" \
  quantize resnet18-cifar-scripted.pt --input-shape 3,32,32 -o q.pt --no-progress
[ ! -e q.pt ] && report "quantize: nothing written" ok || report "quantize: nothing written" fail "q.pt exists"
expect_error "eval: accuracy without data is refused" "accuracy needs real data" eval text-classifier.pt "${tokens[@]}"
expect_error "bad: --input-range on a float input" "input 1 is float32; a range applies to integer inputs" \
  info resnet18-cifar-scripted.pt --input-shape 3,32,32 --input-range 0,10
expect_error "bad: unknown dtype" "--input-dtype 'int7': unsupported; choose one of float32" \
  info text-classifier.pt --input-shape 64 --input-dtype int7
expect_error "bad: integer input without a range" "synthetic values need its range, e.g. --input-range" \
  info text-classifier.pt --input-shape 64 --input-dtype int64
expect_error "bad: a spec that does not fit the model names what it said" \
  "text-classifier\.pt: model does not accept input \[2, 3, 32, 32\] Float" \
  measure text-classifier.pt --input-shape 3,32,32 "${quick[@]}"
expect_error "bad: more dtypes than arguments" "--input-dtype 'int64;int64;int64': 3 values for 2 input argument" \
  info two-input-encoder.pt --input-shape "64;64" --input-dtype "int64;int64;int64"
expect_error "bad: --input-dtype without --input-shape" "describe the arguments of --input-shape: give it too" \
  info text-classifier.pt --input-dtype int64
expect_error "bad: a zero dimension" "dimension 0 must be positive" info resnet18-cifar-scripted.pt --input-shape 3,0,32
# ---- data sets beyond IDX: NumPy arrays, .npz named after forward()'s arguments, CIFAR batches
"$python" - <<'PY' || report "make the data fixtures" fail "python failed"
import numpy as np
rng = np.random.default_rng(0)
np.savez("tokens.npz", tokens=rng.integers(0, 1000, (200, 64)), labels=rng.integers(0, 4, 200))
np.savez("tokens-nolabels.npz", tokens=rng.integers(0, 1000, (100, 64)))
# In file order, attention_mask comes first: the loader arranges the arrays as forward() names them.
np.savez("pair.npz", attention_mask=np.ones((100, 64), dtype=np.int64), input_ids=rng.integers(0, 1000, (100, 64)),
         labels=rng.integers(0, 3, 100))
np.savez_compressed("pair-nolabels.npz", attention_mask=np.ones((100, 64), dtype=np.int64),
                    input_ids=rng.integers(0, 1000, (100, 64)))
np.savez("pair-missing.npz", input_ids=rng.integers(0, 1000, (10, 64)))
np.savez("pair-extra.npz", input_ids=rng.integers(0, 1000, (10, 64)), attention_mask=np.ones((10, 64), dtype=np.int64),
         token_type_ids=np.zeros((10, 64), dtype=np.int64))
np.save("images.npy", rng.standard_normal((100, 3, 32, 32)).astype(np.float32))
np.save("noise224.npy", rng.standard_normal((16, 3, 224, 224)).astype(np.float32))
np.save("labels.npy", rng.integers(0, 10, 100))
np.save("labels-99.npy", rng.integers(0, 10, 99))
np.save("labels-21.npy", np.arange(100) % 21)
np.save("complex.npy", np.zeros((4, 3), dtype=np.complex128))
open("truncated.npy", "wb").write(open("images.npy", "rb").read()[:5000])
import os
os.makedirs("cifar", exist_ok=True)
for name, n in (("data_batch_1.bin", 300), ("test_batch.bin", 100)):
    rec = np.zeros((n, 3073), dtype=np.uint8)
    rec[:, 0] = rng.integers(0, 10, n)
    rec[:, 1:] = rng.integers(0, 256, (n, 3072))
    rec.tofile(f"cifar/{name}")
open("text.npy", "w").write("not an array")
PY
expect_ok "eval: token ids from an .npz" "^accuracy .*of 200 correct" eval text-classifier.pt --data tokens.npz
expect_ok "eval: two inputs arranged by forward()'s names, --model-output 0" "^accuracy .*of 100 correct" \
  eval two-input-encoder.pt --data pair.npz --model-output 0
expect_error "eval: a tuple output needs --model-output" "two-input-encoder\.pt: model returns Tuple, expected one tensor of class scores \(or choose one with --model-output\)" \
  eval two-input-encoder.pt --data pair.npz
expect_error "eval: --model-output naming no output" "--model-output 5 names no output: the model returns a tuple of 2" \
  eval two-input-encoder.pt --data pair.npz --model-output 5
expect_ok "eval: images from .npy, labels from another .npy" "^accuracy .*of 100 correct" \
  eval resnet18-cifar-scripted.pt --data images.npy --labels labels.npy
expect_ok "eval: a CIFAR-10 batch file" "^data +cifar/test_batch\.bin test \(100 images\)" eval resnet18-cifar-scripted.pt --data cifar/test_batch.bin
# Random weights give near-tie class scores that any rounding flips: the fidelity guard judges cosine here.
expect_ok "quantize: ResNet-18 calibrated on a CIFAR-10 directory (train split)" "quantize-static<samples=100,guard-metric=cosine>: 21 of 21 Conv2d/Linear" \
  quantize resnet18-cifar-scripted.pt --data cifar -o r18-int8.pt --samples 100 --guard-metric cosine --per-layer all --no-measure --no-progress
expect_ok "prune: a two-input encoder on unlabelled data" "wrote enc-5\\.pt" \
  prune two-input-encoder.pt --data pair-nolabels.npz --method magnitude --sparsity 0.05 -o enc-5.pt --no-measure --no-progress
expect_ok "compare: unlabelled data gives fidelity, label-free" "^enc-5 +agreement [0-9.]+% .*cosine 0\\.9[0-9]+" \
  compare two-input-encoder.pt enc-5.pt --data pair-nolabels.npz --model-output 0 --batch 2 --windows 2 --no-progress
"$compress" compare two-input-encoder.pt two-input-encoder.pt --data pair-nolabels.npz --model-output 0 --batch 2 --windows 2 --no-progress >out 2>err
grep -Eq "two-input-encoder#2 +agreement 100\.00% .*cosine 1\.0000 .*SNR inf dB, max \|error\| 0 " out \
  && report "compare: a model against itself: agreement 100%, SNR inf" ok || report "compare: a model against itself: agreement 100%, SNR inf" fail "$(grep -A2 fidelity out) $(cat err)"
grep -q "n/a (no labels)" out && report "compare: accuracy n/a without labels" ok || report "compare: accuracy n/a without labels" fail "$(head -6 out)"
expect_error "bad: an .npz missing an argument" "pair-missing\.npz: no array 'attention_mask' for two-input-encoder\.pt's forward\(input_ids, attention_mask\)" \
  eval two-input-encoder.pt --data pair-missing.npz --model-output 0
expect_error "bad: an .npz with an unknown array" "pair-extra\.npz: array 'token_type_ids' is no argument of two-input-encoder\.pt's forward" \
  eval two-input-encoder.pt --data pair-extra.npz --model-output 0
expect_error "bad: inputs and labels of different counts" "labels-99\.npy: 99 labels for 100 inputs" \
  eval resnet18-cifar-scripted.pt --data images.npy --labels labels-99.npy
expect_error "bad: a label out of the model's range" "model gives 10 class scores but images\.npy has 21 classes \(its largest label is 20\)" \
  eval resnet18-cifar-scripted.pt --data images.npy --labels labels-21.npy
expect_error "bad: a truncated .npy" "truncated\.npy: truncated \.npy file \([0-9]+ data bytes, the shape needs 1228800\)" \
  eval resnet18-cifar-scripted.pt --data truncated.npy
expect_error "bad: an unsupported dtype" "complex\.npy: \.npy dtype '<c16' is not supported" eval resnet18-cifar-scripted.pt --data complex.npy
expect_error "bad: a file that is no data set" "text\.npy: unknown data file: expected a NumPy \.npy or \.npz, a CIFAR-10/100 binary batch" \
  eval resnet18-cifar-scripted.pt --data text.npy
expect_ok "quantize: one data file, calibrated on its first three quarters, judged on the last" \
  "^  input: .*tokens\.npz.*: the last 50 of 200 samples \(held out from training\)" \
  quantize text-classifier.pt --data tokens.npz -o tq.pt --batch 8 --windows 2 --no-progress
expect_error "bad: --metric unknown" "--metric 'f1': choose top1" measure text-classifier.pt --data tokens.npz --metric f1 "${quick[@]}"
# ---- image folders: decoded and preprocessed as torchvision does, pixel for pixel
"$python" "$src/tests/fixtures/make_image_folder.py" img 2>/dev/null || report "make the image folder" fail "python failed"
norm=(--resize 40 --crop 32 --mean 0.5,0.4,0.3 --std 0.2,0.25,0.3)
expect_ok "data: an image folder with train and test splits" "^data +img/test test \(10 images, 2 classes\)" data img "${norm[@]}" --save-npy got-rgb.npy
mkdir -p valonly && cp -r img/test valonly/val
expect_ok "data: a folder holding only a val/ split is that split" "^data +valonly/val test \(10 images, 2 classes\)" data valonly "${norm[@]}"
expect_ok "data: gray" "input 1 +\[1, 32, 32\]" data img --resize 40 --crop 32 --mean 0.5 --std 0.2 --color gray --save-npy got-gray.npy
"$python" -c "
import numpy as np
for k in ('rgb', 'gray'):
    d = np.abs(np.load(f'img/expected-{k}.npy') - np.load(f'got-{k}.npy')).max()
    assert d == 0, f'{k}: max difference {d}'
" && report "data: PNG/JPEG, RGB/RGBA/gray, resize + crop + normalize equal torchvision's, pixel for pixel" ok \
  || report "data: PNG/JPEG, RGB/RGBA/gray, resize + crop + normalize equal torchvision's, pixel for pixel" fail "differs"
expect_ok "eval: ResNet-18 on an image folder" "^accuracy .*of 10 correct" eval resnet18-cifar-scripted.pt --data img "${norm[@]}"
held=$(grep -E '^accuracy' out)
expect_ok "eval: the same folder streamed (--cache-mb 0) gives the same accuracy" "^accuracy" \
  eval resnet18-cifar-scripted.pt --data img "${norm[@]}" --cache-mb 0 --batch 3
[ "$(grep -E '^accuracy' out)" = "$held" ] && report "eval: streamed equals held" ok || report "eval: streamed equals held" fail "$(grep -E '^accuracy' out) vs $held"
expect_ok "quantize: MobileNetV2 (traced), every layer int8" "quantize-static<samples=16>: 53 of 53 Conv2d/Linear" \
  quantize mobilenet_v2-traced.pt -o mb-int8.pt --data noise224.npy --train-data noise224.npy --samples 16 --per-layer all --no-measure --no-progress
expect_ok "prune: MobileNetV2 (traced), 50% of channels" "prune-channel: [0-9]+ of 9138 channels kept" \
  prune mobilenet_v2-traced.pt -o mb-half.pt --method channel --ratio 0.5 --input-shape 3,224,224 --no-measure --no-progress
expect_ok "measure: MobileNetV2 (traced) on synthetic 3x224x224 input" "^mobilenet_v2-traced +1 " \
  measure mobilenet_v2-traced.pt --input-shape 3,224,224 --batch 1 --windows 2 --no-progress
expect_ok "distill: MobileNetV2 teaches its pruned copy without labels (alpha 1)" "wrote mb-kd\\.pt .*no labels" \
  distill --teacher mobilenet_v2-traced.pt --student mb-half.pt -o mb-kd.pt --epochs 1 --batch 8 --alpha 1 --data noise224.npy --train-data noise224.npy --no-measure --no-progress
expect_ok "run: MobileNetV2 pruned on synthetic input, each stage measured (accuracy n/a)" "^1 prune-channel +n/a \\(no data\\)" \
  run mobilenet_v2-traced.pt --passes "prune-channel<ratio=0.5>" --input-shape 3,224,224 -o mb-run "${quick[@]}"
expect_ok "quantize: the two-input encoder, calibrated on an .npz of both inputs" "quantize-static<samples=50,guard-metric=cosine>: 10 of 10" \
  quantize two-input-encoder.pt -o enc-int8.pt --data pair.npz --train-data pair.npz --model-output 0 --samples 50 --guard-metric cosine --per-layer all --no-measure --no-progress
expect_ok "quantize: calibrated on an image folder's train split" "quantize-static<samples=10>: 21 of 21" \
  quantize resnet18-cifar-scripted.pt --data img "${norm[@]}" -o r18-img.pt --samples 10 --per-layer all --no-measure --no-progress
expect_ok "prune: a model without metadata, unmeasured, on an image folder" "wrote r18-img-half\\.pt" \
  prune resnet18-cifar-scripted.pt --data img "${norm[@]}" --method channel --ratio 0.5 -o r18-img-half.pt --no-measure --no-progress
expect_ok "quantize: its output records the folder's spec (3 channels, its normalization): no --color or --mean needed" \
  "quantize-static<.*>: [0-9]+ of [0-9]+ Conv2d/Linear" quantize r18-img-half.pt --data img --resize 40 --crop 32 -o r18-img-half-int8.pt --samples 10 --no-measure --no-progress
expect_ok "distill: ResNet-18 teaches its channel-pruned copy on the image folder" "wrote r18-kd\\.pt" \
  distill --teacher resnet18-cifar-scripted.pt --student r18-half.pt -o r18-kd.pt --epochs 1 --batch 4 --data img "${norm[@]}" --no-measure --no-progress
expect_ok "distill: the same on the folder streamed (--cache-mb 0): random batches decoded on demand" "wrote r18-kd-streamed\\.pt" \
  distill --teacher resnet18-cifar-scripted.pt --student r18-half.pt -o r18-kd-streamed.pt --epochs 1 --batch 4 --data img "${norm[@]}" --cache-mb 0 --no-measure --no-progress
"$python" -c "
import torch, sys
a = torch.jit.load('r18-kd.pt').state_dict(); b = torch.jit.load('r18-kd-streamed.pt').state_dict()
assert all(torch.equal(a[k], b[k]) for k in a), 'weights differ'
" && report "distill: streamed and held training give the same weights" ok || report "distill: streamed and held training give the same weights" fail "differ"
expect_ok "prune: the token transformer, 50% magnitude" "wrote text-sparse\\.pt" \
  prune text-classifier.pt -o text-sparse.pt --method magnitude --sparsity 0.5 --data tokens.npz --no-measure --no-progress
expect_ok "distill: the token transformer teaches its sparse copy" "wrote text-kd\\.pt" \
  distill --teacher text-classifier.pt --student text-sparse.pt -o text-kd.pt --epochs 1 --data tokens.npz --train-data tokens.npz --no-measure --no-progress
expect_ok "quantize: the token transformer, every Linear int8 (attention projections included)" \
  "quantize-static<.*>: 9 of 9 Conv2d/Linear layer\(s\) int8" \
  quantize text-classifier.pt -o text-int8.pt --data tokens.npz --train-data tokens.npz --samples 50 --per-layer all --no-measure --no-progress
expect_ok "prune: the token transformer, half of its heads and MLP neurons" \
  "prune-heads<neuron-ratio=0\.5>: 4 of 8 attention heads kept in 2 attention\(s\), 128 of 256 MLP neurons" \
  prune text-classifier.pt -o text-heads.pt --method heads --ratio 0.5 --neuron-ratio 0.5 --no-measure --no-progress
"$python" -c "
import torch
m = torch.jit.load('text-heads.pt')
y = m(torch.randint(0, 1000, (2, 64)))
assert tuple(y.shape) == (2, 4), y.shape
" && report "prune: the head-pruned transformer runs in Python PyTorch" ok \
  || report "prune: the head-pruned transformer runs in Python PyTorch" fail "see above"
expect_error "prune: a head ratio that leaves no head is refused" "leaves encoder\.layers\.0\.self_attn with no head \(it has 4\)" \
  prune text-classifier.pt -o t.pt --method heads --ratio 0.9 --no-measure --no-progress
expect_ok "run: prune, fold, quantize ResNet-18 on the image folder, each stage measured" "3 quantize-static<samples=10>" \
  run resnet18-cifar-scripted.pt -o r18-stages --passes "prune-channel<ratio=0.5>,fold-batchnorm,quantize-static<samples=10>" --data img "${norm[@]}" "${quick[@]}"
expect_ok "distill: without labels, from the teacher alone (alpha 1)" "wrote enc-kd\\.pt .*no labels, no accuracy" \
  distill --teacher text-classifier.pt --student text-sparse.pt -o enc-kd.pt --epochs 1 --alpha 1 --data tokens-nolabels.npz --train-data tokens-nolabels.npz --windows 2 --measure-batch 2 --no-progress
grep -Eq "^enc-kd +agreement [0-9.]+% .*cosine" out && report "distill: without labels, measured by fidelity to the teacher" ok \
  || report "distill: without labels, measured by fidelity to the teacher" fail "$(grep -A3 fidelity out)"
expect_error "distill: without labels, alpha < 1 is refused" "no labels, so distillation learns from the teacher alone: set alpha to 1" \
  distill --teacher text-classifier.pt --student text-sparse.pt -o e.pt --epochs 1 --data tokens-nolabels.npz --train-data tokens-nolabels.npz --no-measure --no-progress
expect_ok "quantize: without labels, the budget is on agreement with fp32" "note: top-1 agreement with fp32 budget: fp32 100\\.00% on the last 100 training images" \
  quantize text-classifier.pt -o tq.pt --data tokens-nolabels.npz --train-data tokens-nolabels.npz --max-accuracy-drop 1 --samples 50 --no-measure --no-progress
expect_ok "quantize: --metric agreement with labels" "note: top-1 agreement with fp32 budget" \
  quantize text-classifier.pt -o tq2.pt --data tokens.npz --train-data tokens.npz --max-accuracy-drop 1 --metric agreement --samples 50 --validation 100 --no-measure --no-progress
expect_ok "prune: the two-input encoder, 50% magnitude" "wrote enc-sparse\\.pt" \
  prune two-input-encoder.pt -o enc-sparse.pt --method magnitude --sparsity 0.5 --data pair.npz --no-measure --no-progress
expect_ok "distill: the two-input encoder teaches its sparse copy (tuple output, --model-output 0)" "wrote enc-kd2\\.pt .*test accuracy" \
  distill --teacher two-input-encoder.pt --student enc-sparse.pt -o enc-kd2.pt --epochs 1 --data pair.npz --train-data pair.npz --model-output 0 --no-measure --no-progress
expect_ok "run: the two-input encoder through a pipeline, each stage measured" "^1 prune-magnitude +[0-9.]+ \\[" \
  run two-input-encoder.pt --passes "prune-magnitude<sparsity=0.5>" --data pair.npz --model-output 0 -o enc-run "${quick[@]}"
expect_ok "prune: fine-tuning the two-input encoder on its labels" "wrote enc-ft\\.pt" \
  prune two-input-encoder.pt -o enc-ft.pt --method magnitude --sparsity 0.5 --finetune-epochs 1 --data pair.npz --train-data pair.npz --model-output 0 --no-measure --no-progress
# Sweeps and searches without labels: fidelity in the ledger and the table, and as the budget.
cat >search.yaml <<'YAML'
model: text-classifier.pt
data: tokens-nolabels.npz
test-data: tokens-nolabels.npz
passes: "prune-magnitude<sparsity=0.5>"
measure: {batches: [4], windows: 2, warmup-seconds: 0.1}
search: "prune-magnitude.sparsity=0.2,0.9"
YAML
expect_ok "run: without labels, the stage table shows agreement with the baseline" "agreement % \\[95% CI\\]" \
  run search.yaml -o run-nolabels --no-progress
if grep -Eq "^baseline +100\.00 \[100\.00, 100\.00\]" out && grep -rq '"agreement"' run-nolabels; then
  report "run: the baseline agrees with itself; the outputs hold agreement" ok
else
  report "run: the baseline agrees with itself; the outputs hold agreement" fail "$(head -12 out)"
fi
expect_ok "search: without labels, the budget is on agreement" "(best|no configuration within 100 pt)" \
  search search.yaml --max-accuracy-drop 100 -o search-nolabels --no-progress
if grep -q "agreement, for data without labels" out; then report "search: says what its budget is on" ok
else report "search: says what its budget is on" fail "$(head -5 out)"; fi
expect_error "search: --metric unknown" "--metric 'f1': a search's budget is on top1" search search.yaml --metric f1 -o s2 --no-progress
expect_error "distill: feature hints on a two-input model are refused with the reason" "feature hints need a model of one input; this data has 2" \
  distill --teacher two-input-encoder.pt --student enc-sparse.pt -o e.pt --epochs 1 --hint pooler:pooler --data pair.npz --train-data pair.npz --model-output 0 --no-measure --no-progress
expect_error "bad: mixed image sizes without --resize" "img/(train|test)/cat/1\.png: 37x61 pixels after preprocessing where the first image has 50x40; give --resize and --crop" data img
expect_error "bad: an empty class folder" "img/bad-empty-class/b: empty class folder" data img/bad-empty-class
expect_error "bad: a truncated JPEG, named" "img/bad-truncated/a/cut\.jpg: corrupt or truncated JPEG" data img/bad-truncated
expect_error "bad: a corrupt PNG, named" "img/bad-corrupt/a/broken\.png: corrupt or truncated PNG" data img/bad-corrupt
expect_error "bad: a folder without images" "img/bad-no-images: no data set found: .*images in ROOT/CLASS/\*\.png\|jpg" data img/bad-no-images
expect_error "bad: a crop larger than the image" "is smaller than --crop 64 \(add --resize\)" data img --crop 64
expect_error "bad: --mean with the wrong count" "--mean '0.5,0.5': 2 values for 3 channels" data img --resize 40 --crop 32 --mean 0.5,0.5 --std 0.2
# The memory bound: a folder that decodes to 147 MiB, read whole and streamed in batches of 16.
"$python" - <<'PY'
import os
import numpy as np
from PIL import Image
rng = np.random.default_rng(1)
for c in ("a", "b"):
    os.makedirs(f"big/{c}", exist_ok=True)
    for i in range(128):
        Image.fromarray(rng.integers(0, 256, (256, 300, 3), dtype=np.uint8)).save(f"big/{c}/{i}.jpg", quality=80)
PY
rss() { /usr/bin/time -f "%M" "$compress" --threads 2 data big --resize 256 --crop 224 --decode-all --batch 16 --no-progress "$@" 2>&1 >/dev/null | tail -1; }
held_kb=$(rss --cache-mb 100000)
streamed_kb=$(rss --cache-mb 0)
base_kb=$(rss --cache-mb 0 --split test --batch 1 2>/dev/null || echo 0)
echo "peak RSS: held $held_kb KiB, streamed (batch 16) $streamed_kb KiB"
# Held: 256 images x 3 x 224 x 224 x 4 bytes = 147 MiB. Streamed: two batches of 16 = 18 MiB.
[ -n "$held_kb" ] && [ -n "$streamed_kb" ] && [ $((held_kb - streamed_kb)) -gt 100000 ] \
  && report "streaming: peak memory ~two batches, not the folder (held $held_kb KiB, streamed $streamed_kb KiB)" ok \
  || report "streaming: peak memory ~two batches, not the folder" fail "held $held_kb KiB, streamed $streamed_kb KiB"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]  # a run that checked nothing fails
