//! A throw-away PostgreSQL cluster made from the installed binaries, for
//! tests and `shredvault bench`: `initdb` and `pg_ctl` (as the `postgres`
//! user when run as root: initdb refuses root), listening on a Unix socket
//! in a directory of the caller's only (no TCP), fsync and synchronous
//! commit on. Stopped (immediately) when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A throw-away PostgreSQL cluster.
pub struct Throwaway {
    bin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    as_postgres: bool,
}

impl Throwaway {
    fn command(&self, tool: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        }
    }

    pub fn run(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        output(&format!("{tool} {args:?}"), self.command(tool).args(args))
    }

    /// A client tool (psql, pg_dump, pgbench) pointed at the cluster's
    /// socket as the `postgres` user.
    fn client(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.arg("-h").arg(&self.socket).args(["-U", "postgres"]);
        c
    }

    /// Stops the server at once (no checkpoint).
    fn stop_now(&self) -> Result<String, String> {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
    }

    /// Starts one in `dir`, or says why not.
    pub fn start(dir: &Path) -> Result<Throwaway, String> {
        let bin = pg_bindir().ok_or("no PostgreSQL binaries (initdb, pg_ctl, pgbench) found")?;
        let as_postgres = is_root();
        let base = dir.join("pg");
        std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
        if as_postgres {
            // initdb refuses to run as root: the cluster is postgres's.
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&base)
                .status()
                .map_err(|e| e.to_string())?
                .success();
            let ok = ok
                && Command::new("chmod")
                    .arg("755")
                    .arg(dir)
                    .status()
                    .map_err(|e| e.to_string())?
                    .success();
            if !ok {
                return Err("could not give the cluster's directory to postgres".into());
            }
        }
        let pg = Throwaway {
            bin,
            data: base.join("data"),
            socket: base.clone(),
            as_postgres,
        };
        let data = pg.data.display().to_string();
        pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        pg.pg_start()?;
        Ok(pg)
    }

    pub fn psql(&self, sql: &str) -> Result<String, String> {
        output("psql", self.client("psql").args(["-q", "-c", sql]))
    }

    /// pgbench's transactions per second for `script`.
    pub fn pgbench(&self, script: &Path, clients: usize, secs: u64) -> Result<f64, String> {
        let out = self
            .client("pgbench")
            .arg("-n")
            .args([
                "-c",
                &clients.to_string(),
                "-j",
                &clients.min(2).to_string(),
            ])
            .args(["-T", &secs.to_string(), "-f", &script.display().to_string()])
            .arg("postgres")
            .output()
            .map_err(|e| format!("pgbench: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("tps = ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse::<f64>().ok())
            })
            .ok_or_else(|| {
                format!(
                    "pgbench gave no rate: {} {}",
                    text.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

/// Runs `cmd`; its stdout, or why it failed (`label`: what to call it).
fn output(label: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{label}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn pg_bindir() -> Option<PathBuf> {
    let has = |dir: &Path| {
        ["initdb", "pg_ctl", "pgbench", "psql"]
            .iter()
            .all(|t| dir.join(t).exists())
    };
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&dir) {
            return Some(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has(d))
        .collect();
    found.sort();
    found.pop()
}

impl Throwaway {
    /// A connection string for the cluster's `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// A connection string for database `db`.
    pub fn url_for(&self, db: &str) -> String {
        format!("host={} user=postgres dbname={db}", self.socket.display())
    }

    fn pg_start(&self) -> Result<(), String> {
        let opts = format!(
            "-k {} -c listen_addresses='' -c fsync=on -c synchronous_commit=on -c max_connections=200",
            self.socket.display()
        );
        let data = self.data.display().to_string();
        let log = self.socket.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &opts, "-l", &log, "-w", "start"],
        )?;
        Ok(())
    }

    /// A crash of the server: stopped at once (`pg_ctl stop -m immediate`:
    /// no checkpoint, shared memory and the WAL not yet written are lost,
    /// as in a power cut of PostgreSQL alone), then started again (it
    /// replays its WAL).
    pub fn crash_and_restart(&self) -> Result<(), String> {
        self.stop_now()?;
        self.pg_start()
    }

    /// A copy of this cluster's data directory, taken while it runs (as a
    /// file-level backup or a disk snapshot would be: a checkpoint first,
    /// then the files), into `dir`; later [`start_copy`](Self::start_copy)
    /// starts it as a cluster of its own.
    pub fn copy_data(&self, dir: &Path) -> Result<PathBuf, String> {
        self.psql("CHECKPOINT")?;
        let to = dir.join("pg");
        std::fs::create_dir_all(&to).map_err(|e| e.to_string())?;
        if self.as_postgres {
            // Its socket and log go beside the copy: postgres's directory.
            output(
                "chown",
                Command::new("chown").arg("postgres:postgres").arg(&to),
            )?;
            output("chmod", Command::new("chmod").arg("755").arg(dir))?;
        }
        output(
            "cp",
            Command::new("cp")
                .arg("-a")
                .arg(&self.data)
                .arg(to.join("data")),
        )?;
        Ok(to.join("data"))
    }

    /// Starts the copy [`copy_data`](Self::copy_data) made (its WAL is
    /// replayed, as after a crash); its socket is beside it.
    pub fn start_copy(data: &Path) -> Result<Throwaway, String> {
        let bin = pg_bindir().ok_or("no PostgreSQL binaries found")?;
        let socket = data.parent().ok_or("a data directory has a parent")?;
        let _ = std::fs::remove_file(data.join("postmaster.pid"));
        let pg = Throwaway {
            bin,
            data: data.to_path_buf(),
            socket: socket.to_path_buf(),
            as_postgres: is_root(),
        };
        pg.pg_start()?;
        Ok(pg)
    }

    /// Runs the SQL in `file` with psql (stops at the first error).
    pub fn psql_file(&self, file: &Path) -> Result<String, String> {
        let mut cmd = self.client("psql");
        output(
            "psql",
            cmd.args(["-q", "-v", "ON_ERROR_STOP=1", "-f"]).arg(file),
        )
    }

    /// `pg_dump` of `schema` (plain SQL) into `file`.
    pub fn dump(&self, schema: &str, file: &Path) -> Result<(), String> {
        let mut cmd = self.client("pg_dump");
        output(
            "pg_dump",
            cmd.args(["-n", schema, "-f"]).arg(file).arg("postgres"),
        )?;
        Ok(())
    }

    /// The directory the installed binaries are in (pg_dump, ...).
    pub fn bindir(&self) -> &Path {
        &self.bin
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory of its Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket
    }
}

/// One cluster for a test process, started at the first call in a
/// temporary directory and stopped (and its directory removed) when the
/// process exits. `None`, said on stderr, when the binaries are missing,
/// unless `SV_REQUIRE_POSTGRES` is set (the test script sets it): then a
/// missing or failing PostgreSQL fails the test.
#[doc(hidden)]
pub fn for_tests() -> Option<&'static Throwaway> {
    static PG: std::sync::OnceLock<Option<Throwaway>> = std::sync::OnceLock::new();
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    extern "C" fn stop() {
        if let Some(Some(pg)) = PG.get() {
            let _ = pg.stop_now();
        }
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    PG.get_or_init(|| {
        let required = std::env::var_os("SV_REQUIRE_POSTGRES").is_some();
        if pg_bindir().is_none() && !required {
            eprintln!("PostgreSQL is not installed: the PostgreSQL tests are not run");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("shredvault-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the test cluster");
        let _ = DIR.set(dir.clone());
        // SAFETY: `stop` is a plain function that touches only the statics
        // above; registering it has no other effect.
        unsafe { libc::atexit(stop) };
        match Throwaway::start(&dir) {
            Ok(pg) => Some(pg),
            Err(why) => panic!("a throw-away PostgreSQL did not start: {why}"),
        }
    })
    .as_ref()
}

/// The schema a [`fresh_schema`] connection string names.
#[doc(hidden)]
pub fn schema_of(url: &str) -> &str {
    url.rsplit("search_path=")
        .next()
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or("")
}

/// A fresh schema in the test cluster and a connection string whose
/// `search_path` is that schema: a store of its own.
#[doc(hidden)]
pub fn fresh_schema(pg: &Throwaway, label: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let schema = format!("{label}_{}_{n}", std::process::id());
    pg.psql(&format!("CREATE SCHEMA {schema}"))
        .expect("a schema in the test cluster");
    format!("{} options='-c search_path={schema}'", pg.url())
}
