//! A multi-academy trust on two gateways sharing one PostgreSQL (issue 19, "Done when" and
//! "Faults"), end to end: two real `serve` processes on loopback, one private cluster
//! (tests/common/pg.rs), and the shipped trust config (`policies/trust.toml`: Ashdown Park,
//! whose contact rules flag, and Bramblefield Primary, which holds mail to a pupil's personal
//! address).
//!
//! - Both nodes carry the trust's mail: 120 messages, 20 sessions at a time, alternately through
//!   both nodes; each is delivered once with its own school's disclaimer and recorded once in
//!   one chain that `audit verify` passes; a message held through one node is listed and
//!   released once through the other's config; one flag gives one alert, to its school's DSL.
//! - One node killed with SIGKILL while 200 messages flow through both, each client retrying a
//!   message on the other node after a connection error, a 4xx or no reply (as Postfix does
//!   with two relay hosts): every 250 is delivered and recorded once, a held message is held
//!   once, the chain verifies, and the killed node restarts and settles its own half-written
//!   state without delivering or holding anything twice.
//! - PostgreSQL restarted while both nodes carry mail: no 250 that is not recorded, and both
//!   nodes reconnect by themselves.
//!
//! - A message delivered (or held) and recorded through one node whose client never heard the
//!   250 (made to happen every time: the client hangs up after its final dot) is retried on
//!   the other node: 250 with the original's queue id (or entry), not delivered or held again,
//!   one `retry-answered` record (`smtp::retry`).
//!
//! How the sink is counted: the outboxes of both nodes together stand for the smarthost. A
//! message is delivered BEFORE it is recorded (`smtp::handoff`: a 250 means "delivered and
//! recorded"), and its identity is remembered in the transaction of its record; a retry of a
//! recorded message is answered, not delivered again. Only a node killed after the next hop
//! took a message and before its record committed leaves a copy without a record (and without
//! a 250): the retry cannot know the next hop has it and delivers it again (in doubt, deliver).
//! So every message is recorded as delivered exactly once, and a second copy at the sink is
//! only ever an unrecorded one in the killed node's outbox.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::pg::PgCluster;
use common::smtp::Client;
use common::{Gateway, OutboxMessage, plain_message, set};

const ASHDOWN_TEXT: &str = "Ashdown Park School is an academy of the Downland Learning Trust.";
const BRAMBLE_TEXT: &str = "Bramblefield Primary is an academy of the Downland Learning Trust.";
const ASHDOWN_STAFF: &str = "r.ellis@ashdownpark.sch.uk";
const BRAMBLE_STAFF: &str = "s.hale@bramblefield.sch.uk";
const ASHDOWN_DSL: &str = "dsl@ashdownpark.sch.uk";
const BRAMBLE_DSL: &str = "dsl@bramblefield.sch.uk";
const TRUST_DSL: &str = "safeguarding@downland-trust.org.uk";
/// Ashdown's pupil's personal address (Ashdown flags mail to it).
const ASHDOWN_PUPIL: &str = "leo.grant2012@gmail.com";
/// Bramblefield's pupil's personal address (Bramblefield holds mail to it).
const BRAMBLE_PUPIL: &str = "chloe.dunn2011@gmail.com";
const PARENT: &str = "parent@example.com";

/// The harness's test config made the shipped trust config: its `[school]` (the trust-wide
/// defaults), `[disclaimer]`, `[safeguarding]` and both `[[schools]]`, directories made
/// absolute; the storage in `url`. The out-of-hours rule and the weekly report stay off, as
/// in every relay test (they depend on when the test runs).
fn trust_on(url: String) -> impl Fn(&mut toml::Table) {
    move |cfg| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("policies/trust.toml"))
            .expect("read policies/trust.toml");
        let mut trust: toml::Table = toml::from_str(&text).expect("policies/trust.toml parses");
        if let Some(schools) = trust.get_mut("schools").and_then(|s| s.as_array_mut()) {
            for school in schools.iter_mut().filter_map(|s| s.as_table_mut()) {
                if let Some(dir) = school.get("directory").and_then(|d| d.as_str()) {
                    let abs = root.join(dir).to_string_lossy().into_owned();
                    school.insert("directory".into(), abs.into());
                }
            }
        }
        for key in ["school", "disclaimer", "safeguarding", "schools"] {
            let value = trust
                .remove(key)
                .unwrap_or_else(|| panic!("policies/trust.toml has no {key}"));
            cfg.insert(key.into(), value);
        }
        set(cfg, "safeguarding.rules.out-of-hours-pupil-contact", "off");
        set(cfg, "safeguarding.weekly_report", "off");
        set(cfg, "storage.database", url.clone());
    }
}

fn two_trust_nodes(cluster: &PgCluster) -> (Gateway, Gateway) {
    let a = Gateway::start(trust_on(cluster.url()));
    let b = Gateway::start(trust_on(cluster.url()));
    (a, b)
}

/// One message's text: its Message-ID and Subject name it.
fn message(from: &str, to: &str, name: &str) -> Vec<u8> {
    plain_message(
        from,
        to,
        name,
        &format!("{name}@nodes.test"),
        "Dear parent,\r\n\r\nA note about next week.\r\n",
    )
}

/// Sends `bytes` on a new session to `port`: the reply to the data, or what went wrong
/// (connection refused or cut, no reply).
fn send_once(port: u16, from: &str, to: &str, bytes: &[u8]) -> Result<common::Reply, String> {
    let mut c = Client::connect(port).map_err(|e| format!("connect: {e}"))?;
    c.wait_up_to(Duration::from_secs(45));
    if c.greeting.code != 220 {
        return Err(format!("greeting {}", c.greeting));
    }
    let r = c
        .cmd("EHLO staff-pc.downland-trust.org.uk")
        .map_err(|e| format!("EHLO: {e}"))?;
    if r.code != 250 {
        return Err(format!("EHLO: {r}"));
    }
    let t = c
        .send(from, "", &[to], bytes)
        .map_err(|e| format!("transaction: {e}"))?;
    let _ = c.cmd("QUIT");
    Ok(t.reply)
}

/// What became of one message a client sent, retrying as an MTA with two relay hosts does.
#[derive(Debug, Clone)]
struct Sent {
    name: String,
    /// The node (0 = A, 1 = B) that said 250, if one did.
    accepted_by: Option<usize>,
    /// Attempts that did not end in 250, in order: (node, what happened).
    failed: Vec<(usize, String)>,
}

/// Sends one message to `ports[first]`, then after a connection error, a 4xx or no reply to
/// the other node, and so on, for up to `patience`. A 5xx is a failure of the test.
fn send_retrying(
    ports: [u16; 2],
    first: usize,
    from: &str,
    to: &str,
    name: &str,
    patience: Duration,
) -> Sent {
    let bytes = message(from, to, name);
    let deadline = Instant::now() + patience;
    let mut sent = Sent {
        name: name.to_string(),
        accepted_by: None,
        failed: Vec::new(),
    };
    let mut node = first;
    while Instant::now() < deadline {
        match send_once(ports[node], from, to, &bytes) {
            Ok(r) if r.code == 250 => {
                sent.accepted_by = Some(node);
                return sent;
            }
            Ok(r) if (400..500).contains(&r.code) => sent.failed.push((node, r.to_string())),
            Ok(r) => panic!("{name}: a permanent refusal through node {node}: {r}"),
            Err(e) => sent.failed.push((node, e)),
        }
        node = 1 - node;
        std::thread::sleep(Duration::from_millis(200));
    }
    sent
}

/// Every message at the sink (both nodes' outboxes), by Message-ID without its brackets.
fn at_sink(nodes: &[&Gateway]) -> BTreeMap<String, Vec<OutboxMessage>> {
    let mut by_id: BTreeMap<String, Vec<OutboxMessage>> = BTreeMap::new();
    for m in nodes.iter().flat_map(|g| g.outbox_messages()) {
        let id = m
            .header("Message-ID")
            .unwrap_or_default()
            .trim()
            .trim_matches(['<', '>'])
            .to_string();
        by_id.entry(id).or_default().push(m);
    }
    by_id
}

/// The message records in the shared chain: (Message-ID without brackets, outcome), in order.
fn chain_messages(cluster: &PgCluster) -> Vec<(String, String)> {
    cluster
        .psql(
            "SELECT coalesce(record::json->'message'->>'message_id', '') || ' ' || \
             coalesce(record::json->'message'->>'outcome', '') \
             FROM audit WHERE kind = 'message' ORDER BY seq",
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (id, outcome) = l.rsplit_once(' ').unwrap_or((l, ""));
            (id.trim_matches(['<', '>']).to_string(), outcome.to_string())
        })
        .collect()
}

fn recorded(chain: &[(String, String)], id: &str, outcome: &str) -> usize {
    chain
        .iter()
        .filter(|(i, o)| i == id && o == outcome)
        .count()
}

/// The copies of the message `id` (Message-ID without brackets) in `gw`'s outbox.
fn copies_in(gw: &Gateway, id: &str) -> usize {
    at_sink(&[gw]).get(id).map(Vec::len).unwrap_or(0)
}

/// The queue ids of the message records of `id` in the shared chain.
fn recorded_queue_ids(cluster: &PgCluster, id: &str) -> Vec<String> {
    cluster
        .psql(&format!(
            "SELECT record::json->'message'->>'queue_id' FROM audit WHERE kind = 'message' \
             AND record::json->'message'->>'message_id' = '{id}' ORDER BY seq"
        ))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// How many retries of `id` were answered from its record (`retry-answered`).
fn retries_answered(cluster: &PgCluster, id: &str) -> usize {
    cluster
        .psql(&format!(
            "SELECT count(*) FROM audit WHERE kind = 'retry-answered' \
             AND record::json->'message'->>'message_id' = '{id}'"
        ))
        .trim()
        .parse()
        .unwrap_or(usize::MAX)
}

/// Sends `message` and hangs up right after its final dot, never reading the reply: what a
/// client sees when a node dies between recording a message and answering it.
fn send_and_hang_up(port: u16, from: &str, to: &str, message: &[u8]) {
    let mut c = Client::ready(port);
    for line in [format!("MAIL FROM:<{from}>"), format!("RCPT TO:<{to}>")] {
        let r = c.cmd(&line).expect("the node answers");
        assert_eq!(r.code, 250, "{line}: {r}");
    }
    let r = c.cmd("DATA").expect("the node answers DATA");
    assert_eq!(r.code, 354, "{r}");
    c.write(&common::dot_stuffed(message))
        .expect("the message is sent");
    c.drop_connection();
}

fn alerts_to(nodes: &[&Gateway], dsl: &str) -> Vec<OutboxMessage> {
    nodes
        .iter()
        .flat_map(|g| g.outbox_messages())
        .filter(|m| m.rcpt_to().iter().any(|r| r == dsl))
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.starts_with("Safeguarding alert"))
        })
        .collect()
}

/// `audit verify` through `gw`'s config passes, and its snapshot holds every record written
/// before it started (records the nodes append meanwhile, such as an alert's "sent", may be
/// after its snapshot).
fn verify_on(gw: &Gateway, cluster: &PgCluster) {
    let count = || {
        cluster
            .psql("SELECT count(*) FROM audit")
            .parse::<u64>()
            .unwrap()
    };
    let before = count();
    let out = gw.cli_ok(&["audit", "verify"]);
    let after = count();
    let verified = out
        .split("audit trail intact: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        verified.is_some_and(|n| before <= n && n <= after),
        "{out}\nthe database had {before} records before and {after} after"
    );
}

fn both_logs(a: &Gateway, b: &Gateway) -> String {
    format!(
        "node A:\n{}\nnode B:\n{}",
        a.log_tail(3000),
        b.log_tail(3000)
    )
}

#[test]
fn two_trust_nodes_carry_mail_hold_release_and_alert_as_one_gateway() {
    let started = Instant::now();
    let cluster = PgCluster::start_new();
    let (a, b) = two_trust_nodes(&cluster);
    let ports = [a.port, b.port];
    a.add_user("trust.dsl", &["dsl"], "dsl password 12");

    // 120 messages, 20 sessions at a time, each client alternating between the nodes and the
    // two schools.
    let threads: Vec<_> = (0..20)
        .map(|t| {
            std::thread::spawn(move || {
                (0..6)
                    .map(|n| {
                        let from = if (t + n) % 2 == 0 {
                            ASHDOWN_STAFF
                        } else {
                            BRAMBLE_STAFF
                        };
                        let name = format!("trust-{t}-{n}");
                        let node = (t + n) % 2;
                        let bytes = message(from, PARENT, &name);
                        let r = send_once(ports[node], from, PARENT, &bytes);
                        (name, from, node, r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sent = Vec::new();
    for t in threads {
        sent.extend(t.join().expect("a client thread"));
    }
    assert_eq!(sent.len(), 120);
    for (name, _, node, r) in &sent {
        match r {
            Ok(r) if r.code == 250 => {}
            other => panic!(
                "{name} through node {node}: {other:?}\n{}",
                both_logs(&a, &b)
            ),
        }
    }
    let sink = at_sink(&[&a, &b]);
    let chain = chain_messages(&cluster);
    for (name, from, _, _) in &sent {
        let id = format!("{name}@nodes.test");
        let copies = sink.get(&id).map(Vec::len).unwrap_or(0);
        assert_eq!(copies, 1, "{id} delivered once");
        assert_eq!(
            chain.iter().filter(|(i, _)| *i == id).count(),
            1,
            "{id} recorded once"
        );
        assert_eq!(recorded(&chain, &id, "delivered"), 1, "{id}: {chain:?}");
        let text = String::from_utf8_lossy(&sink[&id][0].bytes).into_owned();
        let (own, other) = if *from == ASHDOWN_STAFF {
            (ASHDOWN_TEXT, BRAMBLE_TEXT)
        } else {
            (BRAMBLE_TEXT, ASHDOWN_TEXT)
        };
        assert!(
            text.contains(own) && !text.contains(other),
            "{id} from {from} carries its own school's disclaimer only:\n{text}"
        );
    }
    let outboxes = (a.outbox_messages().len(), b.outbox_messages().len());
    assert_eq!(outboxes, (60, 60), "each node delivered what it was given");
    verify_on(&a, &cluster);
    verify_on(&b, &cluster);

    // Held through A (Bramblefield holds mail to a pupil's personal address)...
    let r = send_once(
        a.port,
        BRAMBLE_STAFF,
        BRAMBLE_PUPIL,
        &message(BRAMBLE_STAFF, BRAMBLE_PUPIL, "held-homework"),
    )
    .expect("node A answers");
    let text = r.text();
    assert!(
        r.code == 250 && text.contains("held for review"),
        "{text}\n{}",
        both_logs(&a, &b)
    );
    let id = text
        .rsplit(' ')
        .next()
        .expect("the reply names the entry")
        .trim()
        .to_string();
    // ... listed through B's config ...
    let list: serde_json::Value =
        serde_json::from_str(&b.cli_ok(&["quarantine", "list", "--json", "--as", "trust.dsl"]))
            .expect("quarantine list --json prints JSON");
    let listed: Vec<&serde_json::Value> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["id"] == id.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["rcpt_to"][0], BRAMBLE_PUPIL, "{list}");
    // ... released once through B's config: a second release (through A's) is refused.
    b.cli_ok(&[
        "quarantine",
        "release",
        &id,
        "--as",
        "trust.dsl",
        "--reason",
        "checked with the family",
    ]);
    let again = a.cli(&[
        "quarantine",
        "release",
        &id,
        "--as",
        "trust.dsl",
        "--reason",
        "checked with the family",
    ]);
    assert!(
        !again.status.success(),
        "released twice: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    let to_pupil = || {
        [&a, &b]
            .iter()
            .flat_map(|g| g.outbox_messages())
            .filter(|m| m.rcpt_to().iter().any(|r| r == BRAMBLE_PUPIL))
            .count()
    };
    assert!(
        a.wait_for(Duration::from_secs(20), || to_pupil() >= 1),
        "the released message is delivered\n{}",
        both_logs(&a, &b)
    );

    // A flag at Ashdown through B: one alert, to Ashdown's DSL.
    let r = send_once(
        b.port,
        ASHDOWN_STAFF,
        ASHDOWN_PUPIL,
        &message(ASHDOWN_STAFF, ASHDOWN_PUPIL, "flagged-maths"),
    )
    .expect("node B answers");
    assert_eq!(r.code, 250, "{r}");
    let nodes = [&a, &b];
    assert!(
        a.wait_for(Duration::from_secs(30), || {
            !alerts_to(&nodes, ASHDOWN_DSL).is_empty() && !alerts_to(&nodes, BRAMBLE_DSL).is_empty()
        }),
        "an alert to each school's DSL (Bramblefield's hold, Ashdown's flag)\n{}",
        both_logs(&a, &b)
    );
    // Both nodes' alert senders look at the queue twice a second: time for a wrong second one.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(to_pupil(), 1, "the released message delivered once");
    let ashdown = alerts_to(&nodes, ASHDOWN_DSL);
    let bramble = alerts_to(&nodes, BRAMBLE_DSL);
    assert_eq!(ashdown.len(), 1, "one alert for Ashdown's one flag");
    assert_eq!(bramble.len(), 1, "one alert for Bramblefield's one hold");
    assert_eq!(ashdown[0].rcpt_to(), vec![ASHDOWN_DSL.to_string()]);
    assert_eq!(bramble[0].rcpt_to(), vec![BRAMBLE_DSL.to_string()]);
    let ashdown_text = String::from_utf8_lossy(&ashdown[0].bytes).into_owned();
    assert!(ashdown_text.contains("flagged-maths"), "{ashdown_text}");
    assert!(!ashdown_text.contains("held-homework"), "{ashdown_text}");
    assert!(
        alerts_to(&nodes, TRUST_DSL).is_empty(),
        "the trust's DSL hears of neither school's flag"
    );
    verify_on(&b, &cluster);
    eprintln!(
        "two trust nodes: 120 messages (20 sessions at a time) and the hold, release and flag in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_retry_on_the_other_node_of_a_message_recorded_but_unanswered_is_answered_not_sent_again() {
    let cluster = PgCluster::start_new();
    let (mut a, b) = two_trust_nodes(&cluster);
    let report = message(ASHDOWN_STAFF, PARENT, "retry-report");
    let homework = message(BRAMBLE_STAFF, BRAMBLE_PUPIL, "retry-held");
    send_and_hang_up(a.port, ASHDOWN_STAFF, PARENT, &report);
    send_and_hang_up(a.port, BRAMBLE_STAFF, BRAMBLE_PUPIL, &homework);
    let recorded_both = || {
        let chain = chain_messages(&cluster);
        recorded(&chain, "retry-report@nodes.test", "delivered") == 1
            && recorded(&chain, "retry-held@nodes.test", "quarantined") == 1
    };
    assert!(
        a.wait_for(Duration::from_secs(30), recorded_both),
        "both recorded through node A although their clients hung up\n{}",
        a.log_tail(3000)
    );
    let queue_id = recorded_queue_ids(&cluster, "retry-report@nodes.test").join(",");
    let held_id = cluster.psql("SELECT id FROM quarantine WHERE subject = 'retry-held'");
    // Node A dies; the clients retry on node B.
    a.kill9();
    let r = send_once(b.port, ASHDOWN_STAFF, PARENT, &report).expect("node B answers");
    let text = r.text();
    assert_eq!(r.code, 250, "{r}\n{}", b.log_tail(3000));
    assert!(
        text.starts_with(&format!("2.0.0 Ok: queued as {queue_id} ("))
            && text.contains("already delivered"),
        "told node A's queue id {queue_id}: {text}"
    );
    let r = send_once(b.port, BRAMBLE_STAFF, BRAMBLE_PUPIL, &homework).expect("node B answers");
    assert_eq!(r.code, 250, "{r}");
    assert_eq!(
        r.text(),
        format!("2.0.0 Ok: held for review as {held_id}"),
        "told node A's entry"
    );

    assert_eq!(
        copies_in(&a, "retry-report@nodes.test") + copies_in(&b, "retry-report@nodes.test"),
        1,
        "delivered once, through node A"
    );
    assert_eq!(copies_in(&b, "retry-report@nodes.test"), 0);
    let chain = chain_messages(&cluster);
    assert_eq!(recorded(&chain, "retry-report@nodes.test", "delivered"), 1);
    assert_eq!(recorded(&chain, "retry-held@nodes.test", "quarantined"), 1);
    assert_eq!(retries_answered(&cluster, "retry-report@nodes.test"), 1);
    assert_eq!(retries_answered(&cluster, "retry-held@nodes.test"), 1);
    assert_eq!(
        cluster.psql("SELECT count(*) FROM quarantine WHERE subject = 'retry-held'"),
        "1",
        "held once"
    );
    verify_on(&b, &cluster);
}

#[test]
fn a_node_killed_with_sigkill_mid_stream_loses_and_doubles_nothing_that_got_a_250() {
    const CLIENTS: usize = 10;
    const EACH: usize = 20;
    let started = Instant::now();
    let cluster = PgCluster::start_new();
    let (mut a, b) = two_trust_nodes(&cluster);
    let ports = [a.port, b.port];
    let accepted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|n| {
                        // One in ten is held (Bramblefield, to a pupil's personal address).
                        let (from, to) = match (t * EACH + n) % 10 {
                            0 => (BRAMBLE_STAFF, BRAMBLE_PUPIL),
                            k if k % 2 == 0 => (ASHDOWN_STAFF, PARENT),
                            _ => (BRAMBLE_STAFF, PARENT),
                        };
                        let name = format!("kill-{t}-{n}");
                        let s = send_retrying(
                            ports,
                            (t + n) % 2,
                            from,
                            to,
                            &name,
                            Duration::from_secs(60),
                        );
                        if s.accepted_by.is_some() {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        (s, to == BRAMBLE_PUPIL)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    // Node A dies part-way: once about a third of the messages have their 250.
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.load(Ordering::SeqCst) < CLIENTS * EACH / 3 {
        assert!(
            Instant::now() < deadline,
            "a third of the messages not through in 60 s\n{}",
            both_logs(&a, &b)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed_at = accepted.load(Ordering::SeqCst);
    a.kill9();
    let mut sent = Vec::new();
    for t in threads {
        sent.extend(t.join().expect("a client thread"));
    }
    assert_eq!(sent.len(), CLIENTS * EACH);
    let not_accepted: Vec<&Sent> = sent
        .iter()
        .map(|(s, _)| s)
        .filter(|s| s.accepted_by.is_none())
        .collect();
    assert!(
        not_accepted.is_empty(),
        "node B took every message A could not: {not_accepted:?}\n{}",
        b.log_tail(3000)
    );
    let retried = sent.iter().filter(|(s, _)| !s.failed.is_empty()).count();
    assert!(retried > 0, "the kill cut no session: nothing was tested");
    // Of those, the ones cut mid-session (not just refused a connection to the dead node).
    let cut = sent
        .iter()
        .filter(|(s, _)| s.failed.iter().any(|(_, e)| !e.starts_with("connect:")))
        .count();

    let sink = at_sink(&[&a, &b]);
    let chain = chain_messages(&cluster);
    let mut twice_at_sink = 0;
    let mut answered_retries = 0;
    for (s, held) in &sent {
        let id = format!("{}@nodes.test", s.name);
        let copies = sink.get(&id).map(Vec::len).unwrap_or(0);
        let first_try = s.failed.is_empty();
        if *held {
            assert_eq!(copies, 0, "{id} is held, not delivered");
            let rows = cluster.psql(&format!(
                "SELECT state FROM quarantine WHERE subject = '{}'",
                s.name
            ));
            assert_eq!(rows, "held", "{id} held once: {s:?}");
            let records = recorded(&chain, &id, "quarantined");
            assert_eq!(records, 1, "{id}: {records} records of its hold: {s:?}");
        } else {
            let records = recorded(&chain, &id, "delivered");
            assert_eq!(records, 1, "{id} recorded as delivered once: {s:?}");
            if first_try {
                assert_eq!(copies, 1, "{id} got its 250 at once: delivered once");
            } else if copies != 1 {
                // The one copy that may be there twice: node A handed it on and was killed
                // before its record committed (no record, no 250); the retry delivered it.
                let in_a = copies_in(&a, &id);
                let recorded_by_b = recorded_queue_ids(&cluster, &id)
                    .iter()
                    .all(|q| b.log().contains(&format!("queue_id={q} ")));
                assert!(
                    copies == 2 && in_a >= 1 && recorded_by_b,
                    "{id}: {copies} copies delivered ({in_a} through the killed node), recorded \
                     once: {s:?}"
                );
                twice_at_sink += 1;
            }
        }
        let other: Vec<&(String, String)> = chain
            .iter()
            .filter(|(i, o)| *i == id && o != "delivered" && o != "quarantined")
            .collect();
        assert!(other.is_empty(), "{id}: {other:?}");
        answered_retries += retries_answered(&cluster, &id);
    }
    verify_on(&b, &cluster);

    // Node A comes back and settles its own half-written state: a `holding` entry is confirmed
    // (its record is in the chain) or removed (it is not: the client's retry was held anew
    // through B), nothing delivered again from its outbox, nothing held twice.
    let a_outbox = a.outbox_messages().len();
    let holding_before = cluster.psql("SELECT count(*) FROM quarantine WHERE state = 'holding'");
    a.restart();
    assert!(
        a.wait_for(Duration::from_secs(20), || cluster
            .psql("SELECT count(*) FROM quarantine WHERE state = 'holding'")
            == "0"),
        "node A settles its holding entries ({holding_before} before its restart)\n{}",
        a.log_tail(3000)
    );
    assert_eq!(
        cluster.psql(
            "SELECT count(*) FROM (SELECT subject FROM quarantine GROUP BY subject \
             HAVING count(*) > 1) twice"
        ),
        "0",
        "nothing held twice"
    );
    let held = sent.iter().filter(|(_, h)| *h).count();
    assert_eq!(
        cluster.psql("SELECT count(*) FROM quarantine WHERE state = 'held'"),
        held.to_string()
    );
    let r = send_once(
        a.port,
        ASHDOWN_STAFF,
        PARENT,
        &message(ASHDOWN_STAFF, PARENT, "after-restart"),
    )
    .expect("node A answers after its restart");
    assert_eq!(r.code, 250, "{r}\n{}", a.log_tail(3000));
    assert_eq!(
        a.outbox_messages().len(),
        a_outbox + 1,
        "node A delivered nothing again at its restart"
    );
    let tmp = std::fs::read_dir(a.outbox_dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp, 0, "no half-written outbox file is left");
    verify_on(&a, &cluster);
    eprintln!(
        "kill -9: {} messages, node A killed after {killed_at} 250s; {retried} retried on the \
         other node ({cut} cut mid-session), {answered_retries} of them recorded before the \
         kill and answered without delivering again, {twice_at_sink} delivered twice (handed \
         on by A, not recorded); {holding_before} holding entries settled at A's restart; {} s \
         in all",
        sent.len(),
        started.elapsed().as_secs()
    );
}

#[test]
fn postgresql_restarted_while_both_nodes_carry_mail_gives_no_unrecorded_250() {
    let started = Instant::now();
    let mut cluster = PgCluster::start_new();
    let (a, b) = two_trust_nodes(&cluster);
    let ports = [a.port, b.port];
    let accepted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                (0..12)
                    .map(|n| {
                        let from = if n % 2 == 0 {
                            ASHDOWN_STAFF
                        } else {
                            BRAMBLE_STAFF
                        };
                        let s = send_retrying(
                            ports,
                            (t + n) % 2,
                            from,
                            PARENT,
                            &format!("restart-{t}-{n}"),
                            Duration::from_secs(90),
                        );
                        if s.accepted_by.is_some() {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        s
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "{}", both_logs(&a, &b));
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.restart();
    let after_restart = accepted.load(Ordering::SeqCst);
    let mut sent = Vec::new();
    for t in threads {
        sent.extend(t.join().expect("a client thread"));
    }
    assert!(
        after_restart < sent.len(),
        "every message was through before PostgreSQL came back: nothing was tested"
    );
    let chain = chain_messages(&cluster);
    for s in &sent {
        let id = format!("{}@nodes.test", s.name);
        assert!(
            s.accepted_by.is_some(),
            "{id} never accepted: {s:?}\n{}",
            both_logs(&a, &b)
        );
        assert!(
            recorded(&chain, &id, "delivered") >= 1,
            "{id} got a 250 but is not recorded: {s:?}"
        );
    }
    // Both nodes are back by themselves: each takes a message now.
    for (node, gw) in [&a, &b].iter().enumerate() {
        let r = send_once(
            gw.port,
            ASHDOWN_STAFF,
            PARENT,
            &message(ASHDOWN_STAFF, PARENT, &format!("after-{node}")),
        )
        .expect("the node answers");
        assert_eq!(r.code, 250, "node {node}: {r}\n{}", both_logs(&a, &b));
    }
    verify_on(&a, &cluster);
    let refused = sent.iter().filter(|s| !s.failed.is_empty()).count();
    eprintln!(
        "PostgreSQL restarted under two nodes: {} messages, {} of them after it was back, \
         {refused} retried, {} s",
        sent.len(),
        sent.len() - after_restart,
        started.elapsed().as_secs()
    );
}
