#!/usr/bin/env bash
# The launch test of the built bundle (after installer/build.sh; CI runs it after the suite): the executable
# runs with no Python of its own (an empty environment, the source venv off PATH), says its version, gives the
# same `eval --json` figures on the bundled demo as the source install, and runs the window offscreen on the
# demo line for 20 s with no error in its log file. Prints the bundle's size and start times.
#   STATION_SOURCE_PYTHON  the source install to compare with (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
exe=dist/station/station
src_py=${STATION_SOURCE_PYTHON:-.venv/bin/python}
[ -x "$exe" ] || { echo "launch test: no bundle at $exe: run bash installer/build.sh first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home"
# nothing of the source install: no venv on PATH, no PYTHONPATH/PYTHONHOME, a fresh home and data folder
clean=(HOME="$work/home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen
       STATION_DATA_DIR="$work/data" STATION_CONFIG_DIR="$work/config" STATION_KEY_DIR="$work/keys")
bundle() { env -i "${clean[@]}" "$exe" "$@"; }
fail() { echo "launch test FAILED: $*" >&2; exit 1; }

echo "bundle: $(du -sh dist/station | cut -f1) in $(find dist/station -type f | wc -l) files"
t0=$(date +%s.%N)
version=$(bundle --version)
t1=$(date +%s.%N)
expected="station $(sed -n 's/^__version__ = "\(.*\)"$/\1/p' station/__init__.py)"
[ "$version" = "$expected" ] || fail "--version said '$version', not '$expected'"
echo "--version: $version ($(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s, first start after the build)"
t0=$(date +%s.%N); bundle --version > /dev/null; t1=$(date +%s.%N)
echo "--version again: $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s"

# every library the station uses imports in the bundle (the doctor says "cannot import" otherwise)
bundle doctor --json > "$work/doctor.json" 2> "$work/doctor.err" || { cat "$work/doctor.err" >&2; fail "doctor"; }
if grep -o '"found": "cannot import[^"]*"' "$work/doctor.json" > "$work/imports.txt"; then
  cat "$work/imports.txt" >&2
  fail "a library does not import in the bundle"
fi
echo "doctor: every library imports ($(grep -o '"what": "torch", "found": "[^"]*"' "$work/doctor.json" | cut -d'"' -f8))"
t0=$(date +%s.%N)
bundle eval --json > "$work/bundle-eval.json" 2> "$work/bundle-eval.err" || { cat "$work/bundle-eval.err" >&2; fail "eval"; }
t1=$(date +%s.%N)
echo "eval --json on the bundled demo: $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s"
if [ -x "$src_py" ]; then
  PYTHONPATH="$PWD" "$src_py" -m station eval --json > "$work/source-eval.json"
  "$src_py" - "$work/bundle-eval.json" "$work/source-eval.json" <<'PY' || fail "eval figures differ"
import json, sys
timing = {"fit_seconds", "ms_per_image_median", "ms_per_image_p95", "seconds", "data"}  # data: the demo's path
bundle, source = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:])
def figures(result):
    return {k: v for k, v in result.items() if k not in timing and "seconds" not in k and not k.startswith("ms_")}
if figures(bundle) != figures(source):
    diff = {k: (figures(bundle).get(k), figures(source).get(k)) for k in figures(bundle) | figures(source)
            if figures(bundle).get(k) != figures(source).get(k)}
    print(f"bundle vs source: {diff}", file=sys.stderr)
    sys.exit(1)
print("eval figures: the same as the source install "
      f"(auroc {bundle['auroc']}, accuracy {bundle['accuracy']}, escape {bundle['escape_rate']})")
PY
else
  echo "eval figures: not compared (no source install at $src_py)"
fi

t0=$(date +%s.%N)
bundle bench --gui --source demo --seconds 0.1 > /dev/null 2> "$work/start.err" || { cat "$work/start.err" >&2; fail "the window"; }
t1=$(date +%s.%N)
echo "window start to first measured frames and closed: $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s"
(exec env -i "${clean[@]}" "$exe" bench --gui --source demo --seconds 20 > "$work/gui.json" 2> "$work/gui.err") &
gui=$!
sleep 12
# every file the running window mapped comes from the bundle or the system, none from a Python install
if [ -r "/proc/$gui/maps" ]; then
  foreign=$(awk '{print $6}' "/proc/$gui/maps" | grep -E "site-packages|/\.venv/|/pyenv/|libpython" | grep -v "^$PWD/dist/station/" | sort -u || true)
  [ -z "$foreign" ] || fail "the bundle loaded files of a Python install: $foreign"
  echo "loaded files: $(awk '{print $6}' "/proc/$gui/maps" | grep -c "^$PWD/dist/station/" || true) mappings from the bundle, none from a Python install"
fi
wait "$gui" || { cat "$work/gui.err" >&2; fail "the window"; }
echo "window offscreen 20 s on the demo line: $(tail -1 "$work/gui.json" | cut -c1-300)"
log="$work/data/logs/station.log"
[ -s "$log" ] || fail "no log file at $log"
if grep -E " (ERROR|CRITICAL) |Traceback" "$log" "$work/gui.err" > "$work/errors.txt"; then
  cat "$work/errors.txt" >&2
  fail "errors in the log"
fi
echo "log: $(wc -l < "$log") lines, no error"
echo "launch test passed"
