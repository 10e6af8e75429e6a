-- PostgreSQL 13, 14 and 15 (seen on 13.23, 14.23, 15.18, 15.20; not on 16.14,
-- 17.10, 18.4): a PL/pgSQL trigger that assigns a field of OLD whose value is
-- a column's "missing value" (a constant default of a column added after the
-- row was written) crashes the backend with signal 11 in pfree(), and the
-- postmaster restarts every session of the cluster. Assigning a field of NEW
-- does the same when an earlier trigger handed OLD on unchanged. No
-- concurrency is needed; concurrent updates only make it likelier that some
-- old row is touched. certyo's capture_before() avoids the construct (see
-- sql/capture_before.sql); test/sql/pg-bugs.test.ts runs this file on a
-- private server. psql -f this file on a disposable server to see it.
create table crash_t (id int primary key, v int);
insert into crash_t select g, 0 from generate_series(1, 3) g;
alter table crash_t add column status text default 'pending';
create function crash_fn() returns trigger language plpgsql as $$
begin
    old.status := 'x';
    return new;
end
$$;
create trigger crash_b before update on crash_t for each row execute function crash_fn();
update crash_t set v = v + 1;
