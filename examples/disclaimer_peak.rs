//! Issue 3: "a message with a 20 MB attachment: ... no copy of the attachment beyond the output
//! buffer". Measures the heap that `add_disclaimer` uses on the benchmark's 20 MB message with a
//! counting global allocator (which the criterion benchmark must not carry, so it lives here).
//!
//! ```text
//! cargo run --release --example disclaimer_peak              # the peak-heap report
//! cargo run --release --example disclaimer_peak -- --dump DIR
//! ```
//!
//! `--dump DIR` writes the benchmark's messages (`NAME.eml`), the disclaimers
//! (`disclaimer.txt`, `disclaimer.html`), what schoolgate made of each message
//! (`NAME.schoolgate.eml` when it changed it) and `outcomes.tsv`, for
//! `scripts/bench-disclaimer` to run altermime over the same bytes and compare.
//!
//! The report counts, from just before the call to just after it (the input is built before):
//! * peak: the most heap live at once above what was live before the call; the output buffer
//!   is still live at the end, so a rewrite that makes no other copy has peak ≈ output capacity;
//! * peak if every growing realloc copied: the same, with a growing `realloc` counted as a new
//!   block alive beside the old one (what happens when the allocator cannot grow in place);
//! * allocated: every byte allocated during the call, however briefly;
//! * every allocation of 1 MiB or more, in order, so a copy of the attachment shows by name;
//! * peak RSS above the RSS before the call (`/proc/self/clear_refs` reset), a cross-check that
//!   does not depend on this allocator.
//!
//! Exit status 0 when the peak is within the output buffer plus 2 MiB (a tenth of the
//! attachment: any copy of it, decoded or not, is far larger), 1 otherwise, 2 on a usage error.

#[path = "../fixtures/bench/messages.rs"]
mod messages;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use schoolgate::config::OnSigned;
use schoolgate::policy::disclaimer::add_disclaimer;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// `LIVE` plus, transiently, the old block of every growing realloc.
static PEAK_IF_COPIED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

const BIG: usize = 1 << 20;
const LOG_LEN: usize = 64;
static RECORDING: AtomicBool = AtomicBool::new(false);
static LOG_NEXT: AtomicUsize = AtomicUsize::new(0);
/// (kind, size, old size, live after) of each allocation of `BIG` or more while recording.
static LOG: [[AtomicUsize; 4]; LOG_LEN] = [const { [const { AtomicUsize::new(0) }; 4] }; LOG_LEN];
const KIND_ALLOC: usize = 1;
const KIND_REALLOC: usize = 2;

fn grew(by: usize, transient_extra: usize) -> usize {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
    PEAK_IF_COPIED.fetch_max(live + transient_extra, Relaxed);
    ALLOCATED.fetch_add(by + transient_extra, Relaxed);
    CALLS.fetch_add(1, Relaxed);
    live
}

fn log(kind: usize, size: usize, old: usize, live: usize) {
    if size >= BIG && RECORDING.load(Relaxed) {
        let i = LOG_NEXT.fetch_add(1, Relaxed);
        if i < LOG_LEN {
            for (slot, v) in LOG[i].iter().zip([kind, size, old, live]) {
                slot.store(v, Relaxed);
            }
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = grew(layout.size(), 0);
            log(KIND_ALLOC, layout.size(), 0, live);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let live = grew(layout.size(), 0);
            log(KIND_ALLOC, layout.size(), 0, live);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let old = layout.size();
            if new_size >= old {
                let live = grew(new_size - old, old);
                log(KIND_REALLOC, new_size, old, live);
            } else {
                LIVE.fetch_sub(old - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn mib(n: usize) -> String {
    format!("{:.2} MiB", n as f64 / (1024.0 * 1024.0))
}

/// VmRSS and VmHWM of this process in bytes, when /proc says.
fn rss() -> Option<(usize, usize)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<usize> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: usize = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn dump(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("disclaimer.txt"),
        format!("{}\n", messages::DISCLAIMER_TEXT),
    )?;
    std::fs::write(
        dir.join("disclaimer.html"),
        format!("{}\n", messages::DISCLAIMER_HTML),
    )?;
    let mut tsv = String::from("name\tbytes\toutcome\tschoolgate_bytes\ttarget_ns\n");
    for s in messages::all() {
        std::fs::write(dir.join(format!("{}.eml", s.name)), &s.bytes)?;
        let r = add_disclaimer(
            &s.bytes,
            messages::DISCLAIMER_TEXT,
            messages::DISCLAIMER_HTML,
            OnSigned::Skip,
        );
        let out_len = match &r.message {
            Some(out) => {
                std::fs::write(dir.join(format!("{}.schoolgate.eml", s.name)), out)?;
                out.len().to_string()
            }
            None => "-".to_string(),
        };
        let outcome = serde_json::to_string(&r.outcome).unwrap_or_default();
        let target = s.target_ns.map_or("-".to_string(), |t| t.to_string());
        tsv.push_str(&format!(
            "{}\t{}\t{}\t{out_len}\t{target}\n",
            s.name,
            s.bytes.len(),
            outcome.trim_matches('"')
        ));
    }
    std::fs::write(dir.join("outcomes.tsv"), tsv)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {}
        [flag, dir] if flag == "--dump" => {
            if let Err(e) = dump(std::path::Path::new(dir)) {
                eprintln!("disclaimer_peak: writing {dir}: {e}");
                std::process::exit(2);
            }
            return;
        }
        _ => {
            eprintln!("usage: disclaimer_peak [--dump DIR]");
            std::process::exit(2);
        }
    }

    let message = messages::attachment_20m();
    let head_len = messages::attachment_20m_head().len();
    let (text, html) = (messages::DISCLAIMER_TEXT, messages::DISCLAIMER_HTML);

    // Once on a small message before measuring, so nothing lazily initialised is counted; not on
    // this one, whose freed output the allocator could keep resident and so hide from VmHWM.
    drop(add_disclaimer(
        &messages::alternative_10k(),
        text,
        html,
        OnSigned::Skip,
    ));

    let rss_before = rss();
    // Resets VmHWM to the current RSS (Linux 4.0 and later); if it fails, the RSS figure is skipped.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();

    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    PEAK_IF_COPIED.store(base, Relaxed);
    let (allocated0, calls0) = (ALLOCATED.load(Relaxed), CALLS.load(Relaxed));
    RECORDING.store(true, Relaxed);

    let rewrite = add_disclaimer(std::hint::black_box(&message), text, html, OnSigned::Skip);

    RECORDING.store(false, Relaxed);
    let peak = PEAK.load(Relaxed) - base;
    let peak_if_copied = PEAK_IF_COPIED.load(Relaxed) - base;
    let retained = LIVE.load(Relaxed).saturating_sub(base);
    let allocated = ALLOCATED.load(Relaxed) - allocated0;
    let calls = CALLS.load(Relaxed) - calls0;
    let rss_after = rss();
    let outcome = serde_json::to_string(&rewrite.outcome).unwrap_or_default();

    println!("disclaimer_peak: add_disclaimer on attachment_20m (outcome {outcome})");
    println!(
        "  input                  {:>12} bytes  {}",
        message.len(),
        mib(message.len())
    );
    let (out_len, out_cap) = match &rewrite.message {
        Some(out) => (out.len(), out.capacity()),
        None => (0, 0),
    };
    if rewrite.message.is_some() {
        println!(
            "  output                 {out_len:>12} bytes  {}  (capacity {})",
            mib(out_len),
            mib(out_cap)
        );
    } else {
        println!("  output                 none: message unchanged");
    }
    println!(
        "  peak heap              {peak:>12} bytes  {}  = {:.3} x output capacity",
        mib(peak),
        peak as f64 / out_cap.max(1) as f64
    );
    println!(
        "  peak if reallocs copy  {peak_if_copied:>12} bytes  {}",
        mib(peak_if_copied)
    );
    println!(
        "  live after (retained)  {retained:>12} bytes  {}",
        mib(retained)
    );
    println!(
        "  allocated in total     {allocated:>12} bytes  {}  in {calls} allocations",
        mib(allocated)
    );
    let logged = LOG_NEXT.load(Relaxed);
    println!("  allocations >= 1 MiB   {logged}");
    for entry in LOG.iter().take(logged.min(LOG_LEN)) {
        let [kind, size, old, live] = entry.each_ref().map(|v| v.load(Relaxed));
        let what = if kind == KIND_REALLOC {
            format!("realloc {} -> {}", mib(old), mib(size))
        } else {
            format!("alloc   {}", mib(size))
        };
        println!(
            "    {what:<32} live then {}",
            mib(live.saturating_sub(base))
        );
    }
    if let (true, Some((rss0, _)), Some((_, hwm1))) = (hwm_reset, rss_before, rss_after) {
        println!(
            "  peak RSS above before  {:>12} bytes  {}  (VmHWM after - VmRSS before)",
            hwm1.saturating_sub(rss0),
            mib(hwm1.saturating_sub(rss0))
        );
    }

    let Some(out) = &rewrite.message else {
        println!("FAIL: the message was not rewritten, nothing to measure");
        std::process::exit(1);
    };
    // The attachment's base64 must be in the output byte for byte.
    let body = &message[head_len..head_len + messages::base64_len(messages::ATTACHMENT_BYTES)];
    let found = out
        .windows(76)
        .position(|w| w == &body[..76])
        .is_some_and(|at| out.get(at..at + body.len()) == Some(body));
    println!(
        "  attachment base64 in output verbatim: {}",
        if found { "yes" } else { "NO" }
    );

    let allowance = 2 * BIG;
    if found && peak <= out_cap + allowance {
        println!(
            "PASS: peak heap is the output buffer plus {} (allowance {})",
            mib(peak.saturating_sub(out_cap)),
            mib(allowance)
        );
    } else {
        println!(
            "FAIL: peak heap {} against output capacity {} + allowance {}",
            mib(peak),
            mib(out_cap),
            mib(allowance)
        );
        std::process::exit(1);
    }
}
