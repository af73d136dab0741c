# shellcheck shell=bash
# Shared by scripts/run and scripts/test: find Python >= 3.11, create .venv, install Kassa
# (again only when pyproject.toml changed).

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "Kassa needs Python 3.11 or newer on PATH." >&2
  return 1
}

ensure_venv() {
  local extras="$1"   # "" or "dev"
  local spec="."
  [ -n "$extras" ] && spec=".[$extras]"
  if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv ..." >&2
    "$(find_python)" -m venv .venv
  fi
  local stamp=".venv/.kassa-installed-${extras:-base}"
  local want
  want="$(cat pyproject.toml | .venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing Kassa ($spec) into .venv ..." >&2
    .venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip >&2
    .venv/bin/python -m pip install --disable-pip-version-check -q -e "$spec" >&2
    echo "$want" >"$stamp"
  fi
}
