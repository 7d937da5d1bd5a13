//! What a voice command leaves behind: the VOICE_COMMAND_EXECUTED announcement and the
//! turns of a conversation.

use super::*;

/// VOICE_COMMAND_EXECUTED to flow-web and voice-agent, with an audit entry.
pub(super) async fn announce(
    store: &dyn Store,
    caller: &Caller,
    command: &Command,
    parameters: &Value,
) -> ApiResult<()> {
    let mut work = Work::begin(store, caller).await?;
    work.record(Record {
        action: AuditAction::VoiceExecute,
        entity_type: "voice_command",
        entity_id: command.name.as_str().to_owned(),
        before: None,
        after: Some(json!({ "command": command.name, "parameters": parameters })),
        event: Some(NewEvent::new(
            EventType::VoiceCommandExecuted,
            &caller.source_app,
            json!({
                "command": command.name,
                "parameters": parameters,
                "language": command.language,
                "success": true,
            }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(())
}

/// Appends the utterance and the answer to a conversation (a new one when `id` is
/// absent); returns its id.
pub(super) async fn record(
    store: &dyn Store,
    caller: &Caller,
    id: Option<ConversationId>,
    answer: &VoiceAnswer,
) -> ApiResult<ConversationId> {
    let at = now();
    let user_text = answer
        .transcript
        .clone()
        .or_else(|| answer.command.clone())
        .unwrap_or_default();
    let turns = [
        json!({ "role": "user", "text": user_text, "at": at }),
        json!({
            "role": "assistant", "text": answer.reply, "at": at,
            "command": answer.command, "parameters": answer.parameters,
            "executed": answer.executed,
        }),
    ];
    let mut work = Work::begin(store, caller).await?;
    let conversation = match id {
        Some(id) => {
            let mut conversation = work
                .tx()
                .lock_conversation(id)
                .await
                .map_err(|e| ApiError::from_store("conversation", e))?;
            if let Value::Array(transcript) = &mut conversation.transcript {
                transcript.extend(turns);
            }
            conversation.language = Some(answer.language.clone());
            conversation.updated_at = at;
            work.tx().update_conversation(&conversation).await?;
            conversation
        }
        None => {
            let conversation = Conversation {
                id: ConversationId::new(),
                tenant_id: caller.tenant_id,
                title: Some(user_text.chars().take(80).collect()),
                language: Some(answer.language.clone()),
                transcript: Value::Array(turns.to_vec()),
                created_at: at,
                updated_at: at,
            };
            work.tx().insert_conversation(&conversation).await?;
            conversation
        }
    };
    work.commit().await?;
    Ok(conversation.id)
}

/// Starts a conversation, optionally with turns already held elsewhere.
pub async fn create_conversation(
    store: &dyn Store,
    caller: &Caller,
    title: Option<String>,
    transcript: Option<Value>,
) -> ApiResult<Conversation> {
    caller.require("execute", "voice")?;
    let transcript = match transcript {
        None => json!([]),
        Some(Value::Array(turns)) if turns.iter().all(Value::is_object) && turns.len() <= 1000 => {
            Value::Array(turns)
        }
        Some(_) => {
            return Err(ApiError::validation(
                "transcript must be an array of up to 1000 turn objects",
            ))
        }
    };
    let at = now();
    let conversation = Conversation {
        id: ConversationId::new(),
        tenant_id: caller.tenant_id,
        title: validate::text("title", title.as_deref(), 200)?,
        language: None,
        transcript,
        created_at: at,
        updated_at: at,
    };
    let mut work = Work::begin(store, caller).await?;
    work.tx().insert_conversation(&conversation).await?;
    work.commit().await?;
    Ok(conversation)
}

/// One conversation of the caller's tenant.
pub async fn get_conversation(
    store: &dyn Store,
    caller: &Caller,
    id: ConversationId,
) -> ApiResult<Conversation> {
    caller.require("execute", "voice")?;
    let mut tx = crate::work::read(store, caller).await?;
    tx.get_conversation(id)
        .await
        .map_err(|e: StoreError| ApiError::from_store("conversation", e))
}

/// Conversations newest first.
pub async fn list_conversations(
    store: &dyn Store,
    caller: &Caller,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> ApiResult<crate::work::Page<Conversation>> {
    caller.require("execute", "voice")?;
    let limit = validate::limit(limit)?;
    let before = crate::work::decode_cursor(cursor)?.map(ConversationId::from);
    let mut tx = crate::work::read(store, caller).await?;
    let rows = tx.list_conversations(before, limit + 1).await?;
    Ok(crate::work::Page::from_rows(rows, limit, |c| c.id.0))
}
