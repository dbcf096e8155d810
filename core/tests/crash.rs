//! kill -9 a writer at random points: after reopen every acknowledged
//! operation is there, every live record decrypts, nothing erased comes back.
//!
//! The test binary re-runs itself as the writer (`SV_CRASH_WRITER=dir`). The
//! writer prints `BEGIN <op>` before and `ACK <op>` after each operation; the
//! parent kills it with SIGKILL after a random delay and checks the reopened
//! vault against the acknowledged history. Only the one operation in flight
//! at the kill may have gone either way.
//!
//! Rounds: 20 by default, `SV_CRASH_ROUNDS=500` for a long run.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use shredvault::{ErrorKind, RecordId, SubjectId, Vault};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
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
            let r = v.put(&s, "job_application", data.as_bytes()).unwrap();
            records.push((r, s));
            say(format!("ACK put {r} {s} {data}"));
        } else if choice < 85 && !records.is_empty() {
            let (r, _) = records[rng.below(records.len() as u64) as usize];
            let data = format!("value-{seed}-{n}");
            say(format!("BEGIN update {r} {data}"));
            v.update(&r, data.as_bytes()).unwrap();
            say(format!("ACK update {r} {data}"));
        } else if choice < 95 && !records.is_empty() {
            let (r, _) = records.swap_remove(rng.below(records.len() as u64) as usize);
            say(format!("BEGIN delete {r}"));
            v.delete(&r).unwrap();
            say(format!("ACK delete {r}"));
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
        .unwrap_or(20);
    let base_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let dir = tempfile::tempdir().unwrap();
    // One vault across rounds, so later rounds start from repaired state.
    let mut expect: HashMap<RecordId, (SubjectId, Expect)> = HashMap::new();
    let mut rng = Rng(base_seed | 1);
    for round in 0..rounds {
        let seed = base_seed.wrapping_add(round * 7919);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_writer_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SV_CRASH_WRITER", dir.path())
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
                        _ => {}
                    }
                }
                _ => {}
            }
        }

        let v = Vault::open(dir.path(), &root(), None).unwrap();
        let mut checked = 0;
        for (r, (s, e)) in expect.iter_mut() {
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
            let got = match v.get(r, "recruitment") {
                Ok(rec) => Expect::Value(String::from_utf8(rec.data.to_vec()).unwrap()),
                Err(err) if err.kind() == ErrorKind::Erased => Expect::Erased,
                Err(err) => panic!("round {round}: record {r}: unexpected error {err}"),
            };
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
        // Every key slot in use is referenced: the repair left no orphans,
        // only one slot per live subject and the vault's two own keys
        // (audit, receipts).
        let stats = v.stats().unwrap();
        assert_eq!(
            stats.keystore_slots_live,
            stats.subjects_live + 2,
            "round {round}: {stats:?}"
        );
        drop(v);
        eprintln!(
            "round {round}: {} lines, {checked} records checked, in flight {in_flight:?}",
            lines.len()
        );
    }
}
