#!/bin/bash
# Creates the bridge's MySQL user on the first start of the container (docker-entrypoint-initdb.d).
# The password comes from CDC_DB_PASSWORD (docker-compose.yml), the same value the bridge gets as
# CDC_BRIDGE__SOURCE__PASSWORD.
#
# Privileges the bridge needs (docs/operations.md):
#   REPLICATION SLAVE   read the binlog stream
#   REPLICATION CLIENT  SHOW BINARY LOG STATUS / SHOW BINARY LOGS (positions, preflight checks)
#   SELECT              read table metadata and column names of the mapped tables
# mysql_native_password: PyMySQL without the `cryptography` package cannot do caching_sha2_password's
# first (RSA) login over a plain connection. Use TLS or caching_sha2_password in production.
set -euo pipefail

: "${CDC_DB_PASSWORD:?set CDC_DB_PASSWORD for the cdc user}"
pw_sql=${CDC_DB_PASSWORD//\'/\'\'}

mysql --protocol=socket -uroot -p"${MYSQL_ROOT_PASSWORD}" <<SQL
CREATE USER IF NOT EXISTS 'cdc'@'%' IDENTIFIED WITH mysql_native_password BY '${pw_sql}';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%';
GRANT SELECT ON shop.* TO 'cdc'@'%';
FLUSH PRIVILEGES;
SQL
echo "10-cdc-user.sh: user cdc created with REPLICATION SLAVE, REPLICATION CLIENT and SELECT on shop.*"
