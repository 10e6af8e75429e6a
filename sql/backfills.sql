-- certyo.backfills: each table's latest backfill and its progress.
create or replace view certyo.backfills as
select
    format('%I.%I', t.schema_name, t.table_name) as table_name,
    case when b.finished_at is null then case when b.started_at is null then 'scheduled' else 'running' end
         when b.outcome = 'finished' then 'finished'
         else 'stopped' end as state,
    b.rows_done,
    -- The planner's estimate until it is done (never below what is done).
    case when b.finished_at is not null then b.rows_done else greatest(b.rows_estimated, b.rows_done) end as rows_total,
    b.chunks_done,
    (b.rows_done / nullif(extract(epoch from coalesce(b.finished_at, b.last_step_at) - b.started_at), 0))::float8
        as rows_per_second,
    b.requested_at,
    b.started_at,
    b.last_step_at,
    b.finished_at,
    nullif(b.outcome, 'finished') as stopped_because,
    t.table_id
from certyo.backfill b
join certyo.tracked_table t on t.table_id = b.table_id;

comment on view certyo.backfills is
    'Per table: its latest backfill, state (scheduled, running, finished, stopped), rows done of the total, rate.';
