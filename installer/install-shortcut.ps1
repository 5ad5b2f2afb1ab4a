# Add the station to this user's start menu (Windows): a shortcut to station.exe in this folder, with its icon.
#   powershell -ExecutionPolicy Bypass -File install-shortcut.ps1 [-Remove]
param([switch]$Remove)
$ErrorActionPreference = "Stop"
$link = Join-Path ([Environment]::GetFolderPath("Programs")) "Inspection station.lnk"
if ($Remove) { Remove-Item -ErrorAction SilentlyContinue $link; Write-Host "removed $link"; exit 0 }
$exe = Join-Path $PSScriptRoot "station.exe"
if (-not (Test-Path $exe)) { throw "install-shortcut.ps1: no station.exe beside this script ($PSScriptRoot)" }
$shortcut = (New-Object -ComObject WScript.Shell).CreateShortcut($link)
$shortcut.TargetPath = $exe
$shortcut.Arguments = "gui"
$shortcut.WorkingDirectory = $PSScriptRoot
$shortcut.IconLocation = "$exe,0"
$shortcut.Description = "Live OK / NG inspection of parts from a camera"
$shortcut.Save()
Write-Host "added $link"
