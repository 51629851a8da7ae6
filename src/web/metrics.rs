//! The gateway's counters, and their Prometheus text exposition (format 0.0.4).
//!
//! The relay and the milter each call [`Metrics::message`] once per decided message, and the
//! relay [`Metrics::next_hop`] once per delivery attempt; the quarantine's size is read from the
//! store when scraped. Counters hold only rule names, verdicts and outcomes: never an address, a
//! subject or anything else from a message.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::policy::Decision;

/// Upper bounds (seconds) of the next-hop latency histogram: a local Postfix answers in
/// milliseconds, a cloud smart host in tenths, a scanning one in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What the gateway counts, shared by every session through `Relay`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// (path, verdict, outcome) → messages.
    messages: BTreeMap<(&'static str, &'static str, String), u64>,
    /// (kind, rule) → flags or findings.
    rules: BTreeMap<(&'static str, &'static str), u64>,
    /// result → latency histogram of next-hop deliveries.
    next_hop: BTreeMap<&'static str, Histogram>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Per bucket (not cumulative); the last is +Inf.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// The quarantine as the store reports it when scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineSize {
    pub messages: u64,
    pub bytes: u64,
}

impl Metrics {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// One decided message: `path` is `relay` or `milter`; `outcome` is what its audit record
    /// says happened (`delivered`, `accepted`, `quarantined`, `rejected`, `deferred`, …).
    pub fn message(&self, path: &'static str, decision: &Decision, outcome: &str) {
        let mut c = self.counts();
        *c.messages
            .entry((path, decision.verdict.as_str(), outcome.to_string()))
            .or_insert(0) += 1;
        for f in &decision.flags {
            *c.rules.entry(("flag", f.rule)).or_insert(0) += 1;
        }
        for f in &decision.findings {
            *c.rules.entry(("finding", f.rule)).or_insert(0) += 1;
        }
    }

    /// One hand-off to the next hop: how long it took and whether the next hop took the message
    /// (`accepted`) or not (`deferred`, `refused`, `unreachable`).
    pub fn next_hop(&self, result: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut c = self.counts();
        let h = c.next_hop.entry(result).or_default();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        h.buckets[i] += 1;
        h.sum += secs;
        h.count += 1;
    }

    /// Everything, in the Prometheus text format; `quarantine` is left out when it could not be
    /// read.
    pub fn render(&self, quarantine: Option<QuarantineSize>) -> String {
        let c = self.counts();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP schoolgate_build_info The running schoolgate's version.\n\
             # TYPE schoolgate_build_info gauge\n\
             schoolgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str(
            "# HELP schoolgate_messages_total Messages decided, by path (relay or milter), verdict and outcome.\n\
             # TYPE schoolgate_messages_total counter\n",
        );
        for ((path, verdict, outcome), n) in &c.messages {
            let _ = writeln!(
                out,
                "schoolgate_messages_total{{path=\"{path}\",verdict=\"{verdict}\",outcome=\"{}\"}} {n}",
                escape(outcome)
            );
        }
        out.push_str(
            "# HELP schoolgate_rule_matches_total Safeguarding flags and attachment findings, by rule.\n\
             # TYPE schoolgate_rule_matches_total counter\n",
        );
        for ((kind, rule), n) in &c.rules {
            let _ = writeln!(
                out,
                "schoolgate_rule_matches_total{{kind=\"{kind}\",rule=\"{rule}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP schoolgate_next_hop_seconds Time the next hop took to answer a message, by result.\n\
             # TYPE schoolgate_next_hop_seconds histogram\n",
        );
        for (result, h) in &c.next_hop {
            let mut cumulative = 0;
            for (le, n) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "schoolgate_next_hop_seconds_bucket{{result=\"{result}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "schoolgate_next_hop_seconds_bucket{{result=\"{result}\",le=\"+Inf\"}} {}\n\
                 schoolgate_next_hop_seconds_sum{{result=\"{result}\"}} {}\n\
                 schoolgate_next_hop_seconds_count{{result=\"{result}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        if let Some(q) = quarantine {
            let _ = writeln!(
                out,
                "# HELP schoolgate_quarantine_messages Messages held for review now.\n\
                 # TYPE schoolgate_quarantine_messages gauge\n\
                 schoolgate_quarantine_messages {}\n\
                 # HELP schoolgate_quarantine_bytes Bytes of the messages held for review now.\n\
                 # TYPE schoolgate_quarantine_bytes gauge\n\
                 schoolgate_quarantine_bytes {}",
                q.messages, q.bytes
            );
        }
        out
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_cumulative_buckets() {
        let m = Metrics::default();
        m.next_hop("accepted", Duration::from_millis(3));
        m.next_hop("accepted", Duration::from_millis(70));
        m.next_hop("accepted", Duration::from_secs(60));
        let text = m.render(Some(QuarantineSize {
            messages: 2,
            bytes: 10,
        }));
        assert!(
            text.contains(
                "schoolgate_next_hop_seconds_bucket{result=\"accepted\",le=\"0.005\"} 1\n"
            )
        );
        assert!(
            text.contains("schoolgate_next_hop_seconds_bucket{result=\"accepted\",le=\"0.1\"} 2\n")
        );
        assert!(
            text.contains("schoolgate_next_hop_seconds_bucket{result=\"accepted\",le=\"30\"} 2\n")
        );
        assert!(
            text.contains(
                "schoolgate_next_hop_seconds_bucket{result=\"accepted\",le=\"+Inf\"} 3\n"
            )
        );
        assert!(text.contains("schoolgate_next_hop_seconds_count{result=\"accepted\"} 3\n"));
        assert!(text.contains("schoolgate_quarantine_messages 2\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
