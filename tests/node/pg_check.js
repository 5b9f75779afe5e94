// A Node.js application's view of weir through node-postgres (`pg`): connect,
// query the table `items` (id BIGINT, name TEXT, price DOUBLE; ids 1..10,
// name 'item-<id>', price id * 1.5) with bound parameters, check that numbers,
// text, booleans and timestamps come back as pg's documented JS values, and
// that errors carry their SQLSTATE in `.code`.
//
// Run by tests/node_pg.rs as `node tests/node/pg_check.js <port>` with
// NODE_PATH pointing at the node_modules scripts/test.sh installs, and TZ=UTC.
// The table must exist already. Prints one `ok <check>` or
// `FAIL <check>: <reason>` line per check and exits 1 if any failed, so one
// run shows every failure.
'use strict';

const assert = require('node:assert/strict');
const pg = require('pg');

const TABLE = 'items';
// Type OIDs the server should report for the result columns.
const OID = { bool: 16, int8: 20, int4: 23, text: 25, float8: 701, timestamp: 1114, timestamptz: 1184 };

let failures = 0;

/** Runs one check, printing ok/FAIL; a thrown error is a failure, not an abort. */
async function check(name, body) {
  try {
    await body();
    console.log(`ok ${name}`);
  } catch (e) {
    failures++;
    const code = e instanceof pg.DatabaseError ? ` [SQLSTATE ${e.code}]` : '';
    console.log(`FAIL ${name}: ${String(e && e.message ? e.message : e).replace(/\n/g, ' ')}${code}`);
  }
}

async function main() {
  const port = Number(process.argv[2]);
  if (!port) {
    console.error('usage: node pg_check.js <port>');
    process.exit(2);
  }
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'weir',
    database: 'weir',
    connectionTimeoutMillis: 30000,
    query_timeout: 60000,
  });

  let connected = false;
  await check('connect', async () => {
    await client.connect();
    connected = true;
  });
  if (!connected) {
    console.log('FAIL remaining checks: no connection');
    process.exit(1);
  }

  await check('parameterised_select', async () => {
    const res = await client.query(
      `SELECT id, name, price FROM ${TABLE} WHERE id > $1 ORDER BY id`, [5]);
    // pg returns int8 as a string (it may not fit a JS number).
    assert.deepEqual(res.rows, [6, 7, 8, 9, 10].map((i) => ({
      id: String(i), name: `item-${i}`, price: i * 1.5,
    })));
  });

  await check('values', async () => {
    const res = await client.query(
      `SELECT CAST(id AS INT) AS n, id, price, name, id % 2 = 0 AS even, ` +
      `CAST('2024-01-02 03:04:05' AS TIMESTAMP) AS ts, ` +
      `CAST('2024-01-02 03:04:05+00' AS TIMESTAMPTZ) AS tstz, ` +
      `CAST(NULL AS BIGINT) AS missing ` +
      `FROM ${TABLE} WHERE id = $1`, [4]);
    assert.equal(res.rows.length, 1, 'one row for id = 4');
    const row = res.rows[0];
    assert.strictEqual(row.n, 4, 'int4 column');
    assert.strictEqual(row.id, '4', 'int8 column');
    assert.strictEqual(row.price, 6, 'float8 column');
    assert.strictEqual(row.name, 'item-4', 'text column');
    assert.strictEqual(row.even, true, 'bool column');
    assert.ok(row.ts instanceof Date, `timestamp column should be a Date, got ${typeof row.ts} ${row.ts}`);
    assert.strictEqual(row.ts.toISOString(), '2024-01-02T03:04:05.000Z', 'timestamp column (TZ=UTC)');
    assert.ok(row.tstz instanceof Date, `timestamptz column should be a Date, got ${typeof row.tstz} ${row.tstz}`);
    assert.strictEqual(row.tstz.getTime(), Date.UTC(2024, 0, 2, 3, 4, 5), 'timestamptz column');
    assert.strictEqual(row.missing, null, 'NULL column');
  });

  await check('field_types', async () => {
    const res = await client.query(
      `SELECT CAST(id AS INT) AS n, id, price, name, id > 5 AS big, ` +
      `CAST('2024-01-02 03:04:05' AS TIMESTAMP) AS ts FROM ${TABLE} WHERE id = $1`, [1]);
    const types = Object.fromEntries(res.fields.map((f) => [f.name, f.dataTypeID]));
    assert.deepEqual(types, {
      n: OID.int4, id: OID.int8, price: OID.float8, name: OID.text, big: OID.bool, ts: OID.timestamp,
    }, 'result column type OIDs');
  });

  await check('text_parameter', async () => {
    const res = await client.query(`SELECT id FROM ${TABLE} WHERE name = $1`, ['item-3']);
    assert.deepEqual(res.rows, [{ id: '3' }]);
  });

  await check('named_statement', async () => {
    // A named statement is parsed once and then only bound and executed.
    for (const bound of [2, 8]) {
      const res = await client.query({
        name: 'items_above',
        text: `SELECT count(*) AS n FROM ${TABLE} WHERE id > $1`,
        values: [bound],
      });
      assert.deepEqual(res.rows, [{ n: String(10 - bound) }], `count for id > ${bound}`);
    }
  });

  await check('missing_table_error', async () => {
    let err = null;
    try {
      await client.query('SELECT * FROM no_such_table');
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'query over a missing table succeeded');
    assert.strictEqual(err.code, '42P01', `code of "${err.message}"`);
    // The session stays usable after an error.
    const res = await client.query(`SELECT count(*) AS n FROM ${TABLE}`);
    assert.deepEqual(res.rows, [{ n: '10' }], 'query after an error');
  });

  await check('bad_parameter_error', async () => {
    // An error in the extended protocol must not leave the session stuck.
    let err = null;
    try {
      await client.query(`SELECT id FROM ${TABLE} WHERE no_such_column > $1`, [1]);
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'query over a missing column succeeded');
    assert.strictEqual(err.code, '42703', `code of "${err.message}"`);
    const res = await client.query(`SELECT count(*) AS n FROM ${TABLE} WHERE id > $1`, [0]);
    assert.deepEqual(res.rows, [{ n: '10' }], 'query after an error');
  });

  await client.end();
  console.log(failures === 0 ? 'all checks passed' : `${failures} check(s) failed`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`FAIL unexpected: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
