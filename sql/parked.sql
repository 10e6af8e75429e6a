-- certyo.parked: changes Certyo rejected, with the reason; fix the cause, then
-- select certyo.retry_parked(...).
create or replace view certyo.parked as
select o.id, format('%I.%I', t.schema_name, t.table_name) as table_name, t.collection, o.record_id, o.op,
       o.changed_at, o.parked_at, o.attempts, o.last_error
from certyo.outbox o
join certyo.tracked_table t on t.table_id = o.table_id
where o.parked_at is not null;
