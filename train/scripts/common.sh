# Sourced (not run) by every stage script in this folder: finds the beaver binary ($BEAVER,
# else build/beaver in this checkout) and stops with a clear message when it is missing.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BEAVER="${BEAVER:-$ROOT/build/beaver}"
if [[ ! -x "$BEAVER" ]]; then
  echo "$(basename "$0"): $BEAVER not found: build it (cmake --build build --target beaver)" \
       "or set BEAVER" >&2
  exit 1
fi
