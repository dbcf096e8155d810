//! `restore`: a backup file written back into a vault directory, then
//! every newer erasure of the ledger re-applied before anything can read
//! it (the order, and why, in `vault::backup`'s module doc).

use super::file::Reader;
use super::*;

/// The ledger a restore re-applies: the newest given, checked against the
/// backup.
struct Chosen {
    path: PathBuf,
    file: LedgerFile,
}

fn choose_ledger(
    header: &Header,
    ledgers: &[PathBuf],
    no_ledger: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<Chosen>> {
    let mut best: Option<Chosen> = None;
    for path in ledgers {
        let file = LedgerFile::read(path)?;
        if file.vault != header.vault {
            return Err(Error::invalid(format!(
                "{} is the ledger of vault {}, and the backup is of vault {}",
                path.display(),
                file.vault,
                header.vault
            )));
        }
        if file.public_key != header.receipt_public_key {
            return Err(Error::corrupt(format!(
                "{} is signed with another key than the vault's: it is not the vault's ledger",
                path.display()
            )));
        }
        if file.torn {
            warnings.push(format!(
                "{}: its last line is cut short (an export interrupted): read up to it",
                path.display()
            ));
        }
        let newer = match &best {
            None => true,
            Some(b) => {
                (file.entries.len(), file.last_mark().map(|m| m.exported_at))
                    > (
                        b.file.entries.len(),
                        b.file.last_mark().map(|m| m.exported_at),
                    )
            }
        };
        if newer {
            best = Some(Chosen {
                path: path.clone(),
                file,
            });
        }
    }
    let refusal = |why: String| {
        Error::invalid(format!(
            "{why}. Restoring without it would bring back every subject and record erased, deleted, expired or withdrawn after the backup (made at {}). Give the latest export (`shredvault ledger export VAULT FILE`) with --ledger FILE, or accept that risk with --no-ledger",
            header.created_at
        ))
    };
    let Some(chosen) = best else {
        if no_ledger {
            warnings.push("restored with --no-ledger: whatever was erased after the backup is back; erase it again".into());
            return Ok(None);
        }
        return Err(refusal("no erasure ledger was given".into()));
    };
    let held = header.ledger_entries as usize;
    if chosen.file.entries.len() < held {
        if no_ledger {
            warnings.push(format!("{} is older than the backup: restored with --no-ledger, whatever was erased after the backup is back", chosen.path.display()));
            return Ok(None);
        }
        return Err(refusal(format!(
            "the newest ledger given ({}, {} entries) is older than the backup, which holds {held}",
            chosen.path.display(),
            chosen.file.entries.len()
        )));
    }
    if held > 0 && hex::encode(chosen.file.entries[held - 1].hash) != header.ledger_head {
        return Err(Error::corrupt(format!(
            "{} differs from the backup's own ledger at entry {}: it is another history of the vault (a ledger of a copy restored from another backup?)",
            chosen.path.display(),
            held - 1
        )));
    }
    let exported_after = chosen
        .file
        .last_mark()
        .is_some_and(|m| m.exported_at >= header.created_at);
    if chosen.file.entries.len() == held && !exported_after {
        if no_ledger {
            warnings.push(format!("{} was exported before the backup was made: restored with --no-ledger, whatever was erased after the backup is back", chosen.path.display()));
            return Ok(None);
        }
        return Err(refusal(format!(
            "the newest ledger given ({}) was exported before the backup was made, and holds nothing past it: it cannot say what was erased after the backup",
            chosen.path.display()
        )));
    }
    Ok(Some(chosen))
}

/// Makes `dir` ready for a restore: a new or empty directory, or one an
/// unfinished restore left (cleared). The marker is written and made
/// durable before anything else.
fn prepare_dir(dir: &Path) -> Result<()> {
    let marker = dir.join(RESTORING);
    if dir.exists() {
        let unfinished = marker.exists();
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        if !unfinished && entries.next().is_some() {
            return Err(Error::invalid(format!(
                "{} is not empty: a backup is restored into a new or empty directory",
                dir.display()
            )));
        }
        if unfinished {
            // The lock first: a restore still running elsewhere holds it.
            let _lock = custody::lock_dir(&dir.join("keys"))?;
            for part in ["data", "keys", "journal"] {
                let path = dir.join(part);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
                }
            }
            crate::store::sled_store::sync_dir(dir)?;
            return Ok(());
        }
    }
    crate::fsmode::create_private_dir(dir)?;
    let file = crate::fsmode::create_private_file(&marker)?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", marker.display()), e))?;
    crate::fsmode::sync_parent(&marker)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::store::sled_store::sync_dir(parent)?;
    }
    Ok(())
}

pub(super) fn restore(
    backup: &Path,
    dir: &Path,
    root: &RootKey,
    ledgers: &[PathBuf],
    no_ledger: bool,
    options: VaultOptions,
) -> Result<RestoreReport> {
    let clock = options.clock.clone().unwrap_or_else(system_clock);
    let now = clock();
    let mut reader = Reader::open(backup)?;
    let header = reader.header.clone();
    let name = backup.display();
    let vault_id: [u8; 16] = hex::decode(&header.vault)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("{name}: its header names no vault id")))?;
    let backup_id: [u8; 16] = hex::decode(&header.backup)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("{name}: its header names no backup id")))?;
    if now >= header.window_ends_at {
        return Err(Error::new(
            ErrorKind::Expired,
            format!(
                "{name} is past its window: made at {}, restorable until {} (the policy's backup_window); it opens for nobody{}",
                header.created_at,
                header.window_ends_at,
                if header.token_day_key.is_some() {
                    " (its day key in the token is destroyed by the first expiry run after the window)"
                } else {
                    ""
                }
            ),
        ));
    }
    let secrets = root.secrets()?;
    let day_key = match &header.token_day_key {
        None => None,
        Some(label) => {
            let Some(uri) = root.token_uri() else {
                return Err(Error::new(
                    ErrorKind::WrongKey,
                    format!("{name} was made under a root key in a PKCS#11 token ({}): give that key's URI", header.root_key),
                ));
            };
            let day_uri = uri.with_object(label);
            if !pkcs11::exists(&day_uri)? {
                return Err(Error::new(
                    ErrorKind::Expired,
                    format!("{name} cannot be opened: its day key ({label}) is no longer in the token (destroyed when its window ended, or not this token)"),
                ));
            }
            Some(day_secret(&day_uri)?)
        }
    };
    let key = domains::backup_key(&secrets.kek, day_key.as_ref(), &vault_id, &backup_id);
    drop(day_key);
    if key_check(&key) != header.key_check {
        return Err(Error::new(
            ErrorKind::WrongKey,
            format!(
                "the root key given does not open {name}: it was made under {} (the root key in force at {})",
                if header.root_key.is_empty() { "another root key" } else { &header.root_key },
                header.created_at
            ),
        ));
    }
    let mut report = RestoreReport {
        vault: dir.display().to_string(),
        backup: header.backup.clone(),
        backup_created_at: header.created_at,
        window_ends_at: header.window_ends_at,
        ..RestoreReport::default()
    };
    let chosen = choose_ledger(&header, ledgers, no_ledger, &mut report.warnings)?;
    // Frame 0 before the directory is touched: a wrong or damaged file
    // changes nothing.
    let Some(Frame::Custody {
        keystore,
        vault_format,
    }) = reader.frame(&key)?
    else {
        return Err(Error::corrupt(format!(
            "{name}: its first frame is not the keystore"
        )));
    };
    let image = CustodyImage {
        keystore,
        marks: MarkValues {
            store_mark: header.store_mark,
            vault_format,
        },
    };
    if !image.opens(&secrets)? {
        return Err(Error::new(
            ErrorKind::WrongKey,
            format!("the root key given does not open the keystore in {name}"),
        ));
    }
    drop(secrets);
    prepare_dir(dir)?;
    {
        let _lock = custody::lock_dir(&dir.join("keys"))?;
        let store = SledStore::open(dir)?;
        let mut count = 0u64;
        loop {
            match reader.frame(&key)? {
                Some(Frame::Entries(entries)) => {
                    let mut batch = Batch::default();
                    for (k, v) in entries {
                        batch.insert(k, v);
                        count += 1;
                    }
                    store.apply(batch)?;
                }
                Some(Frame::End { entries }) => {
                    if entries != count {
                        return Err(Error::corrupt(format!(
                            "{name}: its end says {entries} entries, and {count} were read"
                        )));
                    }
                    break;
                }
                Some(Frame::Custody { .. }) => {
                    return Err(Error::corrupt(format!("{name}: a second keystore frame")))
                }
                None => {
                    return Err(Error::corrupt(format!(
                        "{name} is cut short: it has no end frame"
                    )))
                }
            }
        }
        if reader.frame(&key)?.is_some() {
            return Err(Error::corrupt(format!(
                "{name}: frames follow its end frame"
            )));
        }
        // The newer ledger entries go in verbatim (their chain was checked
        // with the file, and continues the backup's own), before the vault
        // opens: nothing it does at open (the purge) can write an entry
        // that the copy would then not follow.
        if let Some(chosen) = &chosen {
            let mut batch = Batch::default();
            for e in &chosen.file.entries[header.ledger_entries as usize..] {
                batch.insert(Key::Ledger(e.seq).encode(), codec::encode(&e.line)?);
            }
            store.apply(batch)?;
        }
        store.sync(&|| Ok(()))?;
        drop(store);
        custody::write_image(&dir.join("keys"), vault_id, &image, header.store_mark)?;
    }
    let vault = open_dir(dir, root, None, options, Mode::Restore)?;
    let operations_after = chosen.as_ref().and_then(|c| {
        c.file
            .last_mark()
            .map(|m| m.audit_next.saturating_sub(header.audit_next))
    });
    if let Some(chosen) = &chosen {
        let newer = &chosen.file.entries[header.ledger_entries as usize..];
        report.ledger = Some(chosen.path.display().to_string());
        report.ledger_exported_at = chosen.file.last_mark().map(|m| m.exported_at);
        report.ledger_entries_reapplied = newer.len() as u64;
        vault
            .engine
            .reapply_ledger(&header.backup, newer, &mut report)?;
    }
    report.lost.operations_after_backup = operations_after;
    report.lost.note = match operations_after {
        Some(n) => format!("{n} audited operations (reads included) were made after the backup, up to the ledger's export; writes among them (puts, updates, new subjects, facts) are lost, erasures among them were re-applied"),
        None => "every write made after the backup is lost; without a ledger, so is every erasure made after it".into(),
    };
    drop(vault);
    let marker = dir.join(RESTORING);
    std::fs::remove_file(&marker)
        .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
    crate::store::sled_store::sync_dir(dir)?;
    Ok(report)
}

impl Engine {
    /// Re-applies a newer ledger's entries (already copied into the store),
    /// as one audited operation, durable.
    fn reapply_ledger(
        &self,
        backup: &str,
        entries: &[LedgerLine],
        report: &mut RestoreReport,
    ) -> Result<()> {
        self.audited(Op::Restore, Commit::Always, |call| {
            call.entry.detail = Some(
                format!(
                    "from backup {backup}: {} ledger entries re-applied",
                    entries.len()
                )
                .into(),
            );
            let _paused = self.ledger.pause_here();
            for e in entries {
                self.reapply(e, report)?;
            }
            Ok(())
        })
    }

    fn reapply(&self, e: &LedgerLine, report: &mut RestoreReport) -> Result<()> {
        let v = &e.value;
        let bad = |what: &str| Error::corrupt(format!("ledger entry {}: {what}", e.seq));
        // Days: as the expiry run did (legal holds spared first, by the
        // holds the restored vault knows).
        let mut ended = Vec::new();
        for day in v["days"].as_array().into_iter().flatten() {
            let day = day.as_i64().ok_or_else(|| bad("a day is not a number"))?;
            let entry: Option<DayEntry> = match self.store.get(&Key::Day(day).encode())? {
                Some(b) => Some(self.decode_state(&Key::Day(day), &b, "day entry")?),
                None => None,
            };
            match entry {
                Some(entry) if !entry.destroyed => ended.push((day, entry.key)),
                _ => report.already_gone += 1,
            }
        }
        if !ended.is_empty() {
            let _guard = lock(&self.locks.expire);
            let mut entry = self.draft(Op::Expire);
            entry.detail = Some(format!("re-applied from ledger entry {}", e.seq).into());
            let days: Vec<i64> = ended.iter().map(|(d, _)| *d).collect();
            let result = self.expire_these(ended, &entry);
            entry.outcome = match &result {
                Ok(_) => "ok",
                Err(err) => err.kind().name(),
            };
            self.audit.append(&entry, self.actor().as_deref())?;
            result?;
            report.re_expired_days.extend(days);
        }
        if v["erasure_requested"].as_bool() == Some(true) {
            let subject = v["subject"]
                .as_str()
                .ok_or_else(|| bad("an erasure request without a subject"))
                .and_then(|s| SubjectId::parse(s).map_err(|_| bad("a malformed subject id")))?;
            let at = v["at"].as_i64().unwrap_or_else(|| self.now());
            let mut entry = self.draft(Op::EraseSubject);
            entry.subject = Some(subject);
            entry.detail = Some(format!("re-applied from ledger entry {}", e.seq).into());
            match self.erase(&subject, &entry, Some(at)) {
                Ok(_) => {
                    entry.outcome = "ok";
                    self.audit.append(&entry, self.actor().as_deref())?;
                    report.re_erased_subjects.push(subject.to_string());
                }
                Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Erased) => {
                    report.already_gone += 1
                }
                Err(err) => return Err(err),
            }
        }
        if v["subject_erased"].as_bool() == Some(true) {
            let subject = v["subject"]
                .as_str()
                .ok_or_else(|| bad("an erased subject without an id"))
                .and_then(|s| SubjectId::parse(s).map_err(|_| bad("a malformed subject id")))?;
            let _stripe = self.stripe(&subject);
            match self.live_subject(&subject) {
                Ok(live) => {
                    self.keys.destroy_subject_key(live.key)?;
                    self.finish_erasure(&subject, &live, self.now())?;
                    report.re_erased_subjects.push(subject.to_string());
                }
                Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Erased) => {
                    report.already_gone += 1
                }
                Err(err) => return Err(err),
            }
        }
        for r in v["records"].as_array().into_iter().flatten() {
            let id = r["record"]
                .as_str()
                .and_then(|s| RecordId::parse(s).ok())
                .ok_or_else(|| bad("a malformed record id"))?;
            let how = r["gone"].as_str().unwrap_or_default();
            let live = match self.live_record(&id) {
                Ok(live) => live,
                Err(err)
                    if matches!(
                        err.kind(),
                        ErrorKind::NotFound | ErrorKind::Erased | ErrorKind::Expired
                    ) =>
                {
                    report.already_gone += 1;
                    continue;
                }
                Err(err) => return Err(err),
            };
            if how == "rectified" {
                report.lost.rectified_records.push(id.to_string());
                continue;
            }
            let subject = live.subject;
            let _stripe = self.stripe(&subject);
            let live_subject = self.live_subject(&subject)?;
            self.rotate(&subject, live_subject, Some((&id, Edit::Delete)), None)?;
            let list = match how {
                "deleted" => &mut report.re_deleted_records,
                "expired" => &mut report.re_expired_records,
                _ => &mut report.re_erased_records,
            };
            list.push(id.to_string());
        }
        Ok(())
    }
}
