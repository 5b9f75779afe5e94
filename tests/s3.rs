//! Tables on S3-compatible object storage, against a real moto_server.
//!
//! * `tests/python/s3_tables.py`: Delta and Parquet tables in a bucket, read
//!   by weir and by deltalake-python and polars while sinks commit (whole
//!   epochs only); OPTIMIZE / VACUUM / DESCRIBE HISTORY there; bad
//!   locations refused at CREATE with the cause; file streams over
//!   prefixes in the bucket. After a restart the catalog brings the tables
//!   back and the streams resume without reading an object twice.
//! * SIGKILL at random moments under three sinks from Kafka, into a Delta,
//!   a Parquet and a partitioned Parquet table in the bucket: every id lands once in each, the Delta
//!   log's last epoch is weir's, and no staged object is left behind.
//! * A warehouse in a bucket (`--warehouse s3://...`): after a restart from
//!   a local warehouse, views and dead letters made before stay local and
//!   keep running, new views (Delta by default, or appending Parquet) and
//!   dead-letter tables are made in the bucket, restored from it after
//!   another restart, and DROP deletes their objects; a rewritten Parquet
//!   view there is refused; restarted with a local warehouse again, the
//!   bucket's tables keep running where they are; a missing bucket stops
//!   the start.
//! * Against a store that checks signatures, an unknown key or a wrong
//!   secret is refused at CREATE with the store's reason (42501).
//! * A store outage mid-run (a proxy in front of moto is cut): the sink's
//!   query reports `retrying` with the reason, resumes when the store is
//!   back, and every id lands once, for a Delta and a Parquet table.
//!
//! Needs `WEIR_PYTHON` (moto[server], boto3, deltalake, polars, psycopg),
//! which `bash scripts/test.sh` provides.

mod common;

use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::kafka::Broker;
use common::s3::{Moto, Proxy};
use common::{Rng, TestServer, sql, try_sql};

const SCRIPT_LIMIT: Duration = Duration::from_secs(420);

fn server_with_store(data: &std::path::Path, endpoint: &str, extra: &[&str]) -> TestServer {
    let env = Moto::env(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with_env(data, extra, &env)
}

#[test]
fn tables_in_a_bucket_for_weir_and_outside_readers() {
    let moto = Moto::start();
    moto.create_bucket("lake");
    let tmp = tempfile::tempdir().expect("create temp dir");
    let data = tmp.path().join("data");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("create scratch dir");
    let scratch_arg = scratch.display().to_string();
    let server = server_with_store(&data, &moto.endpoint(), &["--allow-path", &scratch_arg]);
    let args = [server.port.to_string(), moto.endpoint(), scratch.display().to_string()];
    common::run_python_checks("s3_tables.py", &args, SCRIPT_LIMIT);
    server.assert_no_panic();
    // After a restart the catalog brings the tables back, the bucket
    // configured by a table's own options included.
    server.kill();
    let server = server_with_store(&data, &moto.endpoint(), &["--allow-path", &scratch_arg]);
    assert_eq!(sql(&server, "SELECT count(*) FROM made_elsewhere").trim(), "15");
    assert_eq!(sql(&server, "SELECT count(*) FROM landed").trim(), "3000");
    assert_eq!(sql(&server, "SELECT count(*) FROM landed_pq").trim(), "3000");
    assert_eq!(sql(&server, "SELECT count(*) FROM elsewhere").trim(), "7");
    // The file stream resumes where it committed: nothing read twice.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sql(&server, "SELECT count(*) || ' ' || count(DISTINCT id) FROM inbox_ids").trim(), "80 80");
    let create = sql(&server, "SHOW CREATE TABLE elsewhere");
    assert!(create.contains("'********'") && create.contains("s3://other/t/"), "{create}");
    server.assert_no_panic();
}

/// Polls `statement` until it prints `want`.
fn wait_for(server: &TestServer, statement: &str, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = sql(server, statement);
        if got.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{statement}: still {got:?}, wanted {want:?}\n{}",
            sql(server, "SELECT name, status, last_error FROM weir.queries")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn drop_file(dir: &std::path::Path, name: &str, ids: std::ops::Range<u32>) {
    let staged = dir.join(format!(".{name}.tmp"));
    let lines: String = ids.map(|i| format!("{{\"id\": {i}}}\n")).collect();
    std::fs::write(&staged, lines).expect("write input");
    std::fs::rename(&staged, dir.join(format!("{name}.json"))).expect("publish input");
}

#[test]
fn a_bucket_warehouse_holds_new_views_and_dead_letters() {
    let moto = Moto::start();
    moto.create_bucket("lake");
    let tmp = tempfile::tempdir().expect("create temp dir");
    let (data, input, local) = (tmp.path().join("data"), tmp.path().join("in"), tmp.path().join("wh"));
    std::fs::create_dir_all(&input).expect("input dir");
    let allow = tmp.path().display().to_string();
    let start =
        |warehouse: &str| server_with_store(&data, &moto.endpoint(), &["--allow-path", &allow, "--warehouse", warehouse]);

    // Made under a local warehouse first.
    let server = start(&local.display().to_string());
    sql(
        &server,
        &format!(
            "CREATE STREAM nums (n BIGINT) WITH (connector = 'file', path = '{}', format = 'json', on_error = 'dead_letter')",
            input.display()
        ),
    );
    sql(&server, "CREATE MATERIALIZED VIEW big AS SELECT n FROM nums WHERE n > 1");
    let nums = |name: &str, ns: std::ops::Range<u32>| {
        let lines: String = ns.map(|n| format!("{{\"n\": {n}}}\n")).collect();
        std::fs::write(input.join(format!(".{name}.tmp")), lines).expect("write input");
        std::fs::rename(input.join(format!(".{name}.tmp")), input.join(format!("{name}.json"))).expect("publish input");
    };
    nums("a", 0..10);
    wait_for(&server, "SELECT count(*) FROM big", "8", Duration::from_secs(60));
    server.kill();

    // Restarted with the warehouse in the bucket.
    let server = start("s3://lake/wh");
    assert_eq!(sql(&server, "SELECT count(*) FROM big").trim(), "8", "the local view is restored where it was made");
    sql(
        &server,
        &format!(
            "CREATE STREAM more (n BIGINT) WITH (connector = 'file', path = '{}', format = 'json', on_error = 'dead_letter')",
            input.display()
        ),
    );
    sql(
        &server,
        "CREATE MATERIALIZED VIEW by_parity AS SELECT n % 2 AS parity, count(*) AS c FROM more GROUP BY n % 2 WITH (output_mode = 'update')",
    );
    sql(&server, "CREATE MATERIALIZED VIEW odd AS SELECT n FROM more WHERE n % 2 = 1 WITH (format = 'parquet')");
    let (ok, _, refused) = common::psql(
        server.port,
        &[
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "CREATE MATERIALIZED VIEW rewritten AS SELECT count(*) AS c FROM more WITH (format = 'parquet', output_mode = 'complete')",
        ],
        &[],
    );
    assert!(!ok && refused.contains("0A000") && refused.contains("format = 'delta'"), "{refused}");
    std::fs::write(input.join("b.json"), "{\"n\": 20}\n{\"n\": 21}\n{\"n\": 23}\nnot json\n").expect("write input");
    wait_for(
        &server,
        "SELECT string_agg(parity || ':' || c, ',' ORDER BY parity) FROM by_parity",
        "0:6,1:7",
        Duration::from_secs(60),
    );
    wait_for(&server, "SELECT count(*) FROM odd", "7", Duration::from_secs(60));
    // Each of the two queries reading the stream dead-letters its bad line.
    wait_for(&server, "SELECT count(*) FROM more_errors", "2", Duration::from_secs(60));
    wait_for(&server, "SELECT count(*) FROM big", "11", Duration::from_secs(60));
    let shown = sql(&server, "SHOW MATERIALIZED VIEWS");
    assert!(shown.contains("s3://lake/wh/by_parity/") && shown.contains("s3://lake/wh/odd/"), "{shown}");
    assert!(shown.contains(&format!("{}/", local.join("big").display())), "{shown}");
    assert!(!moto.keys("lake", "wh/by_parity/_delta_log/").is_empty(), "an unnamed format is Delta in a bucket");
    assert!(moto.keys("lake", "wh/odd/").iter().any(|k| k.ends_with(".parquet")));
    assert!(moto.keys("lake", "wh/more_errors/").iter().any(|k| k.ends_with(".parquet")));
    assert!(local.join("nums_errors").is_dir() && !local.join("more_errors").exists());
    server.kill();

    // Restored from the bucket, and still running there.
    let server = start("s3://lake/wh");
    assert_eq!(sql(&server, "SELECT count(*) FROM odd").trim(), "7");
    assert_eq!(sql(&server, "SELECT count(*) FROM more_errors").trim(), "2");
    nums("c", 100..104);
    wait_for(
        &server,
        "SELECT string_agg(parity || ':' || c, ',' ORDER BY parity) FROM by_parity",
        "0:8,1:9",
        Duration::from_secs(60),
    );
    wait_for(&server, "SELECT count(*) FROM odd", "9", Duration::from_secs(60));
    let replay = sql(&server, "SELECT count(*) || ' ' || count(DISTINCT n) FROM odd");
    assert_eq!(replay.trim(), "9 9", "nothing read twice across the restart");
    sql(&server, "DROP MATERIALIZED VIEW odd");
    assert!(moto.keys("lake", "wh/odd/").is_empty(), "DROP deletes the view's objects");
    assert!(!moto.keys("lake", "wh/by_parity/").is_empty(), "and nothing else");
    // A name beyond letters and digits gets a key no URL reads as an escape.
    sql(&server, "CREATE MATERIALIZED VIEW \"two words\" AS SELECT n FROM more WITH (format = 'parquet')");
    wait_for(&server, "SELECT count(*) FROM \"two words\"", "17", Duration::from_secs(60));
    assert!(
        moto.keys("lake", "wh/two%2B20words/").iter().any(|k| k.starts_with("wh/two+20words/") && k.ends_with(".parquet"))
    );
    server.assert_no_panic();
    server.kill();

    // Back to a local warehouse: what the bucket holds stays there, read,
    // written and dropped where it is.
    let server = start(&local.display().to_string());
    // Three queries now read the stream, each dead-lettering its bad line.
    assert_eq!(sql(&server, "SELECT count(*) FROM more_errors").trim(), "3");
    nums("d", 200..202);
    wait_for(
        &server,
        "SELECT string_agg(parity || ':' || c, ',' ORDER BY parity) FROM by_parity",
        "0:9,1:10",
        Duration::from_secs(60),
    );
    wait_for(&server, "SELECT count(*) FROM \"two words\"", "19", Duration::from_secs(60));
    sql(&server, "DROP MATERIALIZED VIEW by_parity");
    assert!(moto.keys("lake", "wh/by_parity/").is_empty(), "DROP deletes the view's objects in the earlier bucket");
    sql(&server, "CREATE MATERIALIZED VIEW newer AS SELECT n FROM more");
    wait_for(&server, "SELECT count(*) FROM newer", "19", Duration::from_secs(60));
    assert!(local.join("newer").is_dir(), "new views go under the current, local root");
    server.assert_no_panic();
    server.kill();

    // A warehouse bucket that does not exist stops the start, saying so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-flight", "--warehouse", "s3://nowhere/wh", "--data-dir"])
        .arg(&data)
        .envs(Moto::env(&moto.endpoint()))
        .env("NO_COLOR", "1")
        .output()
        .expect("run weir");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("s3://nowhere/wh") && stderr.contains("nowhere"), "{stderr}");
}

/// Against a store that checks signatures (moto with IAM enforced): an
/// unknown key or a wrong secret is refused at CREATE with the store's
/// reason (42501) and configures nothing, so the same bucket then works
/// with the right key; the server's own key works from the environment.
#[test]
fn wrong_credentials_are_refused_at_create_with_the_cause() {
    let moto = Moto::start();
    // From here five unchecked requests (a user, its policy, its key, two
    // buckets); every later one must be signed by a key moto knows.
    let provision = format!(
        r#"
import boto3, json, urllib.request
urllib.request.urlopen(urllib.request.Request("{endpoint}/moto-api/reset-auth", data=b"5", headers={{"Content-Type": "text/plain"}}, method="POST"))
kw = dict(endpoint_url="{endpoint}", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="weir")
policy = {{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}]}}
iam.put_user_policy(UserName="weir", PolicyName="s3", PolicyDocument=json.dumps(policy))
key = iam.create_access_key(UserName="weir")["AccessKey"]
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket="lake")
s3.create_bucket(Bucket="locked")
print(key["AccessKeyId"], key["SecretAccessKey"])
"#,
        endpoint = moto.endpoint()
    );
    let python = std::env::var("WEIR_PYTHON").expect("WEIR_PYTHON (run the tests with bash scripts/test.sh)");
    let out = common::output_within(
        {
            let mut cmd = std::process::Command::new(python);
            cmd.args(["-c", &provision]);
            cmd
        },
        Duration::from_secs(120),
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "provisioning: {printed}{}", String::from_utf8_lossy(&out.stderr));
    let (key, secret) = printed.trim().split_once(' ').expect("a key and a secret");
    let tmp = tempfile::tempdir().expect("create temp dir");
    let mut env = Moto::env(&moto.endpoint());
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS_KEY_ID") && !k.starts_with("AWS_SECRET_ACCESS_KEY"));
    env.push(("AWS_ACCESS_KEY_ID", key.to_string()));
    env.push(("AWS_SECRET_ACCESS_KEY", secret.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with_env(&tmp.path().join("data"), &[], &env);

    sql(&server, "CREATE EXTERNAL TABLE fine (id BIGINT) STORED AS PARQUET LOCATION 's3://lake/fine/'");
    let endpoint = moto.endpoint();
    let create = |key: &str, secret: &str| {
        format!(
            "CREATE EXTERNAL TABLE locked_t (id BIGINT) STORED AS PARQUET LOCATION 's3://locked/t/' \
             OPTIONS ('aws.endpoint' '{endpoint}', 'aws.access_key_id' '{key}', 'aws.secret_access_key' '{secret}')"
        )
    };
    for (bad_key, bad_secret, cause) in
        [("AKIAUNKNOWNUNKNOWN01", "nope", "InvalidAccessKeyId"), (key, "not-the-secret", "SignatureDoesNotMatch")]
    {
        let statement = create(bad_key, bad_secret);
        let (ok, _, stderr) = common::psql(server.port, &["-v", "VERBOSITY=verbose", "-c", &statement], &[]);
        assert!(!ok && stderr.contains("42501") && stderr.contains(cause) && stderr.contains("s3://locked/t/"), "{stderr}");
        assert!(!stderr.contains(bad_secret), "the secret is not echoed: {stderr}");
    }
    // A refused CREATE configured nothing: the right key works now.
    sql(&server, &create(key, secret));
    assert_eq!(sql(&server, "SELECT count(*) FROM locked_t").trim(), "0");
    assert_eq!(sql(&server, "SELECT count(*) FROM fine").trim(), "0");
    server.assert_no_panic();
}

#[test]
fn a_store_outage_makes_sinks_retry_and_nothing_is_lost() {
    let moto = Moto::start();
    moto.create_bucket("lake");
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().expect("create temp dir");
    let incoming = tmp.path().join("incoming");
    std::fs::create_dir_all(&incoming).expect("incoming dir");
    let root = tmp.path().display().to_string();
    let server = server_with_store(&tmp.path().join("data"), &proxy.endpoint(), &["--allow-path", &root]);
    sql(
        &server,
        &format!(
            "CREATE STREAM ids (id BIGINT) WITH (connector = 'file', path = '{}', format = 'json', max_files_per_trigger = 1)",
            incoming.display()
        ),
    );
    sql(&server, "CREATE EXTERNAL TABLE d (id BIGINT) STORED AS DELTA LOCATION 's3://lake/d/'");
    sql(&server, "CREATE EXTERNAL TABLE p (id BIGINT) STORED AS PARQUET LOCATION 's3://lake/p/'");
    sql(&server, "CREATE SINK into_d INTO d AS SELECT id FROM ids WITH (flush_interval = '100ms')");
    sql(&server, "CREATE SINK into_p INTO p AS SELECT id FROM ids WITH (flush_interval = '100ms')");
    for n in 0..5 {
        drop_file(&incoming, &format!("a{n}"), n * 100..(n + 1) * 100);
    }
    wait_for(&server, "SELECT count(*) FROM d", "500", Duration::from_secs(60));
    wait_for(&server, "SELECT count(*) FROM p", "500", Duration::from_secs(60));

    proxy.cut();
    for n in 5..10 {
        drop_file(&incoming, &format!("a{n}"), n * 100..(n + 1) * 100);
    }
    for query in ["into_d", "into_p"] {
        wait_for(
            &server,
            &format!("SELECT status || ' ' || (last_error <> '')::text FROM weir.queries WHERE name = '{query}'"),
            "retrying true",
            Duration::from_secs(120),
        );
    }
    proxy.restore();
    for table in ["d", "p"] {
        wait_for(
            &server,
            &format!("SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || max(id) FROM {table}"),
            "1000 1000 999",
            Duration::from_secs(180),
        );
    }
    wait_for(
        &server,
        "SELECT string_agg(status, ',' ORDER BY name) FROM weir.queries",
        "running,running",
        Duration::from_secs(30),
    );
    server.assert_no_panic();
}

#[test]
fn sigkill_at_random_moments_lands_each_id_once_in_the_bucket() {
    const KILLS: usize = 5;
    let mut rng = Rng::seeded();
    let moto = Moto::start();
    moto.create_bucket("lake");
    let broker = Arc::new(Broker::start());
    broker.create_topic("events", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let mut server = server_with_store(&data_dir, &moto.endpoint(), &[]);
    let bootstrap = broker.bootstrap();
    sql(
        &server,
        &format!(
            "CREATE STREAM events (id BIGINT, event_type TEXT) WITH (connector = 'kafka', bootstrap_servers = '{bootstrap}', \
             topic = 'events', format = 'json', startup_mode = 'earliest')"
        ),
    );
    sql(&server, "CREATE EXTERNAL TABLE d (id BIGINT) STORED AS DELTA LOCATION 's3://lake/d/'");
    sql(&server, "CREATE EXTERNAL TABLE p (id BIGINT) STORED AS PARQUET LOCATION 's3://lake/p/'");
    sql(
        &server,
        "CREATE EXTERNAL TABLE pp (id BIGINT, shard BIGINT) STORED AS PARQUET PARTITIONED BY (shard) LOCATION 's3://lake/pp/'",
    );
    for (sink, table, columns) in [("into_d", "d", "id"), ("into_p", "p", "id"), ("into_pp", "pp", "id, id % 4 AS shard")] {
        sql(
            &server,
            &format!(
                "CREATE SINK {sink} INTO {table} AS SELECT {columns} FROM events WHERE event_type = 'purchase' \
                 WITH (flush_interval = '100ms', target_file_rows = 50)"
            ),
        );
    }
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (broker, done) = (broker.clone(), done.clone());
        std::thread::spawn(move || {
            let mut expected = Vec::new();
            let mut id = 0i64;
            while !done.load(Ordering::SeqCst) {
                let mut batch = Vec::new();
                for _ in 0..200 {
                    let kind = if id % 3 == 0 { "purchase" } else { "view" };
                    if kind == "purchase" {
                        expected.push(id);
                    }
                    batch.push(format!(r#"{{"id": {id}, "event_type": "{kind}"}}"#));
                    id += 1;
                }
                broker.produce_values("events", &batch.iter().map(String::as_str).collect::<Vec<_>>());
                std::thread::sleep(Duration::from_millis(40));
            }
            expected
        })
    };
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.between(300, 2000)));
        eprintln!("kill {kill}");
        server.kill();
        server = server_with_store(&data_dir, &moto.endpoint(), &[]);
    }
    done.store(true, Ordering::SeqCst);
    let expected = producer.join().expect("producer thread");
    eprintln!("{} purchases produced", expected.len());
    let want = expected.len().to_string();
    for table in ["d", "p", "pp"] {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let count = try_sql(&server, &format!("SELECT count(*) FROM {table}")).unwrap_or_default();
            if count.trim() == want {
                break;
            }
            assert!(Instant::now() < deadline, "{table}: {} of {want} rows\n{}", count.trim(), sql(&server, "SHOW SINKS"));
            std::thread::sleep(Duration::from_millis(250));
        }
        let ids: Vec<i64> = sql(&server, &format!("SELECT id FROM {table} ORDER BY id"))
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        assert_eq!(ids, expected, "{table} holds exactly the produced purchase ids, once each");
    }
    // The log's newest weir commit is the query's last epoch with rows.
    let history = sql(&server, "DESCRIBE HISTORY d");
    let newest_epoch = history
        .lines()
        .map(|row| row.split('|').collect::<Vec<_>>())
        .find(|cols| cols.get(4) == Some(&"into_d"))
        .and_then(|cols| cols.get(5).map(|e| e.to_string()))
        .unwrap_or_default();
    let last_epoch =
        sql(&server, "SELECT max(batch_id) FROM weir.query_progress WHERE query = 'into_d' AND output_rows > 0");
    assert_eq!(newest_epoch, last_epoch.trim(), "the Delta log's last epoch\n{history}");
    // Recovery deleted what killed runs had staged and never committed (no
    // input is left, so no epoch is staging now).
    let shards = sql(&server, "SELECT count(*) FROM pp WHERE shard <> id % 4");
    assert_eq!(shards.trim(), "0", "each row read back from its own partition");
    for key in moto.keys("lake", "pp/") {
        assert!(key.starts_with("pp/shard=") && key.matches('/').count() == 2, "a partition's key: {key}");
    }
    for prefix in ["d/", "p/", "pp/"] {
        let staged: Vec<String> = moto.keys("lake", prefix).into_iter().filter(|k| k.ends_with(".pending")).collect();
        assert!(staged.is_empty(), "staged objects left in {prefix}: {staged:?}");
    }
    server.assert_no_panic();
}
