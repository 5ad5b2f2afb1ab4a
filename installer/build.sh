#!/usr/bin/env bash
# Build the station into one folder, dist/station/ (executable dist/station/station), with PyInstaller.
# Uses the Python environment the station is installed in (README: .venv), torch as installed there:
#   STATION_BUILD_PYTHON=/path/to/python  another environment (a CPU-torch one gives a small bundle)
# Then: bash installer/launch_test.sh (CI runs both), and installer/install-desktop.sh for the menu entry.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's station, whatever the environment has installed
py=${STATION_BUILD_PYTHON:-.venv/bin/python}
if [ ! -x "$py" ]; then
  echo "installer/build.sh: no Python at $py: install the station first (README) or set STATION_BUILD_PYTHON" >&2
  exit 1
fi
if ! "$py" -c "import PyInstaller" 2>/dev/null; then
  echo "+ $py -m pip install pyinstaller (the [build] extra)"
  "$py" -m pip install -q 'pyinstaller>=6.10'
fi
"$py" -c "import station, torch; print('building station', station.__version__, 'with torch', torch.__version__,
      '(CUDA ' + torch.version.cuda + ')' if torch.version.cuda else '(CPU)')"
"$py" installer/make_icon.py build/icon
start=$(date +%s)
"$py" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller installer/station.spec
cp build/icon/station.png dist/station/station.png
cp installer/install-desktop.sh dist/station/install-desktop.sh
echo "built dist/station/ in $(( $(date +%s) - start )) s: $(du -sh dist/station | cut -f1)"
