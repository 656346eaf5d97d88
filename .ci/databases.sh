#!/usr/bin/env bash
# Starts the database servers the ILS preset tests read: PostgreSQL (Debian's,
# TLS on, a throwaway CA) for Evergreen and FOLIO, MariaDB for Koha, both on
# 127.0.0.1 only; loads each preset's schema subset (fixtures/ils/<ils>/) with
# synthetic data from `synth::ils`; creates a read-only user; and writes
# target/ci-databases.env, which .ci/run sources so the tests find them.
#
# Runs as root on a fresh Debian machine (installs what is missing with
# apt-get) and is re-runnable: clusters, certificates and the password are
# made once, the data is reloaded every time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
state=$root/target/ci-databases
env_file=$root/target/ci-databases.env
pg_port=${ALSOBORROWED_CI_PG_PORT:-55432}
my_port=${ALSOBORROWED_CI_MYSQL_PORT:-53306}
user=alsoborrowed_ro
started=$SECONDS
say() { printf '[databases %ds] %s\n' $((SECONDS - started)) "$*"; }

mkdir -p "$state"
chmod 700 "$state"

# --- packages --------------------------------------------------------------
need=()
command -v pg_createcluster >/dev/null || need+=(postgresql)
command -v mariadbd >/dev/null || need+=(mariadb-server)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The packages' own service start may fail in a container; the servers
    # are started below, on their own ports and data directories.
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- secrets and a throwaway CA --------------------------------------------
if [[ ! -s $state/db.password ]]; then
    (umask 077 && openssl rand -hex 24 >"$state/db.password")
fi
chmod 600 "$state/db.password"
password=$(cat "$state/db.password")
if [[ ! -s $state/server.pem ]]; then
    say "making a throwaway CA and server certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=alsoborrowed CI CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$state/ca.key" -out "$state/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$state/server.key" -out "$state/server.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$state/server.ext"
    openssl x509 -req -in "$state/server.csr" -CA "$state/ca.pem" -CAkey "$state/ca.key" \
        -CAcreateserial -days 3650 -extfile "$state/server.ext" -out "$state/server.pem" 2>/dev/null
fi

# --- synthetic data ----------------------------------------------------------
say "generating synthetic ILS data"
cargo run -q --locked -p synth --example ils -- "$state/data" >"$state/expected.txt"

# --- PostgreSQL --------------------------------------------------------------
pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
cluster=alsoborrowed
conf=/etc/postgresql/$pg_version/$cluster
if [[ ! -d $conf ]]; then
    say "creating PostgreSQL $pg_version cluster $cluster on port $pg_port"
    pg_createcluster "$pg_version" "$cluster" -p "$pg_port" -- \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
fi
install -o postgres -g postgres -m 600 "$state/server.key" "$conf/server.key"
install -o postgres -g postgres -m 644 "$state/server.pem" "$conf/server.pem"
cat >"$conf/conf.d/alsoborrowed.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
ssl = on
ssl_cert_file = '$conf/server.pem'
ssl_key_file = '$conf/server.key'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
if pg_ctlcluster "$pg_version" "$cluster" status >/dev/null 2>&1; then
    pg_ctlcluster "$pg_version" "$cluster" restart
else
    pg_ctlcluster "$pg_version" "$cluster" start
fi
psql_as() {
    runuser -u postgres -- env PGOPTIONS='-c client_min_messages=warning' \
        psql -X -q -v ON_ERROR_STOP=1 -p "$pg_port" "$@"
}
psql_as -d postgres >/dev/null <<EOF
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') THEN
    CREATE ROLE $user LOGIN;
  END IF;
END \$\$;
ALTER ROLE $user PASSWORD '$password';
ALTER ROLE $user SET default_transaction_read_only = on;
EOF
load_pg() { # database, schemas the reader may use
    local db=$1 schemas=$2
    say "loading $db into PostgreSQL"
    if [[ -z $(psql_as -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
        runuser -u postgres -- createdb -p "$pg_port" "$db"
    fi
    psql_as -d "$db" <"fixtures/ils/$db/schema.sql" >/dev/null
    psql_as -d "$db" <"$state/data/$db/data.sql" >/dev/null
    psql_as -d "$db" >/dev/null <<EOF
GRANT CONNECT ON DATABASE $db TO $user;
GRANT USAGE ON SCHEMA $schemas TO $user;
GRANT SELECT ON ALL TABLES IN SCHEMA $schemas TO $user;
EOF
}
load_pg evergreen "actor, biblio, metabib, asset, action"
load_pg folio "diku_mod_circulation_storage, diku_mod_inventory_storage"

# --- MariaDB -----------------------------------------------------------------
my_data=/var/lib/alsoborrowed-mariadb
my_run=/run/alsoborrowed-mariadb
my_tls=/var/lib/alsoborrowed-mariadb-tls
sock=$my_run/mysqld.sock
mkdir -p "$my_run" "$my_tls"
chown mysql:mysql "$my_run" "$my_tls"
# A server left running with another clone's certificate must restart.
if ! cmp -s "$state/server.pem" "$my_tls/server.pem" &&
    mariadb-admin --no-defaults --socket="$sock" ping >/dev/null 2>&1; then
    say "restarting MariaDB for a new certificate"
    mariadb-admin --no-defaults --socket="$sock" shutdown
fi
install -o mysql -g mysql -m 600 "$state/server.key" "$my_tls/server.key"
install -o mysql -g mysql -m 644 "$state/server.pem" "$my_tls/server.pem"
install -o mysql -g mysql -m 644 "$state/ca.pem" "$my_tls/ca.pem"
if [[ ! -d $my_data/mysql ]]; then
    say "initializing MariaDB in $my_data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$my_data" \
        --auth-root-authentication-method=socket >/dev/null
fi
if ! mariadb-admin --no-defaults --socket="$sock" ping >/dev/null 2>&1; then
    say "starting MariaDB on port $my_port"
    nohup mariadbd --no-defaults --user=mysql --datadir="$my_data" --socket="$sock" \
        --pid-file="$my_run/mysqld.pid" --port="$my_port" --bind-address=127.0.0.1 \
        --skip-name-resolve --ssl-cert="$my_tls/server.pem" --ssl-key="$my_tls/server.key" \
        --ssl-ca="$my_tls/ca.pem" --innodb-flush-log-at-trx-commit=0 \
        --log-error="$my_run/error.log" >/dev/null 2>&1 &
    for _ in $(seq 60); do
        mariadb-admin --no-defaults --socket="$sock" ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    mariadb-admin --no-defaults --socket="$sock" ping >/dev/null ||
        { cat "$my_run/error.log" >&2; exit 1; }
fi
mariadb_as() { mariadb --no-defaults --socket="$sock" "$@"; }
say "loading koha into MariaDB"
mariadb_as <<EOF
CREATE DATABASE IF NOT EXISTS koha CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1';
ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT SELECT ON koha.* TO '$user'@'127.0.0.1';
EOF
mariadb_as koha <fixtures/ils/koha/schema.sql
mariadb_as koha <"$state/data/koha/data.sql"

# --- where the tests find them ----------------------------------------------
cat >"$env_file" <<EOF
export ALSOBORROWED_TEST_DB_HOST=127.0.0.1
export ALSOBORROWED_TEST_PG_PORT=$pg_port
export ALSOBORROWED_TEST_MYSQL_PORT=$my_port
export ALSOBORROWED_TEST_DB_USER=$user
export ALSOBORROWED_TEST_DB_PASSWORD_FILE=$state/db.password
export ALSOBORROWED_TEST_DB_CA=$state/ca.pem
EOF
say "ready; settings in $env_file"
