-- The settings a payload is rendered under: TimeZone UTC, DateStyle ISO,
-- IntervalStyle postgres, extra_float_digits 1, bytea_output hex. Capture used
-- to pin them with SET clauses, which PostgreSQL applies and undoes at every
-- call (a tenth of a tracked insert, more per updated row). Now capture asks
-- whether they already hold, which is the usual case on a UTC server, and pins
-- them only when they do not: the payload text is the same either way.

-- certyo.output_pinned(): true when this session renders as capture does.
-- Accepted too, because every value renders alike under them: a DateStyle of
-- ISO with either field order (the order only reads input), zones that are
-- UTC all year under another name, and any extra_float_digits above 0 (since
-- PostgreSQL 12 each prints the shortest exact form; JDBC drivers set 3). At
-- most 8 zones: a longer list is hashed, once a transaction. An inlinable SQL
-- function: no SET clause, every name qualified.
create or replace function certyo.output_pinned()
returns boolean
language sql
stable
parallel safe
as $$
    select pg_catalog.current_setting('TimeZone') operator(pg_catalog.=) any ('{UTC,Etc/UTC,GMT,Etc/GMT,UCT,Etc/UCT,Universal,Zulu}'::text[])
        and pg_catalog.current_setting('DateStyle') operator(pg_catalog.~~) 'ISO,%'
        and pg_catalog.current_setting('IntervalStyle') operator(pg_catalog.=) 'postgres'
        and pg_catalog.current_setting('extra_float_digits') operator(pg_catalog.=) any ('{1,2,3}'::text[])
        and pg_catalog.current_setting('bytea_output') operator(pg_catalog.=) 'hex'
$$;

comment on function certyo.output_pinned() is
    'Capture: whether the session already renders values as payloads are rendered.';

-- certyo.pin_output(): sets them for the transaction (as SET LOCAL does) and
-- returns the values they had; certyo.unpin_output(saved) sets those back.
-- An error in between ends the (sub)transaction, which undoes both. Capture
-- pins TimeZone alone first (outside UTC it is usually the only one that
-- differs; each setting set and set back costs about 10k instructions) and
-- calls these only when another one differs too.
create or replace function certyo.pin_output()
returns text[]
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    v_saved text[] := array[current_setting('TimeZone'), current_setting('DateStyle'),
                            current_setting('IntervalStyle'), current_setting('extra_float_digits'),
                            current_setting('bytea_output')];
begin
    perform set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true),
            set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true),
            set_config('bytea_output', 'hex', true);
    return v_saved;
end
$$;

create or replace function certyo.unpin_output(saved text[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    perform set_config('TimeZone', saved[1], true), set_config('DateStyle', saved[2], true),
            set_config('IntervalStyle', saved[3], true), set_config('extra_float_digits', saved[4], true),
            set_config('bytea_output', saved[5], true);
end
$$;

comment on function certyo.pin_output() is
    'Capture: pin the payload output settings for the transaction; returns what they were.';
comment on function certyo.unpin_output(text[]) is
    'Capture: set the output settings back to what pin_output returned.';
