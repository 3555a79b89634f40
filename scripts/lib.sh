# Shared by the scripts in this folder: find or install what they need.
# shellcheck shell=bash

# Runs a command as root (directly, or through sudo).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Makes sure cargo (Rust >= 1.89) is on PATH, installing it with rustup when
# it is missing and rustup's site can be reached.
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if command -v cargo >/dev/null 2>&1; then
    local minor
    minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
    if [ "${minor:-0}" -ge 89 ]; then return 0; fi
    echo "nodeimg needs Rust 1.89 or newer; found $(rustc --version)." >&2
    if command -v rustup >/dev/null 2>&1; then rustup update stable && return 0; fi
  fi
  echo "Installing Rust with rustup (https://rustup.rs)..." >&2
  if ! command -v curl >/dev/null 2>&1; then
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl ca-certificates build-essential
  fi
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt -c clippy ||
    { echo "error: could not install Rust; install Rust 1.89+ from https://rustup.rs and run this again" >&2; return 1; }
  export PATH="$HOME/.cargo/bin:$PATH"
}

# Prints the packages of "$@" that are not installed, one a line.
missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

# Installs Debian packages that are missing (apt-get update only when needed).
ensure_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "Installing Debian packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Installs packages from bookworm-backports (adding the source when missing):
# the machine's qemu-utils come from there, and QEMU must match them.
ensure_backports_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" |
      as_root tee /etc/apt/sources.list.d/nodeimg-bookworm-backports.list >/dev/null
  fi
  echo "Installing from bookworm-backports: ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -t bookworm-backports "${missing[@]}" >/dev/null
}
