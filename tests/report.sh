# Sourced by the shell test scripts. report NAME ok|fail DETAIL counts a case and prints it with
# the seconds since the previous case (set-up before the first case counts to the first), so CI's
# output shows where a test's time goes (docs/test-times.md).
passed=0 failed=0
_case_started=${EPOCHREALTIME/[.,]/}
report() {
  local now=${EPOCHREALTIME/[.,]/}
  local ms=$(((now - _case_started) / 1000))
  _case_started=$now
  local took="$((ms / 1000)).$(((ms % 1000) / 100)) s"
  if [ "$2" = ok ]; then
    passed=$((passed + 1)); echo "ok    $1 [$took]"
  else
    failed=$((failed + 1)); echo "FAIL  $1 [$took]: $3"
  fi
}
