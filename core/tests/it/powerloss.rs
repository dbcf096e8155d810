//! Power loss: what a power cut can leave on disk, not what `kill -9`
//! leaves (the page cache survives a kill, so `crash.rs` cannot see a write
//! that was never fsynced).
//!
//! A writer child runs with `powerloss/shim.c` preloaded, which logs every
//! open, write, truncation, fsync (begin and end), rename, unlink and mkdir
//! under the vault's directory, and the child logs each operation it
//! begins and each one acknowledged; after a random number of operations it
//! stops dead between two calls (as a kill would, but with the log exact).
//! The harness first checks that the log, replayed in full, gives exactly
//! the files on disk (the shim saw every write). From that log it rebuilds,
//! at many points of the run, a state a power cut could have left: every
//! write an fsync covered (a directory entry: an fsync of its directory),
//! plus a random subset of the rest (some torn at a sector). Each such
//! state must open, and then: every acknowledged put reads back its value,
//! every acknowledged erasure and deletion reads `Erased`, every subject
//! acknowledged and not erased is found by its identifier (no live subject
//! destroyed), and the audit chain verifies. The next round's writer starts
//! from one of those states, so recovery itself runs under the shim.
//!
//! Short by default (the test script); `SV_POWERLOSS_ROUNDS=200` for a long
//! run, `SV_POWERLOSS_SEED` to repeat one.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use shredvault::{ErrorKind, RecordId, SubjectId, Vault};

// ---- the log ------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Rec {
    Open {
        fd: u32,
        created: bool,
        truncated: bool,
        dsync: bool,
        dir: bool,
        path: String,
    },
    Close(u32),
    Write {
        fd: u32,
        off: u64,
        data: Vec<u8>,
    },
    Truncate {
        fd: u32,
        len: u64,
    },
    SyncBegin {
        fd: u32,
        id: u64,
    },
    SyncEnd {
        id: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink(String),
    Mkdir(String),
    /// The writer's own line: `ready`, `B op...` (begun), `K op...` (acknowledged).
    Note(String),
}

/// The records, and whether the last one was cut short (never, as the
/// writer stops between two calls: checked).
fn parse(bytes: &[u8]) -> (Vec<Rec>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    while at + 5 <= bytes.len() {
        let kind = bytes[at];
        let len = u32_at(bytes, at + 1) as usize;
        if at + 5 + len > bytes.len() {
            return (out, true);
        }
        let p = &bytes[at + 5..at + 5 + len];
        at += 5 + len;
        out.push(match kind {
            b'O' => Rec::Open {
                fd: u32_at(p, 0),
                created: p[4] != 0,
                truncated: p[5] != 0,
                dsync: p[6] != 0,
                dir: p[7] != 0,
                path: text(&p[8..]),
            },
            b'X' => Rec::Close(u32_at(p, 0)),
            b'W' => Rec::Write {
                fd: u32_at(p, 0),
                off: u64_at(p, 4),
                data: p[12..].to_vec(),
            },
            b'T' => Rec::Truncate {
                fd: u32_at(p, 0),
                len: u64_at(p, 4),
            },
            b'S' => Rec::SyncBegin {
                fd: u32_at(p, 0),
                id: u64_at(p, 4),
            },
            b'E' => Rec::SyncEnd { id: u64_at(p, 4) },
            b'R' => {
                let nul = p.iter().position(|&b| b == 0).unwrap();
                Rec::Rename {
                    from: text(&p[..nul]),
                    to: text(&p[nul + 1..]),
                }
            }
            b'U' => Rec::Unlink(text(p)),
            b'M' => Rec::Mkdir(text(p)),
            b'A' => Rec::Note(text(p)),
            k => panic!("unknown record kind {k}"),
        });
    }
    (out, at != bytes.len())
}

// ---- the timeline: the log resolved to files and directories ------------------

#[derive(Clone, Debug)]
enum DataOp {
    Write { off: u64, data: Vec<u8> },
    Truncate(u64),
}

#[derive(Clone, Debug)]
enum MetaOp {
    /// A new file at a path (object id).
    Create(String, usize),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
}

#[derive(Debug)]
struct Sync {
    begin: usize,
    end: Option<usize>,
    /// A file (object id) or a directory (path).
    target: Result<usize, String>,
}

/// A file's content at the round's start, and its operations with their
/// log index (and whether the write was `O_DSYNC`).
type Object = (Vec<u8>, Vec<(usize, DataOp, bool)>);

#[derive(Default)]
struct Timeline {
    objects: Vec<Object>,
    meta: Vec<(usize, MetaOp)>,
    syncs: Vec<Sync>,
    notes: Vec<(usize, String)>,
    /// The round's starting files (path to object) and directories.
    base_files: BTreeMap<String, usize>,
    base_dirs: BTreeSet<String>,
    /// The run's directory (always there).
    root: String,
}

fn parent(path: &str) -> String {
    Path::new(path).parent().unwrap().display().to_string()
}

impl Timeline {
    fn build(root: &str, base: &Snapshot, recs: &[Rec]) -> Timeline {
        let mut t = Timeline {
            base_dirs: base.dirs.clone(),
            root: root.to_string(),
            ..Default::default()
        };
        // The namespace with everything applied, to resolve opens.
        let mut names: HashMap<String, usize> = HashMap::new();
        for (path, content) in &base.files {
            t.objects.push((content.clone(), Vec::new()));
            names.insert(path.clone(), t.objects.len() - 1);
            t.base_files.insert(path.clone(), t.objects.len() - 1);
        }
        let mut fds: HashMap<u32, (Result<usize, String>, bool)> = HashMap::new();
        let mut begun: HashMap<u64, usize> = HashMap::new();
        for (i, rec) in recs.iter().enumerate() {
            match rec {
                Rec::Open {
                    fd,
                    created,
                    truncated,
                    dsync,
                    dir,
                    path,
                } => {
                    if *dir {
                        fds.insert(*fd, (Err(path.clone()), false));
                        continue;
                    }
                    let obj = match names.get(path) {
                        Some(&o) if !created => o,
                        _ => {
                            t.objects.push((Vec::new(), Vec::new()));
                            let o = t.objects.len() - 1;
                            names.insert(path.clone(), o);
                            t.meta.push((i, MetaOp::Create(path.clone(), o)));
                            o
                        }
                    };
                    if *truncated {
                        t.objects[obj].1.push((i, DataOp::Truncate(0), false));
                    }
                    fds.insert(*fd, (Ok(obj), *dsync));
                }
                Rec::Close(fd) => {
                    fds.remove(fd);
                }
                Rec::Write { fd, off, data } => {
                    let (Ok(obj), dsync) = fds[fd].clone() else {
                        panic!("a write to a directory")
                    };
                    t.objects[obj].1.push((
                        i,
                        DataOp::Write {
                            off: *off,
                            data: data.clone(),
                        },
                        dsync,
                    ));
                }
                Rec::Truncate { fd, len } => {
                    let (Ok(obj), _) = fds[fd].clone() else {
                        panic!("a truncation of a directory")
                    };
                    t.objects[obj].1.push((i, DataOp::Truncate(*len), false));
                }
                Rec::SyncBegin { fd, id } => {
                    begun.insert(*id, t.syncs.len());
                    t.syncs.push(Sync {
                        begin: i,
                        end: None,
                        target: fds[fd].0.clone(),
                    });
                }
                Rec::SyncEnd { id } => {
                    t.syncs[begun[id]].end = Some(i);
                }
                Rec::Rename { from, to } => {
                    if let Some(o) = names.remove(from) {
                        names.insert(to.clone(), o);
                    }
                    t.meta.push((i, MetaOp::Rename(from.clone(), to.clone())));
                }
                Rec::Unlink(path) => {
                    names.remove(path);
                    t.meta.push((i, MetaOp::Unlink(path.clone())));
                }
                Rec::Mkdir(path) => t.meta.push((i, MetaOp::Mkdir(path.clone()))),
                Rec::Note(text) => t.notes.push((i, text.clone())),
            }
        }
        t
    }

    /// A state a power cut right before log record `p` could leave:
    /// everything an fsync that returned covered, and each other operation
    /// by `keep` (all of them: the state with nothing lost).
    fn crash_state(&self, p: usize, rng: &mut Rng, keep_all: bool) -> Snapshot {
        let keep = |rng: &mut Rng| keep_all || rng.below(2) == 0;
        // Files: each write an fsync of its file covered, or O_DSYNC.
        let mut covered = vec![0usize; self.objects.len()];
        let mut dirs_covered: HashMap<String, usize> = HashMap::new();
        for s in &self.syncs {
            if s.end.is_some_and(|e| e < p) {
                match &s.target {
                    Ok(o) => covered[*o] = covered[*o].max(s.begin),
                    Err(d) => {
                        let c = dirs_covered.entry(d.clone()).or_default();
                        *c = (*c).max(s.begin);
                    }
                }
            }
        }
        let mut contents = Vec::with_capacity(self.objects.len());
        for (o, (base, ops)) in self.objects.iter().enumerate() {
            let mut content = base.clone();
            for (i, op, dsync) in ops {
                if *i >= p {
                    break;
                }
                let durable = *i < covered[o] || *dsync;
                let mut op = op.clone();
                if !durable {
                    if !keep(rng) {
                        continue;
                    }
                    // Sometimes torn: a prefix of whole 512-byte sectors.
                    if let DataOp::Write { data, .. } = &mut op {
                        if !keep_all && data.len() > 512 && rng.below(4) == 0 {
                            let sectors = rng.below((data.len() / 512) as u64) as usize;
                            data.truncate(sectors * 512);
                        }
                    }
                }
                match op {
                    DataOp::Write { off, data } => {
                        let end = off as usize + data.len();
                        if content.len() < end {
                            content.resize(end, 0);
                        }
                        content[off as usize..end].copy_from_slice(&data);
                    }
                    DataOp::Truncate(len) => content.resize(len as usize, 0),
                }
            }
            contents.push(content);
        }
        // Directory entries: durable once their directory was fsynced
        // after them; of the rest, a random prefix happened.
        let first_loose = self
            .meta
            .iter()
            .filter(|(i, _)| *i < p)
            .find(|(i, op)| !self.meta_durable(*i, op, &dirs_covered))
            .map(|(i, _)| *i)
            .unwrap_or(p);
        let cutoff = if keep_all {
            p
        } else {
            first_loose + rng.below((p - first_loose) as u64 + 1) as usize
        };
        let mut files = self.base_files.clone();
        let mut dirs = self.base_dirs.clone();
        for (i, op) in &self.meta {
            if *i >= p {
                break;
            }
            if *i >= cutoff && !self.meta_durable(*i, op, &dirs_covered) {
                continue;
            }
            match op {
                MetaOp::Create(path, o) => {
                    files.insert(path.clone(), *o);
                }
                MetaOp::Rename(from, to) => {
                    if let Some(o) = files.remove(from) {
                        files.insert(to.clone(), o);
                    }
                }
                MetaOp::Unlink(path) => {
                    files.remove(path);
                    dirs.remove(path);
                }
                MetaOp::Mkdir(path) => {
                    dirs.insert(path.clone());
                }
            }
        }
        // What a lost directory entry took with it is gone too.
        let reachable = |p: &str| {
            let mut d = parent(p);
            while d.len() > self.root.len() {
                if !dirs.contains(&d) {
                    return false;
                }
                d = parent(&d);
            }
            true
        };
        let dirs_kept: BTreeSet<String> = dirs.iter().filter(|d| reachable(d)).cloned().collect();
        Snapshot {
            files: files
                .into_iter()
                .filter(|(path, _)| reachable(path))
                .map(|(path, o)| (path, contents[o].clone()))
                .collect(),
            dirs: dirs_kept,
        }
    }

    fn meta_durable(&self, i: usize, op: &MetaOp, covered: &HashMap<String, usize>) -> bool {
        let synced_after = |path: &str| covered.get(&parent(path)).is_some_and(|&c| c > i);
        match op {
            MetaOp::Create(path, _) | MetaOp::Unlink(path) | MetaOp::Mkdir(path) => {
                synced_after(path)
            }
            MetaOp::Rename(from, to) => synced_after(from) && synced_after(to),
        }
    }
}

/// Files and directories under the run's directory, by absolute path.
#[derive(Clone, Default, PartialEq, Eq)]
struct Snapshot {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Snapshot {
    /// Writes the state under `root` (the paths are under `from`): a file
    /// whose directory did not survive is gone with it.
    fn write(&self, from: &str, root: &Path) {
        let map = |p: &str| root.join(p.strip_prefix(from).unwrap().trim_start_matches('/'));
        let live_dir = |p: &str| {
            let mut d = parent(p);
            while d.len() > from.len() {
                if !self.dirs.contains(&d) {
                    return false;
                }
                d = parent(&d);
            }
            true
        };
        for d in &self.dirs {
            if live_dir(d) {
                std::fs::create_dir_all(map(d)).unwrap();
            }
        }
        for (p, content) in &self.files {
            if live_dir(p) {
                std::fs::write(map(p), content).unwrap();
            }
        }
    }

    fn read(root: &Path) -> Snapshot {
        let mut s = Snapshot::default();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let p = entry.unwrap().path();
                let name = p.display().to_string();
                if p.is_dir() {
                    s.dirs.insert(name);
                    stack.push(p);
                } else {
                    s.files.insert(name, std::fs::read(&p).unwrap());
                }
            }
        }
        s
    }
}

// ---- the writer ------------------------------------------------------------------

/// A value's bytes from its seed and length.
fn value(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
}

fn note(log: &mut std::fs::File, text: &str) {
    let mut rec = vec![b'A'];
    rec.extend_from_slice(&(text.len() as u32).to_le_bytes());
    rec.extend_from_slice(text.as_bytes());
    log.write_all(&rec).unwrap();
}

/// Ends the process at once between two logged calls (see the shim).
fn stop_dead() -> ! {
    // SAFETY: the symbol is the shim's `void sv_pl_stop(void)`, which never
    // returns; it is looked up, and called only if found.
    unsafe {
        let sym = libc::dlsym(libc::RTLD_DEFAULT, c"sv_pl_stop".as_ptr());
        assert!(!sym.is_null(), "the power-loss shim is preloaded");
        let stop: extern "C" fn() -> ! = std::mem::transmute(sym);
        stop()
    }
}

fn writer(vault: &Path, log: &Path, seed: u64) {
    let mut log = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    let policy = if vault.join("keys").exists() {
        None
    } else {
        Some(example_policy())
    };
    let v = Vault::open(vault, &root(), policy).unwrap();
    note(&mut log, "ready");
    let mut rng = Rng(seed | 1);
    let mut subjects: Vec<SubjectId> = Vec::new();
    let mut records: Vec<RecordId> = Vec::new();
    let ops = 40 + rng.below(260);
    for n in 0..ops {
        let choice = if subjects.is_empty() {
            0
        } else {
            rng.below(100)
        };
        if choice < 15 {
            let email = format!("p{seed}-{n}@example.com");
            note(&mut log, &format!("B create {email}"));
            let s = v.create_subject(&[("email", &email)]).unwrap();
            note(&mut log, &format!("K create {s} {email}"));
            subjects.push(s);
        } else if choice < 65 {
            let s = subjects[rng.below(subjects.len() as u64) as usize];
            let len = if rng.below(12) == 0 {
                200_000
            } else {
                20 + rng.below(300) as usize
            };
            let vs = rng.next();
            note(&mut log, &format!("B put {s} {vs} {len}"));
            match v.put(&s, "usage_log", &value(vs, len)) {
                Ok(r) => {
                    note(&mut log, &format!("K put {r} {s} {vs} {len}"));
                    records.push(r);
                }
                Err(e) if e.kind() == ErrorKind::Erased => {}
                Err(e) => panic!("put: {e}"),
            }
        } else if choice < 80 && !records.is_empty() {
            let r = records[rng.below(records.len() as u64) as usize];
            let len = 20 + rng.below(300) as usize;
            let vs = rng.next();
            note(&mut log, &format!("B update {r} {vs} {len}"));
            match v.update(&r, &value(vs, len)) {
                Ok(()) => note(&mut log, &format!("K update {r} {vs} {len}")),
                Err(e) if e.kind() == ErrorKind::Erased => {}
                Err(e) => panic!("update: {e}"),
            }
        } else if choice >= 97 {
            // The blind index's key replaced: every live subject must
            // still be found by its identifier.
            note(&mut log, "B index");
            v.rotate_blind_index().unwrap();
            note(&mut log, "K index");
        } else if choice < 90 && !records.is_empty() {
            let r = records[rng.below(records.len() as u64) as usize];
            note(&mut log, &format!("B delete {r}"));
            match v.delete(&r) {
                Ok(()) => note(&mut log, &format!("K delete {r}")),
                Err(e) if e.kind() == ErrorKind::Erased => {}
                Err(e) => panic!("delete: {e}"),
            }
        } else {
            let s = subjects[rng.below(subjects.len() as u64) as usize];
            note(&mut log, &format!("B erase {s}"));
            match v.erase_subject(&s) {
                Ok(_) => note(&mut log, &format!("K erase {s}")),
                Err(e) if e.kind() == ErrorKind::Erased => {}
                Err(e) => panic!("erase: {e}"),
            }
        }
    }
    // Background work (the purge, sled's flusher) may be mid-way: the
    // process stops as a kill would stop it.
    stop_dead()
}

#[test]
fn powerloss_writer_entry() {
    // Only does something when run as the writer child.
    if let (Ok(vault), Ok(log), Ok(seed)) = (
        std::env::var("SV_PL_VAULT"),
        std::env::var("SV_PL_LOG"),
        std::env::var("SV_PL_SEED"),
    ) {
        writer(Path::new(&vault), Path::new(&log), seed.parse().unwrap());
    }
}

// ---- what must hold -----------------------------------------------------------

/// What the acknowledged operations say a record reads as: any of these.
type Allowed = Vec<Option<Vec<u8>>>; // None: Erased

#[derive(Clone, Default)]
struct Model {
    /// Subjects with their identifier; `Some(true)`: erased, `None`: an
    /// erasure was under way at a crash, either way.
    subjects: BTreeMap<SubjectId, (String, Option<bool>)>,
    records: BTreeMap<RecordId, (SubjectId, Allowed)>,
}

impl Model {
    /// The model after the notes up to log record `p`.
    fn at(&self, notes: &[(usize, String)], p: usize) -> Model {
        let mut m = self.clone();
        let mut in_flight: Option<Vec<String>> = None;
        for (i, text) in notes {
            if *i >= p {
                break;
            }
            let words: Vec<String> = text.split(' ').map(String::from).collect();
            match words[0].as_str() {
                "B" => in_flight = Some(words[1..].to_vec()),
                "K" => {
                    in_flight = None;
                    m.apply(&words[1..]);
                }
                _ => {}
            }
        }
        if let Some(w) = in_flight {
            m.apply_maybe(&w);
        }
        m
    }

    fn apply(&mut self, w: &[String]) {
        match w[0].as_str() {
            "index" => {}
            "create" => {
                self.subjects
                    .insert(w[1].parse().unwrap(), (w[2].clone(), Some(false)));
            }
            "put" => {
                let v = value(w[3].parse().unwrap(), w[4].parse().unwrap());
                self.records.insert(
                    w[1].parse().unwrap(),
                    (w[2].parse().unwrap(), vec![Some(v)]),
                );
            }
            "update" => {
                let v = value(w[2].parse().unwrap(), w[3].parse().unwrap());
                self.records.get_mut(&w[1].parse().unwrap()).unwrap().1 = vec![Some(v)];
            }
            "delete" => self.records.get_mut(&w[1].parse().unwrap()).unwrap().1 = vec![None],
            "erase" => {
                let s: SubjectId = w[1].parse().unwrap();
                self.subjects.get_mut(&s).unwrap().1 = Some(true);
                for (_, (owner, allowed)) in self.records.iter_mut() {
                    if *owner == s {
                        *allowed = vec![None];
                    }
                }
            }
            other => panic!("unknown operation {other}"),
        }
    }

    /// An operation under way at the crash: done or not.
    fn apply_maybe(&mut self, w: &[String]) {
        match w[0].as_str() {
            "create" | "put" | "index" => {} // nothing known changes
            "update" => {
                let v = value(w[2].parse().unwrap(), w[3].parse().unwrap());
                if let Some((_, allowed)) = self.records.get_mut(&w[1].parse().unwrap()) {
                    allowed.push(Some(v));
                }
            }
            "delete" => {
                if let Some((_, allowed)) = self.records.get_mut(&w[1].parse().unwrap()) {
                    allowed.push(None);
                }
            }
            "erase" => {
                let s: SubjectId = w[1].parse().unwrap();
                if let Some(subject) = self.subjects.get_mut(&s) {
                    if subject.1 == Some(false) {
                        subject.1 = None;
                    }
                }
                for (_, (owner, allowed)) in self.records.iter_mut() {
                    if *owner == s && !allowed.contains(&None) {
                        allowed.push(None);
                    }
                }
            }
            other => panic!("unknown operation {other}"),
        }
    }

    /// After a state was checked, what it showed settles what was either.
    fn settle(&mut self, v: &Vault) {
        for (r, (_, allowed)) in self.records.iter_mut() {
            if allowed.len() > 1 {
                *allowed = vec![read(v, r)];
            }
        }
        for (_, (email, erased)) in self.subjects.iter_mut() {
            if erased.is_none() {
                *erased = Some(v.find_subject("email", email).unwrap().is_none());
            }
        }
    }

    fn check(&self, v: &Vault, what: &str) {
        for (r, (_, allowed)) in &self.records {
            let got = try_read(v, r).unwrap_or_else(|e| panic!("{what}: record {r}: {e}"));
            assert!(
                allowed.contains(&got),
                "{what}: record {r} reads {}, allowed {}",
                show(&got),
                allowed.iter().map(show).collect::<Vec<_>>().join(" or ")
            );
        }
        for (s, (email, erased)) in &self.subjects {
            let found = v.find_subject("email", email).unwrap();
            match erased {
                Some(false) => assert_eq!(found, Some(*s), "{what}: live subject {s} lost"),
                Some(true) => assert_eq!(found, None, "{what}: erased subject {s} found"),
                None => assert!(found.is_none() || found == Some(*s), "{what}"),
            }
        }
        v.verify_audit()
            .unwrap_or_else(|e| panic!("{what}: the audit chain: {e}"));
    }
}

fn try_read(v: &Vault, r: &RecordId) -> Result<Option<Vec<u8>>, shredvault::Error> {
    match v.get(r, "security") {
        Ok(rec) => Ok(Some(rec.data.to_vec())),
        Err(e) if e.kind() == ErrorKind::Erased => Ok(None),
        Err(e) => Err(e),
    }
}

fn read(v: &Vault, r: &RecordId) -> Option<Vec<u8>> {
    try_read(v, r).unwrap_or_else(|e| panic!("record {r}: {e}"))
}

fn show(v: &Option<Vec<u8>>) -> String {
    match v {
        Some(b) => format!(
            "{} bytes {:?}..",
            b.len(),
            String::from_utf8_lossy(&b[..b.len().min(8)])
        ),
        None => "Erased".into(),
    }
}

// ---- the harness ----------------------------------------------------------------

fn shim(out: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/powerloss/shim.c");
    let lib = out.join("libsvpl.so");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .arg("-lpthread")
        .status()
        .expect("a C compiler (cc) builds the power-loss shim");
    assert!(status.success(), "the shim compiles");
    lib
}

#[test]
fn power_cuts_lose_nothing_acknowledged() {
    let rounds: u64 = std::env::var("SV_POWERLOSS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("SV_POWERLOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("power-loss harness seed {seed} (SV_POWERLOSS_SEED to repeat)");
    let work = tempfile::tempdir().unwrap();
    let lib = shim(work.path());
    // The run's directory, whose vault the writer uses (canonical, as the
    // shim compares path prefixes).
    let run = work.path().join("run").canonicalize().unwrap_or_else(|_| {
        std::fs::create_dir(work.path().join("run")).unwrap();
        work.path().join("run").canonicalize().unwrap()
    });
    let from = run.display().to_string();
    let vault = run.join("v");
    let mut rng = Rng(seed | 1);
    let mut base = Snapshot::default();
    let mut model = Model::default();
    let mut states = 0;
    for round in 0..rounds {
        // The round starts from `base`.
        std::fs::remove_dir_all(&run).unwrap();
        std::fs::create_dir(&run).unwrap();
        base.write(&from, &run);
        let log = work.path().join(format!("log-{round}"));
        std::fs::write(&log, b"").unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "powerloss::powerloss_writer_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LD_PRELOAD", &lib)
            .env("SV_PL_DIR", &run)
            .env("SV_PL_LOG", &log)
            .env("SV_PL_VAULT", &vault)
            .env(
                "SV_PL_SEED",
                (seed ^ round.wrapping_mul(0x9e37_79b9)).to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "round {round}: the writer hangs"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("round {round}: the writer failed ({status}): {err}");
        }
        let (recs, cut_short) = parse(&std::fs::read(&log).unwrap());
        assert!(!cut_short, "round {round}: the log ends in a whole record");
        let timeline = Timeline::build(&from, &base, &recs);
        // The shim saw every write: with nothing lost, the rebuilt state
        // is what is on disk now.
        let all = timeline.crash_state(recs.len(), &mut rng, true);
        let actual = Snapshot::read(&run);
        if all != actual {
            if let Ok(keep) = std::env::var("SV_POWERLOSS_KEEP") {
                let keep = Path::new(&keep);
                base.write(&from, &keep.join("base"));
                std::fs::copy(&log, keep.join("log")).unwrap();
            }
        }
        for (path, content) in &actual.files {
            assert_eq!(
                all.files.get(path).map(Vec::len),
                Some(content.len()),
                "round {round}: {path} rebuilt from the log"
            );
            let first = all.files[path]
                .iter()
                .zip(content)
                .position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "round {round}: {path} differs from the log at byte {first:?} of {}",
                content.len()
            );
        }
        assert_eq!(
            all.files.keys().collect::<Vec<_>>(),
            actual.files.keys().collect::<Vec<_>>(),
            "round {round}: the same files"
        );
        // Power cuts at random points of the round, and at its end.
        let mut points: Vec<usize> = (0..5)
            .map(|_| rng.below(recs.len() as u64 + 1) as usize)
            .collect();
        points.push(recs.len());
        let ready = timeline
            .notes
            .iter()
            .find(|(_, t)| t == "ready")
            .map(|(i, _)| *i)
            .unwrap_or(recs.len());
        let mut next_base = None;
        for &p in &points {
            if round == 0 && p <= ready {
                continue; // the vault was still being made
            }
            let state = timeline.crash_state(p, &mut rng, false);
            let expect = model.at(&timeline.notes, p);
            let dir = tempfile::tempdir().unwrap();
            state.write(&from, dir.path());
            let what = format!(
                "round {round}, power cut at log record {p} of {}",
                recs.len()
            );
            let opened =
                std::panic::catch_unwind(|| Vault::open(dir.path().join("v"), &root(), None))
                    .unwrap_or_else(|_| {
                        Err(shredvault::Error::new(
                            ErrorKind::Internal,
                            "a panic while opening",
                        ))
                    });
            let v = match opened {
                Ok(v) => v,
                Err(e) => {
                    if let Ok(keep) = std::env::var("SV_POWERLOSS_KEEP") {
                        // For a post-mortem: the state, and the round's log.
                        let keep = Path::new(&keep);
                        state.write(&from, &keep.join("state"));
                        std::fs::copy(&log, keep.join("log")).unwrap();
                        std::fs::write(keep.join("point"), p.to_string()).unwrap();
                    }
                    panic!("{what}: the vault does not open: {e}")
                }
            };
            let checked =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expect.check(&v, &what)));
            if let Err(panic) = checked {
                if let Ok(keep) = std::env::var("SV_POWERLOSS_KEEP") {
                    let keep = Path::new(&keep);
                    state.write(&from, &keep.join("state"));
                    std::fs::copy(&log, keep.join("log")).unwrap();
                    std::fs::write(keep.join("point"), p.to_string()).unwrap();
                }
                std::panic::resume_unwind(panic);
            }
            states += 1;
            if p == recs.len() {
                let mut settled = expect.clone();
                settled.settle(&v);
                next_base = Some((state, settled));
            }
        }
        let (state, settled) = next_base.expect("the round's end was checked");
        base = state;
        model = settled;
        eprintln!(
            "round {round}: {} log records, {} states checked so far, {} records, {} subjects",
            recs.len(),
            states,
            model.records.len(),
            model.subjects.len()
        );
    }
    assert!(states >= rounds as usize, "every round checked some states");
}
