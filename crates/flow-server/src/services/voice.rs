//! Voice commands: a structured command executed through the same services as REST.
//! (The Danish/English parser and speech arrive with the voice issue; this is the
//! execution path the gateway's `execute_voice_command` uses.)

use flow_store::{EventType, LeadId, LeadStatus, NewEvent, Store};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    leads::{self, ChangeStatus, CreateLead, ListLeads},
    Record, Work,
};
use crate::{
    auth::Caller,
    error::{ApiError, ApiResult},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatusParams {
    lead_id: LeadId,
    status: LeadStatus,
    reason: Option<String>,
}

fn params<T: serde::de::DeserializeOwned>(command: &str, value: Value) -> ApiResult<T> {
    let value = if value.is_null() { json!({}) } else { value };
    serde_json::from_value(value)
        .map_err(|e| ApiError::validation(format!("invalid parameters for {command}: {e}")))
}

/// Executes `command` with the caller's permissions and emits VOICE_COMMAND_EXECUTED.
pub async fn execute(
    store: &dyn Store,
    caller: &Caller,
    command: &str,
    parameters: Value,
) -> ApiResult<Value> {
    caller.require("execute", "voice")?;
    let data = match command {
        "get_leads" => {
            let query: ListLeads = params(command, parameters.clone())?;
            serde_json::to_value(leads::list(store, caller, query).await?).map_err(ApiError::internal)?
        }
        "create_lead" => {
            let input: CreateLead = params(command, parameters.clone())?;
            serde_json::to_value(leads::create(store, caller, input).await?).map_err(ApiError::internal)?
        }
        "update_lead_status" => {
            let input: StatusParams = params(command, parameters.clone())?;
            let change = ChangeStatus { status: input.status, reason: input.reason };
            serde_json::to_value(leads::change_status(store, caller, input.lead_id, change).await?)
                .map_err(ApiError::internal)?
        }
        other => {
            return Err(ApiError::bad_request(
                "unknown_command",
                format!("unknown voice command {other:?}; known: get_leads, create_lead, update_lead_status"),
            ))
        }
    };
    let mut work = Work::begin(store, caller).await?;
    work.record(Record {
        action: "voice.execute",
        entity_type: "voice_command",
        entity_id: command.to_owned(),
        before: None,
        after: Some(json!({ "command": command, "parameters": parameters })),
        event: Some(NewEvent::new(
            EventType::VoiceCommandExecuted,
            &caller.source_app,
            json!({ "command": command, "parameters": parameters, "success": true }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(data)
}
