//! Contacts: unique by normalised email per tenant, synced by email, merged.

use flow_store::{AuditAction, Contact, ContactFilter, ContactId, EventType, NewEvent, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{decode_cursor, now, read, snapshot, Page, Record, Work};
use crate::{
    auth::Caller,
    error::{ApiError, ApiResult},
    validate,
};

// The `pattern`s below are the constants of `validate.rs` (`OPTIONAL_NAME_PATTERN`, ...),
// which explain them; `tests/it/schema.rs` (flow-server) checks they stay the same.

/// Body of `POST /contacts` and `POST /contacts/sync`. A new contact needs at least one of
/// `firstName`, `lastName`, `email` or `company` (not blank); a sync needs `email`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactInput {
    /// At most 100 characters, none of them ``< > ; { } " \ ` | $ =`` or a control character.
    #[schema(
        max_length = 100,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub first_name: Option<String>,
    /// At most 100 characters, with the characters of `firstName`.
    #[schema(
        max_length = 100,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub last_name: Option<String>,
    #[schema(
        format = Email,
        max_length = 254,
        pattern = r#"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"#
    )]
    pub email: Option<String>,
    /// 6-15 digits, with spaces and `+ ( ) - .` allowed; at most 32 characters.
    #[schema(max_length = 32, pattern = r#"^(?:[ +().-]*[0-9]){6,15}[ +().-]*$"#)]
    pub phone: Option<String>,
    /// At most 200 characters, with the characters of `firstName`.
    #[schema(
        max_length = 200,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub company: Option<String>,
    /// 1-64 letters, digits, `.`, `_` or `-`, stored lower-cased.
    #[schema(min_length = 1, max_length = 64, pattern = r#"^[A-Za-z0-9._-]{1,64}$"#)]
    pub source: Option<String>,
    pub consent: Option<bool>,
}

/// Body of `PATCH /contacts/{id}`: only the fields present change; `null` clears a field.
/// Each field has the limits of `ContactInput`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateContact {
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 100,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 100,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        format = Email,
        max_length = 254,
        pattern = r#"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"#
    )]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 32,
        pattern = r#"^(?:[ +().-]*[0-9]){6,15}[ +().-]*$"#
    )]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 200,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub company: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        min_length = 1,
        max_length = 64,
        pattern = r#"^[A-Za-z0-9._-]{1,64}$"#
    )]
    pub source: Option<Option<String>>,
    pub consent: Option<bool>,
}

/// Body of `POST /contacts/{id}/merge`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeContacts {
    /// The contact that folds into the one in the path and then disappears.
    pub source_contact_id: ContactId,
}

/// Answer of `POST /contacts/{id}/merge`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MergeResult {
    pub contact: Contact,
    pub merged_contact_id: ContactId,
    pub moved_leads: u64,
    pub moved_activities: u64,
    pub moved_deals: u64,
}

/// Query of `GET /contacts`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListContacts {
    /// Exact email (normalised before matching).
    #[param(
        format = Email,
        max_length = 254,
        pattern = r#"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"#
    )]
    pub email: Option<String>,
    /// Free text matched against names, email, company and phone (at most 100 characters).
    #[param(max_length = 100, pattern = r#"^[^\u0000-\u001f\u007f-\u009f]*$"#)]
    pub q: Option<String>,
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

struct ValidContact {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    source: Option<String>,
    consent: Option<bool>,
}

fn validate_input(input: &ContactInput) -> ApiResult<ValidContact> {
    Ok(ValidContact {
        first_name: validate::opt_name("firstName", input.first_name.as_deref(), 100)?,
        last_name: validate::opt_name("lastName", input.last_name.as_deref(), 100)?,
        email: validate::opt_email(input.email.as_deref())?,
        phone: validate::opt_phone(input.phone.as_deref())?,
        company: validate::opt_name("company", input.company.as_deref(), 200)?,
        source: input
            .source
            .as_deref()
            .map(|s| validate::slug("source", s))
            .transpose()?,
        consent: input.consent,
    })
}

fn contact_event(event_type: EventType, caller: &Caller, contact: &Contact) -> NewEvent {
    NewEvent::new(
        event_type,
        &caller.source_app,
        json!({ "contact": contact }),
    )
}

/// Creates a contact; a second contact with the same email is 409.
pub async fn create(store: &dyn Store, caller: &Caller, input: ContactInput) -> ApiResult<Contact> {
    caller.require("write", "contacts")?;
    let valid = validate_input(&input)?;
    if valid.first_name.is_none()
        && valid.last_name.is_none()
        && valid.email.is_none()
        && valid.company.is_none()
    {
        return Err(ApiError::validation(
            "a contact needs at least one of firstName, lastName, email or company",
        ));
    }
    let mut work = Work::begin(store, caller).await?;
    let contact = insert(&mut work, valid).await?;
    work.commit().await?;
    Ok(contact)
}

async fn insert(work: &mut Work<'_>, valid: ValidContact) -> ApiResult<Contact> {
    let at = now();
    let caller = work.caller().clone();
    let contact = Contact {
        id: ContactId::new(),
        tenant_id: caller.tenant_id,
        first_name: valid.first_name,
        last_name: valid.last_name,
        email: valid.email,
        phone: valid.phone,
        company: valid.company,
        source: valid.source.or_else(|| Some(caller.source_app.clone())),
        consent: valid.consent.unwrap_or(false),
        created_at: at,
        updated_at: at,
    };
    work.tx().insert_contact(&contact).await?;
    work.record(Record {
        action: AuditAction::ContactCreate,
        entity_type: "contact",
        entity_id: contact.id.to_string(),
        before: None,
        after: snapshot(&contact),
        event: Some(contact_event(EventType::ContactCreated, &caller, &contact)),
    })
    .await?;
    Ok(contact)
}

/// One contact of the caller's tenant.
pub async fn get(store: &dyn Store, caller: &Caller, id: ContactId) -> ApiResult<Contact> {
    caller.require("read", "contacts")?;
    read(store, caller)
        .await?
        .get_contact(id)
        .await
        .map_err(|e| ApiError::from_store("contact", e))
}

/// A page of contacts, newest first.
pub async fn list(
    store: &dyn Store,
    caller: &Caller,
    query: ListContacts,
) -> ApiResult<Page<Contact>> {
    caller.require("read", "contacts")?;
    let limit = validate::limit(query.limit)?;
    let filter = ContactFilter {
        email: query.email.as_deref().map(validate::email).transpose()?,
        text: validate::search_text(query.q)?,
        before: decode_cursor(query.cursor.as_deref())?.map(ContactId),
        limit: limit + 1,
    };
    let rows = read(store, caller).await?.list_contacts(&filter).await?;
    Ok(Page::from_rows(rows, limit, |c| c.id.0))
}

/// Changes a contact's details.
pub async fn update(
    store: &dyn Store,
    caller: &Caller,
    id: ContactId,
    patch: UpdateContact,
) -> ApiResult<Contact> {
    caller.require("write", "contacts")?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .lock_contact(id)
        .await
        .map_err(|e| ApiError::from_store("contact", e))?;
    let mut contact = before.clone();
    if let Some(v) = &patch.first_name {
        contact.first_name = validate::opt_name("firstName", v.as_deref(), 100)?;
    }
    if let Some(v) = &patch.last_name {
        contact.last_name = validate::opt_name("lastName", v.as_deref(), 100)?;
    }
    if let Some(v) = &patch.email {
        contact.email = validate::opt_email(v.as_deref())?;
    }
    if let Some(v) = &patch.phone {
        contact.phone = validate::opt_phone(v.as_deref())?;
    }
    if let Some(v) = &patch.company {
        contact.company = validate::opt_name("company", v.as_deref(), 200)?;
    }
    if let Some(v) = &patch.source {
        contact.source = v
            .as_deref()
            .map(|s| validate::slug("source", s))
            .transpose()?;
    }
    if let Some(consent) = patch.consent {
        contact.consent = consent;
    }
    let contact = save_if_changed(&mut work, before, contact, AuditAction::ContactUpdate).await?;
    work.commit().await?;
    Ok(contact)
}

async fn save_if_changed(
    work: &mut Work<'_>,
    before: Contact,
    mut contact: Contact,
    action: AuditAction,
) -> ApiResult<Contact> {
    let unchanged = contact.first_name == before.first_name
        && contact.last_name == before.last_name
        && contact.email == before.email
        && contact.phone == before.phone
        && contact.company == before.company
        && contact.source == before.source
        && contact.consent == before.consent;
    if unchanged {
        return Ok(before);
    }
    contact.updated_at = now();
    work.tx().update_contact(&contact).await?;
    let caller = work.caller().clone();
    work.record(Record {
        action,
        entity_type: "contact",
        entity_id: contact.id.to_string(),
        before: snapshot(&before),
        after: snapshot(&contact),
        event: Some(contact_event(EventType::ContactUpdated, &caller, &contact)),
    })
    .await?;
    Ok(contact)
}

/// Upserts by email (the spec's contact sync): creates the contact, or updates the
/// fields the caller sent. Returns the contact and whether it was created.
pub async fn sync(
    store: &dyn Store,
    caller: &Caller,
    input: ContactInput,
) -> ApiResult<(Contact, bool)> {
    caller.require("write", "contacts")?;
    let valid = validate_input(&input)?;
    let Some(email) = valid.email.clone() else {
        return Err(ApiError::validation("email is required to sync a contact"));
    };
    let mut work = Work::begin(store, caller).await?;
    let Some(before) = work.tx().find_contact_by_email(&email).await? else {
        let contact = insert(&mut work, valid).await?;
        work.commit().await?;
        return Ok((contact, true));
    };
    let mut contact = before.clone();
    contact.first_name = valid.first_name.or(contact.first_name);
    contact.last_name = valid.last_name.or(contact.last_name);
    contact.phone = valid.phone.or(contact.phone);
    contact.company = valid.company.or(contact.company);
    contact.source = valid.source.or(contact.source);
    contact.consent = valid.consent.unwrap_or(contact.consent);
    let contact = save_if_changed(&mut work, before, contact, AuditAction::ContactSync).await?;
    work.commit().await?;
    Ok((contact, false))
}

/// Folds `source_contact_id` into `target`: its leads, activities and deals move over,
/// fields the target lacks are taken from it, and it is deleted.
pub async fn merge(
    store: &dyn Store,
    caller: &Caller,
    target: ContactId,
    input: MergeContacts,
) -> ApiResult<MergeResult> {
    caller.require("write", "contacts")?;
    if input.source_contact_id == target {
        return Err(ApiError::validation(
            "a contact cannot be merged into itself",
        ));
    }
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .lock_contact(target)
        .await
        .map_err(|e| ApiError::from_store("contact", e))?;
    let source = work
        .tx()
        .lock_contact(input.source_contact_id)
        .await
        .map_err(|e| ApiError::from_store("source contact", e))?;
    let moved_leads = work.tx().move_leads(source.id, target).await?;
    let moved_activities = work.tx().move_activities(source.id.0, target.0).await?;
    let moved_deals = work.tx().move_deals(source.id, target).await?;
    // Delete first: the source's email may move to the target, and emails are unique.
    work.tx().delete_contact(source.id).await?;
    let mut contact = before.clone();
    contact.first_name = contact.first_name.or(source.first_name.clone());
    contact.last_name = contact.last_name.or(source.last_name.clone());
    contact.email = contact.email.or(source.email.clone());
    contact.phone = contact.phone.or(source.phone.clone());
    contact.company = contact.company.or(source.company.clone());
    contact.source = contact.source.or(source.source.clone());
    contact.consent = contact.consent || source.consent;
    contact.updated_at = now();
    work.tx().update_contact(&contact).await?;
    work.record(Record {
        action: AuditAction::ContactDelete,
        entity_type: "contact",
        entity_id: source.id.to_string(),
        before: snapshot(&source),
        after: None,
        event: None,
    })
    .await?;
    work.record(Record {
        action: AuditAction::ContactMerge,
        entity_type: "contact",
        entity_id: contact.id.to_string(),
        before: snapshot(&json!({ "contact": before, "merged": source })),
        after: snapshot(&contact),
        event: Some(NewEvent::new(
            EventType::ContactMerged,
            &caller.source_app,
            json!({
                "contact": contact,
                "mergedContactId": source.id,
                "movedLeads": moved_leads,
                "movedActivities": moved_activities,
                "movedDeals": moved_deals,
            }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(MergeResult {
        contact,
        merged_contact_id: source.id,
        moved_leads,
        moved_activities,
        moved_deals,
    })
}
