-- Generated for job `offsets` (see db/golden.rs).

-- peek
WITH utc AS (
                DELETE FROM runner_changes_utc WHERE ctid IN (
                    SELECT ctid FROM runner_changes_utc WHERE job = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                RETURNING user_id, first_at, last_at
             ), widened AS (
                INSERT INTO runner_changes (job, user_id, day)
                SELECT DISTINCT $1, k.user_id, k.day FROM (SELECT r.user_id::pg_catalog.int8 AS user_id, COALESCE((r."recorded_at" AT TIME ZONE (CASE WHEN r."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => r."offset_minutes"::int4) END))::pg_catalog.date, (r."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS day FROM (SELECT s.* FROM (SELECT DISTINCT user_id, first_at, last_at FROM utc) u
                 CROSS JOIN LATERAL (SELECT s.* FROM "vitals_offsets" s
                     WHERE s.user_id = u.user_id AND s."recorded_at" BETWEEN u.first_at AND u.last_at) s) r WHERE r.user_id IS NOT NULL AND r."recorded_at" >= '4712-01-01 00:00:00+00 BC'::pg_catalog.timestamptz AND r."recorded_at" < '294275-01-01 00:00:00+00'::pg_catalog.timestamptz) k
                RETURNING user_id, day, id
             ), frozen AS (
                DELETE FROM runner_changes
                WHERE job = $1 AND $3::int4 IS NOT NULL AND day < (now() AT TIME ZONE $4::text)::date - $3::int4
             ), held AS (
                DELETE FROM runner_changes c USING runner_group_failures h
                WHERE c.job = $1 AND h.job = $1 AND h.user_id = c.user_id AND h.day = c.day
                  AND h.on_limit AND h.not_before > now()
                RETURNING c.user_id, c.day
             ), marked AS (
                UPDATE runner_group_failures f SET changed = true
                FROM (SELECT DISTINCT user_id, day FROM held) k
                WHERE f.job = $1 AND f.user_id = k.user_id AND f.day = k.day
             ), expanded AS (
                SELECT e.user_id, e.day, e.id FROM runner_expand_purges($1, '"vitals_offsets_daily"') e
             )
             SELECT user_id, day FROM (
                (SELECT f.user_id, f.day, 0::int8 AS id FROM runner_group_failures f
                 WHERE f.job = $1 AND NOT f.failed AND f.not_before <= now()
                 ORDER BY f.not_before LIMIT $2)
                UNION ALL
                (SELECT f.user_id, f.day, 0::int8 AS id FROM runner_group_failures f
                 WHERE f.job = $1 AND f.failed AND f.changed AND f.not_before <= now()
                 ORDER BY f.not_before LIMIT $2)
                UNION ALL
                (SELECT c.user_id, c.day, c.id FROM runner_changes c
                 WHERE c.job = $1 AND ($3::int4 IS NULL OR c.day >= (now() AT TIME ZONE $4::text)::date - $3::int4)
                   AND NOT EXISTS (SELECT 1 FROM runner_group_failures h
                                   WHERE h.job = $1 AND h.user_id = c.user_id AND h.day = c.day
                                     AND h.on_limit AND h.not_before > now())
                 ORDER BY c.id LIMIT $2)
                UNION ALL
                (SELECT e.user_id, e.day, e.id FROM expanded e
                 WHERE $3::int4 IS NULL OR e.day >= (now() AT TIME ZONE $4::text)::date - $3::int4
                 ORDER BY e.id LIMIT $2)
                UNION ALL
                (SELECT w.user_id, w.day, w.id FROM widened w
                 WHERE ($3::int4 IS NULL OR w.day >= (now() AT TIME ZONE $4::text)::date - $3::int4)
                   AND NOT EXISTS (SELECT 1 FROM runner_group_failures h
                                   WHERE h.job = $1 AND h.user_id = w.user_id AND h.day = w.day
                                     AND h.on_limit AND h.not_before > now())
                 ORDER BY w.id LIMIT $2)
             ) b GROUP BY 1, 2 ORDER BY min(id) LIMIT $2

-- claim
WITH locked AS (
                SELECT pg_try_advisory_xact_lock(hashtextextended($3::text || '/' || $1::bigint || '/' || $2::date, 0)) AS ok
             ), taken AS (
                DELETE FROM runner_changes
                WHERE job = $4::text AND day = $2::date AND user_id = $1::int8 AND (SELECT ok FROM locked)
                RETURNING 1
             ), cleared AS (
                DELETE FROM runner_group_failures
                WHERE job = $4::text AND user_id = $1::int8 AND day = $2::date AND (SELECT ok FROM locked)
                RETURNING (NOT failed OR changed) AS retry, attempts
             )
             SELECT r.id, r.at, r.c0, r.c1, r.local_day, r.zone,
                    (SELECT count(*) FROM taken) + (SELECT count(*) FROM cleared WHERE retry) AS taken,
                    (SELECT coalesce(max(attempts), 0) FROM cleared) AS attempts,
                    (SELECT ok FROM locked) AS locked
             FROM (SELECT 1) one LEFT JOIN LATERAL (
                SELECT s.id::int8 AS id, s."recorded_at" AS at, s."metric" AS c0, s."value" AS c1, COALESCE((s."recorded_at" AT TIME ZONE (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => s."offset_minutes"::int4) END))::pg_catalog.date, (s."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS local_day, (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN (CASE WHEN s."offset_minutes" < 0 THEN '-' ELSE '+' END) || pg_catalog.lpad((abs(s."offset_minutes"::int4) / 60)::text, 2, '0') || ':' || pg_catalog.lpad((abs(s."offset_minutes"::int4) % 60)::text, 2, '0') ELSE 'UTC' END) AS zone FROM "vitals_offsets" s WHERE s.user_id = $1::int8 AND s."recorded_at" >= (($2::pg_catalog.date::timestamp AT TIME ZONE 'UTC') - interval '1 day') AND s."recorded_at" < ((($2::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') + interval '1 day') AND COALESCE((s."recorded_at" AT TIME ZONE (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => s."offset_minutes"::int4) END))::pg_catalog.date, (s."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) = $2::pg_catalog.date LIMIT 250001
             ) r ON (SELECT ok FROM locked)
             ORDER BY r.at, r.id

-- claim_many
WITH g AS (
                SELECT * FROM unnest($1::int8[], $2::date[]) WITH ORDINALITY AS g(user_id, day, n)
             ), locked AS MATERIALIZED (
                SELECT g.*, pg_try_advisory_xact_lock(hashtextextended($3::text || '/' || g.user_id || '/' || g.day, 0)) AS ok
                FROM g
             ), taken AS (
                DELETE FROM runner_changes c USING locked l
                WHERE l.ok AND c.job = $4::text AND c.day = l.day AND c.user_id = l.user_id
                RETURNING l.n
             ), cleared AS (
                DELETE FROM runner_group_failures f USING locked l
                WHERE l.ok AND f.job = $4::text AND f.user_id = l.user_id AND f.day = l.day
                RETURNING l.n, (NOT f.failed OR f.changed) AS retry, f.attempts
             ), counts AS MATERIALIZED (
                SELECT l.n, l.user_id, l.day, l.ok,
                       coalesce(t.taken, 0) + coalesce(c.retries, 0) AS taken, coalesce(c.attempts, 0) AS attempts
                FROM locked l
                LEFT JOIN (SELECT n, count(*) AS taken FROM taken GROUP BY n) t USING (n)
                LEFT JOIN (SELECT n, count(*) FILTER (WHERE retry) AS retries, max(attempts) AS attempts
                           FROM cleared GROUP BY n) c USING (n)
             )
             SELECT r.id, r.at, r.c0, r.c1, r.local_day, r.zone, l.taken, l.attempts, l.ok AS locked, l.n
             FROM counts l LEFT JOIN LATERAL (
                SELECT s.id::int8 AS id, s."recorded_at" AS at, s."metric" AS c0, s."value" AS c1, COALESCE((s."recorded_at" AT TIME ZONE (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => s."offset_minutes"::int4) END))::pg_catalog.date, (s."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS local_day, (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN (CASE WHEN s."offset_minutes" < 0 THEN '-' ELSE '+' END) || pg_catalog.lpad((abs(s."offset_minutes"::int4) / 60)::text, 2, '0') || ':' || pg_catalog.lpad((abs(s."offset_minutes"::int4) % 60)::text, 2, '0') ELSE 'UTC' END) AS zone FROM "vitals_offsets" s WHERE s.user_id = l.user_id AND s."recorded_at" >= ((l.day::pg_catalog.date::timestamp AT TIME ZONE 'UTC') - interval '1 day') AND s."recorded_at" < (((l.day::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') + interval '1 day') AND COALESCE((s."recorded_at" AT TIME ZONE (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => s."offset_minutes"::int4) END))::pg_catalog.date, (s."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) = l.day::pg_catalog.date LIMIT 250001
             ) r ON l.ok
             ORDER BY l.n, r.at, r.id

-- replace
WITH v AS (
                    SELECT * FROM unnest($4::text[], $5::int8[], $6::float8[]) AS v("metric", "sample_count", "avg_value")
                 ), up AS (
                    INSERT INTO "vitals_offsets_daily" AS d (user_id, "day", plugin_version, updated_at, "metric", "sample_count", "avg_value")
                    SELECT $1::int8, $2::date, $3::text, clock_timestamp(), "metric", "sample_count", "avg_value" FROM v
                    ON CONFLICT (user_id, "day", "metric") DO UPDATE SET plugin_version = excluded.plugin_version, updated_at = excluded.updated_at, "sample_count" = excluded."sample_count", "avg_value" = excluded."avg_value" WHERE (d.plugin_version, d."metric", d."sample_count", d."avg_value") IS DISTINCT FROM (excluded.plugin_version, excluded."metric", excluded."sample_count", excluded."avg_value")
                 )
                 DELETE FROM "vitals_offsets_daily" WHERE user_id = $1::int8 AND "day" = $2 AND ("metric") NOT IN (SELECT "metric" FROM v)

-- replace_many
WITH g AS (
                    SELECT * FROM unnest($1::int8[], $2::date[], $3::text[]) WITH ORDINALITY AS g(user_id, day, version, n)
                 ), v AS (
                    SELECT g.user_id, g.day, g.version, v."metric", v."sample_count", v."avg_value"
                    FROM unnest($4::int8[], $5::text[], $6::int8[], $7::float8[]) AS v(n, "metric", "sample_count", "avg_value") JOIN g ON g.n = v.n
                 ), up AS (
                    INSERT INTO "vitals_offsets_daily" AS d (user_id, "day", plugin_version, updated_at, "metric", "sample_count", "avg_value")
                    SELECT v.user_id, v.day, v.version, clock_timestamp(), v."metric", v."sample_count", v."avg_value" FROM v
                    ON CONFLICT (user_id, "day", "metric") DO UPDATE SET plugin_version = excluded.plugin_version, updated_at = excluded.updated_at, "sample_count" = excluded."sample_count", "avg_value" = excluded."avg_value" WHERE (d.plugin_version, d."metric", d."sample_count", d."avg_value") IS DISTINCT FROM (excluded.plugin_version, excluded."metric", excluded."sample_count", excluded."avg_value")
                 )
                 DELETE FROM "vitals_offsets_daily" d USING g
                 WHERE d.user_id = g.user_id AND d."day" = g.day
                   AND NOT EXISTS (SELECT 1 FROM v WHERE v.user_id = d.user_id AND v.day = d."day" AND v."metric" = d."metric")

-- fail
WITH f AS (
                INSERT INTO runner_group_failures AS g
                    (job, user_id, day, attempts, not_before, failed, error, plugin_version, on_limit)
                VALUES ($1::text, $2::int8, $3::date, $8::int4 + 1,
                    now() + make_interval(secs => LEAST($6::float8 * power(2, $8::int4), 3600)),
                    $8::int4 + 1 >= $5::int4, $4::text, $7::text, $9::bool)
                ON CONFLICT (job, user_id, day) DO UPDATE SET
                    attempts = g.attempts + 1,
                    not_before = now() + make_interval(secs => LEAST($6::float8 * power(2, g.attempts), 3600)),
                    failed = g.attempts + 1 >= $5::int4,
                    error = excluded.error,
                    plugin_version = excluded.plugin_version,
                    on_limit = excluded.on_limit,
                    changed = false,
                    updated_at = now()
                RETURNING failed
             ), absorbed AS (
                DELETE FROM runner_changes WHERE job = $1::text AND day = $3::date AND user_id = $2::int8
             )
             SELECT failed FROM f

-- day_users
SELECT user_id::int8 FROM "vitals_offsets"
             WHERE "recorded_at" >= (($1::pg_catalog.date::timestamp AT TIME ZONE 'UTC') - interval '1 day') AND "recorded_at" < ((($1::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') + interval '1 day') AND COALESCE(("recorded_at" AT TIME ZONE (CASE WHEN "offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => "offset_minutes"::int4) END))::pg_catalog.date, ("recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) = $1::pg_catalog.date AND user_id IS NOT NULL AND "recorded_at" >= '4712-01-01 00:00:00+00 BC'::pg_catalog.timestamptz AND "recorded_at" < '294275-01-01 00:00:00+00'::pg_catalog.timestamptz
               AND ($2::int8[] IS NULL OR user_id = ANY($2::int8[])) AND user_id > $3::int8
             UNION
             SELECT user_id::int8 FROM "vitals_offsets_daily"
             WHERE "day" = $1::date AND ($2::int8[] IS NULL OR user_id = ANY($2::int8[])) AND user_id > $3::int8
             ORDER BY 1 LIMIT $4

-- count_groups
SELECT count(*) AS groups FROM (
                SELECT user_id, day FROM (SELECT DISTINCT user_id::int8 AS user_id, COALESCE(("recorded_at" AT TIME ZONE (CASE WHEN "offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => "offset_minutes"::int4) END))::pg_catalog.date, ("recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS day FROM "vitals_offsets" WHERE "recorded_at" >= (($1::date::pg_catalog.date::timestamp AT TIME ZONE 'UTC') - interval '1 day') AND "recorded_at" < ((($2::date::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') + interval '1 day') AND COALESCE(("recorded_at" AT TIME ZONE (CASE WHEN "offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => "offset_minutes"::int4) END))::pg_catalog.date, ("recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) BETWEEN $1::date AND $2::date AND user_id IS NOT NULL AND "recorded_at" >= '4712-01-01 00:00:00+00 BC'::pg_catalog.timestamptz AND "recorded_at" < '294275-01-01 00:00:00+00'::pg_catalog.timestamptz) s WHERE $3::int8[] IS NULL OR user_id = ANY($3::int8[])
                UNION
                SELECT user_id, "day" FROM "vitals_offsets_daily"
                WHERE "day" BETWEEN $1::date AND $2::date AND ($3::int8[] IS NULL OR user_id = ANY($3::int8[]))
             ) g

-- read_day
SELECT * FROM (SELECT s.id::int8 AS id, s."recorded_at" AS at, s."metric" AS c0, s."value" AS c1, COALESCE((s."recorded_at" AT TIME ZONE (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => s."offset_minutes"::int4) END))::pg_catalog.date, (s."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS local_day, (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN (CASE WHEN s."offset_minutes" < 0 THEN '-' ELSE '+' END) || pg_catalog.lpad((abs(s."offset_minutes"::int4) / 60)::text, 2, '0') || ':' || pg_catalog.lpad((abs(s."offset_minutes"::int4) % 60)::text, 2, '0') ELSE 'UTC' END) AS zone FROM "vitals_offsets" s WHERE s.user_id = $1::int8 AND s."recorded_at" >= (($2::pg_catalog.date::timestamp AT TIME ZONE 'UTC') - interval '1 day') AND s."recorded_at" < ((($2::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') + interval '1 day') AND COALESCE((s."recorded_at" AT TIME ZONE (CASE WHEN s."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => s."offset_minutes"::int4) END))::pg_catalog.date, (s."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) = $2::pg_catalog.date LIMIT 250001) r ORDER BY r.at, r.id

-- sample_groups
SELECT user_id, day FROM (SELECT DISTINCT user_id::int8 AS user_id, COALESCE(("recorded_at" AT TIME ZONE (CASE WHEN "offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => "offset_minutes"::int4) END))::pg_catalog.date, ("recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS day FROM "vitals_offsets" WHERE "recorded_at" >= (($1::date::pg_catalog.date::timestamp AT TIME ZONE 'UTC') - interval '1 day') AND "recorded_at" < ((($2::date::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') + interval '1 day') AND COALESCE(("recorded_at" AT TIME ZONE (CASE WHEN "offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => "offset_minutes"::int4) END))::pg_catalog.date, ("recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) BETWEEN $1::date AND $2::date AND user_id IS NOT NULL AND "recorded_at" >= '4712-01-01 00:00:00+00 BC'::pg_catalog.timestamptz AND "recorded_at" < '294275-01-01 00:00:00+00'::pg_catalog.timestamptz) g ORDER BY hashtext(user_id::text || '/' || day::text), user_id, day LIMIT $3

-- change capture
CREATE OR REPLACE FUNCTION runner."runner_capture_offsets"() RETURNS trigger LANGUAGE plpgsql
         SECURITY DEFINER SET search_path = '' AS $runner$
DECLARE
    first pg_catalog.int8;
BEGIN
    -- Generated by `runner migrate` for job offsets; edit the config and migrate again instead.
    IF TG_OP = 'INSERT' THEN
        WITH queued AS (
            INSERT INTO runner.runner_changes_utc (job, user_id, day, first_at, last_at)
            SELECT 'offsets', r.user_id::pg_catalog.int8, (r."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date, pg_catalog.min(r."recorded_at"), pg_catalog.max(r."recorded_at")
            FROM runner_new r WHERE r.user_id IS NOT NULL AND r."recorded_at" >= '4712-01-01 00:00:00+00 BC'::pg_catalog.timestamptz AND r."recorded_at" < '294275-01-01 00:00:00+00'::pg_catalog.timestamptz GROUP BY 2, 3
            RETURNING id) SELECT pg_catalog.min(id) INTO first FROM queued;
    ELSIF TG_OP = 'UPDATE' THEN
        WITH queued AS (
            INSERT INTO runner.runner_changes (job, user_id, day)
            SELECT DISTINCT 'offsets', k.user_id, k.day FROM (SELECT r.user_id::pg_catalog.int8 AS user_id, COALESCE((r."recorded_at" AT TIME ZONE (CASE WHEN r."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => r."offset_minutes"::int4) END))::pg_catalog.date, (r."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS day FROM runner_old r WHERE r.user_id IS NOT NULL AND r."recorded_at" >= '4712-01-01 00:00:00+00 BC'::pg_catalog.timestamptz AND r."recorded_at" < '294275-01-01 00:00:00+00'::pg_catalog.timestamptz UNION SELECT r.user_id::pg_catalog.int8 AS user_id, COALESCE((r."recorded_at" AT TIME ZONE (CASE WHEN r."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => r."offset_minutes"::int4) END))::pg_catalog.date, (r."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS day FROM runner_new r WHERE r.user_id IS NOT NULL AND r."recorded_at" >= '4712-01-01 00:00:00+00 BC'::pg_catalog.timestamptz AND r."recorded_at" < '294275-01-01 00:00:00+00'::pg_catalog.timestamptz) k
            RETURNING id) SELECT pg_catalog.min(id) INTO first FROM queued;
    ELSIF TG_OP = 'DELETE' THEN
        WITH queued AS (
            INSERT INTO runner.runner_changes (job, user_id, day)
            SELECT DISTINCT 'offsets', k.user_id, k.day FROM (SELECT r.user_id::pg_catalog.int8 AS user_id, COALESCE((r."recorded_at" AT TIME ZONE (CASE WHEN r."offset_minutes" BETWEEN -1080 AND 1080 THEN pg_catalog.make_interval(mins => r."offset_minutes"::int4) END))::pg_catalog.date, (r."recorded_at" AT TIME ZONE 'UTC')::pg_catalog.date) AS day FROM runner_old r WHERE r.user_id IS NOT NULL AND r."recorded_at" >= '4712-01-01 00:00:00+00 BC'::pg_catalog.timestamptz AND r."recorded_at" < '294275-01-01 00:00:00+00'::pg_catalog.timestamptz) k
            RETURNING id) SELECT pg_catalog.min(id) INTO first FROM queued;
    ELSE
        INSERT INTO runner.runner_purges (job, relid, reason)
        VALUES ('offsets', TG_RELID, 'TRUNCATE of ' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
        PERFORM pg_catalog.pg_notify('runner_pending', 'vitals_offsets');
        RETURN NULL;
    END IF;
    IF first IS NOT NULL AND (CASE WHEN TG_OP = 'INSERT'
            THEN (SELECT id FROM runner.runner_changes_utc WHERE job = 'offsets' ORDER BY id LIMIT 1) >= first AND (SELECT id FROM runner.runner_changes WHERE job = 'offsets' ORDER BY id LIMIT 1) IS NULL
            ELSE (SELECT id FROM runner.runner_changes WHERE job = 'offsets' ORDER BY id LIMIT 1) >= first AND (SELECT id FROM runner.runner_changes_utc WHERE job = 'offsets' ORDER BY id LIMIT 1) IS NULL END) THEN
        PERFORM pg_catalog.pg_notify('runner_pending', 'vitals_offsets');
    END IF;
    RETURN NULL;
END
$runner$;
         -- Only its triggers run it: no other role may attach it to a table of its own.
         REVOKE ALL ON FUNCTION runner."runner_capture_offsets"() FROM PUBLIC;
CREATE OR REPLACE TRIGGER "runner_capture_offsets_insert" AFTER INSERT ON public."vitals_offsets" REFERENCING NEW TABLE AS runner_new FOR EACH STATEMENT EXECUTE FUNCTION runner."runner_capture_offsets"();
             ALTER TABLE public."vitals_offsets" ENABLE ALWAYS TRIGGER "runner_capture_offsets_insert";
CREATE OR REPLACE TRIGGER "runner_capture_offsets_update" AFTER UPDATE ON public."vitals_offsets" REFERENCING OLD TABLE AS runner_old NEW TABLE AS runner_new FOR EACH STATEMENT EXECUTE FUNCTION runner."runner_capture_offsets"();
             ALTER TABLE public."vitals_offsets" ENABLE ALWAYS TRIGGER "runner_capture_offsets_update";
CREATE OR REPLACE TRIGGER "runner_capture_offsets_delete" AFTER DELETE ON public."vitals_offsets" REFERENCING OLD TABLE AS runner_old FOR EACH STATEMENT EXECUTE FUNCTION runner."runner_capture_offsets"();
             ALTER TABLE public."vitals_offsets" ENABLE ALWAYS TRIGGER "runner_capture_offsets_delete";
CREATE OR REPLACE TRIGGER "runner_capture_offsets_truncate" AFTER TRUNCATE ON public."vitals_offsets" FOR EACH STATEMENT EXECUTE FUNCTION runner."runner_capture_offsets"();
             ALTER TABLE public."vitals_offsets" ENABLE ALWAYS TRIGGER "runner_capture_offsets_truncate";
