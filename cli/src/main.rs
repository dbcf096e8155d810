//! `shredvault`: the operator's command line over a vault directory.
//!
//! Ids and JSON go to stdout, messages to stderr; the exit status is 0 on
//! success and non-zero with a one-line reason otherwise. The root key comes
//! from `--key-file` or `SHREDVAULT_ROOT_KEY`, never from an argument; and
//! personal data (record data, identifiers, reasons) can come from a file
//! or stdin instead of an argument, which other local users see in `ps`.

mod bench;
mod bench_server;
mod demo;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::{CommandFactory, Parser, Subcommand};
use shredvault::retention::parse_time;
use shredvault::{Error, ErrorKind, Policy, RecordId, RequestId, RootKey, SubjectId, Vault};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "shredvault",
    version,
    about = "Embedded privacy vault: personal data erased by destroying keys"
)]
struct Cli {
    /// File holding the root key: 32 raw bytes or 64 hex characters.
    /// Otherwise --root-key, or the SHREDVAULT_ROOT_KEY environment
    /// variable (64 hex characters or a pkcs11: URI).
    #[arg(long, global = true, value_name = "F", conflicts_with = "root_key")]
    key_file: Option<PathBuf>,
    /// The root key as an object in a PKCS#11 token (an HSM), named by an
    /// RFC 7512 URI: pkcs11:token=T;object=LABEL?module-path=/path/to/module.so&pin-source=file:/path/to/pin
    #[arg(long, global = true, value_name = "URI")]
    root_key: Option<String>,
    /// A label for the audit log (a service or role, never a person's name):
    /// letters, digits and _.:-
    #[arg(long, global = true, value_name = "NAME", default_value = "cli")]
    actor: String,
    /// Open the vault as privileged: reads for legal_claims (and any purpose
    /// the policy marks privileged), and the identifiers and state of
    /// restricted subjects.
    #[arg(long, global = true)]
    privileged: bool,
    /// Send the command to a server (`shredvault serve`) instead of opening
    /// a directory: unix:///abs/path.sock. The command then takes no VAULT.
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// With --url: a file holding the bearer token (else the connection's
    /// user proves who it is, on a Unix socket).
    #[arg(long, global = true, value_name = "F")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The global options that take a value (to find the command word).
const VALUED_GLOBALS: &[&str] = &["--key-file", "--actor", "--url", "--token-file"];

/// With `--url`, a command takes no VAULT: a placeholder is put where the
/// VAULT argument goes (after the command's words), so the commands parse
/// as they do locally. A command run through a server never reads it.
fn with_vault_placeholder(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let has_url = args
        .iter()
        .any(|a| a == "--url" || a.to_string_lossy().starts_with("--url="));
    if !has_url {
        return args;
    }
    let mut command = Cli::command();
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut iter = args.into_iter();
    out.extend(iter.next()); // the program
    let mut skip_value = false;
    let mut inserted = false;
    for arg in iter.by_ref() {
        let text = arg.to_string_lossy().to_string();
        out.push(arg);
        if inserted {
            continue;
        }
        if skip_value {
            skip_value = false;
            continue;
        }
        if text.starts_with('-') {
            skip_value = VALUED_GLOBALS.contains(&text.as_str());
            continue;
        }
        match command.find_subcommand(&text).cloned() {
            Some(sub) if sub.has_subcommands() => command = sub,
            Some(sub) => {
                if sub.get_arguments().any(|a| a.get_id() == "vault") {
                    out.push(std::ffi::OsString::from("(served)"));
                }
                inserted = true;
            }
            None => inserted = true,
        }
    }
    out.extend(iter);
    out
}

#[derive(Subcommand)]
enum Command {
    /// Create a vault with a policy.
    Init {
        vault: PathBuf,
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Generate the --root-key object in its token first (AES-256,
        /// sensitive, not extractable).
        #[arg(long, requires = "root_key")]
        create_key: bool,
        /// Keep the records in this PostgreSQL database (postgres://... or
        /// "host=... dbname=..."; one vault per schema, chosen with
        /// options=-csearch_path=...) instead of VAULT/data. VAULT keeps
        /// the keys and remembers the database (VAULT/store, 0600): every
        /// command finds it there. A password is best left out of it and
        /// given in PGPASSWORD.
        #[arg(long, value_name = "CONNINFO")]
        store: Option<String>,
    },
    /// Create or find data subjects.
    #[command(subcommand)]
    Subject(SubjectCommand),
    /// Store a record; prints its id. Data from --file, stdin, or --data
    /// (an argument other local users can see: prefer the other two).
    Put {
        vault: PathBuf,
        subject: String,
        category: String,
        #[arg(long, conflicts_with = "file")]
        data: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Replace a record's data (rectification: the subject's key is
    /// rotated). Data from --data, --file, or stdin.
    Update {
        vault: PathBuf,
        record: String,
        #[arg(long, conflicts_with = "file")]
        data: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Print a record's data, raw, for a purpose.
    Get {
        vault: PathBuf,
        record: String,
        #[arg(long)]
        purpose: String,
    },
    /// Erase one record (rotates the subject's key).
    Delete { vault: PathBuf, record: String },
    /// Crypto-shred a subject; prints the receipt JSON.
    Erase { vault: PathBuf, subject: String },
    /// The metadata of a subject's live records (JSON).
    Records { vault: PathBuf, subject: String },
    /// Every record of a category readable for a purpose, one JSON object a
    /// line (data as JSON when it is JSON, else base64).
    Scan {
        vault: PathBuf,
        category: String,
        #[arg(long)]
        purpose: String,
    },
    /// Leave (or replace) a subject's post-mortem directive; prints its
    /// record id.
    PostMortem {
        vault: PathBuf,
        subject: String,
        directive: DirectiveArg,
        /// Who the data goes to, for hand-over.
        #[arg(long, required_if_eq("directive", "hand-over"))]
        to: Option<String>,
    },
    /// Purge what expiry runs left behind, now; prints the records purged.
    Purge { vault: PathBuf },
    /// Record (or move) a subject event that starts retention clocks.
    Event {
        vault: PathBuf,
        subject: String,
        event: String,
        /// Unix seconds or RFC 3339 (2026-01-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        at: String,
    },
    /// Set or clear a subject flag (e.g. qualified_certificate).
    Flag {
        vault: PathBuf,
        subject: String,
        flag: String,
        state: OnOff,
    },
    /// Restrict a subject's processing (reads only for legal_claims), or lift it.
    Restrict {
        vault: PathBuf,
        subject: String,
        state: OnOff,
    },
    /// Put a subject under legal hold (no erasure, no expiry), or lift it.
    Hold {
        vault: PathBuf,
        subject: String,
        state: OnOff,
    },
    /// Record a subject's opt-out of sale, or its end.
    OptOutOfSale {
        vault: PathBuf,
        subject: String,
        state: OnOff,
    },
    /// Record consent given or withdrawn for a purpose (withdrawal erases
    /// the records kept on it).
    Consent {
        vault: PathBuf,
        subject: String,
        purpose: String,
        action: ConsentAction,
        /// Unix seconds or RFC 3339.
        #[arg(long, value_name = "TIME")]
        at: String,
    },
    /// Destroy the retention keys of every day ended by --now (default:
    /// the clock); prints the counts (JSON). A --now more than a day ahead
    /// of the clock is refused unless --force.
    Expire {
        vault: PathBuf,
        /// Unix seconds or RFC 3339.
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// Honour a --now more than a day ahead of the clock: the retention
        /// keys of every day ended by then are destroyed, irreversibly.
        #[arg(long)]
        force: bool,
    },
    /// Open the vault and run the checks and repairs of every open; with
    /// --accept-stale-data, accept a data/ older than keys/ (a restored
    /// copy) that opening refuses, losing what was written after it.
    Repair {
        vault: PathBuf,
        /// Accept data/ as it is: keys it does not know are destroyed, and
        /// whatever was written after the copy is lost for good.
        #[arg(long)]
        accept_stale_data: bool,
    },
    /// Print everything the vault holds about a subject (JSON), for an
    /// access or portability request.
    Export { vault: PathBuf, subject: String },
    /// The ledger of data-subject requests.
    #[command(subcommand)]
    Request(RequestCommand),
    /// Check the audit chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check erasure receipts; print the vault's receipt-signing public key.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Re-wrap every key under a new root key (complete erasure: once the
    /// old root key is destroyed, no old copy of keys/ opens anything).
    #[command(group = clap::ArgGroup::new("new_key").required(true).args(["new_key_file", "new_root_key"]))]
    RotateKey {
        vault: PathBuf,
        /// The new root key: 32 raw bytes or 64 hex characters.
        #[arg(long, value_name = "F")]
        new_key_file: Option<PathBuf>,
        /// The new root key as an object in a PKCS#11 token (a pkcs11: URI).
        #[arg(long, value_name = "URI")]
        new_root_key: Option<String>,
        /// Generate the --new-root-key object in its token first.
        #[arg(long, requires = "new_root_key")]
        create_key: bool,
    },
    /// Destroy a root key object in its PKCS#11 token (C_DestroyObject),
    /// once no vault named with --vault needs it (each vault's keystore,
    /// and any rotation under way there, is checked first): complete
    /// erasure, carried out. Copies of keys/ from before the rotation away
    /// from it then open with nothing.
    RetireKey {
        /// The key to destroy: a pkcs11: URI.
        uri: String,
        /// A vault that used the key (repeat for each; at least one).
        #[arg(long = "vault", value_name = "VAULT")]
        vaults: Vec<PathBuf>,
        /// Destroy it even though backups made under it are still within
        /// their window: they become unrestorable.
        #[arg(long)]
        backups_unrestorable: bool,
    },
    /// Write a backup of the vault to DEST (a new file) while it is in use:
    /// data and keys at one point, sealed under a key that dies when the
    /// backup's window ends (the policy's backup_window). Prints what it
    /// made (JSON).
    Backup { vault: PathBuf, dest: PathBuf },
    /// Restore a backup into VAULT (a new or empty directory), then re-apply
    /// every erasure the newest --ledger holds past the backup, before
    /// anything can read it. Prints a report (JSON): what was re-erased,
    /// re-deleted, re-expired, and what was lost.
    Restore {
        backup: PathBuf,
        vault: PathBuf,
        /// An exported erasure ledger (`ledger export`); repeat for several
        /// copies: the newest is used.
        #[arg(long = "ledger", value_name = "FILE")]
        ledgers: Vec<PathBuf>,
        /// Restore without a ledger newer than the backup: everything
        /// erased after the backup comes back.
        #[arg(long)]
        no_ledger: bool,
    },
    /// The erasure ledger: export it off the machine, check a copy.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Replace the blind index's key and rebuild the index (expiry runs do
    /// it on the policy's schedule): index entries erasures left in sled's
    /// files stop matching any identifier.
    RotateIndex { vault: PathBuf },
    /// Counts of subjects, records and keys; bytes on disk (JSON).
    Stats { vault: PathBuf },
    /// Rewrite data/ with only what is live (the vault must be closed):
    /// gives back the space sled keeps, and drops the dead ciphertext of
    /// erased and expired records from its files. Prints a report (JSON).
    Compact { vault: PathBuf },
    /// Replace the vault's policy, once checked against the stored data.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Measure the vault against raw sled, in one run (throw-away vaults).
    /// With --root-key URI, every vault of the run has that key (in a
    /// PKCS#11 token); the cold open of up to 100,000 subjects is reported.
    Bench {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Records for the put, get and scan figures (and the live set of
        /// the space figure, up to 100,000).
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// The served vault beside PostgreSQL instead (16 clients, durable
        /// puts and gets; a throw-away cluster from the installed binaries).
        #[arg(long)]
        server: bool,
        /// With --server: seconds per figure.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// With --server: the vault keeps its records in PostgreSQL:
        /// `postgres` for a schema in the bench's own cluster (the one
        /// pgbench drives, so both figures come from one PostgreSQL), or a
        /// connection string (an empty schema of a database of yours).
        /// Served by two nodes (a cluster: the keys in PostgreSQL under
        /// epoch keys in a token: --root-key URI, else a throw-away
        /// SoftHSM2 token when SoftHSM2 is installed; one node otherwise).
        #[arg(long, value_name = "CONNINFO", requires = "server")]
        store: Option<String>,
        /// With --store: serve by this many nodes (1 or 2; 2 needs a
        /// root key in a token).
        #[arg(long, default_value_t = 2, requires = "store")]
        nodes: usize,
    },
    /// Serve the vault to many processes over HTTP/JSON (the clients and
    /// their grants in --clients); runs until SIGTERM or SIGINT, then
    /// finishes the calls in flight and closes the vault.
    Serve {
        vault: PathBuf,
        /// unix:/path/to.sock (made 0660) or tcp:HOST:PORT (TLS: needs
        /// --tls-cert and --tls-key); may be given more than once.
        #[arg(long, value_name = "ADDR", required = true)]
        listen: Vec<String>,
        /// The server's certificate chain (PEM), for tcp: listeners.
        #[arg(long, value_name = "F", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The server's private key (PEM).
        #[arg(long, value_name = "F", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Ask TLS clients for a certificate signed by this CA (PEM); its
        /// subject is what tls_subject in the client list matches.
        #[arg(long, value_name = "F", requires = "tls_cert")]
        client_ca: Option<PathBuf>,
        /// The client list (clients.toml): who may do what.
        #[arg(long, value_name = "FILE")]
        clients: PathBuf,
        /// Connections served at once (more wait).
        #[arg(long, default_value_t = 256)]
        max_connections: usize,
        /// The largest request body, in bytes.
        #[arg(long, default_value_t = 16 << 20)]
        max_body: usize,
        /// Export the erasure ledger to FILE continuously (within a second
        /// of each erasure, and at shutdown): put it off the machine.
        #[arg(long, value_name = "FILE")]
        ledger_export: Option<PathBuf>,
        /// The PostgreSQL database the vault keeps its records in (see
        /// `init --store`): checked against the one VAULT names.
        #[arg(long, value_name = "CONNINFO")]
        store: Option<String>,
        /// Serve as a node of a cluster (a vault whose records and keys
        /// are in PostgreSQL): where the other nodes reach this one when
        /// it is the active node, unix:///abs/path.sock or
        /// https://host:port. A node that cannot take the vault forwards
        /// its calls to the active node, and takes over when it dies.
        #[arg(long, value_name = "URL")]
        advertise: Option<String>,
        /// The cluster's node token (the same file on every node): lets a
        /// standby vouch for clients it knows by Unix uid or certificate.
        #[arg(long, value_name = "F", requires = "advertise")]
        cluster_token_file: Option<PathBuf>,
        /// The CA an https:// active node's certificate is checked against.
        #[arg(long, value_name = "F", requires = "advertise")]
        cluster_ca: Option<PathBuf>,
    },
    /// Run the whole story on ./shredvault-demo and print what it did.
    Demo,
}

#[derive(Subcommand)]
enum SubjectCommand {
    /// Create a subject; prints its id.
    Create {
        vault: PathBuf,
        /// An identifier, KIND=VALUE (e.g. email=alice@example.com);
        /// repeatable. Seen by other local users: prefer --identifiers-from.
        #[arg(long = "identifier", value_name = "KIND=VALUE")]
        identifiers: Vec<String>,
        /// Identifiers from a file (or - for stdin), one KIND=VALUE a line.
        #[arg(long, value_name = "FILE")]
        identifiers_from: Option<PathBuf>,
    },
    /// Print the id of the subject an identifier belongs to. Without VALUE,
    /// the value is read from stdin (one line).
    Find {
        vault: PathBuf,
        kind: String,
        value: Option<String>,
    },
    /// Add an identifier to a subject.
    Link {
        vault: PathBuf,
        subject: String,
        /// KIND=VALUE (e.g. email=alice@example.com). Seen by other local
        /// users: prefer --identifier-from.
        #[arg(
            long = "identifier",
            value_name = "KIND=VALUE",
            required_unless_present = "identifier_from",
            conflicts_with = "identifier_from"
        )]
        identifier: Option<String>,
        /// KIND=VALUE from a file (or - for stdin), one line.
        #[arg(long, value_name = "FILE")]
        identifier_from: Option<PathBuf>,
    },
    /// Print a subject's identifiers, decrypted (JSON).
    Identifiers { vault: PathBuf, subject: String },
    /// Print a subject's events, flags, consent ledger and states (JSON).
    State { vault: PathBuf, subject: String },
}

#[derive(Subcommand)]
enum RequestCommand {
    /// Open a request (access, rectification, erasure, restriction,
    /// portability, objection); prints its id. Due one calendar month later.
    Open {
        vault: PathBuf,
        subject: String,
        kind: String,
        /// When it was received (default: now). Unix seconds or RFC 3339.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Extend a request once, by two more months.
    Extend {
        vault: PathBuf,
        request: String,
        /// The reason the subject must be told. Seen by other local users:
        /// prefer --reason-from.
        #[arg(
            long,
            required_unless_present = "reason_from",
            conflicts_with = "reason_from"
        )]
        reason: Option<String>,
        /// The reason from a file (or - for stdin).
        #[arg(long, value_name = "FILE")]
        reason_from: Option<PathBuf>,
    },
    /// Close a request as answered.
    Close {
        vault: PathBuf,
        request: String,
        /// When it was answered (default: now).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// List requests (JSON); with --overdue-at, the open ones due before it.
    List {
        vault: PathBuf,
        #[arg(long, value_name = "TIME")]
        overdue_at: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the audit chain; prints the count and head (JSON), or the
    /// first broken entry.
    Verify { vault: PathBuf },
    /// Print the audit entries (JSON), all or those naming a subject.
    List {
        vault: PathBuf,
        #[arg(long)]
        subject: Option<String>,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Append to FILE the ledger entries it lacks, and a signed mark (FILE
    /// is created if missing). It holds no personal data: keep it off the
    /// machine; a restore needs it.
    Export { vault: PathBuf, file: PathBuf },
    /// Check a ledger file: every line signed, the chain whole. Prints a
    /// summary (JSON). No vault or root key needed.
    Verify {
        file: PathBuf,
        /// The vault's receipt public key (64 hex), from `receipt public-key`.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Check a receipt's signature (FILE, or - for stdin). No vault or root
    /// key needed: give the vault's public key with --public-key.
    Verify {
        file: PathBuf,
        /// The vault's receipt public key (64 hex), from `receipt public-key`.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
    /// Print the vault's receipt-signing public key.
    PublicKey { vault: PathBuf },
    /// Whether the erasure of an erasure receipt (FILE, or - for stdin) is
    /// complete: the root key in force at the erasure rotated away from and
    /// destroyed in its token (retire-key). Prints a statement signed like
    /// a receipt (check it with `receipt verify`).
    Complete { vault: PathBuf, file: PathBuf },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        matches!(self, OnOff::On)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DirectiveArg {
    /// Erase everything once `deceased` is recorded.
    Erase,
    /// Hand the data over to the person named by --to.
    HandOver,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ConsentAction {
    Give,
    Withdraw,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate FILE against the vault's data and make it the policy.
    Set { vault: PathBuf, file: PathBuf },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(with_vault_placeholder(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // Usage errors too are one line: clap's lines, joined.
            let text = e.render().to_string();
            let line = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect::<Vec<_>>()
                .join("; ");
            eprintln!("shredvault: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shredvault: {e}");
            ExitCode::from(exit_code(e.kind()))
        }
    }
}

/// 1 for every vault error, except that callers can tell "not there" (3)
/// and "erased" (4) apart without parsing the message. clap uses 2.
fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => 3,
        ErrorKind::Erased => 4,
        _ => 1,
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    if let Some(url) = &cli.url {
        return remote(url, cli.token_file.as_deref(), cli.command);
    }
    let key_file = KeySource {
        file: cli.key_file.as_deref(),
        uri: cli.root_key.as_deref(),
    };
    let actor = cli.actor.as_str();
    let privileged = cli.privileged;
    let open = |vault: &Path, key_file: KeySource| open(vault, key_file, actor, privileged);
    match cli.command {
        Command::Init {
            vault,
            policy,
            create_key,
            store,
        } => {
            if Vault::exists(&vault) {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{} is already a vault", vault.display()),
                ));
            }
            let policy = Policy::from_file(&policy)?;
            let root = match (create_key, key_file.uri) {
                (true, Some(uri)) => {
                    let key = RootKey::create_in_token(uri)?;
                    eprintln!("created the root key {key:?} in its token");
                    key
                }
                _ => root_key(key_file)?,
            };
            let options = shredvault::VaultOptions {
                store,
                ..Default::default()
            };
            let v = Vault::open_with(&vault, &root, Some(policy), options)?;
            eprintln!("created vault {} at {}", v.vault_id(), vault.display());
            v.close()
        }
        Command::Subject(SubjectCommand::Create {
            vault,
            mut identifiers,
            identifiers_from,
        }) => {
            let from_file = match identifiers_from {
                Some(f) => read_text(&f)?,
                None => Zeroizing::new(String::new()),
            };
            identifiers.extend(
                from_file
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
            let identifiers = Zeroizing::new(identifiers);
            let pairs = identifiers
                .iter()
                .map(|i| identifier_pair(i))
                .collect::<Result<Vec<_>, _>>()?;
            let v = open(&vault, key_file)?;
            println!("{}", v.create_subject(&pairs)?);
            v.close()
        }
        Command::Subject(SubjectCommand::Find { vault, kind, value }) => {
            let value = match value {
                Some(v) => Zeroizing::new(v),
                None => read_line(&read_text(Path::new("-"))?),
            };
            let v = open(&vault, key_file)?;
            match v.find_subject(&kind, &value)? {
                Some(id) => println!("{id}"),
                None => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no subject has this {kind} identifier"),
                    ))
                }
            }
            v.close()
        }
        Command::Put {
            vault,
            subject,
            category,
            data,
            file,
        } => {
            let subject = SubjectId::parse(&subject)?;
            let bytes = read_data(data, file)?;
            let v = open(&vault, key_file)?;
            println!("{}", v.put(&subject, &category, &bytes)?);
            v.close()
        }
        Command::Update {
            vault,
            record,
            data,
            file,
        } => {
            let record = RecordId::parse(&record)?;
            let bytes = read_data(data, file)?;
            let v = open(&vault, key_file)?;
            v.update(&record, &bytes)?;
            eprintln!("record {record} rectified (subject key rotated)");
            v.close()
        }
        Command::Records { vault, subject } => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            print_json(&v.records(&subject)?);
            v.close()
        }
        Command::Scan {
            vault,
            category,
            purpose,
        } => {
            let v = open(&vault, key_file)?;
            print_scan(Box::new(v.scan(&category, &purpose)?))?;
            v.close()
        }
        Command::PostMortem {
            vault,
            subject,
            directive,
            to,
        } => {
            let subject = SubjectId::parse(&subject)?;
            let directive = match (directive, to) {
                (DirectiveArg::Erase, None) => shredvault::Directive::Erase,
                (DirectiveArg::HandOver, Some(to)) => shredvault::Directive::HandOver { to },
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        "--to names the person for hand-over, and only for hand-over",
                    ))
                }
            };
            let v = open(&vault, key_file)?;
            println!("{}", v.set_post_mortem_directive(&subject, &directive)?);
            v.close()
        }
        Command::Purge { vault } => {
            let v = open(&vault, key_file)?;
            println!("{}", v.purge()?);
            v.close()
        }
        Command::Subject(SubjectCommand::Link {
            vault,
            subject,
            identifier,
            identifier_from,
        }) => {
            let subject = SubjectId::parse(&subject)?;
            let identifier = match (identifier, identifier_from) {
                (Some(i), _) => Zeroizing::new(i),
                (None, Some(f)) => read_line(&read_text(&f)?),
                (None, None) => unreachable!("clap requires one"),
            };
            let (kind, value) = identifier_pair(&identifier)?;
            let v = open(&vault, key_file)?;
            v.link_identifier(&subject, kind, value)?;
            v.close()
        }
        Command::Subject(SubjectCommand::Identifiers { vault, subject }) => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            print_json(&v.identifiers(&subject)?);
            v.close()
        }
        Command::Subject(SubjectCommand::State { vault, subject }) => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            print_json(&v.subject_state(&subject)?);
            v.close()
        }
        Command::Audit(AuditCommand::List { vault, subject }) => {
            let subject = subject.as_deref().map(SubjectId::parse).transpose()?;
            let v = open(&vault, key_file)?;
            print_json(&v.audit_entries(subject.as_ref())?);
            v.close()
        }
        Command::Get {
            vault,
            record,
            purpose,
        } => {
            let record = RecordId::parse(&record)?;
            let v = open(&vault, key_file)?;
            let rec = v.get(&record, &purpose)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&rec.data)
                .and_then(|_| out.flush())
                .map_err(|e| io_error(Path::new("stdout"), e))?;
            v.close()
        }
        Command::Delete { vault, record } => {
            let record = RecordId::parse(&record)?;
            let v = open(&vault, key_file)?;
            v.delete(&record)?;
            eprintln!("erased record {record} (subject key rotated)");
            v.close()
        }
        Command::Erase { vault, subject } => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            let receipt = v.erase_subject(&subject)?;
            println!("{}", receipt.to_json());
            v.close()
        }
        Command::Event {
            vault,
            subject,
            event,
            at,
        } => {
            let subject = SubjectId::parse(&subject)?;
            let at = parse_time(&at)?;
            let v = open(&vault, key_file)?;
            v.record_event(&subject, &event, at)?;
            eprintln!("recorded {event} at {at} for subject {subject}");
            v.close()
        }
        Command::Flag {
            vault,
            subject,
            flag,
            state,
        } => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            v.set_flag(&subject, &flag, state.on())?;
            v.close()
        }
        Command::Restrict {
            vault,
            subject,
            state,
        } => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            v.set_restricted(&subject, state.on())?;
            v.close()
        }
        Command::Hold {
            vault,
            subject,
            state,
        } => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            v.set_legal_hold(&subject, state.on())?;
            v.close()
        }
        Command::OptOutOfSale {
            vault,
            subject,
            state,
        } => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            v.set_opt_out_of_sale(&subject, state.on())?;
            v.close()
        }
        Command::Consent {
            vault,
            subject,
            purpose,
            action,
            at,
        } => {
            let subject = SubjectId::parse(&subject)?;
            let at = parse_time(&at)?;
            let v = open(&vault, key_file)?;
            match action {
                ConsentAction::Give => v.give_consent(&subject, &purpose, at)?,
                ConsentAction::Withdraw => v.withdraw_consent(&subject, &purpose, at)?,
            }
            v.close()
        }
        Command::Expire { vault, now, force } => {
            let now = time_or_now(now.as_deref())?;
            let v = open(&vault, key_file)?;
            let report = v.expire_with(now, force)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("counts serialize")
            );
            v.close()
        }
        Command::Export { vault, subject } => {
            let subject = SubjectId::parse(&subject)?;
            let v = open(&vault, key_file)?;
            let doc = shredvault::json::WipedValue(v.export(&subject)?);
            let text = shredvault::json::to_vec_zeroizing(&doc.0, true)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&text)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| {
                    shredvault::Error::new(ErrorKind::Io, format!("writing the export: {e}"))
                })?;
            v.close()
        }
        Command::Request(RequestCommand::Open {
            vault,
            subject,
            kind,
            at,
        }) => {
            let subject = SubjectId::parse(&subject)?;
            let at = time_or_now(at.as_deref())?;
            let v = open(&vault, key_file)?;
            println!("{}", v.open_request(&subject, &kind, at)?);
            v.close()
        }
        Command::Request(RequestCommand::Extend {
            vault,
            request,
            reason,
            reason_from,
        }) => {
            let request = RequestId::parse(&request)?;
            let reason = match (reason, reason_from) {
                (Some(r), _) => Zeroizing::new(r),
                (None, Some(f)) => read_text(&f)?,
                (None, None) => unreachable!("clap requires one"),
            };
            let v = open(&vault, key_file)?;
            v.extend_request(&request, &reason)?;
            v.close()
        }
        Command::Request(RequestCommand::Close { vault, request, at }) => {
            let request = RequestId::parse(&request)?;
            let at = time_or_now(at.as_deref())?;
            let v = open(&vault, key_file)?;
            v.close_request(&request, at)?;
            v.close()
        }
        Command::Request(RequestCommand::List { vault, overdue_at }) => {
            let overdue_at = overdue_at.as_deref().map(parse_time).transpose()?;
            let v = open(&vault, key_file)?;
            let list = v.requests(overdue_at)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&list).expect("JSON serializes")
            );
            v.close()
        }
        Command::Audit(AuditCommand::Verify { vault }) => {
            let v = open(&vault, key_file)?;
            let report = v.verify_audit()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("JSON serializes")
            );
            v.close()
        }
        Command::Receipt(ReceiptCommand::Verify { file, public_key }) => {
            let text = if file.as_os_str() == "-" {
                let mut buf = String::new();
                std::io::stdin()
                    .read_to_string(&mut buf)
                    .map_err(|e| io_error(Path::new("stdin"), e))?;
                buf
            } else {
                std::fs::read_to_string(&file).map_err(|e| io_error(&file, e))?
            };
            let receipt = shredvault::verify_receipt(&text, public_key.as_deref())?;
            match public_key {
                Some(_) => eprintln!(
                    "receipt for subject {} verified: signed by the given vault key",
                    receipt["subject"].as_str().unwrap_or("?")
                ),
                None => eprintln!(
                    "receipt for subject {} is intact, signed by the key it names ({}); pass --public-key to check it is the vault's",
                    receipt["subject"].as_str().unwrap_or("?"),
                    receipt["public_key"].as_str().unwrap_or("?")
                ),
            }
            Ok(())
        }
        Command::Receipt(ReceiptCommand::Complete { vault, file }) => {
            let text = read_text(&file)?;
            let v = open(&vault, key_file)?;
            print_json(&v.erasure_completion(&text)?);
            v.close()
        }
        Command::Receipt(ReceiptCommand::PublicKey { vault }) => {
            let v = open(&vault, key_file)?;
            println!("{}", v.receipt_public_key()?);
            v.close()
        }
        Command::RotateKey {
            vault,
            new_key_file,
            new_root_key,
            create_key,
        } => {
            let new_key = new_root(new_key_file.as_deref(), new_root_key.as_deref(), create_key)?;
            let v = open(&vault, key_file)?;
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "rotating the root key {bar:40} {pos}/{len} ({eta} left)",
                )
                .expect("a valid template"),
            );
            v.rotate_root_key(&new_key, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            eprintln!(
                "every key of {} is now wrapped by the new root key; destroy the old one (shredvault retire-key, for a key in a token), and old copies of keys/ are then useless",
                vault.display()
            );
            v.close()
        }
        Command::RetireKey {
            uri,
            vaults,
            backups_unrestorable,
        } => {
            let key = RootKey::from_uri(&uri)?;
            let vaults: Vec<&Path> = vaults.iter().map(PathBuf::as_path).collect();
            Vault::retire_root_key_with(&key, &vaults, backups_unrestorable)?;
            eprintln!(
                "destroyed {key:?} in its token: no copy of a keystore wrapped under it opens any more"
            );
            Ok(())
        }
        Command::Repair {
            vault,
            accept_stale_data,
        } => {
            if accept_stale_data {
                let point = Vault::accept_stale_data(&vault, &root_key(key_file)?)?;
                eprintln!(
                    "accepted {} as it is (it stops at durable point {point}); keys it does not know are destroyed now",
                    vault.join("data").display()
                );
            }
            let v = open(&vault, key_file)?;
            let stats = v.stats()?;
            eprintln!(
                "{} opens: {} live subjects, {} live records",
                vault.display(),
                stats.subjects_live,
                stats.records_live
            );
            v.close()
        }
        Command::Compact { vault } => {
            let report = Vault::compact(&vault, &root_key(key_file)?)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("a report serializes")
            );
            Ok(())
        }
        Command::Backup { vault, dest } => {
            let v = open(&vault, key_file)?;
            let info = v.backup(&dest)?;
            print_json(&info);
            eprintln!(
                "backup {} written to {}: restorable until {} (Unix seconds) with the root key and the ledger (`shredvault ledger export`)",
                info.id,
                dest.display(),
                info.window_ends_at
            );
            v.close()
        }
        Command::Restore {
            backup,
            vault,
            ledgers,
            no_ledger,
        } => {
            let options = shredvault::VaultOptions {
                actor: Some(actor.to_string()),
                ..Default::default()
            };
            let report = Vault::restore(
                &backup,
                &vault,
                &root_key(key_file)?,
                &ledgers,
                no_ledger,
                options,
            )?;
            for warning in &report.warnings {
                eprintln!("shredvault: warning: {warning}");
            }
            print_json(&report);
            Ok(())
        }
        Command::Ledger(LedgerCommand::Export { vault, file }) => {
            let v = open(&vault, key_file)?;
            let export = v.export_ledger(&file)?;
            eprintln!(
                "{} entries appended to {} (it holds {})",
                export.appended,
                file.display(),
                export.entries
            );
            v.close()
        }
        Command::Ledger(LedgerCommand::Verify { file, public_key }) => {
            let summary = shredvault::verify_ledger(&file, public_key.as_deref())?;
            print_json(&serde_json::json!({
                "vault": summary.vault,
                "public_key": summary.public_key,
                "entries": summary.entries,
                "marks": summary.marks,
                "last_exported_at": summary.last_exported_at,
            }));
            Ok(())
        }
        Command::RotateIndex { vault } => {
            let v = open(&vault, key_file)?;
            v.rotate_blind_index()?;
            eprintln!("the blind index of {} has a new key", vault.display());
            v.close()
        }
        Command::Stats { vault } => {
            let v = open(&vault, key_file)?;
            let mut stats = serde_json::to_value(v.stats()?).expect("stats serialize");
            stats["vault_id"] = serde_json::Value::String(v.vault_id());
            print_json(&stats);
            v.close()
        }
        Command::Policy(PolicyCommand::Set { vault, file }) => {
            let policy = Policy::from_file(&file)?;
            let v = open(&vault, key_file)?;
            v.set_policy(policy)?;
            eprintln!(
                "policy of {} replaced by {}",
                vault.display(),
                file.display()
            );
            v.close()
        }
        Command::Demo => demo::run(),
        Command::Serve {
            vault,
            listen,
            tls_cert,
            tls_key,
            client_ca,
            clients,
            max_connections,
            max_body,
            ledger_export,
            store,
            advertise,
            cluster_token_file,
            cluster_ca,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(shredvault_server::TlsFiles {
                    cert,
                    key,
                    client_ca,
                }),
                _ => None,
            };
            serve(
                &vault,
                key_file,
                actor,
                &listen,
                tls,
                &clients,
                (max_connections, max_body),
                ledger_export,
                store,
                advertise.map(|a| (a, cluster_token_file, cluster_ca)),
            )
        }
        Command::Bench {
            json,
            server: true,
            seconds,
            store,
            nodes,
            ..
        } => bench_server::run(
            json,
            seconds.clamp(0.5, 600.0),
            store.as_deref(),
            key_file.uri,
            nodes,
        ),
        Command::Bench { json, records, .. } => bench::run(bench::Options {
            records,
            json,
            // Only an explicit --root-key (a key in a token, usually): the
            // bench's vaults are its own, never SHREDVAULT_ROOT_KEY's.
            root_key: key_file.uri.map(RootKey::from_uri).transpose()?,
        }),
    }
}

/// A file's text, or stdin's for `-`, in a buffer wiped when dropped.
fn read_text(path: &Path) -> Result<Zeroizing<String>, Error> {
    let bytes = Zeroizing::new(if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| io_error(Path::new("stdin"), e))?;
        buf
    } else {
        std::fs::read(path).map_err(|e| io_error(path, e))?
    });
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_string())),
        Err(_) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{} is not UTF-8 text", path.display()),
        )),
    }
}

/// The first line of a text, without its line end.
fn read_line(text: &str) -> Zeroizing<String> {
    Zeroizing::new(text.lines().next().unwrap_or("").to_string())
}

/// `KIND=VALUE` as a pair.
fn identifier_pair(text: &str) -> Result<(&str, &str), Error> {
    text.split_once('=')
        .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "--identifier takes KIND=VALUE"))
}

/// Record data from --data, --file, or stdin.
fn read_data(data: Option<String>, file: Option<PathBuf>) -> Result<Zeroizing<Vec<u8>>, Error> {
    Ok(Zeroizing::new(match (data, file) {
        (Some(d), _) => d.into_bytes(),
        (None, Some(f)) => std::fs::read(&f).map_err(|e| io_error(&f, e))?,
        (None, None) => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| io_error(Path::new("stdin"), e))?;
            buf
        }
    }))
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON serializes")
    );
}

fn time_or_now(text: Option<&str>) -> Result<i64, Error> {
    match text {
        Some(t) => parse_time(t),
        None => Ok(unix_now()),
    }
}

/// The system clock in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A scan's records, one JSON object a line (data as JSON when it is JSON,
/// else base64).
fn print_scan(scan: shredvault_client::Records) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    for record in scan {
        let record = record?;
        let (encoding, data) = match serde_json::from_slice::<serde_json::Value>(&record.data) {
            Ok(value) => ("json", value),
            Err(_) => (
                "base64",
                serde_json::Value::String(
                    base64::engine::general_purpose::STANDARD.encode(&record.data[..]),
                ),
            ),
        };
        let line = serde_json::json!({
            "id": record.id,
            "subject": record.subject,
            "category": record.category,
            "version": record.version,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "encoding": encoding,
            "data": data,
        });
        writeln!(out, "{line}").map_err(|e| io_error(Path::new("stdout"), e))?;
    }
    Ok(())
}

/// A command sent to a server (`--url`).
fn remote(url: &str, token_file: Option<&Path>, command: Command) -> Result<(), Error> {
    let token = match token_file {
        Some(f) => Some(read_line(&read_text(f)?)),
        None => None,
    };
    let c = shredvault_client::Client::connect(url, token.as_deref().map(|t| t.as_str()))?;
    match command {
        Command::Subject(SubjectCommand::Create {
            mut identifiers,
            identifiers_from,
            ..
        }) => {
            if let Some(f) = identifiers_from {
                identifiers.extend(
                    read_text(&f)?
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                );
            }
            let identifiers = Zeroizing::new(identifiers);
            let pairs = identifiers
                .iter()
                .map(|i| identifier_pair(i))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", c.create_subject(&pairs)?);
        }
        Command::Subject(SubjectCommand::Find { kind, value, .. }) => {
            let value = match value {
                Some(v) => Zeroizing::new(v),
                None => read_line(&read_text(Path::new("-"))?),
            };
            match c.find_subject(&kind, &value)? {
                Some(id) => println!("{id}"),
                None => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no subject has this {kind} identifier"),
                    ))
                }
            }
        }
        Command::Put {
            subject,
            category,
            data,
            file,
            ..
        } => {
            let subject = SubjectId::parse(&subject)?;
            let bytes = read_data(data, file)?;
            println!("{}", c.put(&subject, &category, &bytes)?);
        }
        Command::Update {
            record, data, file, ..
        } => {
            let record = RecordId::parse(&record)?;
            let bytes = read_data(data, file)?;
            c.update(&record, &bytes)?;
            eprintln!("record {record} rectified (subject key rotated)");
        }
        Command::Get {
            record, purpose, ..
        } => {
            let record = RecordId::parse(&record)?;
            let rec = c.get(&record, &purpose)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&rec.data)
                .and_then(|_| out.flush())
                .map_err(|e| io_error(Path::new("stdout"), e))?;
        }
        Command::Delete { record, .. } => {
            let record = RecordId::parse(&record)?;
            c.delete(&record)?;
            eprintln!("erased record {record} (subject key rotated)");
        }
        Command::Erase { subject, .. } => {
            let subject = SubjectId::parse(&subject)?;
            println!("{}", c.erase_subject(&subject)?);
        }
        Command::Records { subject, .. } => {
            let subject = SubjectId::parse(&subject)?;
            print_json(&c.records(&subject)?);
        }
        Command::Expire { now, force, .. } => {
            let now = time_or_now(now.as_deref())?;
            print_json(&c.expire_with(now, force)?);
        }
        Command::Purge { .. } => println!("{}", c.purge()?),
        Command::Compact { .. } => print_json(&c.compact()?),
        Command::Policy(PolicyCommand::Set { file, .. }) => {
            // Read and checked here first, for a message that names the file.
            let policy = Policy::from_file(&file)?;
            c.set_policy_text(policy.source(), &file.display().to_string())?;
            eprintln!("the served vault's policy replaced by {}", file.display());
        }
        Command::RotateKey {
            new_key_file,
            new_root_key,
            create_key,
            ..
        } => {
            let new_key = new_root(new_key_file.as_deref(), new_root_key.as_deref(), create_key)?;
            c.rotate_root_key(&new_key)?;
            eprintln!(
                "the served vault's keys are re-wrapped under the new root key: \
                 restart the server with it"
            );
        }
        Command::Scan {
            category, purpose, ..
        } => print_scan(Box::new(c.scan(&category, &purpose)?))?,
        Command::PostMortem {
            subject,
            directive,
            to,
            ..
        } => {
            let subject = SubjectId::parse(&subject)?;
            let directive = match (directive, to) {
                (DirectiveArg::Erase, None) => shredvault::Directive::Erase,
                (DirectiveArg::HandOver, Some(to)) => shredvault::Directive::HandOver { to },
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        "--to names the person for hand-over, and only for hand-over",
                    ))
                }
            };
            println!("{}", c.set_post_mortem_directive(&subject, &directive)?);
        }
        Command::Request(RequestCommand::Open {
            subject, kind, at, ..
        }) => {
            let subject = SubjectId::parse(&subject)?;
            let at = time_or_now(at.as_deref())?;
            println!("{}", c.open_request(&subject, &kind, at)?);
        }
        Command::Request(RequestCommand::Extend {
            request,
            reason,
            reason_from,
            ..
        }) => {
            let request = RequestId::parse(&request)?;
            let reason = match (reason, reason_from) {
                (Some(r), _) => Zeroizing::new(r),
                (None, Some(f)) => read_text(&f)?,
                (None, None) => unreachable!("clap requires one"),
            };
            c.extend_request(&request, &reason)?;
        }
        Command::Request(RequestCommand::Close { request, at, .. }) => {
            let request = RequestId::parse(&request)?;
            c.close_request(&request, time_or_now(at.as_deref())?)?;
        }
        Command::Request(RequestCommand::List { overdue_at, .. }) => {
            let overdue_at = overdue_at.as_deref().map(parse_time).transpose()?;
            print_json(&c.requests(overdue_at)?);
        }
        Command::Audit(AuditCommand::List { subject, .. }) => {
            let subject = subject.as_deref().map(SubjectId::parse).transpose()?;
            print_json(&c.audit_entries(subject.as_ref())?);
        }
        Command::RotateIndex { .. } => {
            c.rotate_blind_index()?;
            eprintln!("the served vault's blind index has a new key");
        }
        Command::Subject(SubjectCommand::Link {
            subject,
            identifier,
            identifier_from,
            ..
        }) => {
            let subject = SubjectId::parse(&subject)?;
            let identifier = match (identifier, identifier_from) {
                (Some(i), _) => Zeroizing::new(i),
                (None, Some(f)) => read_line(&read_text(&f)?),
                (None, None) => unreachable!("clap requires one"),
            };
            let (kind, value) = identifier_pair(&identifier)?;
            c.link_identifier(&subject, kind, value)?;
        }
        Command::Subject(SubjectCommand::Identifiers { subject, .. }) => {
            print_json(&c.identifiers(&SubjectId::parse(&subject)?)?);
        }
        Command::Subject(SubjectCommand::State { subject, .. }) => {
            print_json(&c.subject_state(&SubjectId::parse(&subject)?)?);
        }
        Command::Event {
            subject, event, at, ..
        } => {
            let subject = SubjectId::parse(&subject)?;
            let at = parse_time(&at)?;
            c.record_event(&subject, &event, at)?;
            eprintln!("recorded {event} at {at} for subject {subject}");
        }
        Command::Flag {
            subject,
            flag,
            state,
            ..
        } => c.set_flag(&SubjectId::parse(&subject)?, &flag, state.on())?,
        Command::Restrict { subject, state, .. } => {
            c.set_restricted(&SubjectId::parse(&subject)?, state.on())?
        }
        Command::Hold { subject, state, .. } => {
            c.set_legal_hold(&SubjectId::parse(&subject)?, state.on())?
        }
        Command::OptOutOfSale { subject, state, .. } => {
            c.set_opt_out_of_sale(&SubjectId::parse(&subject)?, state.on())?
        }
        Command::Consent {
            subject,
            purpose,
            action,
            at,
            ..
        } => {
            let subject = SubjectId::parse(&subject)?;
            let at = parse_time(&at)?;
            match action {
                ConsentAction::Give => c.give_consent(&subject, &purpose, at)?,
                ConsentAction::Withdraw => c.withdraw_consent(&subject, &purpose, at)?,
            }
        }
        Command::Export { subject, .. } => {
            let doc = shredvault::json::WipedValue(c.export(&SubjectId::parse(&subject)?)?);
            let text = shredvault::json::to_vec_zeroizing(&doc.0, true)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&text)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| {
                    shredvault::Error::new(ErrorKind::Io, format!("writing the export: {e}"))
                })?;
        }
        Command::Receipt(ReceiptCommand::PublicKey { .. }) => {
            println!("{}", c.receipt_public_key()?)
        }
        Command::Backup { dest, .. } => {
            let info = c.backup(&dest)?;
            print_json(&info);
            eprintln!(
                "backup {} written to {}: restorable until {} (Unix seconds) with the root key and the ledger (`shredvault ledger export`)",
                info.id,
                dest.display(),
                info.window_ends_at
            );
        }
        Command::Ledger(LedgerCommand::Export { file, .. }) => {
            let export = c.export_ledger(&file)?;
            eprintln!(
                "{} entries appended to {} (it holds {})",
                export.appended,
                file.display(),
                export.entries
            );
        }
        Command::Stats { .. } => {
            let mut stats = serde_json::to_value(c.stats()?).expect("stats serialize");
            stats["vault_id"] = serde_json::Value::String(c.vault_id()?);
            print_json(&stats);
        }
        Command::Audit(AuditCommand::Verify { .. }) => print_json(&c.verify_audit()?),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "this command is not served: repair needs the vault closed (stop the \
                 server); receipt verify, init, bench and demo need no served vault",
            ))
        }
    }
    Ok(())
}

/// `serve`: the vault opened privileged (each call is narrowed to its
/// client's grant), served until SIGTERM or SIGINT, then closed. With
/// `cluster` (--advertise, the node token file, the cluster CA): as a node
/// of a cluster (see the server's `cluster` module).
#[allow(clippy::too_many_arguments)]
fn serve(
    vault: &Path,
    key_file: KeySource,
    actor: &str,
    listen: &[String],
    tls: Option<shredvault_server::TlsFiles>,
    clients: &Path,
    (max_connections, max_body): (usize, usize),
    ledger_export: Option<PathBuf>,
    store: Option<String>,
    cluster: Option<(String, Option<PathBuf>, Option<PathBuf>)>,
) -> Result<(), Error> {
    use shredvault_server::{Clients, ClusterOptions, Listen, ServeOptions};
    let listen = listen
        .iter()
        .map(|l| Listen::parse(l))
        .collect::<Result<Vec<_>, _>>()?;
    let clients = Clients::load(clients)?;
    let mut options = ServeOptions::new(listen.clone(), clients);
    options.max_connections = max_connections;
    options.max_body = max_body;
    options.tls = tls;
    options.ledger_export = ledger_export;
    let cluster = match cluster {
        None => None,
        Some((advertise, token_file, cluster_ca)) => {
            let Some((url, true)) = shredvault::postgres::vault_store(vault)? else {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "{} is not a vault whose records and keys are in PostgreSQL (init --store ... --root-key pkcs11:...): only such a vault is served by a cluster",
                        vault.display()
                    ),
                ));
            };
            if let Some(given) = &store {
                if given.trim() != url {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "the vault at {} keeps its records in another database than --store names",
                            vault.display()
                        ),
                    ));
                }
            }
            let node_token = match token_file {
                Some(f) => Some(Zeroizing::new(
                    std::fs::read_to_string(&f).map_err(|e| io_error(&f, e))?,
                )),
                None => None,
            };
            Some(ClusterOptions {
                advertise,
                store: url,
                node_token,
                cluster_ca,
            })
        }
    };
    require_vault(vault)?;
    let root = root_key(key_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the server's runtime", e))?;
    let stop = async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let serving = || {
        for l in &listen {
            match l {
                Listen::Unix(path) => {
                    eprintln!(
                        "shredvault: serving {} on unix:{}",
                        vault.display(),
                        path.display()
                    )
                }
                Listen::Tcp(addr) => {
                    eprintln!("shredvault: serving {} on https://{addr}", vault.display())
                }
            }
        }
    };
    let v = match cluster {
        None => {
            let v = open_with_root(vault, &root, actor, true, store)?;
            serving();
            Some(runtime.block_on(shredvault_server::serve(v, options, stop))?)
        }
        Some(cluster) => {
            serving();
            eprintln!(
                "shredvault: a node of a cluster, advertised as {}; a standby until it holds the vault",
                cluster.advertise
            );
            let (vault, actor) = (vault.to_path_buf(), actor.to_string());
            let open: std::sync::Arc<dyn Fn() -> Result<Vault, Error> + Send + Sync> =
                std::sync::Arc::new(move || open_with_root(&vault, &root, &actor, true, None));
            runtime.block_on(shredvault_server::serve_cluster(
                open, cluster, options, stop,
            ))?
        }
    };
    match v {
        Some(v) => {
            eprintln!("shredvault: stopped; closing the vault");
            v.close()
        }
        None => {
            eprintln!("shredvault: stopped (a standby: no vault to close)");
            Ok(())
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{}: {e}", path.display()))
}

/// Opens an existing vault (never creates one: that is `init`'s job), and
/// prints what the open warns of on stderr.
fn open(vault: &Path, key_file: KeySource, actor: &str, privileged: bool) -> Result<Vault, Error> {
    open_in(vault, key_file, actor, privileged, None)
}

/// [`open`], naming the vault's store (checked against the one it has).
fn open_in(
    vault: &Path,
    key_file: KeySource,
    actor: &str,
    privileged: bool,
    store: Option<String>,
) -> Result<Vault, Error> {
    require_vault(vault)?;
    open_with_root(vault, &root_key(key_file)?, actor, privileged, store)
}

/// `NotFound` unless `vault` holds a vault (only `init` makes one).
fn require_vault(vault: &Path) -> Result<(), Error> {
    if Vault::exists(vault) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "no vault at {} (create one with `shredvault init`)",
            vault.display()
        ),
    ))
}

/// [`open_in`] with the root key in hand.
fn open_with_root(
    vault: &Path,
    root: &RootKey,
    actor: &str,
    privileged: bool,
    store: Option<String>,
) -> Result<Vault, Error> {
    let options = shredvault::VaultOptions {
        actor: Some(actor.to_string()),
        privileged,
        store,
        ..Default::default()
    };
    let v = Vault::open_with(vault, root, None, options)?;
    for warning in v.warnings() {
        eprintln!("shredvault: warning: {warning}");
    }
    Ok(v)
}

/// Where the root key comes from: `--key-file`, `--root-key`, else the
/// environment.
#[derive(Clone, Copy)]
struct KeySource<'a> {
    file: Option<&'a Path>,
    uri: Option<&'a str>,
}

/// The new root key of `rotate-key`, created in its token first if asked.
fn new_root(file: Option<&Path>, uri: Option<&str>, create: bool) -> Result<RootKey, Error> {
    match (uri, create) {
        (Some(uri), true) => {
            let key = RootKey::create_in_token(uri)?;
            eprintln!("created the root key {key:?} in its token");
            Ok(key)
        }
        _ => root_key(KeySource { file, uri }),
    }
}

fn root_key(key: KeySource) -> Result<RootKey, Error> {
    if let Some(uri) = key.uri {
        return RootKey::from_uri(uri);
    }
    if let Some(path) = key.file {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| io_error(path, e))?);
        if bytes.len() == 32 {
            return RootKey::from_bytes(&bytes);
        }
        if bytes.starts_with(b"pkcs11:") {
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{}: the URI is not UTF-8", path.display()),
                )
            })?;
            return RootKey::from_uri(text);
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: a key file holds 32 raw bytes or 64 hex characters",
                    path.display()
                ),
            )
        })?;
        return RootKey::from_hex(text).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: a key file holds 32 raw bytes or 64 hex characters",
                    path.display()
                ),
            )
        });
    }
    match std::env::var("SHREDVAULT_ROOT_KEY") {
        Ok(text) if text.trim_start().starts_with("pkcs11:") => RootKey::from_uri(&text),
        Ok(hex) => RootKey::from_hex(&Zeroizing::new(hex)).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                "SHREDVAULT_ROOT_KEY must be 64 hex characters or a pkcs11: URI",
            )
        }),
        Err(_) => Err(Error::new(
            ErrorKind::InvalidArgument,
            "no root key: pass --key-file F or --root-key URI, or set SHREDVAULT_ROOT_KEY (64 hex characters or a pkcs11: URI)",
        )),
    }
}
