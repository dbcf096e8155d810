//! `shredvault bench`: the vault side by side with raw sled, in one process
//! and one run, on throw-away directories. Every figure is measured with the
//! audit chain on (it always is).
//!
//! Baselines use sled 0.34.7 with the vault's own configuration (cache,
//! flush interval), the same 1 KiB values and random 16-byte keys (as
//! record ids are): `insert` for puts, `get` for gets, `insert` + `flush`
//! for durable puts.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use shredvault::{
    Durability, Error, ErrorKind, Policy, RecordId, RootKey, SubjectId, Vault, VaultOptions,
};

const VALUE: usize = 1024;
const EMBEDDED_POLICY: &str = include_str!("../../example-policy.toml");

pub struct Options {
    pub records: usize,
    pub json: bool,
    /// The root key of every vault the bench makes (`--root-key`: a key
    /// in a PKCS#11 token); `None`: 32 fixed bytes.
    pub root_key: Option<RootKey>,
}

/// The root key of this run's vaults (see [`Options::root_key`]).
static ROOT: std::sync::OnceLock<RootKey> = std::sync::OnceLock::new();

fn root() -> Result<RootKey, Error> {
    match ROOT.get() {
        Some(k) => Ok(k.clone()),
        None => RootKey::from_bytes(&[0x42; 32]),
    }
}

struct Run {
    bar: ProgressBar,
    dir: tempfile::TempDir,
    n: u32,
}

impl Run {
    fn stage(&self, what: &str) {
        self.bar.set_message(what.to_string());
        self.bar.inc(1);
    }

    fn fresh_dir(&mut self) -> std::path::PathBuf {
        self.n += 1;
        self.dir.path().join(format!("d{}", self.n))
    }
}

fn io(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, e.to_string())
}

fn policy() -> Result<Policy, Error> {
    Policy::parse(EMBEDDED_POLICY, "example-policy.toml (built in)")
}

fn vault(path: &Path, durability: Durability, clock: Option<i64>) -> Result<Vault, Error> {
    let options = VaultOptions {
        durability,
        clock: clock.map(|t| Arc::new(move || t) as shredvault::Clock),
        actor: Some("bench".into()),
        ..Default::default()
    };
    Vault::open_with(path, &root()?, Some(policy()?), options)
}

fn raw_sled(path: &Path) -> Result<sled::Db, Error> {
    sled::Config::new()
        .path(path)
        .cache_capacity(256 * 1024 * 1024)
        .flush_every_ms(Some(1000))
        .open()
        .map_err(io)
}

fn value(i: usize) -> Vec<u8> {
    let mut v = vec![0u8; VALUE];
    let tag = format!("record-{i:010}-");
    for (j, b) in v.iter_mut().enumerate() {
        *b = tag.as_bytes()[j % tag.len()];
    }
    v
}

fn rate(ops: usize, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Copies the tree at `from` to `to`, every file fsynced.
fn copy_synced(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io)?.is_dir() {
            copy_synced(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io)?;
            std::fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
        }
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A cheap deterministic shuffle for read order.
fn shuffled(n: usize) -> Vec<usize> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

pub fn run(opts: Options) -> Result<(), Error> {
    let n = opts.records.max(1000);
    let custody = match &opts.root_key {
        Some(k) if k.is_in_token() => "pkcs11",
        _ => "bytes",
    };
    if let Some(k) = opts.root_key {
        if ROOT.set(k).is_err() {
            return Err(Error::new(ErrorKind::Internal, "the bench ran twice"));
        }
    }
    let stages = 13;
    let bar = if opts.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(stages).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("a valid template"),
        )
    };
    let mut run = Run {
        bar,
        dir: tempfile::tempdir().map_err(io)?,
        n: 0,
    };
    let values: Vec<Vec<u8>> = (0..n).map(value).collect();

    // ---- put and get, batched durability, against sled insert and get.
    run.stage("sled insert");
    let sled_dir = run.fresh_dir();
    let db = raw_sled(&sled_dir)?;
    // Random 16-byte keys, like the vault's record ids: what an application
    // storing records in sled under random ids does.
    let keys: Vec<[u8; 16]> = shuffled(n)
        .into_iter()
        .map(|i| {
            ((i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_be_bytes()
        })
        .collect();
    let start = Instant::now();
    for (k, v) in keys.iter().zip(&values) {
        db.insert(k, v.as_slice()).map_err(io)?;
    }
    let sled_put = rate(n, start.elapsed());
    run.stage("sled get");
    let order = shuffled(n);
    let start = Instant::now();
    for &i in &order {
        std::hint::black_box(db.get(keys[i]).map_err(io)?);
    }
    let sled_get = rate(n, start.elapsed());
    drop(db);

    run.stage("vault put");
    let path = run.fresh_dir();
    let v = vault(&path, Durability::Batched, None)?;
    let subjects: Vec<SubjectId> = (0..1000)
        .map(|_| v.create_subject(&[]))
        .collect::<Result<_, _>>()?;
    v.flush()?;
    let mut ids: Vec<RecordId> = Vec::with_capacity(n);
    let start = Instant::now();
    for (i, data) in values.iter().enumerate() {
        ids.push(v.put(&subjects[i % subjects.len()], "account", data)?);
    }
    let vault_put = rate(n, start.elapsed());
    v.flush()?;
    run.stage("vault get");
    let start = Instant::now();
    for &i in &order {
        std::hint::black_box(v.get(&ids[i], "billing")?);
    }
    let vault_get = rate(n, start.elapsed());

    run.stage("scan");
    let start = Instant::now();
    let mut scanned = 0usize;
    for rec in v.scan("account", "billing")? {
        std::hint::black_box(rec?);
        scanned += 1;
    }
    let scan_rate = rate(scanned, start.elapsed());

    run.stage("find_subject");
    let people: Vec<SubjectId> = (0..2000)
        .map(|i| v.create_subject(&[("email", &format!("person{i}@example.com"))]))
        .collect::<Result<_, _>>()?;
    let lookups = 20_000;
    let start = Instant::now();
    for i in 0..lookups {
        let found = v.find_subject("email", &format!("person{}@example.com", i % people.len()))?;
        std::hint::black_box(found);
    }
    let find_us = start.elapsed().as_secs_f64() * 1e6 / lookups as f64;
    v.close()?;

    // ---- durable puts, against sled insert + flush.
    run.stage("durable puts");
    let durable_n = (n / 25).clamp(200, 2000);
    let sled_dir = run.fresh_dir();
    let db = raw_sled(&sled_dir)?;
    let start = Instant::now();
    for (k, v) in keys.iter().zip(&values).take(durable_n) {
        db.insert(k, v.as_slice()).map_err(io)?;
        db.flush().map_err(io)?;
    }
    let sled_flush = rate(durable_n, start.elapsed());
    // The same with an fsync of sled's file after each flush: the durability
    // the vault gives (sled's flush alone does not reach the drive's cache).
    let db_file = std::fs::File::open(sled_dir.join("db")).map_err(io)?;
    let start = Instant::now();
    for (k, v) in keys.iter().zip(&values).skip(durable_n).take(durable_n) {
        db.insert(k, v.as_slice()).map_err(io)?;
        db.flush().map_err(io)?;
        db_file.sync_data().map_err(io)?;
    }
    let sled_fsync = rate(durable_n, start.elapsed());
    drop(db);
    let path = run.fresh_dir();
    let v = vault(&path, Durability::Immediate, None)?;
    let s = v.create_subject(&[])?;
    let start = Instant::now();
    for data in values.iter().take(durable_n) {
        v.put(&s, "account", data)?;
    }
    let vault_durable = rate(durable_n, start.elapsed());
    // 16 writers at once, each on a subject of its own: their puts share
    // journal writes (group commit) instead of queueing one wait each.
    let writers = 16;
    let owners: Vec<SubjectId> = (0..writers)
        .map(|_| v.create_subject(&[]))
        .collect::<Result<_, _>>()?;
    let each = (durable_n * 2 / writers).max(50);
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = owners
            .iter()
            .enumerate()
            .map(|(w, owner)| {
                let v = &v;
                let values = &values;
                scope.spawn(move || -> Result<(), Error> {
                    for data in values.iter().skip(w * each).cycle().take(each) {
                        v.put(owner, "account", data)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("a bench writer panicked"))
    })?;
    let vault_durable_16 = rate(each * writers, start.elapsed());
    v.close()?;

    // ---- erasure of subjects holding 10, 1,000 and 10,000 records.
    run.stage("erasure");
    let path = run.fresh_dir();
    let v = vault(&path, Durability::Batched, None)?;
    let mut erase_ms = Vec::new();
    for count in [10usize, 1000, 10_000] {
        let mut times = Vec::new();
        let repeats = 3;
        for _ in 0..repeats {
            let s = v.create_subject(&[])?;
            for data in values.iter().cycle().take(count) {
                v.put(&s, "job_application", data)?;
            }
            v.flush()?;
            let start = Instant::now();
            v.erase_subject(&s)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        erase_ms.push((count, times[times.len() / 2]));
    }
    v.close()?;
    let erase_scaling = erase_ms[2].1 / erase_ms[0].1.max(1e-6);

    // ---- expiry of one day of 100,000 records over many subjects.
    run.stage("expiry of one day");
    let day_records = 100_000usize;
    let t0 = 1_767_225_600; // 2026-01-01, the records' collection time
    let path = run.fresh_dir();
    let v = vault(&path, Durability::Batched, Some(t0))?;
    let owners: Vec<SubjectId> = (0..1000)
        .map(|_| v.create_subject(&[]))
        .collect::<Result<_, _>>()?;
    for i in 0..day_records {
        v.put(&owners[i % owners.len()], "usage_log", &values[i % n])?;
    }
    v.flush()?;
    let start = Instant::now();
    // Far past the simulated clock, on purpose: forced.
    let report = v.expire_with(t0 + 400 * 86_400, true)?;
    let expire_ms = start.elapsed().as_secs_f64() * 1e3;
    v.close()?; // waits for the background purge to stop

    // ---- disk bytes per live record after 5 insert/erase cycles.
    run.stage("space after 5 insert/erase cycles");
    let live_n = n.min(100_000);
    let path = run.fresh_dir();
    let v = vault(&path, Durability::Batched, None)?;
    let keep: Vec<SubjectId> = (0..100)
        .map(|_| v.create_subject(&[]))
        .collect::<Result<_, _>>()?;
    for (i, data) in values.iter().cycle().take(live_n).enumerate() {
        v.put(&keep[i % keep.len()], "account", data)?;
    }
    for cycle in 0..5 {
        run.bar.set_message(format!("space: cycle {}/5", cycle + 1));
        let churn: Vec<SubjectId> = (0..100)
            .map(|_| v.create_subject(&[]))
            .collect::<Result<_, _>>()?;
        for (i, data) in values.iter().cycle().take(live_n).enumerate() {
            v.put(&churn[i % churn.len()], "job_application", data)?;
        }
        for s in &churn {
            v.erase_subject(s)?;
        }
        v.purge()?;
        v.flush()?;
    }
    v.close()?;
    let disk_uncompacted = dir_bytes(&path);
    // sled keeps its file's high-water mark and dead values: `compact` (an
    // operator's step, with the vault closed) rewrites only what is live.
    let start = Instant::now();
    Vault::compact(&path, &root()?)?;
    let compact_ms = start.elapsed().as_secs_f64() * 1e3;
    let disk = dir_bytes(&path);
    let per_record = disk as f64 / live_n as f64;
    // Raw sled through the same churn, for comparison: what sled itself
    // keeps on disk after deletes.
    let sled_dir = run.fresh_dir();
    let db = raw_sled(&sled_dir)?;
    for (k, v) in keys.iter().cycle().take(live_n).zip(values.iter().cycle()) {
        db.insert(k, v.as_slice()).map_err(io)?;
    }
    for cycle in 0..5u128 {
        let churn: Vec<[u8; 16]> = (0..live_n as u128)
            .map(|i| {
                (i + ((cycle + 1) << 40))
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                    .to_be_bytes()
            })
            .collect();
        for (k, v) in churn.iter().zip(values.iter().cycle()) {
            db.insert(k, v.as_slice()).map_err(io)?;
        }
        for k in &churn {
            db.remove(k).map_err(io)?;
        }
        db.flush().map_err(io)?;
    }
    drop(db);
    let sled_per_record = dir_bytes(&sled_dir) as f64 / live_n as f64;

    // ---- a cold open: a vault of up to 100,000 subjects (one record each)
    // opened again, and its first get (nothing cached). With a key in a
    // token, the open is where the token is used (its derivations).
    run.stage("cold open");
    let cold_n = n.min(100_000);
    let path = run.fresh_dir();
    let v = vault(&path, Durability::Batched, None)?;
    let mut last = None;
    for (i, data) in values.iter().cycle().take(cold_n).enumerate() {
        if i % 10_000 == 0 {
            run.bar
                .set_message(format!("cold open: subject {i}/{cold_n}"));
        }
        let s = v.create_subject(&[])?;
        last = Some(v.put(&s, "account", data)?);
    }
    v.close()?;
    let start = Instant::now();
    let v = Vault::open_existing(&path, &root()?, VaultOptions::default())?;
    let cold_open_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    if let Some(r) = &last {
        std::hint::black_box(v.get(r, "billing")?);
    }
    let cold_get_us = start.elapsed().as_secs_f64() * 1e6;

    // ---- a backup of that vault while it is open, and its restore, beside
    // its peer: a copy of the vault's files, each fsynced (what a naive
    // backup costs; it could not be restored without bringing erasures
    // back).
    run.stage("backup");
    let backups = run.fresh_dir();
    std::fs::create_dir_all(&backups).map_err(io)?;
    let backup_file = backups.join("bench.svb");
    let start = Instant::now();
    let info = v.backup(&backup_file)?;
    let backup_ms = start.elapsed().as_secs_f64() * 1e3;
    let ledger = backups.join("ledger.jsonl");
    v.export_ledger(&ledger)?;
    v.close()?;
    let copy_to = run.fresh_dir();
    let start = Instant::now();
    copy_synced(&path, &copy_to)?;
    let copy_ms = start.elapsed().as_secs_f64() * 1e3;
    let restored = run.fresh_dir();
    let start = Instant::now();
    Vault::restore(
        &backup_file,
        &restored,
        &root()?,
        &[ledger],
        false,
        VaultOptions::default(),
    )?;
    let restore_ms = start.elapsed().as_secs_f64() * 1e3;
    run.stage("done");
    run.bar.finish_and_clear();

    let mut out = json!({
        "records": n,
        "value_bytes": VALUE,
        "put_vs_sled": vault_put / sled_put,
        "durable_put_16_vs_1": vault_durable_16 / vault_durable,
        "get_vs_sled": vault_get / sled_get,
        "put_durable_vs_sled_flush": vault_durable / sled_flush,
        "erase_scaling": erase_scaling,
        "expire_day_ms": expire_ms,
        "scan_records_per_s": scan_rate,
        "find_subject_us": find_us,
        "disk_bytes_per_record": per_record,
        "custody": custody,
        "cold_open_ms": cold_open_ms,
        "cold_open_subjects": cold_n,
        "raw": {
            "cold_first_get_us": cold_get_us,
            "sled_insert_per_s": sled_put,
            "vault_put_per_s": vault_put,
            "sled_get_per_s": sled_get,
            "vault_get_per_s": vault_get,
            "durable_ops": durable_n,
            "sled_insert_flush_per_s": sled_flush,
            "sled_insert_flush_fsync_per_s": sled_fsync,
            "put_durable_vs_sled_flush_fsync": vault_durable / sled_fsync,
            "vault_put_immediate_per_s": vault_durable,
            "vault_put_immediate_16_writers_per_s": vault_durable_16,
            "erase_ms": erase_ms.iter().map(|(c, ms)| json!({"records": c, "ms": ms})).collect::<Vec<_>>(),
            "expire_day_records": day_records,
            "expire_report": report,
            "scan_records": scanned,
            "space_live_records": live_n,
            "space_disk_bytes": disk,
            "space_disk_bytes_before_compact": disk_uncompacted,
            "disk_bytes_per_record_before_compact": disk_uncompacted as f64 / live_n as f64,
            "compact_ms": compact_ms,
            "sled_disk_bytes_per_record": sled_per_record,
        },
    });
    // (Added apart: one json! of every figure passes the macro's recursion
    // limit.)
    out["backup_ms"] = json!(backup_ms);
    out["backup_vs_file_copy"] = json!(backup_ms / copy_ms);
    out["restore_ms"] = json!(restore_ms);
    out["raw"]["backup_bytes"] = json!(info.bytes);
    out["raw"]["vault_bytes_copied"] = json!(dir_bytes(&copy_to));
    out["raw"]["file_copy_ms"] = json!(copy_ms);
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("JSON serializes")
        );
    } else {
        print_table(&out);
    }
    Ok(())
}

fn print_table(out: &Value) {
    let f = |k: &str| out[k].as_f64().unwrap_or(f64::NAN);
    let r = |k: &str| out["raw"][k].as_f64().unwrap_or(f64::NAN);
    println!(
        "shredvault bench: {} records of {} bytes, audit on, root key: {}",
        out["records"],
        out["value_bytes"],
        out["custody"].as_str().unwrap_or("?")
    );
    println!();
    println!(
        "{:<34} {:>14} {:>14} {:>8}  target",
        "operation", "vault", "sled", "ratio"
    );
    let row = |name: &str, v: f64, s: f64, ratio: f64, target: &str| {
        println!("{name:<34} {v:>12.0}/s {s:>12.0}/s {ratio:>8.2}  {target}");
    };
    row(
        "put (batched)",
        r("vault_put_per_s"),
        r("sled_insert_per_s"),
        f("put_vs_sled"),
        ">= 0.6",
    );
    row(
        "get",
        r("vault_get_per_s"),
        r("sled_get_per_s"),
        f("get_vs_sled"),
        ">= 0.4",
    );
    row(
        "put (immediate) / insert+flush",
        r("vault_put_immediate_per_s"),
        r("sled_insert_flush_per_s"),
        f("put_durable_vs_sled_flush"),
        ">= 0.8",
    );
    row(
        "put (immediate) / +fsync too",
        r("vault_put_immediate_per_s"),
        r("sled_insert_flush_fsync_per_s"),
        r("put_durable_vs_sled_flush_fsync"),
        "(same durability)",
    );
    row(
        "put (immediate), 16 writers / 1",
        r("vault_put_immediate_16_writers_per_s"),
        r("vault_put_immediate_per_s"),
        f("durable_put_16_vs_1"),
        ">= 4 (group commit)",
    );
    println!();
    for e in out["raw"]["erase_ms"].as_array().into_iter().flatten() {
        println!(
            "erase a subject of {:>6} records   {:>10.2} ms",
            e["records"],
            e["ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "erase_scaling (10,000 / 10)         {:>10.2}     target <= 2",
        f("erase_scaling")
    );
    println!(
        "expire one day of {} records   {:>10.2} ms  target <= 100",
        out["raw"]["expire_day_records"],
        f("expire_day_ms")
    );
    println!(
        "scan                                {:>10.0} records/s",
        f("scan_records_per_s")
    );
    println!(
        "find_subject                        {:>10.2} us",
        f("find_subject_us")
    );
    println!(
        "disk bytes per live record          {:>10.0}     target <= 2560 (after 5 cycles of {} inserts + erasure, then `compact`)",
        f("disk_bytes_per_record"),
        out["raw"]["space_live_records"]
    );
    println!(
        "  before `compact`                   {:>10.0}     (compact took {:.0} ms)",
        r("disk_bytes_per_record_before_compact"),
        r("compact_ms")
    );
    println!(
        "  raw sled, same churn               {:>10.0}",
        r("sled_disk_bytes_per_record")
    );
    println!(
        "cold open, {} subjects ({} root key) {:>8.0} ms  (first get {:.0} us)",
        out["cold_open_subjects"],
        out["custody"].as_str().unwrap_or("?"),
        f("cold_open_ms"),
        r("cold_first_get_us")
    );
    println!(
        "backup of that vault, open           {:>8.0} ms  ({:.2} x a copy of its files, fsynced: {:.0} ms); restore {:.0} ms",
        f("backup_ms"),
        f("backup_vs_file_copy"),
        r("file_copy_ms"),
        f("restore_ms")
    );
}
