//! The job processors: each runs one kind of job by calling the use cases, and
//! [`registry`] hands them to the engine.

pub mod analytics;
pub mod backup;
pub mod chat;
pub mod compliance;
pub mod email_sync;
pub mod followups;
pub mod import;
pub mod notify;
pub mod voice_audio;

use std::{path::PathBuf, sync::Arc};

use flow_jobs::{JobError, Processors};
use flow_outbound::{speech::SpeechServices, LlmClient, OutboundError};

use crate::jobs::JobKind;

/// What the processors need from the server's settings.
pub struct ProcessorSettings {
    /// Backups are written under `<data_dir>/backups/`.
    pub data_dir: PathBuf,
    /// Backup files kept per tenant; older ones are deleted after each export.
    pub backups_kept: usize,
    /// Chat jobs run only with a client.
    pub llm: Option<LlmClient>,
    pub speech: SpeechServices,
}

/// Flow's processors.
pub fn registry(settings: ProcessorSettings) -> Processors {
    let ProcessorSettings {
        data_dir,
        backups_kept,
        llm,
        speech,
    } = settings;
    let mut processors = Processors::default().with_ping();
    let mut register = |kind: JobKind, processor: Arc<dyn flow_jobs::Processor>| {
        processors.register(kind.queue(), kind.as_str(), processor);
    };
    register(
        JobKind::VoiceAudio,
        Arc::new(voice_audio::TranscribeAndRun {
            speech,
            llm: llm.clone(),
        }),
    );
    register(JobKind::Notify, Arc::new(notify::VoiceNotify));
    if let Some(client) = llm {
        register(JobKind::Chat, Arc::new(chat::Chat { client }));
    }
    register(JobKind::Rollup, Arc::new(analytics::Rollup));
    register(
        JobKind::Export,
        Arc::new(backup::ExportTenant {
            data_dir,
            kept: backups_kept,
        }),
    );
    register(JobKind::ImportLeads, Arc::new(import::ImportLeads));
    register(JobKind::Scan, Arc::new(compliance::ComplianceScan));
    register(JobKind::LeadQualified, Arc::new(followups::LeadFollowUp));
    register(JobKind::LeadConverted, Arc::new(followups::LeadFollowUp));
    register(JobKind::SyncHeaders, Arc::new(email_sync::SyncHeaders));
    processors
}

/// A failed call to another system, as a job attempt's failure.
fn outbound_failure(error: OutboundError) -> JobError {
    match error {
        OutboundError::Retryable(message) => JobError::Retryable(message),
        OutboundError::Permanent(message) => JobError::Permanent(message),
    }
}
