#!/bin/bash
# The demo behind `make demo`: everything in a temporary directory, nothing installed. Makes
# keys and a config, starts a real somirrord on the SQLite store, generates a CRM-like tenant,
# runs a full load and an incremental cycle with somirror-task, verifies the mirror against the
# source, shows where the mirror is and how to query it, and stops the daemon.
# Usage: contrib/demo.sh BUILDDIR [WORKDIR]
set -euo pipefail
builddir=$(cd "${1:-.}" && pwd)
work=${2:-$(mktemp -d /tmp/somirror-demo.XXXXXX)}
mkdir -p "$work"
task="$builddir/somirror-task"
daemon="$builddir/somirrord"
ctl="$builddir/somirrorctl"
tenant=Cust12345
app_id=123123123123123123

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

say "keys: a test vendor signing key and an application key pair in $work/keys"
"$task" keys --out "$work/keys"
mkdir -p "$work/mirrors"
cat > "$work/somirrord.yaml" <<YAML
listen: [ "127.0.0.1:$port" ]
workers: 2
pid_file: $work/somirrord.pid
status_socket: $work/somirrord.sock
log: { file: $work/somirrord.log, level: info }
application:
  id: "$app_id"
  private_key: $work/keys/app.xml
vendor:
  certificates: [ $work/keys/vendor.crt ]
store:
  driver: sqlite
  sqlite: { directory: $work/mirrors }
YAML
"$daemon" -t -c "$work/somirrord.yaml"

say "somirrord: starting on 127.0.0.1:$port (log: $work/somirrord.log)"
"$daemon" -c "$work/somirrord.yaml"
trap 'kill -TERM "$(cat "$work/somirrord.pid" 2>/dev/null)" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" \
        2>/dev/null && break
    sleep 0.1
done

say "source: a generated CRM database for tenant $tenant, with change tracking"
"$task" gen --db "$work/source.db" --scale 2000 --seed 1
"$task" provision --db "$work/source.db"

run_cycle() {
    "$task" run --once --url "http://127.0.0.1:$port/" --app-id "$app_id" \
        --vendor-key "$work/keys/vendor.key" --vendor-cert "$work/keys/vendor.crt" \
        --app-public-key "$work/keys/app.pub" --tenant "$tenant" --db "$work/source.db"
}

say "cycle 1: a full load"
run_cycle
"$task" verify --db "$work/source.db" --mirror "$work/mirrors/Mirror_$tenant.db" --tenant "$tenant"

say "cycle 2: 1,000 changes in the source, then an incremental cycle"
"$task" churn --db "$work/source.db" --changes 1000 --seed 2
run_cycle
"$task" verify --db "$work/source.db" --mirror "$work/mirrors/Mirror_$tenant.db" --tenant "$tenant"

say "status"
"$ctl" -s "$work/somirrord.sock" show tenants

say "the mirror"
cat <<TEXT
The mirror of $tenant is $work/mirrors/Mirror_$tenant.db. Query it with sqlite3, for example:
  sqlite3 $work/mirrors/Mirror_$tenant.db '.tables'
  sqlite3 $work/mirrors/Mirror_$tenant.db 'SELECT tablename, lsn, updated FROM ${tenant}_mirroring'
  sqlite3 $work/mirrors/Mirror_$tenant.db 'SELECT count(*) FROM contact'
TEXT
sqlite3 -header -column "$work/mirrors/Mirror_$tenant.db" \
    "SELECT tablename, lsn, updated FROM ${tenant}_mirroring ORDER BY tablename LIMIT 8"

say "stopping somirrord"
kill -TERM "$(cat "$work/somirrord.pid")"
for _ in $(seq 100); do [ -e "$work/somirrord.pid" ] || break; sleep 0.1; done
trap - EXIT
echo "done; everything is in $work"
