#!/usr/bin/env bash
# Write tax of capture, side by side: untracked vs tracked (wake-up trigger
# installed, no relay) vs tracked without the wake-up trigger. pgbench, 8
# clients, single-row INSERT transactions, variants interleaved, 3 rounds.
# Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bench/write-tax.sh [seconds]
set -euo pipefail
secs=${1:-10}
db=certyo_bench_write_tax
admin=${DATABASE_URL:?set DATABASE_URL to a superuser connection}
psql -q "$admin" -c "drop database if exists $db" -c "create database $db"
url=$(node -e "const u=new URL(process.argv[1]); u.pathname='/$db'; console.log(u.toString())" "$admin")
DATABASE_URL=$url node "$(dirname "$0")/../bin/certyo-pg.js" migrate >/dev/null
psql -q "$url" <<'SQL'
create table untracked (id bigserial primary key, name text not null, price numeric(12,2), qty int, created timestamptz default now(), attrs json);
create table tracked (like untracked including all);
create table tracked_nowake (like untracked including all);
select certyo.enable_tracking('tracked');
select certyo.enable_tracking('tracked_nowake');
drop trigger certyo_wake on tracked_nowake;
SQL
tmp=$(mktemp -d)
for t in untracked tracked tracked_nowake; do
  echo "insert into $t (name, price, qty, attrs) values ('widget', 19.99, 3, '{\"color\":\"red\"}');" > "$tmp/$t.sql"
done
for round in 1 2 3; do
  for t in untracked tracked tracked_nowake; do
    tps=$(pgbench -n -c 8 -j 2 -T "$secs" -f "$tmp/$t.sql" "$url" 2>/dev/null | awk '/^tps/ {print $3}')
    echo "round=$round variant=$t tps=$tps"
  done
done
psql -q "$admin" -c "drop database $db"
