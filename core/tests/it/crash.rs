//! kill -9 a writer at random points: after reopen every acknowledged
//! operation is there, every live record decrypts, nothing erased or expired
//! comes back, every subject's record counts (what a receipt reports) match
//! its records, and the audit chain verifies.
//!
//! The writer puts, updates, deletes, erases subjects, records events that
//! start retention clocks (some already past: the call itself expires those
//! records) and runs `expire` up to 400 days ahead.
//!
//! The test binary re-runs itself as the writer (`SV_CRASH_WRITER=dir`). The
//! writer prints `BEGIN <op>` before and `ACK <op>` after each operation; the
//! parent kills it with SIGKILL after a random delay and checks the reopened
//! vault against the acknowledged history. Only the one operation in flight
//! at the kill may have gone either way.
//!
//! Rounds: 50 by default, `SV_CRASH_ROUNDS=500` for a long run.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use shredvault::policy::{CalendarSpan, SpanUnit};
use shredvault::retention::{add_span, day_end, expiry_day};
use shredvault::{ErrorKind, RecordId, SubjectId, Vault};

const YEAR: i64 = 365 * 86_400;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// When a job application expires once `hiring_concluded` is at `at`:
/// (the instant, the end of its day).
fn job_expiry(at: i64) -> (i64, i64) {
    let instant = add_span(
        at,
        CalendarSpan {
            amount: 4,
            unit: SpanUnit::Years,
        },
    )
    .unwrap();
    (instant, day_end(expiry_day(instant)))
}

fn writer(dir: &str, seed: u64) {
    let v = Vault::open(dir, &root(), Some(example_policy())).unwrap();
    let mut rng = Rng(seed | 1);
    let mut subjects: Vec<SubjectId> = Vec::new();
    let mut records: Vec<(RecordId, SubjectId)> = Vec::new();
    let out = std::io::stdout();
    let say = |line: String| {
        let mut o = out.lock();
        writeln!(o, "{line}").unwrap();
        o.flush().unwrap();
    };
    let mut n = 0u64;
    loop {
        n += 1;
        let choice = if subjects.is_empty() {
            0
        } else {
            rng.below(100)
        };
        if choice < 10 {
            say("BEGIN create".into());
            let s = v
                .create_subject(&[("email", &format!("p{seed}-{n}@example.com"))])
                .unwrap();
            subjects.push(s);
            say(format!("ACK create {s}"));
        } else if choice < 70 {
            let s = subjects[rng.below(subjects.len() as u64) as usize];
            let data = format!("value-{seed}-{n}");
            say(format!("BEGIN put {s}"));
            match v.put(&s, "job_application", data.as_bytes()) {
                Ok(r) => {
                    records.push((r, s));
                    say(format!("ACK put {r} {s} {data}"));
                }
                // The subject's retention already ended: nothing stored.
                Err(e) if e.kind() == ErrorKind::Expired => say("ACK refused".into()),
                Err(e) => panic!("put: {e}"),
            }
        } else if choice < 74 {
            let s = subjects[rng.below(subjects.len() as u64) as usize];
            // Between 5 years ago and now: expiries from a year ago to 4
            // years ahead.
            let at = unix_now() - rng.below(5 * YEAR as u64) as i64;
            say(format!("BEGIN event {s} {at}"));
            v.record_event(&s, "hiring_concluded", at).unwrap();
            say(format!("ACK event {s} {at}"));
        } else if choice < 76 {
            let now = unix_now() + rng.below(400) as i64 * 86_400;
            say(format!("BEGIN expire {now}"));
            // Up to 400 days ahead of the clock: forced.
            v.expire_with(now, true).unwrap();
            say(format!("ACK expire {now}"));
        } else if choice < 85 && !records.is_empty() {
            let (r, _) = records[rng.below(records.len() as u64) as usize];
            let data = format!("value-{seed}-{n}");
            say(format!("BEGIN update {r} {data}"));
            match v.update(&r, data.as_bytes()) {
                Ok(()) => say(format!("ACK update {r} {data}")),
                Err(e) if matches!(e.kind(), ErrorKind::Expired | ErrorKind::Erased) => {
                    say("ACK refused".into())
                }
                Err(e) => panic!("update: {e}"),
            }
        } else if choice < 95 && !records.is_empty() {
            let (r, _) = records.swap_remove(rng.below(records.len() as u64) as usize);
            say(format!("BEGIN delete {r}"));
            match v.delete(&r) {
                Ok(()) => say(format!("ACK delete {r}")),
                Err(e) if matches!(e.kind(), ErrorKind::Expired | ErrorKind::Erased) => {
                    say("ACK refused".into())
                }
                Err(e) => panic!("delete: {e}"),
            }
        } else {
            let s = subjects.swap_remove(rng.below(subjects.len() as u64) as usize);
            records.retain(|(_, owner)| *owner != s);
            say(format!("BEGIN erase {s}"));
            v.erase_subject(&s).unwrap();
            say(format!("ACK erase {s}"));
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Value(String),
    Erased,
}

#[test]
fn crash_writer_entry() {
    // Only does something when run as the writer child.
    if let Ok(dir) = std::env::var("SV_CRASH_WRITER") {
        let seed = std::env::var("SV_CRASH_SEED").unwrap().parse().unwrap();
        writer(&dir, seed);
    }
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let rounds: u64 = std::env::var("SV_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    kill_rounds(dir.path(), rounds);
}

/// The same rounds on a vault whose records live in PostgreSQL (a fresh
/// schema of the test cluster): the vault directory names the database,
/// so the writer child's plain `Vault::open` finds it. PostgreSQL's own
/// durability is a commit's, so nothing acknowledged may be missing.
#[test]
fn kill_9_loses_nothing_acknowledged_on_postgres() {
    let Some(pg) = shredvault::postgres::for_tests() else {
        return;
    };
    let rounds: u64 = std::env::var("SV_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .map(|r| r.div_ceil(2))
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let options = shredvault::VaultOptions {
        store: Some(shredvault::postgres::fresh_schema(pg, "crash")),
        ..Default::default()
    };
    Vault::open_with(dir.path(), &root(), Some(example_policy()), options)
        .unwrap()
        .close()
        .unwrap();
    assert!(!dir.path().join("data").exists());
    kill_rounds(dir.path(), rounds);
    assert!(!dir.path().join("data").exists(), "records went to data/");
}

fn kill_rounds(dir: &std::path::Path, rounds: u64) {
    let base_seed = std::env::var("SV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash harness seed {base_seed} (SV_CRASH_SEED to repeat)");
    // One vault across rounds, so later rounds start from repaired state.
    let mut expect: HashMap<RecordId, (SubjectId, Expect)> = HashMap::new();
    // Per subject, every acknowledged hiring_concluded time, the latest
    // last (a record expired under an earlier one stays expired); and the
    // latest acknowledged expiry run.
    let mut events: HashMap<SubjectId, Vec<i64>> = HashMap::new();
    let mut expired_through = i64::MIN;
    // Every acknowledged put, whose audit entry must be in the chain.
    let mut acked_puts: Vec<RecordId> = Vec::new();
    let mut rng = Rng(base_seed | 1);
    for round in 0..rounds {
        let seed = base_seed.wrapping_add(round * 7919);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::crash_writer_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SV_CRASH_WRITER", dir)
            .env("SV_CRASH_SEED", seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        // Let it start (open, repair) and do some work, then kill it.
        let delay = Duration::from_millis(100 + rng.below(400));
        let start = Instant::now();
        while start.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The writer never stops by itself: if it has, it failed (a
        // refused operation, a panic), and that is this test's failure.
        if let Some(status) = child.try_wait().unwrap() {
            let lines = reader.join().unwrap();
            panic!(
                "round {round}: the writer exited by itself ({status}) after: {:?}",
                lines.last()
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();

        let mut in_flight: Option<Vec<String>> = None;
        for line in &lines {
            let parts: Vec<String> = line.split_whitespace().map(String::from).collect();
            match parts.first().map(String::as_str) {
                Some("BEGIN") => in_flight = Some(parts[1..].to_vec()),
                Some("ACK") => {
                    in_flight = None;
                    match parts[1].as_str() {
                        "put" => {
                            let r = RecordId::parse(&parts[2]).unwrap();
                            let s = SubjectId::parse(&parts[3]).unwrap();
                            expect.insert(r, (s, Expect::Value(parts[4].clone())));
                            acked_puts.push(r);
                        }
                        "update" => {
                            let r = RecordId::parse(&parts[2]).unwrap();
                            expect.get_mut(&r).unwrap().1 = Expect::Value(parts[3].clone());
                        }
                        "delete" => {
                            let r = RecordId::parse(&parts[2]).unwrap();
                            expect.get_mut(&r).unwrap().1 = Expect::Erased;
                        }
                        "erase" => {
                            let s = SubjectId::parse(&parts[2]).unwrap();
                            for (owner, e) in expect.values_mut() {
                                if *owner == s {
                                    *e = Expect::Erased;
                                }
                            }
                        }
                        "event" => {
                            let s = SubjectId::parse(&parts[2]).unwrap();
                            events.entry(s).or_default().push(parts[3].parse().unwrap());
                        }
                        "expire" => {
                            expired_through = expired_through.max(parts[2].parse().unwrap());
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }

        let v = Vault::open(dir, &root(), None).unwrap();
        // What erasure receipts would report matches what is stored, a put
        // cut off between its counts and its record included.
        v.check_record_counts()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let verify_now = unix_now();
        // What an in-flight event or expiry run may have done.
        let (flight_event, flight_expire) = match in_flight.as_deref() {
            Some([op, s, at]) if op == "event" => (
                Some((SubjectId::parse(s).unwrap(), at.parse::<i64>().unwrap())),
                None,
            ),
            Some([op, now]) if op == "expire" => (None, Some(now.parse::<i64>().unwrap())),
            _ => (None, None),
        };
        let mut checked = 0;
        for (r, (s, e)) in expect.iter_mut() {
            // Retention: the event times this subject may have (acknowledged,
            // or the one in flight), and how far expiry runs may have gone.
            let history = events.get(s).cloned().unwrap_or_default();
            let flight = flight_event.filter(|(fs, _)| fs == s).map(|(_, at)| at);
            let candidates: Vec<i64> = history.iter().copied().chain(flight).collect();
            // What the subject's clock may be now: the latest acknowledged
            // time, or the one in flight.
            let current: Vec<i64> = history.last().copied().into_iter().chain(flight).collect();
            let reach = expired_through
                .max(flight_expire.unwrap_or(i64::MIN))
                .max(verify_now);
            let may_expire = candidates.iter().any(|&at| {
                let (instant, end) = job_expiry(at);
                instant <= reach || end <= reach
            });
            // Every candidate's day ended by an acknowledged expiry run: the
            // record must be gone.
            // (With no acknowledged event, the one in flight may not have
            // happened: the record may have no expiry at all.)
            let must_expire = !history.is_empty()
                && current
                    .iter()
                    .all(|&at| job_expiry(at).1 <= expired_through);
            let got_now = match v.get(r, "recruitment") {
                Ok(rec) => Some(Expect::Value(String::from_utf8(rec.data.to_vec()).unwrap())),
                Err(err) if err.kind() == ErrorKind::Erased => Some(Expect::Erased),
                Err(err) if err.kind() == ErrorKind::Expired => None,
                Err(err) => panic!("round {round}: record {r}: unexpected error {err}"),
            };
            let Some(got_now) = got_now else {
                assert!(
                    may_expire || *e == Expect::Erased,
                    "round {round}: record {r} expired, but no retention of it ended: candidates {candidates:?} reach {reach} expired_through {expired_through} in flight {in_flight:?} records {:?} facts {:?}",
                    v.records(s).ok().map(|rs| rs.into_iter().map(|i| (i.id.to_string(), i.expires_at)).collect::<Vec<_>>()),
                    v.subject_facts(s).ok()
                );
                *e = Expect::Erased; // expired: it stays gone
                checked += 1;
                continue;
            };
            if let Expect::Value(_) = got_now {
                assert!(
                    !must_expire,
                    "round {round}: record {r} came back after its day's key was destroyed: history {history:?} in flight {in_flight:?} expired_through {expired_through} expiries {:?} records {:?}",
                    current.iter().map(|&at| job_expiry(at)).collect::<Vec<_>>(),
                    v.records(s).ok().map(|rs| rs.into_iter().map(|i| (i.id.to_string(), i.expires_at)).collect::<Vec<_>>())
                );
            }
            // Records the in-flight operation touched may be in either state.
            let alternative = match in_flight.as_deref() {
                Some([op, target, data]) if op == "update" && target == &r.to_string() => {
                    Some(Expect::Value(data.clone()))
                }
                Some([op, target]) if op == "delete" && target == &r.to_string() => {
                    Some(Expect::Erased)
                }
                Some([op, target]) if op == "erase" && target == &s.to_string() => {
                    Some(Expect::Erased)
                }
                _ => None,
            };
            let got = got_now;
            if got != *e {
                assert_eq!(
                    Some(&got),
                    alternative.as_ref(),
                    "round {round}: record {r} expected {e:?}, in flight {in_flight:?}"
                );
                *e = got; // the in-flight operation happened
            }
            checked += 1;
        }
        assert!(v
            .get(&RecordId::parse(&"0".repeat(32)).unwrap(), "recruitment")
            .is_err());
        // Events and expiry runs in flight are settled now either way.
        if let Some((fs, at)) = flight_event {
            if let Ok((ev, _)) = v.subject_facts(&fs) {
                if ev.get("hiring_concluded") == Some(&at) {
                    events.entry(fs).or_default().push(at);
                }
            }
        }
        if let Some(now) = flight_expire {
            // Whether it ran or not, later rounds' runs go further anyway;
            // count it only as a possibility (never as a must).
            let _ = now;
        }
        v.verify_audit()
            .unwrap_or_else(|e| panic!("round {round}: the audit chain: {e}"));
        // An acknowledged put is durable with its audit entry (a put in
        // `Immediate` mode is durable through the put journal: its frame
        // holds the entry).
        let put_ids = logged_puts(&v);
        let logged: std::collections::HashSet<RecordId> = put_ids.iter().copied().collect();
        let logged_twice = put_ids.len() - logged.len();
        assert_eq!(logged_twice, 0, "round {round}: a put logged twice");
        for r in &acked_puts {
            assert!(
                logged.contains(r),
                "round {round}: acknowledged put {r} has no audit entry"
            );
        }
        // Every key slot in use is referenced: the repair left no orphans,
        // only one slot per live subject, one per live retention day and
        // the vault's three own keys (audit, receipts, blind index).
        let stats = v.stats().unwrap();
        assert_eq!(
            stats.keystore_slots_live,
            stats.subjects_live + 3 + stats.retention_days,
            "round {round}: {stats:?}"
        );
        drop(v);
        eprintln!(
            "round {round}: {} lines, {checked} records checked, in flight {in_flight:?}",
            lines.len()
        );
    }
}

/// The writer child of `concurrent_durable_puts_survive_kill_9`: eight
/// threads, each with a subject of its own, putting as fast as they can;
/// each acknowledged put is printed as `ACK <record> <value>`.
#[test]
fn group_writer_entry() {
    let Ok(dir) = std::env::var("SV_CRASH_GROUP_WRITER") else {
        return;
    };
    let v = Vault::open(&dir, &root(), Some(example_policy())).unwrap();
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (v, out) = (&v, &out);
            scope.spawn(move || {
                let s = v.create_subject(&[]).unwrap();
                for n in 0.. {
                    let value = format!("t{t}-{n}-{}", "x".repeat(n % 300));
                    let r = v.put(&s, "account", value.as_bytes()).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {r} {value}").unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}

/// Concurrent durable puts share journal writes (group commit): killed
/// with SIGKILL mid-load, every put any thread was told succeeded is there
/// after reopen, and the audit chain verifies.
#[test]
fn concurrent_durable_puts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(RecordId, String)> = Vec::new();
    let mut rng = Rng(unix_now() as u64 | 1);
    for round in 0..4 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::group_writer_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SV_CRASH_GROUP_WRITER", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.push(line);
                let _ = seen_tx.send(());
            }
            lines
        });
        // Killed mid-load: once it has acknowledged some puts (opening
        // takes a while on a busy machine), then a little later.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while seen < 50 && Instant::now() < deadline {
            if seen_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the writer stopped by itself"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let before = acked.len();
        for line in lines {
            let mut parts = line.split_whitespace();
            if parts.next() == Some("ACK") {
                let r = RecordId::parse(parts.next().unwrap()).unwrap();
                acked.push((r, parts.next().unwrap().to_string()));
            }
        }
        assert!(acked.len() > before, "round {round}: no put acknowledged");
        let v = Vault::open(dir.path(), &root(), Some(example_policy())).unwrap();
        for (r, value) in &acked {
            let got = v
                .get(r, "billing")
                .unwrap_or_else(|e| panic!("round {round}: acknowledged {r} lost: {e}"));
            assert_eq!(&got.data[..], value.as_bytes(), "round {round}: {r}");
        }
        v.verify_audit().unwrap();
    }
    eprintln!("{} acknowledged concurrent puts, all there", acked.len());
}
