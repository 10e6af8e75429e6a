#!/usr/bin/env bash
# Write tax of capture, side by side, pgbench with 8 clients, variants
# interleaved, 3 rounds (or as many as asked):
#   untracked        no capture at all
#   tracked          certyo capture, relay absent (paused)
#   tracked_relay    certyo capture with a relay running (local Certyo), single-row INSERT only;
#                    tracked_relay_linger20 with CERTYO_LINGER_MS=20
#   tracked_nowake   certyo capture without the wake-up (its check taken out of a copy of
#                    capture_rows), single-row INSERT only
#   tracked_berlin   certyo capture, the writers' sessions in TimeZone Europe/Berlin (a server
#                    outside UTC: capture pins the zone), single-row INSERT and UPDATE only
#   naive            the ceiling a trigger-based outbox sets: one AFTER ROW trigger inserting
#                    row_to_json into a bigserial outbox (no versions, no status, no order)
#   notify           Certyo guide's LISTEN/NOTIFY design: a row trigger that pg_notify()s the row as JSON
#   polling          Certyo guide's timestamp polling: an indexed updated_at column (set by the writer)
# Operations: insert (one row per transaction), insert100 (one 100-row INSERT
# statement per transaction), update and delete (one row, random id, of a
# prefilled table), insert_empty (one row per transaction into a table that
# starts empty: untracked, tracked and naive only), and pgbench's built-in TPC-B-like script (scale 1, so 8
# clients share 1 branch and 10 tellers) on pgbench tables untracked, tracked
# (accounts, tellers, branches) and with the naive outbox on the same tables.
# First, WAL bytes per single-row INSERT for each variant.
# Variants run in a rotated order each round, each after a checkpoint.
# Output: "round=R op=OP variant=V tps=X" (op tpcb too), "wal variant=V bytes_per_change=X", and for
# the single-row INSERT runs of tracked and tracked_relay* "cpu round=R variant=V writers=C relay_db=C
# relay=C certyo=C client=C processes=N,N,N,N,N" (cores busy, and how many processes of
# each group were sampled; see run()).
# Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bench/write-tax.sh [seconds] [prefill rows] [rounds] [WAL transactions per client]
set -euo pipefail
secs=${1:-10}
rows=${2:-500000}
rounds=${3:-3}
wal_tx=${4:-1000}
here=$(cd "$(dirname "$0")" && pwd)
db=certyo_bench_write_tax
admin=${DATABASE_URL:?set DATABASE_URL to a superuser connection}
psql -q "$admin" -c "drop database if exists $db" -c "create database $db"
url=$(node -e "const u=new URL(process.argv[1]); u.pathname='/$db'; console.log(u.toString())" "$admin")
DATABASE_URL=$url node "$here/../bin/certyo-pg.js" migrate >/dev/null
variants="untracked tracked tracked_nowake naive notify polling"
psql -q "$url" <<SQL
create table untracked (id bigserial primary key, name text not null, price numeric(12,2), qty int, created timestamptz default now(), attrs json);
create table tracked (like untracked including all);
create table tracked_nowake (like untracked including all);
create table naive (like untracked including all);
create table notify (like untracked including all);
create table polling (like untracked including all, updated_at timestamptz not null default now());
create index polling_updated_at on polling (updated_at, id);
select certyo.enable_tracking('tracked');
select certyo.enable_tracking('tracked_nowake');
-- Inserts wake relays from inside capture_rows' statement: a copy without that check.
do \$\$
declare d text;
begin
  d := replace(pg_get_functiondef('certyo.capture_rows'::regproc), 'exists (select from certyo.waiting_relay)', 'false');
  if position('waiting_relay' in d) > 0 then raise exception 'capture_rows changed: the wake-up check was not found'; end if;
  execute replace(d, 'certyo.capture_rows()', 'certyo.capture_rows_nowake()');
  select pg_get_triggerdef(t.oid) into d from pg_trigger t where t.tgrelid = 'tracked_nowake'::regclass and t.tgname = 'certyo_capture_insert';
  drop trigger certyo_capture_insert on tracked_nowake;
  execute replace(d, 'certyo.capture_rows(', 'certyo.capture_rows_nowake(');
end \$\$;
-- The naive outbox: one row trigger, one insert, nothing else.
create table naive_outbox (id bigserial primary key, tbl text not null, op text not null, payload json not null,
                           created timestamptz not null default now());
create function naive_capture() returns trigger language plpgsql as \$\$
begin
  insert into public.naive_outbox (tbl, op, payload) values (tg_table_name, tg_op, row_to_json(coalesce(new, old)));
  return null;
end \$\$;
create trigger naive_capture after insert or update or delete on naive for each row execute function naive_capture();
-- The guide's LISTEN/NOTIFY trigger: the whole row, as JSON, in every change.
create function notify_change() returns trigger language plpgsql as \$\$
begin
  perform pg_notify('certyo_changes', json_build_object('op', tg_op, 'row', row_to_json(coalesce(new, old)))::text);
  return null;
end \$\$;
create trigger notify_change after insert or update or delete on notify for each row execute function notify_change();
-- Prefill ids 1..rows in every table for update and delete, behind the triggers
-- (nothing captured, nothing notified).
set session_replication_role = replica;
$(for t in $variants; do echo "insert into $t (id, name, price, qty, attrs) select g, 'widget', 19.99, 3, '{\"color\":\"red\"}' from generate_series(1, $rows) g;"; done)
-- The tables share untracked's id sequence (like ... including all): start it past the prefill.
select setval('untracked_id_seq', $rows);
set session_replication_role = origin;
vacuum analyze;
SQL

# TPC-B-like: pgbench's tables in a schema per variant (pgbench finds them by search_path).
tpcb_variants="untracked tracked naive"
for v in $tpcb_variants; do
  psql -qX "$url" -c "create schema tpcb_$v"
  PGOPTIONS="-c search_path=tpcb_$v" pgbench -i -q -s 1 "$url" >/dev/null 2>&1
done
psql -qX "$url" <<SQL >/dev/null
$(for t in accounts tellers branches; do echo "select certyo.enable_tracking('tpcb_tracked.pgbench_$t');"; done)
$(for t in accounts tellers branches; do echo "create trigger naive_capture after insert or update or delete on tpcb_naive.pgbench_$t for each row execute function public.naive_capture();"; done)
vacuum analyze;
SQL

tmp=$(mktemp -d)
key=certyo_sk_test_writetax
port=$(node -e "const s=require('net').createServer().listen(0,()=>{console.log(s.address().port);s.close()})")
node "$here/../bin/certyo-pg.js" local-certyo --port "$port" --key "$key=bench" --flush-ms 1000 --anchor-ms 10 >/dev/null 2>&1 &
certyo=$!
relay=""
cleanup() {
  [ -n "$relay" ] && kill "$relay" 2>/dev/null || true
  kill "$certyo" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The single-row INSERT every insert op sends: into table $1.
insert_one() { echo "insert into $1 (name, price, qty, attrs) values ('widget', 19.99, 3, '{\"color\":\"red\"}');"; }
for t in $variants; do
  set_ts=""
  [ "$t" = polling ] && set_ts=", updated_at = now()"
  insert_one "$t" > "$tmp/insert.$t.sql"
  echo "insert into $t (name, price, qty, attrs) select 'widget', 19.99, g, '{\"color\":\"red\"}' from generate_series(1, 100) g;" > "$tmp/insert100.$t.sql"
  printf '\\set id random(1, %d)\nupdate %s set qty = qty + 1%s where id = :id;\n' "$rows" "$t" "$set_ts" > "$tmp/update.$t.sql"
  printf '\\set id random(1, %d)\ndelete from %s where id = :id;\n' "$rows" "$t" > "$tmp/delete.$t.sql"
done

# WAL bytes per single-row INSERT: 8 clients x 1000 transactions (or as many as asked), after a
# checkpoint, before the rounds: the tables hold only their prefill, so the inserts append.
# After the rounds' deletes, vacuum leaves free space on every page, the inserts scatter into
# it and each first touch of a page after the checkpoint writes a full-page image (8 kB): on
# PostgreSQL 18 that gave the untracked table 1,131 bytes per insert, more than the tracked
# one. The server's WAL position counts every backend's WAL: print the smaller of two windows.
for t in untracked tracked naive notify polling; do
  best=
  for pass in 1 2; do
    psql -qX "$url" -c checkpoint
    before=$(psql -qXAt "$url" -c "select pg_current_wal_lsn()")
    pgbench -n -c 8 -j 2 -t "$wal_tx" -f "$tmp/insert.$t.sql" "$url" >/dev/null 2>&1
    bytes=$(psql -qXAt "$url" -c "select round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$before') / (8.0 * $wal_tx))")
    if [ -z "$best" ] || [ "$bytes" -lt "$best" ]; then best=$bytes; fi
  done
  echo "wal variant=$t bytes_per_change=$best"
done

rotate() { # round words...: the words, rotated by the round (round 1 keeps their order)
  local r=$1
  shift
  printf '%s\n' "$@" | awk -v r="$r" '{a[NR]=$0} END {for (i = 0; i < NR; i++) print a[(i + r - 1) % NR + 1]}'
}
# "group pid ticks" for each process of each group (group=pid,pid,...): CPU time in clock ticks.
ticks() {
  local g p pids
  for g in "$@"; do
    pids=${g#*=}
    for p in ${pids//,/ }; do
      [ -r "/proc/$p/stat" ] && echo "${g%%=*} $p $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')"
    done
  done
  true
}
# The writers' (pgbench's) and the relay's backends in this database (other sessions may
# write elsewhere on the server), as groups for ticks (one query: it runs
# while the machine is busy). Pids of this machine only when the server runs on it.
backends() {
  psql -qXAt "$url" -c "select 'writers=' || coalesce(string_agg(pid::text, ',') filter (where application_name = 'pgbench'), '')
                               || ' relay_db=' || coalesce(string_agg(pid::text, ',') filter (where application_name = 'certyo-relay'), '')
                        from pg_stat_activity where datname = current_database()"
}
hz=$(getconf CLK_TCK)
# Sleep until ms milliseconds after a start time (date +%s%N); at once if that has passed.
until_ms() { local left=$(($1 - ($(date +%s%N) - $2) / 1000000)); if [ "$left" -gt 0 ]; then sleep "$(awk -v l="$left" 'BEGIN {print l / 1000}')"; fi; }
run() { # op variant table; each run starts after a checkpoint, so none pays another's full-page writes
  local start groups t0 t1
  psql -qX "$url" -c checkpoint
  start=$(date +%s%N)
  pgbench -n -c 8 -j 2 -T "$secs" -f "$tmp/$1.$3.sql" "$url" > "$tmp/pgbench.out" 2>/dev/null &
  local pb=$!
  if [ "$1" = insert ] && [[ $2 == tracked || $2 == tracked_relay* ]]; then
    # Where the cores go (relay absent, and relay running): sampled from a fifth of the run
    # (once the pids are found) to 70% of it, as cores busy. writers: the pgbench sessions' backends;
    # relay_db: the relay's backends (claims, acknowledgements, status write-back);
    # relay: its Node.js process; certyo: the local Certyo server (remote in production);
    # client: pgbench itself.
    until_ms $((secs * 200)) "$start"
    groups="$(backends) relay=${relay:-} certyo=$certyo client=$pb"
    # shellcheck disable=SC2086
    ticks $groups > "$tmp/cpu.a"
    t0=$(date +%s%N)
    until_ms $((secs * 700)) "$start"
    # shellcheck disable=SC2086
    ticks $groups > "$tmp/cpu.b"
    t1=$(date +%s%N)
  fi
  wait "$pb"
  echo "round=$round op=$1 variant=$2 tps=$(awk '/^tps/ {print $3}' "$tmp/pgbench.out")"
  if [ -n "${t1:-}" ]; then
    # Processes found in both samples only (the run ends as it is sampled: the later sample may miss some).
    awk -v r="$round" -v v="$2" -v s="$(((t1 - t0) / 1000000))" -v hz="$hz" '
      NR == FNR { a[$1 " " $2] = $3; next }
      ($1 " " $2) in a { busy[$1] += $3 - a[$1 " " $2]; procs[$1]++ }
      END {
        n = split("writers relay_db relay certyo client", k, " ")
        line = "cpu round=" r " variant=" v
        for (i = 1; i <= n; i++) line = line sprintf(" %s=%.2f", k[i], busy[k[i]] / hz / (s / 1000))
        for (i = 1; i <= n; i++) counted = counted (i > 1 ? "," : "") procs[k[i]] + 0
        print line " processes=" counted
      }' "$tmp/cpu.a" "$tmp/cpu.b"
  fi
}
tpcb() { # variant
  local tps
  psql -qX "$url" -c checkpoint
  tps=$(PGOPTIONS="-c search_path=tpcb_$1" pgbench -n -b tpcb-like -c 8 -j 2 -T "$secs" "$url" 2>/dev/null | awk '/^tps/ {print $3}')
  echo "round=$round op=tpcb variant=$1 tps=$tps"
}

for round in $(seq "$rounds"); do
  # Rotate the order of the variants from round to round.
  order=$(rotate "$round" $variants tracked_berlin)
  for op in insert insert100 update delete; do
    for t in $order; do
      [ "$t" = tracked_nowake ] && [ "$op" != insert ] && continue
      if [ "$t" = tracked_berlin ]; then
        case $op in insert | update) PGOPTIONS="-c TimeZone=Europe/Berlin" run "$op" "$t" tracked ;; esac
        continue
      fi
      run "$op" "$t" "$t"
    done
    if [ "$op" = insert ]; then
      # The relay keeping up with the writers, not draining what the paused runs left behind,
      # nor verifying what earlier runs delivered (due after CERTYO_VERIFY_DELAY_MS: it
      # would fall on whichever relay run comes first in the round; verify.js measures it).
      # With its default CERTYO_LINGER_MS (none) and with 20 ms, in rotated order.
      for linger in $(rotate "$round" default 20); do
        psql -qX "$url" -c "truncate certyo.outbox, certyo.receipt"
        variant=tracked_relay lingering=""
        if [ "$linger" != default ]; then variant=tracked_relay_linger$linger lingering=CERTYO_LINGER_MS=$linger; fi
        env DATABASE_URL="$url" CERTYO_API_KEY=$key CERTYO_TENANT_ID=bench CERTYO_BASE_URL="http://127.0.0.1:$port" CERTYO_BACKFILL=off \
          LOG_LEVEL=error $lingering node "$here/../bin/certyo-pg.js" relay &
        relay=$!
        sleep 1
        run insert "$variant" tracked
        kill "$relay"
        wait "$relay" || true
        relay=""
      done
    fi
  done
  # Single-row INSERT into a table that starts empty (the others hold the prefill): a new
  # table per round and variant (certyo refuses TRUNCATE of a tracked table).
  for v in $(rotate "$round" untracked tracked naive); do
    f=empty${round}_$v
    psql -qX -v ON_ERROR_STOP=1 "$url" >/dev/null <<SQL
create table $f (like untracked including all);
$(case $v in
  tracked) echo "select certyo.enable_tracking('$f');" ;;
  naive) echo "create trigger naive_capture after insert or update or delete on $f for each row execute function naive_capture();" ;;
esac)
SQL
    insert_one "$f" > "$tmp/insert_empty.$f.sql"
    run insert_empty "$v" "$f"
  done
  for v in $(rotate "$round" $tpcb_variants); do
    tpcb "$v"
  done
done

psql -q "$admin" -c "drop database $db with (force)"
