#!/usr/bin/env bash
# Starts a PostgreSQL server from Debian's packages on 127.0.0.1:5432 for the store's tests and
# prints the line that points them at it. Runs as root, without stdin; safe to run again.
#
#   eval "$(.ci/postgres.sh)"    # sets HBFP_DSE_TEST_PG_URL and HBFP_DSE_TEST_PG_CTL
#
# Only the export line goes to stdout; progress and errors go to stderr.
#
#   .ci/postgres.sh --binaries   # only installs the server's programs, where they are missing
#
# is what `make test` runs as root outside CI, for the throwaway clusters of tests/pg_cluster.py:
# it creates no cluster, starts no server and prints nothing.
set -euo pipefail

PORT=5432
ROLE=hbfp
PASSWORD=hbfp
DATABASE=hbfp_test
CLUSTER=main
export DEBIAN_FRONTEND=noninteractive

log() { echo "postgres.sh: $*" >&2; }

# Runs a command quietly; its output is shown only when it fails.
quiet() {
    local out
    if ! out=$("$@" 2>&1); then
        echo "$out" >&2
        log "failed: $*"
        return 1
    fi
}

# Runs a client as the cluster owner from /, so that it can read its working directory.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

have_server() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

install_server() {
    if ! have_server; then
        log "installing postgresql"
        quiet apt-get update -qq
        quiet apt-get install -y -qq postgresql
    fi
}

# Debian's package creates and starts a "main" cluster on its first install, unless
# createcluster.conf (which reads createcluster.d) says create_main_cluster = false: that setting
# is there for the time of the install only, and a cluster that the install made all the same
# is dropped again.
DROPIN_DIR=/etc/postgresql-common/createcluster.d
DROPIN=$DROPIN_DIR/zz-hbfp-dse-binaries-only.conf
DROPIN_DIR_MADE=

remove_dropin() {
    rm -f "$DROPIN"
    if [ -n "$DROPIN_DIR_MADE" ]; then rmdir "$DROPIN_DIR" 2>/dev/null || true; fi
}

clusters() { if command -v pg_lsclusters >/dev/null; then pg_lsclusters -h | awk '{ print $1, $2 }'; fi; }

install_binaries_only() {
    if have_server; then return; fi
    local before version cluster
    before=$(clusters)
    if [ ! -d "$DROPIN_DIR" ]; then DROPIN_DIR_MADE=1; fi
    trap remove_dropin EXIT
    mkdir -p "$DROPIN_DIR"
    echo "create_main_cluster = false" >"$DROPIN"
    install_server
    remove_dropin
    clusters | while read -r version cluster; do
        if ! grep -qxF "$version $cluster" <<<"$before"; then
            log "dropping cluster $version/$cluster, which the install created"
            quiet pg_dropcluster --stop "$version" "$cluster"
        fi
    done
}

if [ "${1:-}" = --binaries ]; then
    install_binaries_only
    exit 0
fi

newest_version() { ls /usr/lib/postgresql | sort -V | tail -n 1; }

# Writes our settings to the cluster's conf.d; prints "changed" when they differed, so that a
# running server restarts.
configure() {
    local version=$1 file
    file=/etc/postgresql/$version/$CLUSTER/conf.d/hbfp-dse.conf
    local wanted="port = $PORT
listen_addresses = '127.0.0.1'"
    if [ "$(cat "$file" 2>/dev/null || true)" != "$wanted" ]; then
        mkdir -p "$(dirname "$file")"
        printf '%s\n' "$wanted" >"$file"
        echo changed
    fi
}

start_cluster() {
    local version=$1 changed
    if ! pg_lsclusters -h | awk -v v="$version" -v c="$CLUSTER" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
        log "creating cluster $version/$CLUSTER"
        quiet pg_createcluster --port "$PORT" "$version" "$CLUSTER"
    fi
    changed=$(configure "$version")
    if pg_ctlcluster "$version" "$CLUSTER" status >/dev/null 2>&1; then
        if [ -n "$changed" ]; then
            log "restarting cluster $version/$CLUSTER for its new settings"
            quiet pg_ctlcluster "$version" "$CLUSTER" restart
        fi
    else
        log "starting cluster $version/$CLUSTER"
        quiet pg_ctlcluster "$version" "$CLUSTER" start
    fi
    quiet pg_isready -q -h 127.0.0.1 -p "$PORT" -t 60
}

create_role_and_database() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -c "
        DO \$\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
                CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
            ELSE
                ALTER ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
            END IF;
        END \$\$;"
    if [ -z "$(as_postgres psql -X -tA -p "$PORT" -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" ]; then
        as_postgres createdb -p "$PORT" -O "$ROLE" "$DATABASE"
    fi
}

install_server
version=$(newest_version)
start_cluster "$version"
create_role_and_database
log "PostgreSQL $version is up on 127.0.0.1:$PORT"
echo "export HBFP_DSE_TEST_PG_URL=postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
# How the outage tests stop and start this server.
echo "export HBFP_DSE_TEST_PG_CTL=\"pg_ctlcluster $version $CLUSTER\""
