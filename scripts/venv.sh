# Sourced by the quick start and .ci/run: create (once) and activate the project's own virtual environment,
# so nothing is installed into the system interpreter (Debian's python3 is externally managed, PEP 668).
#
#   ensure_venv DIR    -> creates DIR with the first python3 on PATH (Debian's /usr/bin/python3, pyenv's shim,
#                         or the interpreter of an already active venv, whose base interpreter is used),
#                         installing Debian's python3-venv when the venv module cannot bootstrap pip (as root),
#                         then activates DIR: `python3` and `pip` below this point are DIR's.
ensure_venv() {
  local dir=$1 base
  base=$(command -v python3) || { echo "python3 is not installed (apt-get install python3)" >&2; return 1; }
  if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "tao-bevfusion needs Python >= 3.11; $base is $("$base" -V 2>&1)" >&2; return 1
  fi
  if [ ! -x "$dir/bin/python3" ] || ! "$dir/bin/python3" -m pip --version >/dev/null 2>&1; then
    rm -rf "$dir"
    if ! "$base" -m venv "$dir" >/dev/null 2>&1; then
      rm -rf "$dir"
      _install_debian_venv "$base" || return 1
      "$base" -m venv "$dir" || return 1
    fi
  fi
  # shellcheck disable=SC1091
  source "$dir/bin/activate"
  echo "== virtual environment $dir ($(python3 -V 2>&1), from $base)"
}

# Debian ships the venv module's pip bootstrap separately (python3-venv / python3.X-venv).
_install_debian_venv() {
  local base=$1 ver
  ver=$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "'$base -m venv' failed: install Debian's venv module first (sudo apt-get install python3-venv" \
         "python$ver-venv), or run this script as root" >&2
    return 1
  fi
  echo "== installing Debian's python3-venv (the venv module cannot bootstrap pip)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "python$ver-venv" >/dev/null
}
