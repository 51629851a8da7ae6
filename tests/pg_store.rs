//! The PostgreSQL connection layer (`[storage] database`): connecting, the versioned schema
//! under an advisory lock, use from synchronous code on any thread, and errors that name the
//! database without its password. Each test runs a private cluster (tests/common/pg.rs).

mod common;

use common::pg::PgCluster;
use schoolgate::store::StoreError;
use schoolgate::store::postgres::{Pg, schema};

#[test]
fn connect_migrates_once_and_two_nodes_starting_together_do_not_race() {
    let cluster = PgCluster::start_new();
    let url = cluster.url();
    // Four "nodes" start at once against an empty database.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Pg::connect(&url).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().expect("connect panicked").expect("connect failed");
    }
    let versions =
        cluster.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version");
    let want: Vec<String> = schema::MIGRATIONS
        .iter()
        .map(|(v, _)| v.to_string())
        .collect();
    assert_eq!(
        versions,
        want.join(","),
        "each migration applied exactly once"
    );
    assert_eq!(cluster.psql("SELECT count(*) FROM audit"), "0");
    // And again: nothing to do.
    Pg::connect(&url).expect("reconnect to a migrated database");
    assert_eq!(
        cluster.psql("SELECT count(*) FROM schema_version"),
        want.len().to_string()
    );
}

#[test]
fn a_database_from_a_newer_schoolgate_is_refused() {
    let cluster = PgCluster::start_new();
    Pg::connect(&cluster.url()).unwrap();
    cluster.psql("INSERT INTO schema_version (version) VALUES (9999)");
    match Pg::connect(&cluster.url()) {
        Err(e @ StoreError::PgTooNew { found: 9999, .. }) => {
            let text = e.to_string();
            assert!(text.contains("newer schoolgate"), "{text}");
            assert!(
                text.contains(&format!("127.0.0.1:{}/schoolgate", cluster.port())),
                "{text}"
            );
        }
        other => panic!("expected PgTooNew, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_code_uses_it_from_any_thread_including_spawn_blocking() {
    let cluster = PgCluster::start_new();
    let url = cluster.url();
    let pg = tokio::task::spawn_blocking(move || Pg::connect(&url))
        .await
        .unwrap()
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..20i64 {
        let pg = pg.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            pg.run(move |client| async move {
                let row = client.query_one("SELECT $1::bigint * 2", &[&n]).await?;
                Ok(row.get::<_, i64>(0))
            })
        }));
    }
    for (n, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), n as i64 * 2);
    }
    // From a plain thread, and the last clone dropped inside an async task.
    let pg2 = pg.clone();
    let from_thread = std::thread::spawn(move || {
        pg2.run(
            |client| async move { Ok(client.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)) },
        )
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(from_thread, 1);
    tokio::spawn(async move { drop(pg) }).await.unwrap();
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let port = common::free_port();
    let url = format!("postgres://schoolgate:s3cret@127.0.0.1:{port}/trust");
    let started = std::time::Instant::now();
    let e = Pg::connect(&url).expect_err("nothing listens there");
    let text = e.to_string();
    assert!(matches!(e, StoreError::PgConnect { .. }), "{e:?}");
    assert!(
        text.contains(&format!("schoolgate@127.0.0.1:{port}/trust")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "the password leaked: {text}");
    assert!(text.contains("check that PostgreSQL is running"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_statement_error_names_the_database_and_the_pool_recovers_after_a_restart() {
    let mut cluster = PgCluster::start_new();
    let pg = Pg::connect(&cluster.url()).unwrap();
    let e = pg
        .run(|client| async move { Ok(client.execute("SELECT * FROM no_such_table", &[]).await?) })
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("no_such_table") && text.contains("/schoolgate"),
        "{text}"
    );
    cluster.restart();
    // The pooled connection died with the server; the next call gets a fresh one.
    let mut answered = None;
    for _ in 0..3 {
        match pg.run(|client| async move {
            Ok(client.query_one("SELECT 7", &[]).await?.get::<_, i32>(0))
        }) {
            Ok(v) => {
                answered = Some(v);
                break;
            }
            Err(e) => eprintln!("after restart: {e}"),
        }
    }
    assert_eq!(answered, Some(7), "the pool did not reconnect by itself");
}

#[test]
fn while_the_server_is_stopped_calls_fail_fast_and_then_recover() {
    let mut cluster = PgCluster::start_new();
    let pg = Pg::connect(&cluster.url()).unwrap();
    let one = |pg: &Pg| {
        pg.run(
            |client| async move { Ok(client.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)) },
        )
    };
    assert_eq!(one(&pg).unwrap(), 1);
    cluster.stop();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let e = one(&pg).expect_err("the server is stopped");
        eprintln!("{:?}: {e}", started.elapsed());
        assert!(matches!(e, StoreError::PgConnect { .. }), "{e:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
    cluster.start();
    assert_eq!(one(&pg).unwrap(), 1);
}
