-- certyo.restamp_inserts(table_id, versions, record_ids): of these just
-- inserted rows, give newer versions to those whose version is older than a
-- visible delete of the same record: that delete committed before them. An
-- INSERT draws its version in the BEFORE trigger, before the unique index
-- makes it wait for a transaction deleting the same key; that delete draws
-- its version later, commits first, and would reach Certyo after the insert
-- it preceded. Each such row is stamped again (an update of its version only:
-- a status write-back to the BEFORE trigger, as certyo's owner) and its
-- outbox change takes the new version; when the update was captured as well
-- (its AFTER trigger saw the row as it is now), that change is kept as the
-- insert. Called by capture_rows() and capture(), as certyo's owner; finding
-- one is rare, so the update is dynamic SQL. No sequential scans: a plan made
-- while the outbox was empty would otherwise scan it whole on every insert
-- once it has grown.
create or replace function certyo.restamp_inserts(table_id integer, versions bigint[], record_ids text[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
set enable_seqscan = off
as $$
declare
    v_rel regclass;
    v_where text;
    v_late bigint[];
    v_late_ids text[];
    v_new bigint;
    v_rows integer;
begin
    select array_agg(c.v order by c.v), array_agg(c.k order by c.v)
    into v_late, v_late_ids
    from unnest(versions, record_ids) as c(v, k)
    where exists (select from certyo.outbox d
                  where d.op = 'D' and d.table_id = restamp_inserts.table_id and d.record_id = c.k and d.id > c.v)
        or exists (select from certyo.receipt r
                   where r.op = 'D' and r.table_id = restamp_inserts.table_id and r.record_id = c.k and r.id > c.v);
    if v_late is null then
        return;
    end if;
    select m.rel, m.predicate into v_rel, v_where from certyo.key_match(restamp_inserts.table_id, '$1') as m;
    if v_where is null then
        return; -- a key column is gone: nothing to find the rows by
    end if;
    for i in 1 .. cardinality(v_late) loop
        v_new := nextval('certyo.change_seq');
        execute format('update %s t set certyo_record_version = $2 where %s and t.certyo_record_version = $3',
                       v_rel, v_where)
        using v_late_ids[i], v_new, v_late[i];
        get diagnostics v_rows = row_count;
        continue when v_rows = 0;
        if exists (select from certyo.outbox o where o.id = v_new) then
            delete from certyo.outbox o where o.id = v_late[i];
            update certyo.outbox o set op = 'I' where o.id = v_new;
        else
            update certyo.outbox o set id = v_new where o.id = v_late[i];
        end if;
    end loop;
end
$$;

comment on function certyo.restamp_inserts(integer, bigint[], text[]) is
    'Capture: re-version inserts that committed after a delete of the same record with a higher version.';
