-- certyo.status: per tracked table (and untracked ones with changes left),
-- what `certyo-pg status` shows: backlog, age of the oldest pending change,
-- parked changes, changes delivered and when the last one was.
create or replace view certyo.status as
select
    b.table_id,
    format('%I.%I', b.schema_name, b.table_name) as table_name,
    b.collection,
    b.active,
    b.pending,
    extract(epoch from b.oldest_change_age)::float8 as oldest_pending_seconds,
    b.parked,
    coalesce(r.delivered, 0) as delivered,
    r.last_delivered_at
from certyo.backlog b
left join (
    select table_id, count(*) as delivered, max(delivered_at) as last_delivered_at
    from certyo.receipt
    group by table_id
) as r on r.table_id = b.table_id;

comment on view certyo.status is
    'Per table: pending and parked changes, oldest pending age, changes delivered and the last delivery time.';
