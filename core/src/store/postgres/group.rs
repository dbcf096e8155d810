//! Journaled puts written together: the store's own group commit.
//!
//! Each durable put is a record and its journal row, committed
//! synchronously (see the module doc of `store::postgres`). PostgreSQL
//! already shares one WAL flush between commits that wait at the same
//! moment, but every put still pays a statement and a transaction of its
//! own in a backend, and on a small machine that, not the disk, is what a
//! put costs. So puts that arrive while one batch is being written wait
//! for it, and go together in the next: one statement inserting every
//! record whose key is free and, for each one that went in, its journal
//! row, in one transaction committed synchronously.
//!
//! # Protocol
//!
//! A put takes a ticket and queues itself. If no batch is being written,
//! it leads: it takes every queued put (up to [`MAX_BATCH`]), writes them,
//! and posts each ticket's outcome; else it sleeps until woken, then takes
//! its outcome if posted, or leads the next batch itself if none is being
//! written. A leader wakes exactly the puts of its batch and the first
//! put still queued (the next leader): each wake-up is a context switch,
//! and on a small machine those, more than the statements, were what a
//! put cost (waking every waiter at each batch's end woke about three
//! times as many threads as had anything to do; measured with `perf` under
//! `bench --server`). A put returns only once its own batch is committed (or
//! failed): what it acknowledges is durable, as before. A batch that fails
//! fails each of its puts with the batch's error (none of them is
//! acknowledged; whether the commit reached the disk is unknown, as for any
//! write that failed late, and the journal's replay sorts that out).
//!
//! Two puts of one key in a batch (never seen: a record's key is its
//! subject's next number): the first is written, the second answered as
//! a key already taken (`false`), as it would be after the first.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};

/// The most puts written in one statement.
pub(super) const MAX_BATCH: usize = 256;

/// Writes a batch in one transaction committed synchronously; the keys
/// that went in.
pub(super) type WriteBatch<'a> = dyn Fn(&[&Pending]) -> Result<Vec<Vec<u8>>> + 'a;

/// What became of one put: written (`true`), its key taken (`false`), or
/// its batch's error.
type Outcome = std::result::Result<bool, (ErrorKind, String)>;

/// One queued put.
pub(super) struct Pending {
    ticket: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub note: Vec<u8>,
    pub mac: [u8; 32],
    /// The thread waiting for it.
    waiter: std::thread::Thread,
}

#[derive(Default)]
struct State {
    queue: Vec<Pending>,
    /// A batch is being written.
    leading: bool,
    next_ticket: u64,
    /// Outcomes not yet taken by their puts: written (`true`), key taken
    /// (`false`), or the batch's error.
    outcomes: HashMap<u64, Outcome>,
}

/// The queue of puts and their outcomes.
#[derive(Default)]
pub(super) struct Group {
    state: Mutex<State>,
}

impl Group {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one put with whatever batch it joins: `write` writes a batch
    /// (in one transaction, committed synchronously) and returns the keys
    /// that went in. Whether this put's record went in.
    pub fn put(
        &self,
        put: (Vec<u8>, Vec<u8>, Vec<u8>, [u8; 32]),
        write: &WriteBatch<'_>,
    ) -> Result<bool> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let (key, value, note, mac) = put;
        state.queue.push(Pending {
            ticket,
            key,
            value,
            note,
            mac,
            waiter: std::thread::current(),
        });
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome.map_err(|(kind, message)| Error::new(kind, message));
            }
            if state.leading {
                // Woken by the leader of the batch that has it, or to lead
                // the next; an unpark that comes before the park is kept,
                // and a spurious wake-up only loops.
                drop(state);
                std::thread::park();
                state = self.lock();
                continue;
            }
            // Lead a batch: every queued put, ours among them (or already
            // written by a batch that had it: then its outcome is posted).
            let take = state.queue.len().min(MAX_BATCH);
            let batch: Vec<Pending> = state.queue.drain(..take).collect();
            state.leading = true;
            drop(state);
            // A panic in the write must not leave the others waiting for
            // a batch nobody writes: its puts fail, the next leads.
            let outcomes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_batch(&batch, write)
            }))
            .unwrap_or_else(|_| {
                batch
                    .iter()
                    .map(|p| {
                        let why = "writing a batch of puts panicked".to_string();
                        (p.ticket, Err((ErrorKind::Internal, why)))
                    })
                    .collect()
            });
            state = self.lock();
            state.leading = false;
            state.outcomes.extend(outcomes);
            let next = state.queue.first().map(|p| p.waiter.clone());
            drop(state);
            let me = std::thread::current().id();
            for waiter in batch.iter().map(|p| &p.waiter).chain(next.as_ref()) {
                if waiter.id() != me {
                    waiter.unpark();
                }
            }
            state = self.lock();
        }
    }
}

/// Writes `batch` (its first put of each key) and says what became of each.
fn write_batch(batch: &[Pending], write: &WriteBatch<'_>) -> Vec<(u64, Outcome)> {
    let mut seen = std::collections::HashSet::new();
    let (first, again): (Vec<&Pending>, Vec<&Pending>) =
        batch.iter().partition(|p| seen.insert(p.key.as_slice()));
    let mut out: Vec<_> = again.iter().map(|p| (p.ticket, Ok(false))).collect();
    match write(&first) {
        Ok(written) => {
            let written: std::collections::HashSet<&[u8]> =
                written.iter().map(Vec::as_slice).collect();
            out.extend(
                first
                    .iter()
                    .map(|p| (p.ticket, Ok(written.contains(p.key.as_slice())))),
            );
        }
        Err(e) => out.extend(
            first
                .iter()
                .map(|p| (p.ticket, Err((e.kind(), e.message().to_string())))),
        ),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn concurrent_puts_share_batches_and_each_gets_its_own_outcome() {
        let group = Arc::new(Group::default());
        let batches = Arc::new(AtomicUsize::new(0));
        let taken: Arc<Mutex<std::collections::HashSet<Vec<u8>>>> = Arc::default();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let (group, batches, taken) =
                    (Arc::clone(&group), Arc::clone(&batches), Arc::clone(&taken));
                std::thread::spawn(move || {
                    let mut mine = 0;
                    for i in 0..200u32 {
                        // Thread 7 asks for thread 0's keys: each is taken.
                        let owner = if t == 7 { 0 } else { t };
                        let key = [&[owner][..], &i.to_be_bytes()[..]].concat();
                        let write = |batch: &[&Pending]| -> Result<Vec<Vec<u8>>> {
                            batches.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            let mut taken = taken.lock().unwrap();
                            Ok(batch
                                .iter()
                                .filter(|p| taken.insert(p.key.clone()))
                                .map(|p| p.key.clone())
                                .collect())
                        };
                        if group.put((key, vec![t], vec![], [0; 32]), &write).unwrap() {
                            mine += 1;
                        }
                    }
                    mine
                })
            })
            .collect();
        let written: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 7 owners' 200 keys each, once.
        assert_eq!(written, 7 * 200);
        assert!(
            batches.load(Ordering::Relaxed) < 8 * 200,
            "no batch held two puts"
        );
    }

    #[test]
    fn a_panicking_batch_fails_its_puts_and_leaves_nobody_waiting() {
        let group = Group::default();
        let boom = |_: &[&Pending]| -> Result<Vec<Vec<u8>>> { panic!("boom") };
        let err = group
            .put((b"k".to_vec(), vec![], vec![], [0; 32]), &boom)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        let ok = |b: &[&Pending]| -> Result<Vec<Vec<u8>>> {
            Ok(b.iter().map(|p| p.key.clone()).collect())
        };
        assert!(group
            .put((b"k".to_vec(), vec![], vec![], [0; 32]), &ok)
            .unwrap());
    }

    #[test]
    fn a_failed_batch_fails_its_puts_and_the_next_one_goes_on() {
        let group = Group::default();
        let fail = |_: &[&Pending]| -> Result<Vec<Vec<u8>>> {
            Err(Error::io("down", std::io::Error::other("x")))
        };
        let err = group
            .put((b"k".to_vec(), vec![], vec![], [0; 32]), &fail)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        let ok = |b: &[&Pending]| -> Result<Vec<Vec<u8>>> {
            Ok(b.iter().map(|p| p.key.clone()).collect())
        };
        assert!(group
            .put((b"k".to_vec(), vec![], vec![], [0; 32]), &ok)
            .unwrap());
    }
}
