#!/bin/sh
# The test bed MariaDB image's entrypoint: on first start, create the system
# tables in the (empty) data volume and give root the password of
# $MARIADB_ROOT_PASSWORD; then run the server in the foreground.
set -eu
datadir=/var/lib/mysql
mkdir -p /run/mysqld /tmp
set -- mariadbd
if [ ! -d "$datadir/mysql" ]; then
  mariadb-install-db --skip-test-db --skip-name-resolve --force >/tmp/install-db.log 2>&1 || {
    cat /tmp/install-db.log >&2
    exit 1
  }
  pw=$(printf '%s' "${MARIADB_ROOT_PASSWORD:?set MARIADB_ROOT_PASSWORD}" | sed "s/'/''/g")
  printf "ALTER USER 'root'@'localhost' IDENTIFIED BY '%s';\n" "$pw" >/tmp/init.sql
  set -- "$@" --init-file=/tmp/init.sql
fi
exec "$@"
