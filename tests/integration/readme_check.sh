#!/usr/bin/env bash
# The README's reference tables must be exactly what the configuration tables print:
#   readme_check.sh README MARKER COMMAND...   (MARKER: env-doc or config-doc)
set -euo pipefail
readme="$1"; marker="$2"; shift 2
want="$("$@")"
have="$(sed -n "/<!-- $marker:begin -->/,/<!-- $marker:end -->/p" "$readme" | sed '1d;$d')"
if [ "$want" != "$have" ]; then
  diff <(echo "$want") <(echo "$have") || true
  echo "README $marker section is out of date: paste the output of: $*" >&2
  exit 1
fi
echo "README $marker section matches the configuration table"
