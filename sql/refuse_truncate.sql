-- certyo.refuse_truncate(): BEFORE TRUNCATE trigger on tracked tables. TRUNCATE
-- fires no row triggers, so it would remove rows without a trace: refuse it.
create or replace function certyo.refuse_truncate()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    raise exception 'TRUNCATE of % is refused: it is tracked by certyo', tg_relid::regclass
        using errcode = '0A000',
              detail = 'TRUNCATE bypasses row triggers, so the removal of its rows could not be recorded.',
              hint = 'Use DELETE (captured), or run certyo.disable_tracking() first.';
end
$$;
