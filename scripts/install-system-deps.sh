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
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "hostguard setup: missing Debian packages: ${missing[*]}" >&2
  echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
  [ "$mode" = test ] && exit 0   # tests needing them skip with a reason (and fail under CI=true)
  exit 1
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
