//! Running an understood command through the ordinary services, with the caller's own
//! permissions, and the sentence that answers it.

use super::*;

pub(super) async fn run(
    store: &dyn Store,
    caller: &Caller,
    command: Command,
    mode: Mode,
    now: DateTime<FixedOffset>,
) -> ApiResult<VoiceAnswer> {
    let parameters = Value::Object(command.parameters.clone());
    let mut answer = VoiceAnswer {
        success: true,
        executed: false,
        language: command.language.as_str().to_owned(),
        transcript: None,
        command: Some(command.name.as_str().to_owned()),
        parameters: parameters.clone(),
        confidence: command.confidence,
        clarification: None,
        data: Value::Null,
        reply: String::new(),
        conversation_id: None,
        speech: None,
        speech_error: None,
    };
    if mode == Mode::DryRun && !is_read_only(command.name) {
        answer.reply = reply::dry_run(command.language, command.name.as_str());
        return Ok(answer);
    }
    let (data, said) = execute(store, caller, &command, now).await?;
    // A command about a lead or contact that is not there changed nothing.
    let found = data.get("notFound").is_none();
    answer.data = data;
    answer.reply = said;
    answer.success = found;
    answer.executed = found;
    if mode == Mode::Execute && found {
        announce(store, caller, &command, &parameters).await?;
    }
    Ok(answer)
}

pub(super) fn text<'a>(parameters: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    parameters.get(key).and_then(Value::as_str)
}

pub(super) fn status_of(parameters: &Map<String, Value>) -> ApiResult<Option<LeadStatus>> {
    text(parameters, "status")
        .map(|s| {
            LeadStatus::parse(s).ok_or_else(|| ApiError::validation(format!("unknown status {s}")))
        })
        .transpose()
}

/// The start of the period in UTC, and its end.
pub(super) fn period_range(
    period: Option<&str>,
    now: DateTime<FixedOffset>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    use chrono::Datelike;
    let midnight = |date: chrono::NaiveDate| {
        now.timezone()
            .from_local_datetime(&date.and_time(NaiveTime::MIN))
            .single()
            .map(|t| t.with_timezone(&Utc))
    };
    let today = now.date_naive();
    let monday = today - Duration::days(i64::from(now.weekday().num_days_from_monday()));
    let (from, to) = match period? {
        "today" => (today, today + Duration::days(1)),
        "yesterday" => (today - Duration::days(1), today),
        "this_week" => (monday, monday + Duration::days(7)),
        "last_week" => (monday - Duration::days(7), monday),
        "this_month" => (today.with_day(1)?, today + Duration::days(1)),
        _ => return None,
    };
    Some((midnight(from)?, midnight(to)?))
}

pub(super) fn full_name(first: &str, last: Option<&str>) -> String {
    match last {
        Some(last) => format!("{first} {last}"),
        None => first.to_owned(),
    }
}

pub(super) fn lead_name(lead: &Lead) -> String {
    full_name(&lead.first_name, lead.last_name.as_deref())
}

/// The lead a person meant: by id, by email, or by name (best match first).
pub(super) async fn find_lead(
    store: &dyn Store,
    caller: &Caller,
    target: &str,
) -> ApiResult<Option<Lead>> {
    if let Ok(id) = target.parse::<Uuid>() {
        return match leads::get(store, caller, id.into()).await {
            Ok(lead) => Ok(Some(lead)),
            Err(e) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        };
    }
    let wanted = target.to_lowercase();
    let first_word = target.split_whitespace().next().unwrap_or(target);
    let page = leads::list(
        store,
        caller,
        ListLeads {
            q: Some(
                if target.contains('@') {
                    target
                } else {
                    first_word
                }
                .to_owned(),
            ),
            limit: Some(50),
            ..ListLeads::default()
        },
    )
    .await?;
    let score = |lead: &Lead| {
        let name = lead_name(lead).to_lowercase();
        if lead
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(target))
            || name == wanted
        {
            2
        } else if wanted.split_whitespace().all(|w| name.contains(w)) {
            1
        } else {
            0
        }
    };
    Ok(page
        .data
        .into_iter()
        .filter(|lead| score(lead) > 0)
        .max_by_key(|lead| (score(lead), lead.id)))
}

/// Runs the command; returns its data and the sentence to say.
/// The answer to a command whose lead or contact is not there: `data` names what was
/// looked for, and the command counts as not executed.
fn nothing_found(lang: Language, target: &str) -> (Value, String) {
    (
        json!({ "notFound": target }),
        reply::not_found(lang, target),
    )
}

pub(super) async fn execute(
    store: &dyn Store,
    caller: &Caller,
    command: &Command,
    now: DateTime<FixedOffset>,
) -> ApiResult<(Value, String)> {
    let lang = command.language;
    let p = &command.parameters;
    match command.name {
        CommandName::GetLeads => {
            let status = status_of(p)?;
            let limit = p
                .get("limit")
                .and_then(Value::as_u64)
                .map(|n| n.clamp(1, 100) as u32);
            let page = leads::list(
                store,
                caller,
                ListLeads {
                    status,
                    source: text(p, "source").map(str::to_owned),
                    created_after: period_range(text(p, "period"), now).map(|(from, _)| from),
                    limit: Some(limit.unwrap_or(10)),
                    ..ListLeads::default()
                },
            )
            .await?;
            let names: Vec<String> = page.data.iter().map(lead_name).collect();
            let said = reply::leads_listed(
                lang,
                page.data.len(),
                status.map(LeadStatus::as_str),
                &names,
            );
            Ok((to_json(&page)?, said))
        }
        CommandName::GetLead => {
            let target = text(p, "email")
                .or_else(|| text(p, "name"))
                .unwrap_or_default();
            match find_lead(store, caller, target).await? {
                Some(lead) => {
                    let said = reply::lead_status(lang, &lead_name(&lead), lead.status.as_str());
                    Ok((to_json(&lead)?, said))
                }
                None => Ok(nothing_found(lang, target)),
            }
        }
        CommandName::CreateLead => {
            let first_name = text(p, "first_name")
                .or_else(|| text(p, "company"))
                .ok_or_else(|| ApiError::validation("a new lead needs a name"))?;
            let lead = leads::create(
                store,
                caller,
                CreateLead {
                    first_name: first_name.to_owned(),
                    last_name: text(p, "last_name").map(str::to_owned),
                    email: text(p, "email").map(str::to_owned),
                    phone: text(p, "phone").map(str::to_owned),
                    company: text(p, "company").map(str::to_owned),
                    source: Some(text(p, "source").unwrap_or("voice").to_owned()),
                    notes: None,
                    voice_notification_enabled: false,
                },
            )
            .await?;
            let said = reply::lead_created(lang, &lead_name(&lead));
            Ok((to_json(&lead)?, said))
        }
        CommandName::UpdateLeadStatus => {
            let target = text(p, "target").unwrap_or_default();
            let status = status_of(p)?.ok_or_else(|| ApiError::validation("status is required"))?;
            let Some(lead) = find_lead(store, caller, target).await? else {
                return Ok(nothing_found(lang, target));
            };
            let lead = leads::change_status(
                store,
                caller,
                lead.id,
                ChangeStatus {
                    status,
                    reason: None,
                },
            )
            .await?;
            let said = reply::status_updated(lang, &lead_name(&lead), status.as_str());
            Ok((to_json(&lead)?, said))
        }
        CommandName::AssignLead => {
            let target = text(p, "target").unwrap_or_default();
            let assignee = match text(p, "assignee") {
                Some("me") | None => caller.actor.id.clone(),
                Some(name) => name.to_owned(),
            };
            let Some(lead) = find_lead(store, caller, target).await? else {
                return Ok(nothing_found(lang, target));
            };
            let lead = leads::assign(
                store,
                caller,
                lead.id,
                AssignLead {
                    assignee: Some(assignee.clone()),
                },
            )
            .await?;
            let said = reply::lead_assigned(lang, &lead_name(&lead), &assignee);
            Ok((to_json(&lead)?, said))
        }
        CommandName::SearchContacts => {
            let query = text(p, "query").unwrap_or_default();
            let page = contacts::list(
                store,
                caller,
                ListContacts {
                    q: Some(query.to_owned()),
                    limit: Some(10),
                    ..ListContacts::default()
                },
            )
            .await?;
            let names: Vec<String> = page.data.iter().map(contact_name).collect();
            let said = reply::contacts_found(lang, query, &names);
            Ok((to_json(&page)?, said))
        }
        CommandName::LogActivity => {
            let kind = text(p, "activity_type").unwrap_or("note");
            let target = text(p, "target")
                .ok_or_else(|| ApiError::validation("say who the activity is about"))?;
            let Some(lead) = find_lead(store, caller, target).await? else {
                return Ok(nothing_found(lang, target));
            };
            let activity = activities::create(
                store,
                caller,
                CreateActivity {
                    activity_type: kind.to_uppercase(),
                    entity_type: EntityType::Lead,
                    entity_id: lead.id.0,
                    description: text(p, "description").map(str::to_owned),
                    data: Some(json!({ "via": "voice" })),
                },
            )
            .await?;
            let said = reply::activity_logged(lang, kind, Some(&lead_name(&lead)));
            Ok((to_json(&activity)?, said))
        }
        CommandName::ScheduleMeeting => schedule_meeting(store, caller, command, now).await,
        CommandName::GetSummary => {
            let period = text(p, "period").or(Some("today"));
            let (from, to) = period_range(period, now)
                .unwrap_or((now.with_timezone(&Utc), now.with_timezone(&Utc)));
            let new_leads = count_new_leads(store, caller, from, to).await?;
            // Meetings only for callers who may read activities; the rest hear about leads.
            let meetings = if caller.permissions.allows("read", "activities") {
                Some(count_meetings(store, caller, from, to).await?)
            } else {
                None
            };
            let said = match meetings {
                Some(meetings) => reply::summary(lang, period, new_leads, meetings),
                None => reply::leads_listed(lang, new_leads, Some("NEW"), &[]),
            };
            Ok((
                json!({ "period": period, "newLeads": new_leads, "meetings": meetings, "from": from, "to": to }),
                said,
            ))
        }
        CommandName::Help => {
            let commands: Vec<&str> = CommandName::ALL.iter().map(|c| c.as_str()).collect();
            Ok((json!({ "commands": commands }), reply::help_text(lang)))
        }
    }
}

pub(super) fn to_json<T: Serialize>(value: &T) -> ApiResult<Value> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

pub(super) fn contact_name(contact: &Contact) -> String {
    let first = contact.first_name.as_deref().unwrap_or_default();
    let name = full_name(first, contact.last_name.as_deref());
    if name.trim().is_empty() {
        contact.email.clone().unwrap_or_default()
    } else {
        name
    }
}

/// Counts leads created in `[from, to)`, page by page (a summary is for people: it stops
/// counting at 1,000).
pub(super) async fn count_new_leads(
    store: &dyn Store,
    caller: &Caller,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<usize> {
    let mut count = 0;
    let mut cursor = None;
    for _ in 0..10 {
        let page = leads::list(
            store,
            caller,
            ListLeads {
                created_after: Some(from - Duration::microseconds(1)),
                limit: Some(100),
                cursor: cursor.take(),
                ..ListLeads::default()
            },
        )
        .await?;
        count += page.data.iter().filter(|lead| lead.created_at < to).count();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(count)
}

/// Counts meetings (MEETING activities) that start in `[from, to)`, looking at the latest
/// 1,000 booked.
pub(super) async fn count_meetings(
    store: &dyn Store,
    caller: &Caller,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<usize> {
    let mut count = 0;
    let mut cursor = None;
    for _ in 0..10 {
        let page = activities::list(
            store,
            caller,
            activities::ListActivities {
                entity_id: None,
                activity_type: Some(ActivityKind::Meeting.to_string()),
                limit: Some(100),
                cursor: cursor.take(),
            },
        )
        .await?;
        count += page
            .data
            .iter()
            .filter_map(|a| a.data["start"].as_str())
            .filter_map(|start| DateTime::parse_from_rfc3339(start).ok())
            .filter(|start| (from..to).contains(&start.with_timezone(&Utc)))
            .count();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(count)
}

/// Books a meeting as a MEETING activity on the lead it is with.
pub(super) async fn schedule_meeting(
    store: &dyn Store,
    caller: &Caller,
    command: &Command,
    now: DateTime<FixedOffset>,
) -> ApiResult<(Value, String)> {
    let lang = command.language;
    let p = &command.parameters;
    let with =
        text(p, "with").ok_or_else(|| ApiError::validation("say who the meeting is with"))?;
    let start = match (text(p, "start"), text(p, "date")) {
        (Some(start), _) => DateTime::parse_from_rfc3339(start)
            .map_err(|_| ApiError::validation("start must be an RFC 3339 date-time"))?,
        // A day without a time: nine in the morning, said back as such.
        (None, Some(date)) => chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .ok()
            .and_then(|d| {
                now.timezone()
                    .from_local_datetime(&d.and_hms_opt(9, 0, 0)?)
                    .single()
            })
            .ok_or_else(|| ApiError::validation("date must be YYYY-MM-DD"))?,
        (None, None) => return Err(ApiError::validation("say when the meeting is")),
    };
    let Some(lead) = find_lead(store, caller, with).await? else {
        return Ok(nothing_found(lang, with));
    };
    let minutes = p
        .get("duration_minutes")
        .and_then(Value::as_u64)
        .unwrap_or(30);
    let activity = activities::create(
        store,
        caller,
        CreateActivity {
            activity_type: ActivityKind::Meeting.to_string(),
            entity_type: EntityType::Lead,
            entity_id: lead.id.0,
            description: Some(format!("Meeting with {}", lead_name(&lead))),
            data: Some(json!({ "start": start, "durationMinutes": minutes, "via": "voice" })),
        },
    )
    .await?;
    let said = reply::meeting_scheduled(lang, Some(&lead_name(&lead)), start);
    Ok((
        serde_json::to_value(&activity).map_err(ApiError::internal)?,
        said,
    ))
}
