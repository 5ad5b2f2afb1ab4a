# Build the station on Windows into one folder, dist\station\ (dist\station\station.exe), with PyInstaller,
# from the same installer\station.spec as Linux, then a start-menu entry with installer\install-shortcut.ps1.
#   powershell -ExecutionPolicy Bypass -File installer\build.ps1 [-Python .venv\Scripts\python.exe]
# PyPI's torch for Windows is the CPU build; for CUDA install torch from PyTorch's CUDA index first
# (docs/integrator.md).
param([string]$Python = ".venv\Scripts\python.exe")
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
$env:PYTHONPATH = (Get-Location).Path  # this checkout's station, whatever the environment has installed
if (-not (Test-Path $Python)) { throw "installer\build.ps1: no Python at $Python: install the station first (README)" }
& $Python -c "import PyInstaller" 2>$null
if ($LASTEXITCODE -ne 0) { & $Python -m pip install -q "pyinstaller>=6.10"; if ($LASTEXITCODE -ne 0) { throw "pip failed" } }
& $Python installer\make_icon.py build\icon
if ($LASTEXITCODE -ne 0) { throw "the icon could not be made" }
& $Python -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build\pyinstaller installer\station.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
Copy-Item installer\install-shortcut.ps1 dist\station\
& dist\station\station.exe --version
if ($LASTEXITCODE -ne 0) { throw "the built station does not start" }
Write-Host "built dist\station\; add it to the start menu: powershell -File dist\station\install-shortcut.ps1"
