-- certyo.tracked_tables: which tables are tracked and how (key, collection,
-- operations, excluded columns), with their backlog.
create or replace view certyo.tracked_tables as
select
    format('%I.%I', t.schema_name, t.table_name) as table_name,
    t.collection,
    t.key_columns,
    t.operations,
    t.exclude_columns,
    t.enabled_at,
    coalesce(b.pending, 0) as pending,
    coalesce(b.parked, 0) as parked,
    b.oldest_change_age
from certyo.tracked_table t
left join certyo.backlog b on b.table_id = t.table_id
where t.active;

comment on view certyo.tracked_tables is
    'Tables whose changes certyo captures, their configuration and backlog.';
