#!/usr/bin/env bash
# Add the station to this user's application menu (Linux): a .desktop entry that starts this folder's
# `station`, with its icon. Run from the bundle folder: ./install-desktop.sh (remove: --remove).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
apps=${XDG_DATA_HOME:-$HOME/.local/share}/applications
entry=$apps/inspection-station.desktop
if [ "${1:-}" = "--remove" ]; then
  rm -f "$entry" && echo "removed $entry"
  exit 0
fi
[ -x "$here/station" ] || { echo "install-desktop.sh: no station executable beside this script ($here)" >&2; exit 1; }
mkdir -p "$apps"
cat > "$entry" <<DESKTOP
[Desktop Entry]
Type=Application
Name=Inspection station
Comment=Live OK / NG inspection of parts from a camera
Exec="$here/station" gui
Icon=$here/station.png
Terminal=false
Categories=Graphics;Engineering;
DESKTOP
chmod +x "$entry"
echo "added $entry"
