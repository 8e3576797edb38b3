#!/usr/bin/env bash
# Static analysis over sdk/src, exporters and collector with the committed configurations:
# cppcheck (.cppcheck-suppressions) and clang-tidy (.clang-tidy). Any finding fails.
#   scripts/lint.sh [cppcheck|clang-tidy|all] [build-dir]
# The build dir supplies the generated OTLP headers (proto-gen/) and, for clang-tidy,
# compile_commands.json; `make lint` prepares build-lint/ for both.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
build="${2:-build-lint}"
jobs="$(nproc)"
status=0

run_cppcheck() {
  echo "== cppcheck"
  cppcheck --quiet --error-exitcode=1 --std=c11 -j "$jobs" \
    --enable=warning,performance,portability --inline-suppr \
    --suppressions-list=.cppcheck-suppressions \
    --template='{file}:{line}:{column}: {severity}/{id}: {message}' \
    -D__GNUC__ -D__x86_64__ -I sdk/include -I sdk/src -I exporters -I collector \
    -I "$build/proto-gen" sdk/src exporters collector
}

run_clang_tidy() {
  echo "== clang-tidy $(clang-tidy --version | awk '/version/ {print $NF}')"
  if [ ! -f "$build/compile_commands.json" ]; then
    echo "lint.sh: $build/compile_commands.json missing (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)" >&2
    return 1
  fi
  local out rc=0
  out="$(mktemp)"
  # run-clang-tidy fails when any file had a finding (WarningsAsErrors); show only the findings.
  run-clang-tidy -p "$build" -j "$jobs" -quiet "$PWD/(sdk/src|exporters|collector)/[^/]*\.c\$" \
    >"$out" 2>&1 || rc=1
  grep -E "(warning|error): |^ " "$out" | grep -v "warnings\? generated\|^Suppressed" || true
  rm -f "$out"
  return $rc
}

case "$what" in
  cppcheck) run_cppcheck || status=1 ;;
  clang-tidy) run_clang_tidy || status=1 ;;
  all)
    run_cppcheck || status=1
    run_clang_tidy || status=1
    ;;
  *) echo "usage: $0 [cppcheck|clang-tidy|all] [build-dir]" >&2; exit 2 ;;
esac
exit $status
