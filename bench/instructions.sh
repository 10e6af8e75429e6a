#!/usr/bin/env bash
# Instructions per statement of capture, counted by valgrind's callgrind in a
# single-user PostgreSQL backend: deterministic, so it shows a change of a few
# percent that pgbench on a noisy 2-core machine cannot. It counts CPU work
# only (no waits, no fsync, no contention): pgbench's ratios stay the measure.
# Tables: untracked, naive (one AFTER ROW trigger inserting row_to_json into a
# bigserial outbox) and tracked (certyo). Statements, each in a loop of n inside
# one DO block: insert (one row), insert100 (one 100-row INSERT), update (one
# row by primary key). In one transaction, those leave out what PL/pgSQL does
# once per transaction (it initialises each expression it evaluates again in
# every transaction: a fifth of a tracked single-row INSERT), so insert/tx,
# update/tx, delete/tx, update100/tx (100 rows a statement: counted per
# statement) and delins/tx (a delete, then an insert: counted as one) send n
# statements one by one, each its own
# transaction as pgbench sends them: parse, plan, execute and commit counted,
# less a run of the warm-up statements alone. Needs valgrind and the server
# binaries (PG_BIN, default pg_config --bindir); builds its own cluster in a
# temporary directory.
# Usage: bench/instructions.sh [n]    (run as root: the cluster runs as postgres)
# To try a change: EXPERIMENT=file.sql (psql script run after the install, e.g.
# a create or replace function), EXPERIMENT_TABLES=file.sql (run once the
# tables exist: drop or replace a trigger), KEEP=file (the last callgrind
# profile, for callgrind_annotate --inclusive=yes), OPS="insert update", TABLES=tracked;
# SETTINGS="-c TimeZone=Europe/Berlin" runs the statements under other session
# settings (a server outside UTC, a JDBC client's extra_float_digits=3).
set -euo pipefail
n=${1:-1000}
here=$(cd "$(dirname "$0")" && pwd)
bin=${PG_BIN:-$(pg_config --bindir)}
dir=$(mktemp -d)
as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
trap 'as "$bin/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
as "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
port=$((20000 + RANDOM % 20000))
as "$bin/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start >/dev/null
url="postgres://postgres@127.0.0.1:$port/postgres"
DATABASE_URL=$url node "$here/../bin/certyo-pg.js" migrate >/dev/null
if [ -n "${EXPERIMENT:-}" ]; then psql -qX "$url" -v ON_ERROR_STOP=1 -f "$EXPERIMENT" >/dev/null; fi
psql -qX "$url" >/dev/null <<'SQL'
create table untracked (id bigserial primary key, name text not null, price numeric(12,2), qty int, created timestamptz default now(), attrs json);
create table naive (like untracked including all);
create table tracked (like untracked including all);
select certyo.enable_tracking('tracked');
create table naive_outbox (id bigserial primary key, tbl text not null, op text not null, payload json not null, created timestamptz not null default now());
create function naive_capture() returns trigger language plpgsql as $$
begin
  insert into public.naive_outbox (tbl, op, payload) values (tg_table_name, tg_op, row_to_json(coalesce(new, old)));
  return null;
end $$;
create trigger naive_capture after insert or update or delete on naive for each row execute function naive_capture();
SQL
if [ -n "${EXPERIMENT_TABLES:-}" ]; then psql -qX "$url" -v ON_ERROR_STOP=1 -f "$EXPERIMENT_TABLES" >/dev/null; fi
# Rows 1..1000 in each table for the updates, and above them rows for the deletes,
# whatever the order of OPS (the tables share untracked's id sequence).
warm=100
rows=$((1000 + n + 2 * warm))
for t in untracked naive tracked; do
  psql -qX "$url" -c "insert into $t (id, name, price, qty, attrs) select g, 'w', 1, 1, null from generate_series(1, $rows) g" >/dev/null
done
psql -qX "$url" -c "select setval('untracked_id_seq', $rows)" >/dev/null
as "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null
row="'widget', 19.99, 3, '{\"color\":\"red\"}'"
declare -A loop=(
  [insert]="insert into %s (name, price, qty, attrs) values ($row)"
  [insert100]="insert into %s (name, price, qty, attrs) select $row from generate_series(1, 100)"
  [update]="update %s set qty = qty + 1 where id = 1 + i %% 1000"
)
declare -A tx=( # @T@ the table, %d the statement's number (every run deletes other rows)
  [insert/tx]="insert into @T@ (name, price, qty, attrs) values ($row);%.0s\n"
  [update/tx]="update @T@ set qty = qty + 1 where id = 1 + %d %% 1000;\n"
  [delete/tx]="delete from @T@ where id = 1000 + %d;\n"
  [update100/tx]="update @T@ set qty = qty + 1 where id <= 100 and %d > 0;\n"
  # a delete, then an insert that probes for late deletes (the clock moved): counted as one
  [delins/tx]="delete from @T@ where id = 1000 + %d;\ninsert into @T@ (name, price, qty, attrs) values ($row);\n"
)
single() { # input file -> instructions the single-user backend spent on it
  as valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$bin/postgres" --single -D "$dir/data" -c synchronous_commit=off ${SETTINGS:-} postgres < "$1" > "$dir/run.log" 2>&1
  if [ -n "${KEEP:-}" ]; then cp "$dir/cg.out" "$KEEP"; fi
  callgrind_annotate "$dir/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); ir = $1} END {print ir}'
}
statements() { # op table first count: count statements, numbered from first
  local f=${tx[$1]//@T@/$2}
  for ((j = $3; j < $3 + $4; j++)); do printf "$f" "$j"; done
}
tables=${TABLES:-untracked naive tracked}
printf '%-10s' statement; printf ' %12s' $tables; echo
for op in ${OPS:-insert insert100 update insert/tx update/tx delete/tx}; do
  line=$(printf '%-10s' "$op")
  k=$n; [ "$op" = insert100 ] && k=$(((n + 9) / 10)) # a tenth as many 100-row statements
  for t in $tables; do
    if [ -n "${tx[$op]:-}" ]; then
      # The warm-up alone, then the warm-up and n more: the difference is n statements.
      statements "$op" "$t" 1 "$warm" > "$dir/in.sql"
      base=$(single "$dir/in.sql")
      statements "$op" "$t" $((warm + 1)) $((warm + n)) > "$dir/in.sql"
      ir=$(($(single "$dir/in.sql") - base))
    else
      # The first statements load catalogs and plans; only the DO block is counted.
      stmt=$(printf "${loop[$op]}" "$t")
      printf '%s;\ndo $$ begin for i in 1..%s loop %s; end loop; end $$;\n' "${stmt//i %/1 %}" "$k" "$stmt" > "$dir/in.sql"
      as valgrind --tool=callgrind --toggle-collect=plpgsql_inline_handler --callgrind-out-file="$dir/cg.out" \
        "$bin/postgres" --single -D "$dir/data" -c synchronous_commit=off ${SETTINGS:-} postgres < "$dir/in.sql" > "$dir/run.log" 2>&1
      if [ -n "${KEEP:-}" ]; then cp "$dir/cg.out" "$KEEP"; fi
      ir=$(callgrind_annotate "$dir/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); ir = $1} END {print ir}')
    fi
    line+=$(printf ' %12s' "$((ir / k))")
  done
  echo "$line"
done
echo "(instructions per statement; n=$n; /tx: one statement per transaction)"
