-- Queries the Grafana PostgreSQL data source (grafana/grafana) sends from its
-- query editor: version detection, and the schema/table/column pickers.
-- Format as in dbeaver.sql.

-- use: detect TimescaleDB (source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, getTimescaleDBVersion)
-- columns: extversion
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb';

-- use: schema picker (source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, showSchemas)
-- lists: public
-- columns: name
SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name;

-- use: table picker for a chosen schema (source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, showTables(schema))
-- lists: events
-- columns: table
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1;

-- use: table picker without a schema, tables on the search_path first (source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, showTables())
-- lists: events
-- columns: table
SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1;

-- use: column picker for a schema-qualified table (source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, getSchema('public.events'))
-- lists: price
-- columns: column, type
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('public.events'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('public.events'))[1]
          AND quote_ident(table_name) = (parse_ident('public.events'))[2]
        ELSE quote_ident(table_name) = 'public.events'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END;

-- use: column picker for an unqualified table (source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, getSchema('events'))
-- lists: id
-- columns: column, type
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('events'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('events'))[1]
          AND quote_ident(table_name) = (parse_ident('events'))[2]
        ELSE quote_ident(table_name) = 'events'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END;

-- use: detect the PostgreSQL version when configuring the data source (source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts, getVersion)
-- columns: version
SELECT current_setting('server_version_num')::int/100 as version;
