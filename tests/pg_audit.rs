//! The audit trail on PostgreSQL: the same answers as SQLite for the same records, one chain
//! when two nodes (two pools, as two gateways have) append at once, a read snapshot, and
//! tampering found as it is in SQLite. Each test runs a private cluster (tests/common/pg.rs).

mod common;

use common::pg::PgCluster;
use schoolgate::store::postgres::Pg;
use schoolgate::store::postgres::audit::PgAudit;
use schoolgate::store::sqlite::SqliteBackend;
use schoolgate::store::{
    AuditEntry, AuditLog, AuditRecord, Backend, FlagRecord, MessageRecord, RecordKind, StoreError,
    verify,
};

fn pg_audit(cluster: &PgCluster) -> PgAudit {
    PgAudit::new(Pg::connect(&cluster.url()).expect("connect to the private cluster"))
}

fn action(n: usize) -> AuditRecord {
    AuditRecord::action(RecordKind::Action, "test", format!("action {n}"))
}

fn message(n: usize) -> AuditRecord {
    let flagged = n.is_multiple_of(3);
    AuditRecord::message(MessageRecord {
        mail_from: format!("teacher{}@example-academy.sch.uk", n % 4),
        rcpt_to: vec![format!("parent{}@example.org", n % 5)],
        verdict: "deliver".into(),
        outcome: "delivered".into(),
        flags: if flagged {
            vec![FlagRecord {
                rule: "pupil-personal-address".into(),
                detail: "to a pupil's personal address".into(),
                evidence: String::new(),
                action: "flag".into(),
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    })
}

/// Every read method of `Backend`, as one comparable value.
fn everything(b: &mut dyn Backend) -> String {
    let mut out = String::new();
    b.begin_read().unwrap();
    out += &format!("head {:?}\n", b.head().unwrap());
    let marks = b.marks().unwrap();
    out += &format!(
        "marks head {:?} checkpoints {:?} purge {:?}\n",
        marks.head,
        marks
            .checkpoints
            .iter()
            .map(|c| (c.seq, c.hash.clone()))
            .collect::<Vec<_>>(),
        marks.last_purge.as_ref().map(|e| (e.seq, e.hash.clone()))
    );
    let range = b.seq_range(None, None).unwrap();
    out += &format!("range {range:?}\n");
    for e in b.read_from(1, 10_000).unwrap() {
        out += &format!("{} {} {} {}\n", e.seq, e.prev_hash, e.hash, e.record_json);
    }
    if let Some(range) = range {
        out += &format!("columns {:?}\n", b.search_columns(range).unwrap());
        for keys in [
            vec![],
            vec!["a:parent1@example.org".to_string()],
            vec![
                "a:teacher2@example-academy.sch.uk".to_string(),
                "r:pupil-personal-address".to_string(),
            ],
        ] {
            let mut seqs = Vec::new();
            b.scan(range, &keys, &mut |e: AuditEntry| {
                seqs.push(e.seq);
                Ok(true)
            })
            .unwrap();
            out += &format!(
                "scan {keys:?} {seqs:?} count {}\n",
                b.count(range, &keys).unwrap()
            );
        }
    }
    let mut cases = Vec::new();
    b.scan_cases(&mut |e| {
        cases.push(e.seq);
        Ok(())
    })
    .unwrap();
    out += &format!("cases {cases:?}\n");
    b.end_read().unwrap();
    out
}

#[test]
fn the_same_records_give_the_same_answers_as_sqlite() {
    let cluster = PgCluster::start_new();
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = SqliteBackend::open(dir.path()).unwrap();
    let mut pg = pg_audit(&cluster);
    // Made once, so both get byte-identical JSON (times included).
    let batches: Vec<Vec<AuditRecord>> = (0..6)
        .map(|b| {
            (0..(b * 7 + 1))
                .map(|i: usize| {
                    if i.is_multiple_of(2) {
                        message(b * 100 + i)
                    } else {
                        action(b * 100 + i)
                    }
                })
                .collect()
        })
        .collect();
    for batch in &batches {
        let refs: Vec<&AuditRecord> = batch.iter().collect();
        let a = sqlite.append_chained(&refs).unwrap();
        let b = pg.append_chained(&refs).unwrap();
        assert_eq!(a, b, "the same entries, seq and hashes");
    }
    assert_eq!(everything(&mut sqlite), everything(&mut pg));
    let (vs, vp) = (
        verify(&mut sqlite, &[]).unwrap(),
        verify(&mut pg, &[]).unwrap(),
    );
    assert_eq!((vs.records, vs.head.clone()), (vp.records, vp.head.clone()));
    assert!(vp.records > 100);

    // A checkpoint, then a purge of everything so far: the purge record anchors what went.
    assert_eq!(sqlite.checkpoint().unwrap(), pg.checkpoint().unwrap());
    let future = "2999-01-01T00:00:00Z";
    let ps = sqlite.purge(future, 30, "netman").unwrap().unwrap();
    let pp = pg.purge(future, 30, "netman").unwrap().unwrap();
    assert_eq!(ps.seq, pp.seq);
    assert_eq!(
        ps.record().unwrap().purge,
        pp.record().unwrap().purge,
        "the same range and kept hash"
    );
    let more: Vec<AuditRecord> = (0..5).map(message).collect();
    let refs: Vec<&AuditRecord> = more.iter().collect();
    sqlite.append_chained(&refs).unwrap();
    pg.append_chained(&refs).unwrap();
    let vp = verify(&mut pg, &[]).unwrap();
    assert_eq!(
        vp.first_seq, pp.seq,
        "only the purge record and later remain"
    );
    assert!(vp.purged.is_some());
    assert_eq!(vp.records, verify(&mut sqlite, &[]).unwrap().records);
    // The purge records' times (and so the hashes from there on) differ; what is found by
    // range, person, rule and case must not.
    let found = |b: &mut dyn Backend| -> Vec<String> {
        everything(b)
            .lines()
            .filter(|l| l.starts_with("scan") || l.starts_with("cases") || l.starts_with("range"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(found(&mut sqlite), found(&mut pg));
}

#[test]
fn two_nodes_appending_at_once_make_one_chain() {
    let cluster = PgCluster::start_new();
    // Two pools, as two gateways have, each with its own writer thread and group commit.
    let a = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    let b = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    let mut threads = Vec::new();
    for t in 0..8 {
        let log = if t % 2 == 0 { a.clone() } else { b.clone() };
        threads.push(std::thread::spawn(move || {
            (0..100)
                .map(|n| log.append_blocking(message(t * 1000 + n)).unwrap().seq)
                .collect::<Vec<u64>>()
        }));
    }
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=800).collect::<Vec<u64>>(),
        "each record once, no gap"
    );
    let v = verify(&mut pg_audit(&cluster), &[]).unwrap();
    assert_eq!(v.records, 800);
    assert_eq!(v.head.unwrap().seq, 800);
    // Group commit: each node wrote what queued meanwhile in one transaction.
    let transactions: usize = cluster
        .psql("SELECT count(DISTINCT xmin::text) FROM audit")
        .parse()
        .unwrap();
    assert!(
        transactions < 700,
        "{transactions} transactions for 800 records from 8 writers: no batching"
    );
    // Every record links to the one before it, whichever node wrote either.
    assert_eq!(
        cluster.psql("SELECT count(*) FROM audit a JOIN audit b ON b.seq = a.seq + 1 WHERE b.prev_hash <> a.hash"),
        "0"
    );
}

#[test]
fn a_read_snapshot_does_not_see_later_appends() {
    let cluster = PgCluster::start_new();
    let log = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    for n in 0..10 {
        log.append_blocking(action(n)).unwrap();
    }
    let mut reader = pg_audit(&cluster);
    reader.begin_read().unwrap();
    assert_eq!(reader.head().unwrap().unwrap().seq, 10);
    for n in 0..5 {
        log.append_blocking(action(n)).unwrap();
    }
    assert_eq!(
        reader.head().unwrap().unwrap().seq,
        10,
        "inside the snapshot"
    );
    assert_eq!(reader.marks().unwrap().head.unwrap().seq, 10);
    reader.end_read().unwrap();
    assert_eq!(reader.head().unwrap().unwrap().seq, 15, "after it");
    // A snapshot left open when the reader is dropped does not poison the pool.
    reader.begin_read().unwrap();
    drop(reader);
    assert_eq!(verify(&mut pg_audit(&cluster), &[]).unwrap().records, 15);
}

#[test]
fn tampering_in_the_database_is_named_by_verify() {
    let cluster = PgCluster::start_new();
    let log = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    for n in 0..8 {
        log.append_blocking(message(n)).unwrap();
    }
    let broken_at = |c: &PgCluster| match verify(&mut pg_audit(c), &[]) {
        Err(StoreError::ChainBroken { seq, reason }) => (seq, reason),
        other => panic!("expected a broken chain, got {other:?}"),
    };
    cluster.psql("UPDATE audit SET record = replace(record, 'parent3', 'parent4') WHERE seq = 4");
    let (seq, reason) = broken_at(&cluster);
    assert_eq!(seq, 4, "{reason}");
    assert!(reason.contains("does not match its hash"), "{reason}");
    cluster.psql("DELETE FROM audit WHERE seq = 4");
    let (seq, reason) = broken_at(&cluster);
    assert_eq!(seq, 4);
    assert!(reason.contains("missing (deleted)"), "{reason}");

    // The tail cut off, then the gateway writes on: the damage stays named.
    let cluster = PgCluster::start_new();
    let log = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    for n in 0..7 {
        log.append_blocking(action(n)).unwrap();
    }
    cluster.psql("DELETE FROM audit WHERE seq >= 5");
    let (seq, reason) = broken_at(&cluster);
    assert_eq!(seq, 5);
    assert!(reason.contains("tail was cut off"), "{reason}");
    let next = log.append_blocking(action(99)).unwrap();
    assert_eq!(next.seq, 6, "a tamper notice (5) is chained first");
    let (seq, reason) = broken_at(&cluster);
    assert_eq!(seq, 5);
    assert!(reason.contains("tampered with"), "{reason}");
}

/// A message the relay answered 250 for (delivered or held) is remembered by its identity in
/// the transaction of its record, whichever node appends it; the first record is the answer
/// a retry gets; old identities are swept (`store::answered`).
#[test]
fn messages_answered_are_remembered_with_their_records_across_nodes_and_swept() {
    use schoolgate::store::answered::AnsweredMessages;
    use schoolgate::store::audit::message_identity;

    let cluster = PgCluster::start_new();
    let state = tempfile::tempdir().unwrap();
    let storage = schoolgate::config::Storage {
        state_dir: state.path().to_path_buf(),
        database: Some(cluster.url()),
    };
    let answered = |outcome: &str, reply: &str, sha: &str, queue_id: &str| {
        AuditRecord::message(MessageRecord {
            mail_from: "t.baker@example-academy.sch.uk".into(),
            rcpt_to: vec!["parent@example.org".into()],
            queue_id: Some(queue_id.into()),
            outcome: outcome.into(),
            reply: reply.into(),
            sha256_received: sha.into(),
            ..Default::default()
        })
    };
    let identity = |sha: &str| {
        message_identity(
            "t.baker@example-academy.sch.uk",
            &["parent@example.org".to_string()],
            sha,
        )
    };
    let a = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    let b = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    let first = a
        .append_blocking(answered(
            "delivered",
            "250 2.0.0 Ok: queued as A1",
            "aa",
            "A1",
        ))
        .unwrap();
    // The same message recorded again through the other node: the first record stays the answer.
    b.append_blocking(answered(
        "delivered",
        "250 2.0.0 Ok: queued as B1",
        "aa",
        "B1",
    ))
    .unwrap();
    b.append_blocking(answered(
        "deferred",
        "451 4.4.1 Next hop not reachable",
        "bb",
        "B2",
    ))
    .unwrap();

    let found = AnsweredMessages::open(&storage)
        .find(&identity("aa"))
        .unwrap()
        .expect("the delivered message is remembered");
    assert_eq!(
        (found.seq, found.queue_id.as_str(), found.outcome.as_str()),
        (first.seq, "A1", "delivered")
    );
    assert_eq!(
        AnsweredMessages::open(&storage)
            .find(&identity("bb"))
            .unwrap(),
        None,
        "a deferred message got no 250: its retry is delivered"
    );
    // Many at once, as the relay's sessions ask (one `identity = ANY($1)` query): each gets
    // its own answer, the same identity twice gets it twice, unknown ones none.
    let ids = ["aa", "bb", "cc", "aa"].map(identity);
    let many = AnsweredMessages::open(&storage).find_many(&ids).unwrap();
    assert_eq!(many.len(), 1, "{many:?}");
    assert_eq!(many[&identity("aa")], found);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lookup = schoolgate::store::answered::RetryLookup::start(&storage).unwrap();
    let answers = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (n, id) in ids.iter().enumerate() {
            let (lookup, id) = (lookup.clone(), id.clone());
            tasks.spawn(async move { (n, lookup.find(id).await) });
        }
        let mut answers = vec![None; ids.len()];
        while let Some(done) = tasks.join_next().await {
            let (n, answer) = done.unwrap();
            answers[n] = Some(answer.unwrap());
        }
        answers
    });
    assert_eq!(
        answers,
        [Some(found.clone()), None, None, Some(found.clone())].map(Some),
        "the batched look-up answers each session"
    );
    let swept = AnsweredMessages::open(&storage);
    assert_eq!(swept.sweep_old().unwrap(), 0, "nothing is a week old");
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)).to_string();
    assert_eq!(swept.sweep(&later).unwrap(), 1);
    assert_eq!(swept.find(&identity("aa")).unwrap(), None);
    assert_eq!(verify(&mut pg_audit(&cluster), &[]).unwrap().records, 3);
}

/// The retry look-up runs for every message, in `answered_find`, whose query PostgreSQL plans
/// once and then keeps as a generic plan. Planned while the table was small (a new install), it
/// must still use the primary key once the table has grown (a benchmark once saw
/// `identity = ANY($1)` read the whole table for every message, until the table was next
/// analysed). The counts of the transaction's own scans of the table
/// (`pg_stat_xact_user_tables`) say which plan ran.
#[test]
fn the_retry_look_up_stays_an_index_scan_when_planned_on_a_small_table() {
    let cluster = PgCluster::start_new();
    drop(pg_audit(&cluster)); // the schema
    let rows = |from: usize, to: usize| {
        format!(
            "INSERT INTO answered_message (identity, time, seq, queue_id, outcome)
               SELECT md5(i::text) || md5((i + 1)::text), '2026-12-07T00:00:00Z', i, 'q' || i,
                      'delivered'
               FROM generate_series({from}, {to}) AS i;"
        )
    };
    // As a new gateway sees it: a batch of look-ups, a few rows more, another batch, ...
    let growing: String = (0..40)
        .map(|step| {
            format!(
                "SELECT count(*) FROM answered_find(ARRAY['not-there-{step}', md5('{step}') || md5('{}')]);\n{}\n",
                step + 1,
                rows(step * 25 + 1, step * 25 + 25)
            )
        })
        .collect();
    let out = cluster.psql(&format!(
        "BEGIN;
         {growing}
         {}
         SELECT 'found ' || count(*) FROM answered_find(ARRAY['{}', md5('5000') || md5('5001'),
                                                             md5('29999') || md5('30000')]);
         SELECT 'scans ' || seq_scan || ' ' || idx_scan FROM pg_stat_xact_user_tables
          WHERE relname = 'answered_message';
         COMMIT;",
        rows(1001, 30000),
        "0".repeat(64)
    ));
    assert!(
        out.contains("found 2"),
        "the look-up finds what is there:\n{out}"
    );
    let scans = out
        .lines()
        .find_map(|l| l.strip_prefix("scans "))
        .unwrap_or_else(|| panic!("no scan counts:\n{out}"));
    let counts: Vec<u64> = scans.split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(
        counts[0], 0,
        "the look-up read the whole table (sequential scans, then index scans: {scans})"
    );
    assert!(
        counts[1] >= 83,
        "each identity is one index scan (40 batches of 2, then 3): {scans}"
    );
}

/// A node whose last append is still the newest record appends straight after it (one round
/// trip), checked in the transaction by `audit_head_is`; after another node's append, or a
/// tail cut off, the check refuses and the node reads the head first: one chain either way.
#[test]
fn a_node_appends_after_its_own_last_record_only_while_it_is_still_the_newest() {
    let cluster = PgCluster::start_new();
    let a = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    let b = AuditLog::start(Box::new(pg_audit(&cluster))).unwrap();
    for (n, log) in [&a, &a, &b, &a, &a, &b, &b, &a].into_iter().enumerate() {
        assert_eq!(log.append_blocking(message(n)).unwrap().seq, n as u64 + 1);
    }
    assert_eq!(verify(&mut pg_audit(&cluster), &[]).unwrap().records, 8);

    let pg = Pg::connect(&cluster.url()).unwrap();
    let check = |seq: i64| {
        let hash = cluster.psql(&format!("SELECT hash FROM audit WHERE seq = {seq}"));
        pg.run(move |c| async move {
            c.execute("SELECT audit_head_is($1, $2)", &[&seq, &hash])
                .await
                .map_err(Into::into)
        })
    };
    assert!(check(8).is_ok(), "the newest record is the head");
    let refused = check(7).unwrap_err().to_string();
    assert!(refused.contains("audit chain moved"), "{refused}");
    // The tail cut off outside schoolgate: record 7 is the newest now, but not what the last
    // commit marked.
    cluster.psql("DELETE FROM audit WHERE seq = 8");
    let refused = check(7).unwrap_err().to_string();
    assert!(refused.contains("audit chain moved"), "{refused}");
    // a's next append finds the cut and chains a tamper notice first.
    assert_eq!(a.append_blocking(message(99)).unwrap().seq, 9);
}
