# Sourced by scripts/build.sh and scripts/sanitize.sh (with `repo` set to the repository root): installs the Debian
# packages the project needs, builds ITK 5.2.1 and SlicerExecutionModel into the cache (each reused when present),
# and sets `python` (Debian's Python: it has torch and numpy; a python3 earlier on PATH may not), `itk_dir` and
# `sem_dir` for the caller's CMake configuration.
python=/usr/bin/python3
if [ "$(id -u)" = 0 ]; then
  bash "$repo/scripts/install-deps.sh" >&2
else
  sudo bash "$repo/scripts/install-deps.sh" >&2
fi
itk_dir=$(Python3_EXECUTABLE=$python bash "$repo/scripts/build-itk.sh" | tail -n 1)
sem_dir=$(bash "$repo/scripts/build-sem.sh" "$itk_dir" | tail -n 1)
