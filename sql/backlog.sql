-- certyo.backlog: per tracked table (including tables no longer tracked that
-- still have undelivered changes), what waits in the outbox and since when.
-- Readable through the view's owner: no privileges on certyo's tables needed.
create or replace view certyo.backlog as
select
    t.table_id,
    t.schema_name,
    t.table_name,
    t.collection,
    t.active,
    count(o.id) filter (where o.parked_at is null) as pending,
    count(o.id) filter (where o.parked_at is not null) as parked,
    min(o.changed_at) filter (where o.parked_at is null) as oldest_change_at,
    now() - min(o.changed_at) filter (where o.parked_at is null) as oldest_change_age
from certyo.tracked_table t
left join certyo.outbox o on o.table_id = t.table_id
group by t.table_id
having t.active or count(o.id) > 0;

comment on view certyo.backlog is
    'Outbox backlog per tracked table: pending and parked changes, oldest pending change and its age.';
