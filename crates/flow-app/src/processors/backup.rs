//! Tenant backups: a consistent export of one tenant's data to a JSON-lines file with a
//! SHA-256 checksum beside it (backup-operations queue), and the restore that loads such
//! a file into an empty tenant (`flow restore`).

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use chrono::Utc;
use flow_store::{
    Activity, ActivityFilter, AuditAction, Contact, ContactFilter, Deal, DealFilter, EventType,
    Incident, Job, Lead, LeadFilter, NewEvent, Store, TenantId,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{
    auth::Caller,
    error::{ApiError, ApiResult, ErrorCode},
    services::{Record, Work},
};
use flow_jobs::{JobError, Processor};

/// The job kind in the backup-operations queue.
pub const KIND: &str = crate::jobs::JobKind::Export.as_str();

const FORMAT: &str = "flow-backup";
const VERSION: u32 = 1;

/// One line of a backup file after the header.
#[derive(Debug, Deserialize, Serialize)]
#[serde(tag = "table", content = "row", rename_all = "lowercase")]
enum Line {
    Contact(Value),
    Lead(Value),
    Deal(Value),
    Activity(Value),
    Incident(Value),
}

/// Starts a backup of the caller's tenant.
pub async fn start(
    store: &dyn Store,
    signal: &flow_jobs::WorkSignal,
    caller: &Caller,
) -> ApiResult<Job> {
    caller.require("admin", "backups")?;
    let request = crate::jobs::JobKind::Export.job(json!({}));
    crate::jobs::start(store, signal, caller, request, AuditAction::BackupStart).await
}

/// Writes backups under `<data_dir>/backups/<tenant>/`, keeping the newest `kept`.
pub struct ExportTenant {
    pub data_dir: PathBuf,
    pub kept: usize,
}

#[async_trait]
impl Processor for ExportTenant {
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let dir = self
            .data_dir
            .join("backups")
            .join(job.tenant_id.to_string());
        private_dir(&dir)
            .map_err(|e| JobError::Retryable(format!("creating {}: {e}", dir.display())))?;
        // One file per run; a re-run of the same job overwrites its own file.
        let path = dir.join(format!("{}.jsonl", job.id));
        let mut out = Vec::new();
        let mut counts = json!({});
        // One read view: the export is a consistent snapshot.
        let mut tx = store.read(job.tenant_id).await?;
        let header = json!({ "format": FORMAT, "version": VERSION, "tenantId": job.tenant_id, "createdAt": Utc::now() });
        writeln!(out, "{header}").map_err(|e| JobError::Permanent(e.to_string()))?;
        macro_rules! export {
            ($name:literal, $variant:ident, |$before:ident| $list:expr) => {{
                let mut $before = None;
                let mut n = 0u64;
                loop {
                    let page = $list;
                    let Some(last) = page.last() else { break };
                    $before = Some(last.id);
                    for row in &page {
                        let line = Line::$variant(
                            serde_json::to_value(row)
                                .map_err(|e| JobError::Permanent(e.to_string()))?,
                        );
                        serde_json::to_writer(&mut out, &line)
                            .map_err(|e| JobError::Permanent(e.to_string()))?;
                        out.push(b'\n');
                        n += 1;
                    }
                }
                counts[$name] = json!(n);
            }};
        }
        export!("contacts", Contact, |before| tx
            .list_contacts(&ContactFilter {
                before,
                limit: 500,
                ..ContactFilter::default()
            })
            .await?);
        export!("leads", Lead, |before| tx
            .list_leads(&LeadFilter {
                before,
                limit: 500,
                ..LeadFilter::default()
            })
            .await?);
        export!("deals", Deal, |before| tx
            .list_deals(&DealFilter {
                before,
                limit: 500,
                ..DealFilter::default()
            })
            .await?);
        export!("activities", Activity, |before| tx
            .list_activities(&ActivityFilter {
                before,
                limit: 500,
                ..ActivityFilter::default()
            })
            .await?);
        let incidents = tx.list_incidents(None, 100_000).await?;
        for incident in &incidents {
            let line = Line::Incident(
                serde_json::to_value(incident).map_err(|e| JobError::Permanent(e.to_string()))?,
            );
            serde_json::to_writer(&mut out, &line)
                .map_err(|e| JobError::Permanent(e.to_string()))?;
            out.push(b'\n');
        }
        counts["incidents"] = json!(incidents.len());
        drop(tx);

        let checksum = hex::encode(Sha256::digest(&out));
        write_file(&path, &out)
            .map_err(|e| JobError::Retryable(format!("writing {}: {e}", path.display())))?;
        write_file(
            &checksum_path(&path),
            format!("{checksum}  {}\n", file_name(&path)).as_bytes(),
        )
        .map_err(|e| JobError::Retryable(e.to_string()))?;

        prune_backups(&dir, self.kept)
            .map_err(|e| JobError::Retryable(format!("pruning {}: {e}", dir.display())))?;
        // Relative to the data directory: the server's own layout is not the client's business.
        let shown = path.strip_prefix(&self.data_dir).unwrap_or(&path);
        let result =
            json!({ "path": shown, "sha256": checksum, "bytes": out.len(), "counts": counts });
        let caller = Caller::system(job.tenant_id);
        let mut work = Work::begin(&**store, &caller)
            .await
            .map_err(|e| JobError::Retryable(e.message))?;
        work.record(Record {
            action: AuditAction::BackupComplete,
            entity_type: "job",
            entity_id: job.id.to_string(),
            before: None,
            after: Some(result.clone()),
            event: Some(NewEvent::new(
                EventType::BackupCompleted,
                "flow",
                json!({ "backupId": job.id, "sha256": checksum, "counts": counts }),
            )),
        })
        .await
        .map_err(|e| JobError::Retryable(e.message))?;
        work.commit()
            .await
            .map_err(|e| JobError::Retryable(e.message))?;
        Ok(result)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Deletes all but the newest `kept` backups in `dir` (with their checksum files), so
/// backups cannot fill the disk.
fn prune_backups(dir: &Path, kept: usize) -> std::io::Result<()> {
    let mut backups = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            backups.push((entry.metadata()?.modified()?, path));
        }
    }
    backups.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    for (_, path) in backups.into_iter().skip(kept.max(1)) {
        std::fs::remove_file(checksum_path(&path)).or_else(ignore_missing)?;
        std::fs::remove_file(&path).or_else(ignore_missing)?;
    }
    Ok(())
}

fn ignore_missing(error: std::io::Error) -> std::io::Result<()> {
    if error.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(error)
    }
}

/// Creates `dir` and its missing parents readable by Flow's user only (0700): backups hold
/// personal data.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes to a temporary name and renames, so a crash never leaves half a file; the file
/// is readable by Flow's user only (0600).
fn write_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// What a restore loaded.
#[derive(Debug, Default, Serialize)]
pub struct Restored {
    pub contacts: u64,
    pub leads: u64,
    pub deals: u64,
    pub activities: u64,
    pub incidents: u64,
}

/// Loads a backup file into `tenant`, which must be empty. Checks the checksum file beside
/// it; rows get new ids, and references between them follow.
pub async fn restore(store: &dyn Store, tenant: TenantId, path: &Path) -> ApiResult<Restored> {
    let contents = std::fs::read(path)
        .map_err(|e| ApiError::validation(format!("reading {}: {e}", path.display())))?;
    let recorded = std::fs::read_to_string(checksum_path(path)).map_err(|e| {
        ApiError::validation(format!(
            "the checksum file beside the backup is missing: {e}"
        ))
    })?;
    let expected = recorded.split_whitespace().next().unwrap_or_default();
    if hex::encode(Sha256::digest(&contents)) != expected {
        return Err(ApiError::validation(
            "the backup does not match its checksum: refusing to restore it",
        ));
    }
    let mut lines = contents.lines();
    let header: Value = lines
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| serde_json::from_str(&l).ok())
        .ok_or_else(|| ApiError::validation("not a Flow backup: no header"))?;
    if header["format"] != FORMAT || header["version"] != VERSION {
        return Err(ApiError::validation(format!(
            "unsupported backup format: {header}"
        )));
    }
    let mut tx = store.begin(tenant).await?;
    let empty = tx
        .list_leads(&LeadFilter {
            limit: 1,
            ..LeadFilter::default()
        })
        .await?
        .is_empty()
        && tx
            .list_contacts(&ContactFilter {
                limit: 1,
                ..ContactFilter::default()
            })
            .await?
            .is_empty()
        && tx
            .list_deals(&DealFilter {
                limit: 1,
                ..DealFilter::default()
            })
            .await?
            .is_empty();
    if !empty {
        return Err(ApiError::new(
            ErrorCode::TenantNotEmpty,
            "restore only into a tenant without data",
        ));
    }
    let mut restored = Restored::default();
    // Contacts before the leads and deals that point at them.
    let mut pending: Vec<Line> = Vec::new();
    for line in lines {
        let line = line.map_err(|e| ApiError::validation(e.to_string()))?;
        pending.push(
            serde_json::from_str(&line)
                .map_err(|e| ApiError::validation(format!("bad backup line: {e}")))?,
        );
    }
    let order = |line: &Line| match line {
        Line::Contact(row) => (0, row["id"].as_str().unwrap_or_default().to_owned()),
        Line::Lead(row) => (1, row["id"].as_str().unwrap_or_default().to_owned()),
        Line::Deal(row) => (2, row["id"].as_str().unwrap_or_default().to_owned()),
        Line::Incident(row) => (3, row["id"].as_str().unwrap_or_default().to_owned()),
        Line::Activity(row) => (4, row["id"].as_str().unwrap_or_default().to_owned()),
    };
    pending.sort_by_key(order);
    // Ids are unique across the database, so restored rows get new ones (minted in the
    // original order, which keeps "newest first" true) and references follow them.
    let mut ids = Renumbering::default();
    let bad = |e: serde_json::Error| ApiError::validation(format!("bad backup row: {e}"));
    for line in pending {
        let line = match line {
            Line::Contact(row) => Line::Contact(ids.renumber(row)),
            Line::Lead(row) => Line::Lead(ids.renumber(row)),
            Line::Deal(row) => Line::Deal(ids.renumber(row)),
            Line::Incident(row) => Line::Incident(ids.renumber(row)),
            Line::Activity(row) => Line::Activity(ids.renumber(row)),
        };
        match line {
            Line::Contact(row) => {
                let contact: Contact =
                    serde_json::from_value(retenant(row, tenant)).map_err(bad)?;
                tx.insert_contact(&contact).await?;
                restored.contacts += 1;
            }
            Line::Lead(row) => {
                let lead: Lead = serde_json::from_value(retenant(row, tenant)).map_err(bad)?;
                tx.insert_lead(&lead).await?;
                restored.leads += 1;
            }
            Line::Deal(row) => {
                let deal: Deal = serde_json::from_value(retenant(row, tenant)).map_err(bad)?;
                tx.insert_deal(&deal).await?;
                restored.deals += 1;
            }
            Line::Activity(row) => {
                let activity: Activity =
                    serde_json::from_value(retenant(row, tenant)).map_err(bad)?;
                tx.insert_activity(&activity).await?;
                restored.activities += 1;
            }
            Line::Incident(row) => {
                let incident: Incident =
                    serde_json::from_value(retenant(row, tenant)).map_err(bad)?;
                tx.insert_incident(&incident).await?;
                restored.incidents += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(restored)
}

/// Old id to new id, for one restore.
#[derive(Default)]
struct Renumbering(std::collections::HashMap<String, String>);

impl Renumbering {
    fn renumber(&mut self, mut row: Value) -> Value {
        if let Some(old) = row["id"].as_str().map(str::to_owned) {
            let new = uuid::Uuid::now_v7().to_string();
            self.0.insert(old, new.clone());
            row["id"] = json!(new);
        }
        for reference in ["contactId", "leadId", "entityId"] {
            if let Some(new) = row[reference].as_str().and_then(|old| self.0.get(old)) {
                row[reference] = json!(new);
            }
        }
        row
    }
}

/// Rows are written into the tenant being restored, whatever tenant they came from.
fn retenant(mut row: Value, tenant: TenantId) -> Value {
    row["tenantId"] = json!(tenant);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_backups_are_kept_with_their_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let backups = dir.path().join("backups").join("tenant");
        private_dir(&backups).unwrap();
        for n in 1..=4 {
            let path = backups.join(format!("0{n}.jsonl"));
            write_file(&path, b"{}\n").unwrap();
            write_file(&checksum_path(&path), b"sum\n").unwrap();
        }
        prune_backups(&backups, 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&backups)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["03.jsonl", "03.jsonl.sha256", "04.jsonl", "04.jsonl.sha256"]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&backups), 0o700);
            assert_eq!(mode(&backups.join("04.jsonl")), 0o600);
        }
    }
}
