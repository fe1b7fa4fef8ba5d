# shellcheck shell=bash
# A private Docker engine for the tests (sourced by .ci/run; also for development):
#
#   source .ci/docker-engine.sh
#   start_docker_engine      # installs docker.io + debootstrap if missing, starts dockerd on a
#                            # private socket, exports DOCKER_HOST, builds local/python-base:bookworm
#   stop_docker_engine       # stops that dockerd by its PID and removes its temp dir
#
# No container registry is reachable on the project's machines, so the base image is built with
# debootstrap (Debian bookworm + python3 + venv + pip + CA certificates, the machine's private CAs
# and its pip settings) and imported. Its root filesystem is cached as a tarball under
# MLPRISM_DOCKER_CACHE (default /var/cache/mlprism-docker, else ~/.cache/mlprism-docker), keyed by
# everything that goes into it, so later runs import it in seconds.
#
# Settings (environment): MLPRISM_DOCKER_CACHE, MLPRISM_DOCKER_BASE_IMAGE (local/python-base:bookworm),
# MLPRISM_DOCKER_MIRROR (the Debian mirror apt uses), MLPRISM_DOCKER_STORAGE (overlay2, falls back
# to vfs), MLPRISM_DOCKER_TIMEOUT (seconds to wait for the daemon, 60).
# Safe under `set -euo pipefail`; both functions are idempotent.

MLPRISM_DOCKER_BASE_IMAGE="${MLPRISM_DOCKER_BASE_IMAGE:-local/python-base:bookworm}"
_MLPRISM_DOCKER_KEY_VERSION=2   # bump when the rootfs recipe below changes

_mde_log() { printf 'docker-engine: %s\n' "$*" >&2; }

_mde_now() { date +%s.%N; }

_mde_elapsed() { awk -v a="$1" -v b="$(_mde_now)" 'BEGIN { printf "%.1f", b - a }'; }

# The Docker client to talk to our daemon: Debian's (matches the engine), else any on PATH.
_mde_client() {
  if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker; fi
}

_mde_ping() {
  [ -n "${_MLPRISM_DOCKER_SOCK:-}" ] && [ -S "$_MLPRISM_DOCKER_SOCK" ] || return 1
  "$(_mde_client)" -H "unix://$_MLPRISM_DOCKER_SOCK" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

_mde_install() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ "${#missing[@]}" -eq 0 ] && return 0
  _mde_log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The Debian mirror apt is configured with (deb822 .sources first, then one-line sources.list).
_mde_mirror() {
  if [ -n "${MLPRISM_DOCKER_MIRROR:-}" ]; then echo "$MLPRISM_DOCKER_MIRROR"; return; fi
  local m=""
  m=$(grep -h -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}') || true
  if [ -z "$m" ]; then
    m=$(grep -h -E '^deb +(\[[^]]*\] +)?[a-z]+://[^ ]*/debian/? +bookworm ' /etc/apt/sources.list 2>/dev/null \
        | head -n1 | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}') || true
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

# pip settings of this machine that make sense inside an image: network ones only (no local
# paths or file:// indexes). Printed as pip.conf lines for [global].
_mde_pip_conf() {
  _mde_pip_settings | awk -F' = ' '!seen[$1]++'
}

_mde_pip_settings() {
  local py line key value
  py=$(command -v python3 || true)
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  [ -n "$py" ] || return 0
  "$py" -m pip config list 2>/dev/null | while IFS= read -r line; do
    key=${line%%=*}; value=${line#*=}; value=${value#\'}; value=${value%\'}
    key=${key##*.}
    case "$key" in
      index-url|extra-index-url|proxy|trusted-host|timeout|default-timeout|retries)
        local kept=() v
        for v in $value; do
          case "$v" in file:*|/*) ;; *) kept+=("$v") ;; esac
        done
        [ "${#kept[@]}" -gt 0 ] && echo "${key/default-timeout/timeout} = ${kept[*]}"
        ;;
    esac
  done
  local var
  for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_PROXY PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT PIP_TIMEOUT; do
    value=${!var:-}
    [ -n "$value" ] || continue
    case "$value" in file:*|/*) continue ;; esac
    key=$(echo "${var#PIP_}" | tr 'A-Z_' 'a-z-')
    echo "${key/default-timeout/timeout} = $value"
  done
}

_mde_rootfs_key() {
  {
    echo "v$_MLPRISM_DOCKER_KEY_VERSION bookworm minbase $(_mde_mirror)"
    echo "python3,python3-venv,python3-pip,ca-certificates"
    _mde_pip_conf
    cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
  } | sha256sum | cut -c1-16
}

_mde_cache_dir() {
  local d="${MLPRISM_DOCKER_CACHE:-/var/cache/mlprism-docker}"
  if mkdir -p "$d" 2>/dev/null && [ -w "$d" ]; then echo "$d"; return; fi
  d="${XDG_CACHE_HOME:-$HOME/.cache}/mlprism-docker"
  mkdir -p "$d" && echo "$d"
}

# Builds (or reuses) the rootfs tarball; prints its path.
_mde_rootfs_tarball() {
  local cache key tarball rootfs t0
  cache=$(_mde_cache_dir)
  key=$(_mde_rootfs_key)
  tarball="$cache/python-base-bookworm-$key.tar"
  if [ -s "$tarball" ]; then echo "$tarball"; return 0; fi
  t0=$(_mde_now)
  rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
  _mde_log "debootstrap bookworm from $(_mde_mirror) (first run on this machine; cached afterwards)"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$rootfs" "$(_mde_mirror)" >"$cache/debootstrap.log" 2>&1; then
    _mde_log "debootstrap failed; see $cache/debootstrap.log"; tail -n 20 "$cache/debootstrap.log" >&2
    rm -rf "$rootfs"; return 1
  fi
  # The machine's private CAs (pip in a build goes through an intercepting proxy).
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  # pip settings (site-wide config, read by every venv's pip too).
  { echo "[global]"; _mde_pip_conf; } > "$rootfs/etc/pip.conf"
  # A smaller image: no apt lists, caches or docs.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar --numeric-owner --sort=name -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
  # keep only the newest tarball
  find "$cache" -maxdepth 1 -name 'python-base-bookworm-*.tar' ! -path "$tarball" -delete 2>/dev/null || true
  _mde_log "rootfs built in $(_mde_elapsed "$t0")s: $tarball ($(du -h "$tarball" | cut -f1))"
  echo "$tarball"
}

_mde_base_image() {
  local client tarball t0
  client=$(_mde_client)
  if "$client" image inspect "$MLPRISM_DOCKER_BASE_IMAGE" >/dev/null 2>&1; then return 0; fi
  tarball=$(_mde_rootfs_tarball) || return 1
  t0=$(_mde_now)
  "$client" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    "$tarball" "$MLPRISM_DOCKER_BASE_IMAGE" >/dev/null
  _mde_log "imported $MLPRISM_DOCKER_BASE_IMAGE in $(_mde_elapsed "$t0")s"
}

# The data root: a persistent one under the cache (image layers survive between runs, so an
# unchanged requirements file is not downloaded again), locked so that one daemon at a time uses
# it; when it is busy (another engine of this machine holds it), a fresh one in the run's temp dir.
_mde_data_root() {   # sets _MLPRISM_DOCKER_ROOT (not in a subshell: the lock's fd must stay open here)
  local driver="$1" dir="$2" root
  if [ "${MLPRISM_DOCKER_PERSIST:-1}" = 1 ] && command -v flock >/dev/null 2>&1; then
    root="$(_mde_cache_dir)/data-root-$driver"
    mkdir -p "$root"
    exec {_MLPRISM_DOCKER_LOCK_FD}>"$root.lock"
    if flock -n "$_MLPRISM_DOCKER_LOCK_FD"; then
      # keep it bounded: start over past MLPRISM_DOCKER_MAX_GB (default 20)
      if [ "$(du -sm "$root" 2>/dev/null | cut -f1)" -gt $(( ${MLPRISM_DOCKER_MAX_GB:-20} * 1024 )) ]; then
        _mde_log "data root over ${MLPRISM_DOCKER_MAX_GB:-20} GB: starting over"
        _mde_unmount_under "$root"; rm -rf "$root"; mkdir -p "$root"
      fi
      _MLPRISM_DOCKER_ROOT="$root"; return 0
    fi
    exec {_MLPRISM_DOCKER_LOCK_FD}>&-
    _MLPRISM_DOCKER_LOCK_FD=""
    _mde_log "$root is in use by another engine: using a fresh data root"
  fi
  _MLPRISM_DOCKER_ROOT="$dir/data"
}

_mde_release_data_root() {
  if [ -n "${_MLPRISM_DOCKER_LOCK_FD:-}" ]; then
    exec {_MLPRISM_DOCKER_LOCK_FD}>&- || true
    _MLPRISM_DOCKER_LOCK_FD=""
  fi
}

# Starts dockerd with one storage driver; returns non-zero if it does not answer in time.
_mde_start_daemon() {
  local driver="$1" dir="$2" extra=() i limit root bridge other
  mkdir -p "$dir/exec"
  other=$(pgrep -x dockerd 2>/dev/null | head -n1 || true)
  if [ "$driver" = vfs ] || [ -n "$other" ]; then
    # No NAT of our own: builds and step containers use the host's network instead.
    extra+=(--iptables=false --ip-masq=false)
    if [ -z "${MLPRISM_DOCKER_NETWORK:-}" ]; then
      export MLPRISM_DOCKER_NETWORK=host
      _MLPRISM_DOCKER_SET_NETWORK=1
    fi
  fi
  if [ -n "$other" ] && command -v ip >/dev/null 2>&1; then
    # Another engine runs on this machine (and owns docker0): a bridge of our own, so container
    # addresses cannot collide.
    bridge="mlpd$$"
    bridge=${bridge:0:15}
    ip link add name "$bridge" type bridge 2>/dev/null || true
    ip addr add "10.213.$(( $$ % 250 )).1/24" dev "$bridge" 2>/dev/null || true
    ip link set "$bridge" up 2>/dev/null || true
    extra+=(--bridge="$bridge")
    _MLPRISM_DOCKER_BRIDGE="$bridge"
  fi
  _mde_data_root "$driver" "$dir"
  root="$_MLPRISM_DOCKER_ROOT"
  mkdir -p "$root"
  dockerd --storage-driver="$driver" --host "unix://$dir/docker.sock" --data-root "$root" \
    --exec-root "$dir/exec" --pidfile "$dir/docker.pid" --log-level=warn "${extra[@]}" \
    >"$dir/dockerd.log" 2>&1 &
  _MLPRISM_DOCKER_PID=$!
  _MLPRISM_DOCKER_SOCK="$dir/docker.sock"
  limit=$(( ${MLPRISM_DOCKER_TIMEOUT:-60} * 5 ))
  for ((i = 0; i < limit; i++)); do
    if _mde_ping; then return 0; fi
    if ! kill -0 "$_MLPRISM_DOCKER_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  _mde_log "dockerd ($driver) did not start; last lines of $dir/dockerd.log:"
  tail -n 5 "$dir/dockerd.log" >&2 || true
  _mde_kill_daemon
  _mde_release_data_root
  return 1
}

_mde_kill_daemon() {
  local pid="${_MLPRISM_DOCKER_PID:-}" i
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  _MLPRISM_DOCKER_PID=""
}

_mde_unmount_under() {
  local dir="$1" m
  [ -d "$dir" ] || return 0
  # deepest first
  awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

start_docker_engine() {
  local t0 dir driver
  t0=$(_mde_now)
  if _mde_ping; then
    export DOCKER_HOST="unix://$_MLPRISM_DOCKER_SOCK"
    _mde_base_image
    return 0
  fi
  _mde_install
  dir=$(mktemp -d /tmp/mlprism-docker.XXXXXX)
  _MLPRISM_DOCKER_DIR="$dir"
  driver="${MLPRISM_DOCKER_STORAGE:-overlay2}"
  if ! _mde_start_daemon "$driver" "$dir"; then
    if [ "$driver" = vfs ]; then return 1; fi
    _mde_log "falling back to the vfs storage driver"
    _mde_unmount_under "$dir"
    rm -rf "$dir/data" "$dir/exec"
    _mde_start_daemon vfs "$dir" || { stop_docker_engine; return 1; }
  fi
  export DOCKER_HOST="unix://$_MLPRISM_DOCKER_SOCK"
  _mde_log "dockerd pid $_MLPRISM_DOCKER_PID on $DOCKER_HOST ($(_mde_elapsed "$t0")s)"
  if [ -n "${_MLPRISM_DOCKER_LOCK_FD:-}" ]; then
    # a persistent data root: drop leftovers of earlier runs (tagged images and their layers stay)
    "$(_mde_client)" container prune -f >/dev/null 2>&1 || true
    "$(_mde_client)" image prune -f --filter until=24h >/dev/null 2>&1 || true
  fi
  _mde_base_image || { stop_docker_engine; return 1; }
  _mde_log "ready in $(_mde_elapsed "$t0")s"
}

stop_docker_engine() {
  local dir="${_MLPRISM_DOCKER_DIR:-}"
  _mde_kill_daemon
  _mde_release_data_root
  if [ -n "${_MLPRISM_DOCKER_BRIDGE:-}" ]; then
    ip link delete "$_MLPRISM_DOCKER_BRIDGE" 2>/dev/null || true
    _MLPRISM_DOCKER_BRIDGE=""
  fi
  if [ -n "$dir" ] && [ -d "$dir" ]; then
    _mde_unmount_under "$dir"
    rm -rf "$dir" 2>/dev/null || true
  fi
  if [ "${DOCKER_HOST:-}" = "unix://${_MLPRISM_DOCKER_SOCK:-}" ]; then unset DOCKER_HOST; fi
  if [ "${_MLPRISM_DOCKER_SET_NETWORK:-}" = 1 ]; then unset MLPRISM_DOCKER_NETWORK; _MLPRISM_DOCKER_SET_NETWORK=""; fi
  _MLPRISM_DOCKER_DIR=""
  _MLPRISM_DOCKER_SOCK=""
}
