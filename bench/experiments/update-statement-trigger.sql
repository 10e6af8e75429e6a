-- Experiment for bench/instructions.sh (EXPERIMENT_TABLES=this file): updates
-- of the "tracked" table captured by one AFTER UPDATE statement trigger over the
-- NEW transition table instead of the row trigger certyo.capture(). A row of
-- NEW is a change when its hash is NULL (write-backs and backfill stamps set
-- one) and its version is in neither the outbox nor the receipts (a no-op
-- update, or a write-back without a hash, keeps a version already captured).
-- Not complete: key changes (certyo.capture_key_change updates the row
-- capture wrote), backfill stamps of tables tracked by earlier releases and
-- rows without a version are not handled.
-- PostgreSQL 15, 2026-12-04, n=1000, instructions per statement (each its own
-- transaction): single-row UPDATE 473k today; 448k with no filter at all, 481k
-- with ON CONFLICT DO NOTHING and a receipt probe (this file), 497k with two
-- NOT EXISTS probes. 100-row UPDATE 20.8M today; 10.9M, 12.4M, 11.9M.
-- So it halves a many-row UPDATE and does not help a single-row one (pgbench's
-- UPDATE and TPC-B rows): not taken.
create function certyo.capture_upd() returns trigger language plpgsql security definer
set search_path = pg_catalog, pg_temp as $$
declare v_waiting boolean; v_saved text[];
begin
    if not certyo.output_pinned() then v_saved := certyo.pin_output(); end if;
    with ins as (
        insert into certyo.outbox (id, table_id, op, record_id, payload)
        select x.v, tg_argv[0]::integer, 'U',
               coalesce(x.j ->> tg_argv[2], certyo.record_key_slow(tg_argv[0]::integer, x.j)), x.j
        from (select n.certyo_record_version as v, row_to_json(n.*) as j from certyo_new n
              where n.certyo_record_hash is null offset 0) as x
        where not exists (select from certyo.receipt r where r.id = x.v)
        on conflict do nothing
    )
    select exists (select from certyo.waiting_relay) into v_waiting;
    if v_saved is not null then perform certyo.unpin_output(v_saved); end if;
    if v_waiting then perform certyo.wake_relays(); end if;
    return null;
end $$;
do $$
declare a text;
begin
    select format('%L, %L, %L', tt.table_id, 'table', 'id') into a from certyo.tracked_table tt where tt.relid = 'tracked'::regclass;
    drop trigger certyo_capture_update on tracked;
    execute format('create trigger certyo_capture_update after update on tracked referencing new table as certyo_new'
                   ' for each statement execute function certyo.capture_upd(%s)', a);
end $$;
