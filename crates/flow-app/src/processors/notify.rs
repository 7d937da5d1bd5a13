//! Voice notifications (the spec's `voiceApiClient.scheduleNotification`): a message for the
//! voice agent to speak, delivered from the voice-processing queue as VOICE_NOTIFICATION to
//! the voice-agent room.

use std::sync::Arc;

use async_trait::async_trait;
use flow_store::{EventPriority, EventType, Job, NewEvent, Store};
use serde_json::{json, Value};

use flow_jobs::{JobError, Processor};

/// The job kind in the voice-processing queue.
pub const KIND: &str = crate::jobs::JobKind::Notify.as_str();

/// Publishes the notification; a re-run publishes it again (the voice agent dedupes by
/// `notificationId`, the job id).
pub struct VoiceNotify;

#[async_trait]
impl Processor for VoiceNotify {
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let message = job.payload["message"]
            .as_str()
            .ok_or_else(|| JobError::Permanent("no message in the notification".into()))?;
        let priority: EventPriority = serde_json::from_value(job.payload["priority"].clone())
            .unwrap_or(EventPriority::Medium);
        let mut event = NewEvent::new(
            EventType::VoiceNotification,
            "flow",
            json!({
                "notificationId": job.id,
                "message": message,
                "language": job.payload["language"],
                "leadId": job.payload["leadId"],
            }),
        );
        event.priority = priority;
        let mut tx = store.begin(job.tenant_id).await?;
        let logged = tx.append_event(&event).await?;
        tx.commit().await?;
        Ok(json!({ "eventSeq": logged.seq }))
    }
}
