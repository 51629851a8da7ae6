//! Hard limits on opening attachments: how deep, how much decompressed, how many entries, what
//! ratio, how long. Every decompression goes through [`Budget`], so a bomb stops at the limit
//! rather than at the end of memory.
//!
//! The clock is the one thing here that is not pure: a deadline is the only defence against a
//! file that is slow to read rather than large.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::ScanLimits;

/// Past this many decompressed bytes an entry's ratio is checked.
pub const RATIO_FLOOR: u64 = 1 << 20;

/// Most text kept from one attachment; past it the rest is not read, and the attachment is
/// held as unscannable unless what was read already makes it sensitive.
pub const MAX_TEXT: usize = 32 << 20;

/// Most memory the readers may hold at once in the structures they build from one message's
/// attachments (a PDF's objects, a workbook's cells), estimated before they build them: past
/// it the attachment is unscannable. Decompressed bytes are metered separately
/// (`max_expanded_size`); this bounds what a few compressed megabytes can turn into.
pub const MAX_BUILT: u64 = 48 << 20;

/// The compressed side of a decompression, for the ratio: the whole entry's size, and, when the
/// reader can tell, how many of those bytes the decompressor has consumed so far. Measured
/// against what was consumed, a bomb trips after a few MiB; measured against the whole entry,
/// a 1 MiB entry could expand to `max_ratio` MiB first.
#[derive(Debug, Clone, Default)]
pub struct Compressed {
    pub total: u64,
    pub so_far: Option<Rc<Cell<u64>>>,
}

impl Compressed {
    /// The compressed bytes behind what has been decompressed so far.
    pub fn now(&self) -> u64 {
        self.so_far.as_ref().map_or(self.total, |c| c.get())
    }
}

impl From<u64> for Compressed {
    fn from(total: u64) -> Self {
        Compressed {
            total,
            so_far: None,
        }
    }
}

/// Why an attachment could not be inspected (`unscannable-attachment`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unscannable {
    #[error("archives nested more than {0} deep")]
    TooDeep(usize),
    #[error("its MIME parts are nested more than {0} levels deep")]
    PartsTooDeep(usize),
    #[error("{0}")]
    TooMany(String),
    #[error("{0} would take more than {limit} MiB of memory to read", limit = MAX_BUILT >> 20)]
    TooComplex(String),
    #[error("it expands to more than {0} bytes")]
    TooLarge(u64),
    #[error("an archive with more than {0} entries")]
    TooManyEntries(usize),
    #[error("a decompression bomb (an entry expands more than {0} times)")]
    Bomb(u32),
    #[error("opening it took longer than {0:?}")]
    TooSlow(Duration),
    #[error("it is damaged: {0}")]
    Corrupt(String),
    #[error("it is a {0} archive, which schoolgate cannot open to check")]
    Unreadable(&'static str),
}

/// What one message may still spend on opening its attachments. Shared by reference through
/// the whole walk (interior mutability: nested archives charge the same budget).
#[derive(Debug)]
pub struct Budget {
    limits: ScanLimits,
    expanded: Cell<u64>,
    /// Bytes of structures held right now (see [`MAX_BUILT`]).
    built: Cell<u64>,
    deadline: Instant,
}

/// Memory held against a [`Budget`] while a reader's structures live; given back on drop.
#[derive(Debug)]
pub struct Held<'b> {
    budget: &'b Budget,
    bytes: u64,
}

impl Held<'_> {
    /// Holds `bytes` more for as long as this lives.
    pub fn more(&mut self, bytes: u64, what: &str) -> Result<(), Unscannable> {
        self.budget.reserve(bytes, what)?;
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let built = &self.budget.built;
        built.set(built.get().saturating_sub(self.bytes));
    }
}

impl Budget {
    pub fn new(limits: &ScanLimits) -> Budget {
        Budget {
            limits: limits.clone(),
            expanded: Cell::new(0),
            built: Cell::new(0),
            deadline: Instant::now() + limits.max_scan_time.0,
        }
    }

    pub fn max_depth(&self) -> usize {
        self.limits.max_depth
    }

    pub fn max_entries(&self) -> usize {
        self.limits.max_entries
    }

    /// Fails once the depth is past the limit (depth 1 = an attachment, 2 = a file inside it…).
    pub fn enter(&self, depth: usize) -> Result<(), Unscannable> {
        if depth > self.limits.max_depth {
            return Err(Unscannable::TooDeep(self.limits.max_depth));
        }
        self.check_time()
    }

    /// Counts `bytes` more decompressed bytes against the message's allowance.
    pub fn charge(&self, bytes: u64) -> Result<(), Unscannable> {
        let total = self.expanded.get().saturating_add(bytes);
        self.expanded.set(total);
        if total > self.limits.max_expanded_size.0 {
            return Err(Unscannable::TooLarge(self.limits.max_expanded_size.0));
        }
        self.check_time()
    }

    /// Holds `bytes` of structures a reader is about to build (`what`, for the reason) until
    /// the returned guard is dropped; fails when that would pass [`MAX_BUILT`].
    pub fn hold(&self, bytes: u64, what: &str) -> Result<Held<'_>, Unscannable> {
        self.reserve(bytes, what)?;
        Ok(Held {
            budget: self,
            bytes,
        })
    }

    /// What may still be held.
    pub fn room(&self) -> u64 {
        MAX_BUILT.saturating_sub(self.built.get())
    }

    fn reserve(&self, bytes: u64, what: &str) -> Result<(), Unscannable> {
        let total = self.built.get().saturating_add(bytes);
        if total > MAX_BUILT {
            return Err(Unscannable::TooComplex(what.to_string()));
        }
        self.built.set(total);
        self.check_time()
    }

    /// Fails once the deadline has passed.
    pub fn check_time(&self) -> Result<(), Unscannable> {
        if Instant::now() > self.deadline {
            return Err(Unscannable::TooSlow(self.limits.max_scan_time.0));
        }
        Ok(())
    }

    /// Fails when `expanded` bytes came out of `compressed` at more than the allowed ratio.
    pub fn check_ratio(&self, expanded: u64, compressed: u64) -> Result<(), Unscannable> {
        let ratio = u64::from(self.limits.max_ratio.max(1));
        if expanded > RATIO_FLOOR && expanded / compressed.max(1) > ratio {
            return Err(Unscannable::Bomb(self.limits.max_ratio));
        }
        Ok(())
    }

    /// Reads all of `reader` (a decompressor fed `compressed` bytes), charging as it goes.
    pub fn read_all<R: Read>(
        &self,
        reader: R,
        compressed: impl Into<Compressed>,
    ) -> Result<Vec<u8>, Unscannable> {
        let mut out = Vec::new();
        let mut metered = Metered::new(reader, self, compressed);
        match metered.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err(metered
                .stopped
                .take()
                .unwrap_or_else(|| Unscannable::Corrupt(e.to_string()))),
        }
    }
}

/// A reader that charges every byte it yields to a [`Budget`] and stops at a limit. After an
/// error, [`Metered::stopped`] says which limit (the I/O error itself is generic).
pub struct Metered<'b, R> {
    inner: R,
    budget: &'b Budget,
    compressed: Compressed,
    read: u64,
    pub stopped: Option<Unscannable>,
}

impl<'b, R: Read> Metered<'b, R> {
    pub fn new(inner: R, budget: &'b Budget, compressed: impl Into<Compressed>) -> Self {
        Metered {
            inner,
            budget,
            compressed: compressed.into(),
            read: 0,
            stopped: None,
        }
    }

    /// The limit that stopped this reader, or a corrupt-file error from `e`.
    pub fn why(&mut self, e: &io::Error) -> Unscannable {
        self.stopped
            .take()
            .unwrap_or_else(|| Unscannable::Corrupt(e.to_string()))
    }
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        let check = self
            .budget
            .charge(n as u64)
            .and_then(|()| self.budget.check_ratio(self.read, self.compressed.now()));
        if let Err(e) = check {
            let message = e.to_string();
            self.stopped = Some(e);
            return Err(io::Error::other(message));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_stop_at_the_ratio_not_at_the_end() {
        let limits = ScanLimits::default();
        let budget = Budget::new(&limits);
        let zeros = std::io::repeat(0).take(1 << 30);
        let err = budget.read_all(zeros, 1000).unwrap_err();
        assert_eq!(err, Unscannable::Bomb(limits.max_ratio));
    }

    #[test]
    fn what_is_built_is_held_while_it_lives_and_given_back_after() {
        let budget = Budget::new(&ScanLimits::default());
        let mut held = budget.hold(MAX_BUILT / 2, "a").unwrap();
        assert!(matches!(
            budget.hold(MAX_BUILT / 2 + 1, "a PDF's objects"),
            Err(Unscannable::TooComplex(w)) if w == "a PDF's objects"
        ));
        held.more(MAX_BUILT / 4, "a").unwrap();
        assert_eq!(budget.room(), MAX_BUILT / 4);
        drop(held);
        assert_eq!(budget.room(), MAX_BUILT);
        let _again = budget.hold(MAX_BUILT, "a").unwrap();
    }

    #[test]
    fn the_allowance_is_shared_by_everything_in_a_message() {
        let limits = ScanLimits {
            max_expanded_size: crate::config::ByteSize(10),
            ..ScanLimits::default()
        };
        let budget = Budget::new(&limits);
        budget.charge(6).unwrap();
        assert!(matches!(budget.charge(6), Err(Unscannable::TooLarge(10))));
    }
}
