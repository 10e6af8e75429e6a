-- certyo.verify(target, only_record, all_rows): the tamper sweep. For every
-- current row of one tracked table (or all of them; or one record id), recompute the payload
-- exactly as capture and claim build it and compare its SHA-256 with the
-- digest kept when that version was delivered. Verdicts:
--   anchored        unchanged since its version was anchored
--   pending         changed, and the change is captured: waiting for delivery or anchoring
--   tampered        changed WITHOUT a captured change (capture bypassed:
--                   session_replication_role = replica, triggers disabled,
--                   restore, direct write); detail and digests give the evidence
--   deleted         the row is gone, but its last delivered change is not a
--                   delete and none is captured (deleted while capture was
--                   bypassed); the evidence is the last delivered version
--   never_anchored  no anchored version: never captured (existed before
--                   tracking), or anchoring failed or did not match
-- Returns the rows that are not 'anchored' (every row with all_rows, or when
-- asking about one record): returning 100,000 fine rows costs more than
-- checking them. SECURITY INVOKER: the caller reads the tables with their own
-- privileges.
drop function if exists certyo.verify(regclass, text);
create or replace function certyo.verify(target regclass default null, only_record text default null, all_rows boolean default false)
returns table (
    table_name text, record_id text, version bigint, verdict text, anchor_status text, record_hash text,
    anchored_digest text, current_digest text, detail text
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
-- The settings capture pins, so row_to_json() renders the row as it did then.
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
set jit = off
-- One hash join over the table's receipts, in memory.
set work_mem = '64MB'
as $$
declare
    v_t record;
    v_key text;
    v_cols text;
    v_filter text := '';
    v_gone text;
    -- The current payload layout, and what the table's older layouts need.
    v_names text[];
    v_attnums smallint[];
    v_types text[];
    v_l record;
    v_m record;
    v_whens text;
    v_current text;
    v_details text;
    v_dropped integer[];
    v_differs integer[];
    v_added integer[];
begin
    if target is not null and not exists (select from certyo.tracked_table t where t.relid = target and t.active) then
        raise exception '% is not tracked', target
            using errcode = '22023', hint = 'See select * from certyo.tracked_tables;';
    end if;
    for v_t in
        select * from certyo.tracked_table t where t.active and (target is null or t.relid = target) order by t.table_id
    loop
        -- The record id as capture renders it: a key column's JSON text, or a JSON array of them.
        select case when count(*) = 1 then format('to_json(t.%I) #>> ''{}''', min(k.col))
                    else '''['' || concat_ws('','', '
                         || string_agg(format('to_json(to_json(t.%I) #>> ''{}'')::text', k.col), ', ' order by k.n)
                         || ') || '']''' end
        into v_key
        from unnest(v_t.key_columns) with ordinality as k(col, n);
        -- The payload as the claim builds it: every column but certyo's and the excluded
        -- ones, in table order, rendered by row_to_json (byte for byte what was sent).
        select string_agg(format('t.%I', a.attname), ', ' order by a.attnum),
               array_agg(a.attname::text order by a.attnum), array_agg(a.attnum order by a.attnum),
               array_agg(format_type(a.atttypid, a.atttypmod) order by a.attnum)
        into v_cols, v_names, v_attnums, v_types
        from pg_attribute a
        where a.attrelid = v_t.relid and a.attnum > 0 and not a.attisdropped
            and a.attname not in ('certyo_record_hash', 'certyo_anchor_status', 'certyo_verified_at', 'certyo_record_version')
            and a.attname <> all (v_t.exclude_columns);
        -- Versions delivered in another layout (before an ADD, DROP, RENAME or ALTER TYPE)
        -- are compared in theirs: its columns, found by number under their names now,
        -- sent under the names they had. A column dropped since cannot be rendered: such
        -- versions are 'unverifiable'; a column added since is not covered by the anchor
        -- ('partially_anchored'); a type change that changes the rendering makes the row
        -- 'unverifiable' rather than 'tampered', with the change in the detail.
        v_current := format('sha256(convert_to((select row_to_json(x.*) from (select %s) as x)::text, ''UTF8''))', v_cols);
        v_whens := '';
        v_details := '';
        v_dropped := '{}';
        v_differs := '{}';
        v_added := '{}';
        for v_l in
            select l.layout_id, l.names, l.attnums, l.types from certyo.layout l
            where l.table_id = v_t.table_id
                and not (l.names = v_names and l.attnums = v_attnums and l.types = v_types)
        loop
            select string_agg(format('t.%I as %I', a.attname, n.name), ', ' order by n.i) filter (where a.attnum is not null) as cols,
                   string_agg(quote_ident(n.name), ', ') filter (where a.attnum is null) as dropped,
                   string_agg(format('%I changed type from %s to %s', a.attname, n.typ, format_type(a.atttypid, a.atttypmod)), ', ')
                       filter (where a.attnum is not null and not certyo.renders_alike(n.typ, format_type(a.atttypid, a.atttypmod)))
                       as retyped,
                   (select string_agg(quote_ident(c.name), ', ')
                    from unnest(v_names, v_attnums) as c(name, attnum)
                    where c.attnum <> all (v_l.attnums)) as added
            into v_m
            from unnest(v_l.names, v_l.attnums, v_l.types) with ordinality as n(name, attnum, typ, i)
            left join pg_attribute a on a.attrelid = v_t.relid and a.attnum = n.attnum and not a.attisdropped;
            if v_m.dropped is not null then
                v_dropped := v_dropped || v_l.layout_id;
                v_details := v_details || format(' when %s then %L', v_l.layout_id,
                    format('column(s) %s dropped since this version was anchored: it cannot be compared with its anchor;'
                           ' re-anchor the table (certyo.backfill) once you trust it', v_m.dropped));
                continue;
            end if;
            v_whens := v_whens || format(' when %s then sha256(convert_to((select row_to_json(x.*) from (select %s) as x)::text, ''UTF8''))',
                                         v_l.layout_id, v_m.cols);
            if v_m.retyped is not null then
                v_differs := v_differs || v_l.layout_id;
            end if;
            if v_m.added is not null then
                v_added := v_added || v_l.layout_id;
            end if;
            v_details := v_details || format(' when %s then %L', v_l.layout_id, concat_ws('; ',
                case when v_m.added is not null
                     then format('column(s) %s added since this version was anchored are not covered by the anchor', v_m.added) end,
                case when v_m.retyped is not null
                     then format('%s since this version was anchored: where that changes how values render, the row cannot'
                                 ' be compared with its anchor (check it, then re-anchor the table with certyo.backfill)', v_m.retyped) end));
        end loop;
        if only_record is not null then
            select ' where ' || m.predicate into v_filter from certyo.key_match(v_t.table_id, '$1') as m;
            continue when v_filter is null;
        end if;
        return query execute format(
            $q$
            select %1$L::text, c.k, c.v, v.verdict,
                   coalesce(r.anchor_status, case when o.id is not null then 'pending' end),
                   r.record_hash,
                   case when v.verdict not in ('anchored', 'partially_anchored') then encode(r.payload_digest, 'hex') end,
                   case when v.verdict not in ('anchored', 'partially_anchored') then encode(c.d, 'hex') end,
                   case when v.verdict in ('unverifiable', 'partially_anchored') then %9$s
                        when c.v is null then 'never captured: existed before tracking (not backfilled), or written while capture was bypassed'
                        when o.id is not null then case when o.parked_at is not null then 'captured, parked: ' || o.last_error
                                                        else 'captured, waiting for delivery' end
                        when r.id is null then 'this version was never captured (capture triggers bypassed or disabled)'
                        when r.payload_digest is null then 'delivered before payload digests were kept: content not compared'
                        when r.payload_digest <> c.d then 'row differs from the version delivered to Certyo, and no change was captured'
                        when r.anchor_status = 'submitted' then 'delivered, waiting for anchoring'
                        when r.anchor_status <> 'anchored' then coalesce(r.anchor_status || ': ' || r.detail, r.anchor_status)
                   end
            from (select t.certyo_record_version as v, %2$s as k,
                         %10$s as d, %11$s as lid
                  from %4$s t%12$s%5$s) as c
            left join certyo.receipt r on r.id = c.v and r.table_id = %6$s
            left join certyo.outbox o on o.id = c.v
            cross join lateral (
                select case when c.v is null then 'never_anchored'
                            when o.id is not null then 'pending'
                            when r.id is null then %7$L
                            when r.payload_digest is null then
                                case r.anchor_status when 'anchored' then 'anchored' when 'submitted' then 'pending' else 'never_anchored' end
                            when c.lid = any (%13$L::integer[]) then 'unverifiable'
                            when r.payload_digest <> c.d then
                                case when c.lid = any (%14$L::integer[]) then 'unverifiable' else 'tampered' end
                            when r.anchor_status = 'anchored' then
                                case when c.lid = any (%15$L::integer[]) then 'partially_anchored' else 'anchored' end
                            when r.anchor_status = 'submitted' then 'pending'
                            else 'never_anchored' end as verdict
            ) as v
            %8$s
            $q$,
            format('%I.%I', v_t.schema_name, v_t.table_name), v_key, v_cols, v_t.relid::regclass, v_filter,
            v_t.table_id,
            case when v_t.operations @> array['insert', 'update'] then 'tampered' else 'never_anchored' end,
            case when all_rows or only_record is not null then '' else 'where v.verdict <> ''anchored''' end,
            case when v_details = '' then 'null::text' else 'case c.lid' || v_details || ' end' end,
            -- The digest in the row's anchored layout, or (the usual case) in the current one.
            case when v_whens = '' then v_current else 'case l.lid' || v_whens || ' else ' || v_current || ' end' end,
            case when v_details = '' and v_whens = '' then 'null::integer' else 'l.lid' end,
            case when v_details = '' and v_whens = '' then ''
                 else ' left join lateral (select r0.layout_id as lid from certyo.receipt r0'
                      ' where r0.id = t.certyo_record_version) as l on true' end,
            v_dropped, v_differs, v_added)
        using only_record;
        -- Records whose row is gone although their last delivered change is not a
        -- delete, and no change of theirs waits in the outbox: deleted while capture
        -- was bypassed. One pass over the table's receipts (last per record, by the
        -- receipt_record index) anti-joined with the table by key.
        -- (Not when deletes are not captured: then every delete looks like that.)
        continue when not ('delete' = any (v_t.operations));
        select m.predicate into v_gone from certyo.key_match(v_t.table_id, 'r.record_id') as m;
        continue when v_gone is null;
        return query execute format(
            $q$
            select %1$L::text, r.record_id, r.id, 'deleted'::text, r.anchor_status, r.record_hash,
                   encode(r.payload_digest, 'hex'), null::text,
                   format('the row is gone, but the last change delivered is %%s version %%s, and no delete was captured%%s',
                          case r.op when 'I' then 'insert' when 'U' then 'update' else 'upsert' end, r.id, %6$L)
            from (select distinct on (c.record_id) c.record_id, c.id, c.op, c.anchor_status, c.record_hash, c.payload_digest
                  from certyo.receipt c
                  where c.table_id = %2$s %3$s
                  order by c.record_id, c.id desc) as r
            where r.op <> 'D'
                and not exists (select from certyo.outbox o where o.table_id = %2$s and o.record_id = r.record_id)
                and not exists (select from %4$s t where %5$s)
            $q$,
            format('%I.%I', v_t.schema_name, v_t.table_name), v_t.table_id,
            case when only_record is not null then 'and c.record_id = $1' else '' end,
            v_t.relid::regclass, v_gone,
            -- Tracked by an earlier release: a key changed by UPDATE was not captured as a delete.
            case when exists (select from pg_trigger g where g.tgrelid = v_t.relid and g.tgname = 'certyo_capture_zkey') then ''
                 else ' (or its key was changed by an UPDATE: this table''s triggers predate key-change capture;'
                      ' run certyo.enable_tracking on it again)' end)
        using only_record;
    end loop;
end
$$;

comment on function certyo.verify(regclass, text, boolean) is
    'Tamper sweep: compare each current row with the version delivered to Certyo (anchored / pending / tampered / never_anchored).';

-- certyo.flag_tampered(target, record_ids, versions): mark rows the sweep found
-- tampered ('tampered' in certyo_anchor_status, kept until the row's next real
-- change). Only rows still at the given version are marked. Returns how many.
create or replace function certyo.flag_tampered(target regclass, record_ids text[], versions bigint[])
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    select cardinality(certyo.write_status(
        t.table_id, record_ids, versions,
        array(select 'tampered'::text from unnest(versions)),
        array(select null::text from unnest(versions)),
        array(select null::timestamptz from unnest(versions))))
    from certyo.tracked_table t
    where t.relid = target and t.active
$$;

comment on function certyo.flag_tampered(regclass, text[], bigint[]) is
    'Mark rows found tampered by certyo.verify (status ''tampered'' until their next real change).';

-- certyo.flag_deleted(target, record_ids, versions): mark the receipts of
-- records the sweep found deleted behind capture (their last delivered
-- version): finding 'deleted', found_at when first found. Returns how many.
create or replace function certyo.flag_deleted(target regclass, record_ids text[], versions bigint[])
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    with flagged as (
        update certyo.receipt r
        set finding = 'deleted', found_at = coalesce(r.found_at, now())
        from certyo.tracked_table t, unnest(record_ids, versions) as u(k, v)
        where t.relid = target and t.active and r.table_id = t.table_id and r.id = u.v and r.record_id = u.k
        returning 1
    )
    select count(*)::integer from flagged
$$;

comment on function certyo.flag_deleted(regclass, text[], bigint[]) is
    'Mark the receipts of records certyo.verify found deleted while capture was bypassed.';
