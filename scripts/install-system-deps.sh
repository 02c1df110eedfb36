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
  # A real browser for the HTML report test (headless: DOM dump and screenshot)
  pkgs+=(chromium)
  # setcap/getcap: file capabilities in the persistence tests
  pkgs+=(libcap2-bin)
  # A real nginx whose worker connects out in the connections live test (started by the test in its own
  # namespace with its own config)
  pkgs+=(nginx-light)
  # rpm databases written by the real rpm (sqlite) and Berkeley DB files written by the real db5.3_load,
  # read by hostguard's own readers in the integrity tests (rpm only builds and installs into temp roots)
  pkgs+=(rpm db5.3-util)
  # dnf (dnf 4) and createrepo_c/modifyrepo_c: the pending dnf/yum security update tests build a local rpm
  # repository with an updateinfo.xml and run the real dnf against it under a private --config,
  # --installroot and cache (rpmbuild comes from rpm, above); installing dnf enables no service or timer
  pkgs+=(dnf createrepo-c)
  # crontab (validating cron fixes in a private mount namespace), pamtester (real PAM stacks on fixed
  # copies), openssl (a known password's hash for that stack)
  pkgs+=(cron pamtester openssl)
  # A real Apache httpd for the Apache reader's reality tests (a private httpd on loopback, its own config)
  pkgs+=(apache2)
  # setfacl/chattr: web roots' ACLs and immutable files in the writable-by-web-user tests
  pkgs+=(acl e2fsprogs)
  # Real database, cache and FTP servers whose own configuration readers are checked against them
  # (started by the tests on loopback or unix sockets in temp dirs, never the system's instances)
  pkgs+=(mariadb-server postgresql memcached vsftpd)
  # PHP-FPM and the PHP CLI (php-fpm -tt and php -c prove the PHP readers and fixes), Tomcat with its manager
  pkgs+=(php8.2-fpm php8.2-cli tomcat10 tomcat10-admin)
  # WordPress's own phpass (run by php at test time to prove hostguard's), curl for nginx auth checks
  pkgs+=(wordpress php curl)
  # phpMyAdmin as Debian installs it: a large clean PHP tree the malware rules must scan without a match
  # (installed without a database of its own and without touching the web server's configuration, below)
  pkgs+=(phpmyadmin)
  # systemd-journal-remote: the logons tests build journal files from export format (CI has no journald)
  # and read them with journalctl --file
  pkgs+=(systemd-journal-remote)
  # systemd-analyze (verifying hostguard-blocks.service) and the ssh client (a real session in the block tests)
  pkgs+=(systemd openssh-client)
  # The version orders' oracles (tests/vulns/test_versions_*.py): dpkg itself; rpm's labelCompare from
  # python3-rpm (run by the system python); Maven's own ComparableVersion (maven-artifact, on a JRE);
  # node to run node-semver, which npm installs into a temp dir at test time (a node that bundles npm,
  # e.g. NodeSource's, conflicts with Debian's npm package: add it only when there is no npm); Composer's
  # own composer/semver library on the PHP CLI for Packagist's order
  pkgs+=(dpkg python3-rpm libmaven3-core-java default-jre-headless nodejs php-composer-semver)
  command -v npm >/dev/null || pkgs+=(npm)
  # The WAF's engine and rules: Debian's libmodsecurity3 (loaded through cffi) and the OWASP Core Rule Set
  pkgs+=(libmodsecurity3 modsecurity-crs)
  # ModSecurity in the web servers (`hostguard waf enable`, make test-waf): nginx's module (libmodsecurity3)
  # and Apache's mod_security2 2.9, in front of PHP-FPM (php8.2-fpm, above). The module package's postinst
  # enables security2 in /etc/apache2 (a2enmod); the tests run their own servers from copies, never this one.
  pkgs+=(libnginx-mod-http-modsecurity libapache2-mod-security2 logrotate)
  # wrk drives benchmarks/waf.py (`make bench`, which sets up as the tests do)
  pkgs+=(wrk)
fi
# Tools the tests run from unpacked .debs, never installed (their services would own this machine's
# firewall from the next boot): firewalld's offline tool (tests/firewalld_helpers.py) and Docker's dockerd
# with a static busybox for its image (tests/docker_helpers.py).
tests_cache=/var/cache/hostguard-tests
unpack_test_tools() {
  local here
  here=$(dirname "$0")
  bash "$here/unpack-debs.sh" "$tests_cache/firewalld" usr/bin/firewall-offline-cmd firewalld python3-firewall
  bash "$here/unpack-debs.sh" "${HOSTGUARD_DOCKER_CACHE:-$tests_cache/docker}" usr/sbin/dockerd \
    docker.io containerd runc tini busybox-static
  # fail2ban-regex, the figure benchmarks/logons.py compares with (installing fail2ban would start its daemon)
  # (only a benchmark needs it: its absence never stops the tests)
  bash "$here/unpack-debs.sh" "$tests_cache/fail2ban" usr/bin/fail2ban-regex fail2ban ||
    echo "hostguard setup: fail2ban not unpacked: benchmarks/logons.py will print no comparison" >&2
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$(id -u)" -ne 0 ]; then
  if [ "$mode" = test ] && { [ ! -x "$tests_cache/firewalld/usr/bin/firewall-offline-cmd" ] ||
                             [ ! -x "$tests_cache/docker/usr/sbin/dockerd" ]; }; then
    echo "hostguard setup: firewalld's offline tool or dockerd is not unpacked in $tests_cache" >&2
    echo "run as root: scripts/install-system-deps.sh test" >&2
  fi
  [ ${#missing[@]} -eq 0 ] && exit 0
  echo "hostguard setup: missing Debian packages: ${missing[*]}" >&2
  echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
  [ "$mode" = test ] && exit 0   # tests needing them skip with a reason (and fail under CI=true)
  exit 1
fi
if [ ${#missing[@]} -eq 0 ]; then
  [ "$mode" = test ] && unpack_test_tools
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Never let a package's postinst start a service on this host during setup.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
trap '[ $created_policy = 1 ] && rm -f "$policy"' EXIT
apt-get update -q >/dev/null || apt-get update
# phpMyAdmin's postinst would ask to create its database and reconfigure Apache: answer no to both
printf '%s\n' 'phpmyadmin phpmyadmin/dbconfig-install boolean false' \
  'phpmyadmin phpmyadmin/reconfigure-webserver multiselect' | debconf-set-selections
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "hostguard setup: installed ${missing[*]}"
for p in "${missing[@]}"; do
  # a service package installed for the tests must not start at the next boot either
  case "$p" in
    redis-server|nginx-light|cron|apache2|mariadb-server|postgresql|memcached|vsftpd|php8.2-fpm|tomcat10)
      unit=${p%-light}
      unit=${unit%-server}
      [ "$p" = redis-server ] && unit=redis-server
      for unit in "$unit.service" $([ "$p" = apache2 ] && echo apache-htcacheclean.service); do
        systemctl disable "$unit" >/dev/null 2>&1 || rm -f "/etc/systemd/system/multi-user.target.wants/$unit"
      done ;;
    systemd-journal-remote)
      for unit in systemd-journal-remote.socket systemd-journal-remote.service systemd-journal-upload.service; do
        systemctl disable "$unit" >/dev/null 2>&1 || true
      done ;;
  esac
done
[ "$mode" = test ] && unpack_test_tools
exit 0
