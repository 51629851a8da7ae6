//! The README's integration recipes, run as written (only ports and file paths changed): every
//! fenced block whose first line is `# PATH (RECIPE)` is a config file's lines for that recipe.
//!
//! - Postfix after-queue `content_filter` with its re-injection smtpd: swaks → Postfix →
//!   schoolgate → Postfix's re-injection port → the "Internet" (a sink).
//! - Postfix before-queue `smtpd_proxy_filter`: swaks → Postfix's submission smtpd, proxied
//!   through schoolgate → the re-injection port → the sink.
//! - Postfix `relayhost`: swaks → Postfix → schoolgate → its next hop (the sink).
//! - Postfix `smtpd_milters`: swaks → Postfix, which asks schoolgate's milter → the sink.
//! - The cloud connector's schoolgate config: TLS from the named files, and only the cloud's
//!   address ranges may relay (loopback is refused).
//!
//! The Postfix ones need root (Postfix's master starts as root) and Postfix (scripts/test
//! installs it).

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

/// One config file's lines from the README.
struct Block {
    path: String,
    recipe: String,
    body: String,
}

fn readme_blocks() -> Vec<Block> {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("```") {
            continue;
        }
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push(l);
        }
        let Some(first) = body.first() else { continue };
        let Some(header) = first.trim().strip_prefix("# /") else {
            continue;
        };
        let Some((path, recipe)) = header.split_once(" (") else {
            continue;
        };
        let Some(recipe) = recipe.strip_suffix(')') else {
            continue;
        };
        out.push(Block {
            path: format!("/{path}"),
            recipe: recipe.to_string(),
            body: body[1..].join("\n") + "\n",
        });
    }
    out
}

/// The recipe's lines for the file `path` ends with (empty when it has none).
fn recipe_file(recipe: &str, file: &str) -> String {
    readme_blocks()
        .into_iter()
        .filter(|b| b.recipe == recipe && b.path.ends_with(file))
        .map(|b| b.body)
        .collect()
}

/// The ports and names the README uses, changed to this test's.
struct Ports {
    schoolgate: u16,
    milter: u16,
    reinject: u16,
    submission: u16,
    sink: u16,
}

impl Ports {
    fn apply(&self, text: &str) -> String {
        text.replace("10025", "\u{0}REINJECT")
            .replace("2525", "\u{0}SCHOOLGATE")
            .replace("7357", "\u{0}MILTER")
            .replace("smarthost.example:25", "\u{0}SINK")
            .replace("submission inet", "\u{0}SUBMISSION inet")
            .replace("\u{0}REINJECT", &self.reinject.to_string())
            .replace("\u{0}SCHOOLGATE", &self.schoolgate.to_string())
            .replace("\u{0}MILTER", &self.milter.to_string())
            .replace("\u{0}SINK", &format!("127.0.0.1:{}", self.sink))
            .replace("\u{0}SUBMISSION", &format!("127.0.0.1:{}", self.submission))
    }
}

/// Sets every key of the README's TOML lines in `cfg`.
fn apply_toml(cfg: &mut toml::Table, text: &str) {
    let lines: toml::Table = toml::from_str(text).expect("the README's TOML parses");
    assert!(!lines.is_empty(), "no TOML lines");
    for (section, table) in lines {
        let toml::Value::Table(table) = table else {
            panic!("{section} is not a [section]");
        };
        for (key, value) in table {
            set(cfg, &format!("{section}.{key}"), value);
        }
    }
}

/// The gateway's relay port, as `Gateway::start` chose it.
fn listen_port(cfg: &toml::Table) -> u16 {
    cfg.get("relay")
        .and_then(|r| r.get("listen"))
        .and_then(|l| l.as_array())
        .and_then(|l| l.first())
        .and_then(|a| a.as_str())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("the test config's relay.listen")
}

/// Runs one Postfix recipe: `postfix_delivers` says whether Postfix (true) or schoolgate hands
/// the message to the sink; `path` and `outcome` are what the gateway's metrics and audit record
/// must say.
fn run_postfix_recipe(recipe: &str, postfix_delivers: bool, path: &str, outcome: &str) {
    let main_cf = recipe_file(recipe, "main.cf");
    let master_cf = recipe_file(recipe, "master.cf");
    let toml_lines = recipe_file(recipe, "schoolgate.toml");
    assert!(
        !(main_cf.is_empty() && master_cf.is_empty()),
        "the README has no Postfix lines for the {recipe} recipe"
    );
    assert!(
        !toml_lines.is_empty(),
        "the README has no schoolgate.toml lines for the {recipe} recipe"
    );
    let sink = Sink::start(SinkBehaviour::accept());
    let mut ports = Ports {
        schoolgate: 0,
        milter: free_port(),
        reinject: free_port(),
        submission: free_port(),
        sink: sink.port,
    };
    let mut gw_port = 0;
    let gw = Gateway::start(|cfg| {
        gw_port = listen_port(cfg);
        let p = Ports {
            schoolgate: gw_port,
            ..ports
        };
        apply_toml(cfg, &p.apply(&toml_lines));
    });
    ports.schoolgate = gw_port;
    let relay_port = if postfix_delivers { sink.port } else { gw.port };
    let postfix =
        Postfix::start_with_services(relay_port, &ports.apply(&main_cf), &ports.apply(&master_cf));
    let entry = if master_cf.contains("submission inet") {
        ports.submission
    } else {
        postfix.port
    };

    let message = plain_message(
        "Tom Baker <t.baker@example-academy.sch.uk>",
        "parent@example.org",
        &format!("Recipe {recipe}"),
        &format!("recipe-{}@example-academy.sch.uk", recipe.replace('_', "-")),
        "Dear parent,\n\nA message through the recipe.\n\nMr Baker\n",
    );
    let file = swaks_data_file(postfix.dir.path(), "message.swaks", &message);
    let run = swaks(&[
        "--server".to_string(),
        format!("127.0.0.1:{entry}"),
        "--from".into(),
        "t.baker@example-academy.sch.uk".into(),
        "--to".into(),
        "parent@example.org".into(),
        "--data".into(),
        format!("@{}", file.display()),
    ]);
    run.assert_ok(&format!("swaks into the {recipe} recipe"));

    let deadline = Instant::now() + Duration::from_secs(40);
    while sink.accepted().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered = sink.accepted();
    assert_eq!(
        delivered.len(),
        1,
        "one message reaches the Internet through the {recipe} recipe; Postfix's log:\n{}\nschoolgate's log:\n{}",
        postfix.maillog(),
        gw.log_tail(40)
    );
    let m = &delivered[0];
    assert_eq!(m.rcpt_to, ["parent@example.org"]);
    let text = String::from_utf8_lossy(&m.data);
    assert_eq!(
        text.matches("The views expressed are not necessarily those of")
            .count(),
        1,
        "the disclaimer, once:\n{text}"
    );
    if postfix_delivers {
        assert_eq!(
            m.helo, "mta.example-academy.sch.uk",
            "Postfix hands the filtered message on (re-injected)"
        );
    } else {
        assert_ne!(
            m.helo, "mta.example-academy.sch.uk",
            "schoolgate hands it on"
        );
    }
    // The next hop has the message a moment before the gateway's record of its reply is
    // written (the 250 to Postfix waits for it): wait for the record, then check there is one.
    gw.wait_for(Duration::from_secs(10), || !gw.message_records().is_empty());
    let records = gw.message_records();
    assert_eq!(records.len(), 1, "one audit record");
    assert_eq!(records[0].field("outcome").as_deref(), Some(outcome));
    let metrics = common::http_get(gw.web_port(), "/metrics");
    let series = format!(
        "schoolgate_messages_total{{path=\"{path}\",verdict=\"deliver\",outcome=\"{outcome}\"}} 1"
    );
    assert!(
        metrics.lines().any(|l| l == series),
        "/metrics lacks {series}:\n{metrics}"
    );
    // Filtered once: the re-injected copy does not come back to schoolgate.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gw.message_records().len(), 1, "no filtering loop");
}

#[test]
fn postfix_content_filter_recipe() {
    run_postfix_recipe("content_filter", true, "relay", "delivered");
}

#[test]
fn postfix_before_queue_proxy_recipe() {
    run_postfix_recipe("smtpd_proxy_filter", true, "relay", "delivered");
}

#[test]
fn postfix_relayhost_recipe() {
    run_postfix_recipe("relayhost", false, "relay", "delivered");
}

#[test]
fn postfix_milter_recipe() {
    run_postfix_recipe("milter", true, "milter", "accepted");
}

#[test]
fn cloud_connector_recipe_config() {
    let toml_lines = recipe_file("cloud", "schoolgate.toml");
    assert!(
        !toml_lines.is_empty(),
        "the README has the cloud recipe's config"
    );
    let tls = tempfile::tempdir().expect("temporary directory");
    common::tools::self_signed_certificate(
        "schoolgate.example-academy.sch.uk",
        &tls.path().join("fullchain.pem"),
        &tls.path().join("privkey.pem"),
    );
    let sink = Sink::start(SinkBehaviour::accept());
    let tls_dir = format!("{}/", tls.path().display());
    // Loopback is not one of the cloud's ranges: the gateway greets it with 554.
    let gw = Gateway::start_expecting(
        |cfg| {
            let port = listen_port(cfg);
            let text = toml_lines
                .replace("0.0.0.0:25", &format!("127.0.0.1:{port}"))
                .replace("/etc/schoolgate/tls/", &tls_dir)
                .replace("10025", &sink.port.to_string());
            apply_toml(cfg, &text);
        },
        554,
    );
    let mut c = Client::connect(gw.port).expect("connect");
    assert_eq!(c.greeting.code, 554, "{:?}", c.greeting);
    let _ = c.cmd("QUIT");
    let log = gw.log();
    assert!(
        log.contains(&format!("next hop smtp://127.0.0.1:{}", sink.port)),
        "the next hop is the school's Postfix:\n{log}"
    );
}
