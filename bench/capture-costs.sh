#!/usr/bin/env bash
# Where a tracked write's instructions go: bench/instructions.sh (one statement
# per transaction, as pgbench sends them) on the tracked table, capture built
# up part by part from the untracked table: each line gives a variant's
# instructions per statement and its difference from the line above, what
# that part costs. The indented lines take one thing out of capture as it is
# and compare with it. What-if variants only (they drop guarantees).
# Usage: bench/capture-costs.sh [n]    (PG_BIN as for bench/instructions.sh)
set -euo pipefail
n=${1:-300}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A copy of a capture function's file with one text replaced; fails when the text is gone.
replaced() { # file old new out
  python3 - "$@" <<'PY'
import sys
path, old, new, out = sys.argv[1:]
text = open(path).read()
if old not in text:
    sys.exit(f'{path}: {old!r} not found: update bench/capture-costs.sh')
open(out, 'w').write(text.replace(old, new))
PY
}

# label op [EXPERIMENT] [EXPERIMENT_TABLES] [table]: its instructions, and the
# difference from the line before (or, for a "without" line, from the base).
run() {
  local ir
  ir=$(EXPERIMENT=${3:-} EXPERIMENT_TABLES=${4:-} OPS=$2 TABLES=${5:-tracked} bash "$here/instructions.sh" "$n" |
    awk -v op="$2" '$1 == op {print $2}')
  if [ -n "${prev:-}" ]; then
    printf '  %-62s %9s %+9d\n' "$1" "$ir" "$((ir - prev))"
  else
    printf '  %-62s %9s\n' "$1" "$ir"
  fi
  [ -n "${base:-}" ] || prev=$ir
}

drop() { # trigger names to drop, as an EXPERIMENT_TABLES file
  local f="$tmp/drop.$RANDOM.sql" t
  : > "$f"
  for t in "$@"; do echo "drop trigger $t on tracked;" >> "$f"; done
  echo "$f"
}

sql=$here/../sql
replaced "$sql/capture_rows.sql" 'if not certyo.deletes_checked() then' 'if false then' "$tmp/no_memo.sql"
replaced "$tmp/no_memo.sql" '    if not certyo.output_pinned() then
        -- The zone first' '    if false then
        -- The zone first' "$tmp/no_checks.sql"
replaced "$sql/capture_rows.sql" 'set search_path = pg_catalog, pg_temp
as $$
declare
    v_table' 'as $$
declare
    v_table' "$tmp/rows_no_set.sql"
replaced "$sql/capture.sql" 'set search_path = pg_catalog, pg_temp
as $$' 'as $$' "$tmp/capture_no_set.sql"
replaced "$sql/capture.sql" '    if certyo.output_pinned() then
        v_payload' '    if true then
        v_payload' "$tmp/capture_no_check.sql"

# No capture at all: certyo's own list of its triggers (certyo.drop_triggers).
echo "select certyo.drop_triggers('tracked');" > "$tmp/no_triggers.sql"
# Each op: a ladder from the untracked table to capture today, then what-if
# lines compared with capture today.
echo "single-row INSERT, instructions per statement (n=$n)"
prev= base=
run 'untracked table' insert/tx '' '' untracked
run 'tracked table: status columns, no triggers' insert/tx '' "$tmp/no_triggers.sql"
run '+ BEFORE INSERT trigger (version, status reset)' insert/tx '' \
  "$(drop certyo_before certyo_capture_insert certyo_capture_update certyo_capture_zkey certyo_capture_delete certyo_refuse_truncate)"
run '+ capture_rows less its checks (output settings, late deletes)' insert/tx "$tmp/no_checks.sql"
run '+ the output settings check' insert/tx "$tmp/no_memo.sql"
run '+ the late-delete memo check (= capture today)' insert/tx
base=1
run '  capture today without the SET search_path clause' insert/tx "$tmp/rows_no_set.sql"
echo "single-row UPDATE"
prev= base=
run 'untracked table' update/tx '' '' untracked
run 'tracked table: status columns, no triggers' update/tx '' "$tmp/no_triggers.sql"
run '+ BEFORE UPDATE trigger (guards, version, status reset)' update/tx '' "$(drop certyo_capture_update certyo_capture_zkey)"
run '+ AFTER UPDATE capture (WHEN clause, outbox, wake-up)' update/tx '' "$(drop certyo_capture_zkey)"
run '+ the key change trigger'"'"'s WHEN clause (= capture today)' update/tx
base=1
run '  capture today without the output settings check' update/tx "$tmp/capture_no_check.sql"
run '  capture today without the SET search_path clause' update/tx "$tmp/capture_no_set.sql"
echo "single-row DELETE"
prev= base=
run 'untracked table' delete/tx '' '' untracked
run 'tracked table: status columns, no triggers' delete/tx '' "$tmp/no_triggers.sql"
run '+ capture_rows (= capture today)' delete/tx
