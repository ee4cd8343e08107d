#!/usr/bin/env bash
# The test command (README.md, "Two commands"): installs what the tests need when it is missing,
# starts the tests' own PostgreSQL cluster, then runs `cargo test` with this script's arguments.
#
#   bash scripts/test.sh                        every test
#   bash scripts/test.sh --test it scrape       arguments go to `cargo test`
#
# What the tests run for real: git, an SMTP server (Python's aiosmtpd), openssl (it makes the TLS
# tests' certificates), Debian's prometheus-node-exporter, a PostgreSQL server; systemd-analyze and script(1) for the packaging
# tests; chromium and chromium-driver for the dashboard's
# browser tests. As root with apt-get, whatever is missing is installed; otherwise the script says
# exactly what to install and exits 1. Nothing is installed when everything is there.
#
# PostgreSQL: the tests get a cluster of their own — initdb into target/test-postgres, trust
# authentication, 127.0.0.1 only, port 55432 — started with pg_ctl and left running for the next
# run. A PostgreSQL already running on the machine is not touched.
#
# Environment:
#   DATABASE_URL                      a PostgreSQL server to use instead (the tests create and drop
#                                     their own databases on it); no cluster is started
#   WATCHKEEPER_TEST_PG_PORT          the tests' cluster's port on 127.0.0.1 (default 55432)
#   WATCHKEEPER_TEST_PYTHON           a Python that imports aiosmtpd (default: found or installed)
#   WATCHKEEPER_SKIP_NODE_EXPORTER=1  skip, rather than fail, the tests that need node_exporter
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$repo/$target ;; esac
venv=$target/test-python

say() { printf 'test.sh: %s\n' "$*" >&2; }
die() {
    say "$@"
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }

have cargo || die "cargo is not on PATH: install a Rust toolchain (https://rustup.rs)"

# A Python that imports aiosmtpd (tests/it/support/smtp_server.py runs it); the tests read it from
# WATCHKEEPER_TEST_PYTHON.
imports_aiosmtpd() { "$1" -c 'import aiosmtpd' >/dev/null 2>&1; }
if [ -n "${WATCHKEEPER_TEST_PYTHON:-}" ]; then
    imports_aiosmtpd "$WATCHKEEPER_TEST_PYTHON" || die "WATCHKEEPER_TEST_PYTHON=$WATCHKEEPER_TEST_PYTHON cannot import aiosmtpd"
fi
find_python() {
    local python
    for python in ${WATCHKEEPER_TEST_PYTHON:+"$WATCHKEEPER_TEST_PYTHON"} python3 /usr/bin/python3 "$venv/bin/python3"; do
        if have "$python" && imports_aiosmtpd "$python"; then
            command -v "$python"
            return
        fi
    done
    return 1
}

# The PostgreSQL server binaries (initdb, pg_ctl, postgres), newest version first.
find_pg_bindir() {
    local dir
    if dir=$(pg_config --bindir 2>/dev/null) && [ -x "$dir/initdb" ]; then
        echo "$dir"
        return
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [ -x "$dir/initdb" ]; then
            echo "$dir"
            return
        fi
    done
    return 1
}

# Fill `missing` with the Debian packages of what is not there.
check() {
    missing=()
    have git || missing+=(git)
    have openssl || missing+=(openssl)
    if [ "${WATCHKEEPER_SKIP_NODE_EXPORTER:-}" != 1 ]; then
        have prometheus-node-exporter || have node_exporter || missing+=(prometheus-node-exporter)
    fi
    if [ -z "${DATABASE_URL:-}" ]; then
        pg_bindir=$(find_pg_bindir) || missing+=(postgresql)
    fi
    python=$(find_python) || missing+=(python3-aiosmtpd)
    have chromium || missing+=(chromium)
    have chromedriver || missing+=(chromium-driver)
    # A font with Korean, so the Korean pages' screenshots show Korean, not empty boxes.
    { have fc-list && [ -n "$(fc-list :lang=ko)" ]; } || missing+=(fonts-nanum)
    # The packaging tests: systemd-analyze checks the unit, script(1) gives serve a terminal.
    have systemd-analyze || missing+=(systemd)
    have script || missing+=(bsdutils)
}

# Say what is missing and how to get it, and stop.
fail_missing() {
    say "missing: ${missing[*]}"
    say "$1"
    say "    sudo apt-get install -y ${missing[*]}"
    if [[ " ${missing[*]} " == *" python3-aiosmtpd "* ]]; then
        say "(aiosmtpd may come from pip instead: set WATCHKEEPER_TEST_PYTHON to a python that imports it)"
    fi
    if [[ " ${missing[*]} " == *" prometheus-node-exporter "* ]]; then
        say "(where node_exporter cannot be installed, WATCHKEEPER_SKIP_NODE_EXPORTER=1 skips its tests)"
    fi
    exit 1
}

check
if [ ${#missing[@]} -gt 0 ] && is_root && have apt-get; then
    say "installing ${missing[*]}"
    apt-get update -qq
    # A fresh machine may still be running its unattended upgrades: wait for the lock.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
    check
    [ ${#missing[@]} -eq 0 ] || fail_missing "still missing after apt-get install (installed, but the program removed? add --reinstall):"
elif [[ " ${missing[*]} " == *" python3-aiosmtpd "* ]] && have python3; then
    # aiosmtpd into a virtual environment of our own: Debian's python3 refuses a system-wide
    # `pip install` (and `python3 -m venv` needs its python3-venv package).
    say "installing aiosmtpd into $venv"
    if python3 -m venv "$venv" && "$venv/bin/python3" -m pip install --quiet aiosmtpd; then
        check
    else
        say "could not install aiosmtpd into a venv (see above)"
        rm -rf "$venv"
    fi
fi
[ ${#missing[@]} -eq 0 ] || fail_missing "as root on Debian or Ubuntu this script installs them with apt-get; or install them yourself:"
export WATCHKEEPER_TEST_PYTHON=$python

# The tests' own PostgreSQL cluster; exports DATABASE_URL.
start_postgres() {
    local port=${WATCHKEEPER_TEST_PG_PORT:-55432}
    local dir=$target/test-postgres
    local owner=()
    mkdir -p "$dir"
    if is_root; then
        # initdb refuses to run as root: the cluster belongs to the postgres user.
        id -u postgres >/dev/null 2>&1 || die "there is no postgres user to run the tests' PostgreSQL as (initdb refuses root)"
        owner=(runuser -u postgres --)
        chown postgres: "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
            # The checkout is where the postgres user cannot go (under /root, say).
            dir=/var/tmp/watchkeeper-test-postgres-$port
            mkdir -p "$dir"
            chown postgres: "$dir"
        fi
    fi
    local data=$dir/data
    as_owner() { (cd / && "${owner[@]}" "$@"); }
    local url=postgres://postgres@127.0.0.1:$port
    local stop="${owner[*]}${owner[*]:+ }$pg_bindir/pg_ctl -D $data stop"

    if as_owner "$pg_bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        local running
        running=$(sed -n 4p "$data/postmaster.pid")
        if [ "$running" != "$port" ]; then
            say "restarting the tests' PostgreSQL on port $port (it was on $running)"
            as_owner "$pg_bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 -o "-p $port" restart >/dev/null ||
                die "PostgreSQL did not restart; its log: $dir/server.log"
        fi
    elif "$pg_bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
        # Something else holds the port: fine if it is a test cluster too (another checkout's).
        "$pg_bindir/psql" -XqtA "$url/postgres" -c 'SELECT 1' >/dev/null 2>&1 ||
            die "127.0.0.1:$port is taken by a PostgreSQL that refuses user postgres without a password; set WATCHKEEPER_TEST_PG_PORT to a free port"
        say "using the PostgreSQL already on 127.0.0.1:$port (not this checkout's cluster)"
        stop="(not ours)"
    else
        local major
        major=$("$pg_bindir/postgres" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
        if [ ! -f "$data/PG_VERSION" ] || [ "$(cat "$data/PG_VERSION")" != "$major" ]; then
            say "creating the tests' PostgreSQL $major cluster in $data"
            rm -rf "$data"
            as_owner "$pg_bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
                die "initdb failed; its output: $dir/initdb.log"
            # A throwaway cluster: TCP on loopback only, no socket file (paths under target/ can
            # be too long for one), and no waiting for the disk.
            as_owner tee -a "$data/postgresql.conf" >/dev/null <<'EOF'

# scripts/test.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
        fi
        say "starting the tests' PostgreSQL on 127.0.0.1:$port"
        as_owner "$pg_bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 -o "-p $port" start >/dev/null || {
            tail -n 20 "$dir/server.log" >&2 || true
            die "PostgreSQL did not start (log above: $dir/server.log); if port $port is taken, set WATCHKEEPER_TEST_PG_PORT"
        }
    fi
    local exists
    exists=$("$pg_bindir/psql" -XqtA "$url/postgres" -c "SELECT 1 FROM pg_database WHERE datname = 'test'")
    [ "$exists" = 1 ] || "$pg_bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres test
    export DATABASE_URL=$url/test
    say "PostgreSQL: $DATABASE_URL (stop: $stop)"
}

if [ -n "${DATABASE_URL:-}" ]; then
    say "PostgreSQL: DATABASE_URL as given"
else
    start_postgres
fi
say "SMTP server: aiosmtpd under $WATCHKEEPER_TEST_PYTHON"
exec cargo test "$@"
