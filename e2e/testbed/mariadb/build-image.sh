#!/usr/bin/env bash
# Writes the test bed's MariaDB image (kbak.local/mariadb:dev) to OUT: the
# Debian packages mariadb-server-core and mariadb-client-core and every
# library they depend on, downloaded with apt-get (not installed) and
# unpacked into a root file system, plus busybox for a shell and this
# directory's entrypoint and configuration. Checks that the server and the
# client run in that root before writing the image.
set -euo pipefail
mkimage=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
mkdir -p "$work/debs" "$work/root"
chown _apt "$work/debs" 2>/dev/null || true # apt-get download writes as _apt

# The packages and what they depend on, recursively; alternatives to
# libsystemd0 and the configuration packages (my.cnf is ours) left out.
mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances mariadb-server-core mariadb-client-core |
  grep '^[a-z0-9]' | sort -u | grep -vx 'libelogind0\|mariadb-common\|mysql-common')
[ ${#pkgs[@]} -gt 0 ] || { echo "build-image.sh: apt knows no mariadb-server-core" >&2; exit 1; }
(cd "$work/debs" && apt-get download "${pkgs[@]}") >/dev/null
for d in "$work"/debs/*.deb; do
  dpkg -x "$d" "$work/root"
done
r=$work/root
rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/locale" "$r/usr/share/lintian"
mkdir -p "$r/bin" "$r/etc/mysql" "$r/usr/local/bin" "$r/var/lib/mysql" "$r/run/mysqld" "$r/root" "$r/tmp"
chmod 1777 "$r/tmp"
chmod 0700 "$r/root"
cp /bin/busybox "$r/bin/busybox"
echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
echo 'root:x:0:' >"$r/etc/group"
install -m 0644 "$here/my.cnf" "$r/etc/mysql/my.cnf"
install -m 0755 "$here/init.sh" "$r/usr/local/bin/kbak-mariadb"
for b in /usr/sbin/mariadbd /usr/bin/mariadb; do
  if ! chroot "$r" "$b" --version >/dev/null; then
    echo "build-image.sh: $b does not run from the unpacked packages" >&2
    exit 1
  fi
done

args=(--out "$out" --ref kbak.local/mariadb:dev --tree "$r:/" --entrypoint /usr/local/bin/kbak-mariadb)
# Every busybox applet the packages do not provide.
for a in $(/bin/busybox --list-full); do
  [ -e "$r/$a" ] || [ -L "$r/$a" ] || args+=(--symlink "/bin/busybox:/$a")
done
"$mkimage" "${args[@]}"
