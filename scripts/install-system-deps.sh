#!/usr/bin/env bash
# Installs the Debian packages hostguard's setup and tests need. Called by `make` when running as root;
# as another user it prints the exact command to run instead. Idempotent: installs only what is missing.
set -euo pipefail
mode=${1:-run}
pkgs=(python3 python3-venv libcrypt1)
if [ "$mode" = test ]; then
  # Real services and tools the tests drive: sshd -T, nft in namespaces, iptables-nft/legacy, ip netns,
  # ufw-init, visudo (sudo) and chpasswd/util-linux unshare for validating fixes.
  # (Installing ufw does not enable it: ENABLED=no until `ufw enable`.)
  pkgs+=(openssh-server nftables iptables iproute2 ufw sudo passwd util-linux libpwquality-tools libpam-pwquality cracklib-runtime)
  # firewall-offline-cmd (validating firewalld fixes on tree copies) runs from an extracted copy of the
  # firewalld .debs (below), never an installed firewalld; these are only the libraries it imports.
  pkgs+=(python3-gi gir1.2-glib-2.0 python3-dbus python3-nftables)
  # A real Redis for naming services by their process (started by the tests inside their own namespaces).
  pkgs+=(redis-server)
  # ping: the namespace pair waits until its veth answers
  pkgs+=(iputils-ping)
fi
# Where the firewalld and python3-firewall .debs are unpacked for the tests (tests/firewalld_helpers.py).
fw_cache=/var/cache/hostguard-tests/firewalld
fw_debs=(firewalld python3-firewall)

extract_firewalld() {
  # Never `apt-get install firewalld`: its service would own this machine's firewall at the next boot.
  # The packages are only downloaded and unpacked into $fw_cache; nothing is configured or enabled.
  [ -x "$fw_cache/usr/bin/firewall-offline-cmd" ] && return 0
  local tmp
  tmp=$(mktemp -d)
  chown _apt "$tmp" 2>/dev/null || true   # apt downloads as _apt when it can
  if ! (cd "$tmp" && apt-get download -q "${fw_debs[@]}" >/dev/null 2>&1); then
    apt-get update -q >/dev/null || apt-get update
    (cd "$tmp" && apt-get download -q "${fw_debs[@]}" >/dev/null)
  fi
  rm -rf "$fw_cache.new"
  mkdir -p "$fw_cache.new"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$fw_cache.new"; done
  rm -rf "$tmp" "$fw_cache"
  mv "$fw_cache.new" "$fw_cache"
  echo "hostguard setup: extracted ${fw_debs[*]} into $fw_cache (not installed)"
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$(id -u)" -ne 0 ]; then
  if [ "$mode" = test ] && [ ! -x "$fw_cache/usr/bin/firewall-offline-cmd" ]; then
    echo "hostguard setup: firewalld's offline tool is not unpacked in $fw_cache" >&2
    echo "run as root: scripts/install-system-deps.sh test" >&2
  fi
  [ ${#missing[@]} -eq 0 ] && exit 0
  echo "hostguard setup: missing Debian packages: ${missing[*]}" >&2
  echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
  [ "$mode" = test ] && exit 0   # tests needing them skip with a reason (and fail under CI=true)
  exit 1
fi
if [ ${#missing[@]} -eq 0 ]; then
  [ "$mode" = test ] && extract_firewalld
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Never let a package's postinst start a service on this host during setup.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
trap '[ $created_policy = 1 ] && rm -f "$policy"' EXIT
apt-get update -q >/dev/null || apt-get update
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "hostguard setup: installed ${missing[*]}"
for p in "${missing[@]}"; do
  # a service package installed for the tests must not start at the next boot either
  if [ "$p" = redis-server ]; then
    systemctl disable redis-server.service >/dev/null 2>&1 ||
      rm -f /etc/systemd/system/multi-user.target.wants/redis-server.service
  fi
done
[ "$mode" = test ] && extract_firewalld
exit 0
