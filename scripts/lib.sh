# Shared by scripts/up and scripts/test: install what the platform needs.
# Sourced, not run. Everything here is idempotent and quick the second time.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# Debian packages the platform runs on (services, container runtime, build
# tools) and those the tests add (a PostgreSQL server, a browser, busybox for
# tiny test images, wrk for bench/router.py, and sshd: the git fetch tests start their own
# on loopback; none uses the system sshd service).
RUN_PACKAGES=(python3 python3-venv python3-dev gcc git redis-server runc nginx debootstrap
              docker-registry nftables iproute2 openssl ca-certificates curl openssh-client)
TEST_PACKAGES=(postgresql chromium busybox-static skopeo umoci docker.io wrk openssh-server)

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "This needs root (containers, namespaces, nftables): run it with sudo." >&2
    exit 1
  fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> Installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

make_venv() {
  local extras="$1"
  # Debian's own Python 3.11: the same interpreter on every Debian 12 host.
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> Creating the virtualenv in .venv"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  local stamp="$VENV/.installed-$extras"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "==> Installing the project into .venv"
    "$VENV/bin/pip" install -q -e "$ROOT$extras"
    touch "$stamp"
  fi
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
