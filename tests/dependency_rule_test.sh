#!/usr/bin/env bash
# The build enforces the dependency rule: a library that includes a header of a library it may
# not use fails the configure step, naming the file and the header; one that keeps the rule passes.
# Usage: dependency_rule_test.sh SOURCE_DIR
set -u
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if cmake -S "$src/tests/dependency_rule" -B "$tmp/bad" -DJOULECUT_SOURCE_DIR="$src" -DJOULECUT_RULE_SOURCE=bad.cpp >"$tmp/bad.log" 2>&1; then
  echo "FAIL: a forbidden include configured"; exit 1
fi
grep -q "bad.cpp (joulecut_measure_core) includes joulecut/model.h of joulecut_compress" "$tmp/bad.log" \
  || { echo "FAIL: the error does not name the include:"; cat "$tmp/bad.log"; exit 1; }
cmake -S "$src/tests/dependency_rule" -B "$tmp/good" -DJOULECUT_SOURCE_DIR="$src" -DJOULECUT_RULE_SOURCE=good.cpp >"$tmp/good.log" 2>&1 \
  || { echo "FAIL: a library that keeps the rule was refused:"; cat "$tmp/good.log"; exit 1; }
grep -q "dependency rule holds for 3 libraries" "$tmp/good.log" || { echo "FAIL: no confirmation"; cat "$tmp/good.log"; exit 1; }
# The folder rule: a pass family including another family's internals fails, naming both.
if cmake -S "$src/tests/dependency_rule" -B "$tmp/bad-folder" -DJOULECUT_SOURCE_DIR="$src" -DJOULECUT_RULE_SOURCE=good.cpp \
     -DJOULECUT_RULE_FOLDERS=bad >"$tmp/bad-folder.log" 2>&1; then
  echo "FAIL: a pass family including another's internals configured"; exit 1
fi
grep -q "prune/channel.cpp (prune/) includes quantize/static_graph.h of quantize/" "$tmp/bad-folder.log" \
  || { echo "FAIL: the folder error does not name the include:"; cat "$tmp/bad-folder.log"; exit 1; }
cmake -S "$src/tests/dependency_rule" -B "$tmp/good-folder" -DJOULECUT_SOURCE_DIR="$src" -DJOULECUT_RULE_SOURCE=good.cpp \
  -DJOULECUT_RULE_FOLDERS=good >"$tmp/good-folder.log" 2>&1 \
  || { echo "FAIL: a family standing on the floor was refused:"; cat "$tmp/good-folder.log"; exit 1; }
grep -q "folder rule holds for 3 folders" "$tmp/good-folder.log" || { echo "FAIL: no folder confirmation"; cat "$tmp/good-folder.log"; exit 1; }
echo "dependency_rule_test: passed"
