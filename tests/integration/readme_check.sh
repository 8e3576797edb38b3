#!/usr/bin/env bash
# The README's environment table must be exactly what the SDK's configuration table prints.
set -euo pipefail
readme="$1"; test_config="$2"
want="$("$test_config" --env-doc)"
have="$(sed -n '/<!-- env-doc:begin -->/,/<!-- env-doc:end -->/p' "$readme" | sed '1d;$d')"
if [ "$want" != "$have" ]; then
  diff <(echo "$want") <(echo "$have") || true
  echo "README env table is out of date: paste the output of test_config --env-doc" >&2
  exit 1
fi
echo "README env table matches the configuration table"
