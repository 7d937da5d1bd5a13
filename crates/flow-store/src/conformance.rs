//! One story every backend must pass: tenant scoping, constraints, rollback and the event
//! log, driven through the traits only. Each backend runs it from its own tests.

use serde_json::json;

use crate::{
    now, Activity, ActivityId, Actor, ActorKind, ApiKeyId, Constraint, Contact, ContactFilter,
    ContactId, DailyRollup, Deal, DealId, DealStatus, EntityType, EventType, Lead, LeadFilter,
    LeadId, LeadStatus, NewApiKey, NewAuditEntry, NewEvent, NewRefreshToken, NewUser, PlanLog,
    RefreshTokenUse, Role, Store, StoreError, TenantId, UserId,
};

fn contact(tenant: TenantId, email: &str) -> Contact {
    Contact {
        id: ContactId::new(),
        tenant_id: tenant,
        first_name: Some("Ada".into()),
        last_name: None,
        email: Some(email.into()),
        phone: None,
        company: None,
        source: None,
        consent: false,
        created_at: now(),
        updated_at: now(),
    }
}

fn lead(tenant: TenantId, contact: Option<ContactId>, name: &str) -> Lead {
    Lead {
        id: LeadId::new(),
        tenant_id: tenant,
        contact_id: contact,
        first_name: name.into(),
        last_name: None,
        email: None,
        phone: None,
        company: None,
        source: "test".into(),
        status: LeadStatus::New,
        notes: None,
        assigned_to: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn is_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::NotFound))
}

/// Runs the whole story against a freshly migrated, empty store.
pub async fn run(store: &dyn Store) {
    let a = store.create_tenant("A", "conf-a").await.unwrap();
    let b = store.create_tenant("B", "conf-b").await.unwrap();
    assert!(matches!(
        store.create_tenant("A again", "conf-a").await,
        Err(StoreError::Constraint(Constraint::TenantSlugUnique))
    ));

    // Tenant A writes a contact, a lead, an event and a key.
    let a_contact = contact(a.id, "ada@example.com");
    let a_lead = lead(a.id, Some(a_contact.id), "Ada");
    let mut tx = store.begin(a.id).await.unwrap();
    tx.insert_contact(&a_contact).await.unwrap();
    tx.insert_lead(&a_lead).await.unwrap();
    let first = tx
        .append_event(&NewEvent::new(EventType::LeadCreated, "test", json!({})))
        .await
        .unwrap();
    let key = tx
        .insert_api_key(&NewApiKey {
            name: "k".into(),
            prefix: "p".into(),
            key_hash: [7; 32],
            permissions: vec!["*".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 10,
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.event.target, ["crm-web", "flow-web"]);

    // A reads its own rows back.
    let mut read = store.read(a.id).await.unwrap();
    assert_eq!(
        read.get_lead(a_lead.id).await.unwrap().contact_id,
        Some(a_contact.id)
    );
    assert_eq!(
        read.find_contact_by_email("ada@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        a_contact.id
    );
    assert_eq!(read.list_events(0, 10).await.unwrap().len(), 1);
    drop(read);
    let found = store.find_api_key(&[7; 32]).await.unwrap().unwrap();
    assert_eq!(found.key.id, key.id);
    assert!(found.tenant_active);

    // B sees none of it and can change none of it.
    let mut read = store.read(b.id).await.unwrap();
    assert!(is_not_found(read.get_lead(a_lead.id).await));
    assert!(is_not_found(read.get_contact(a_contact.id).await));
    assert!(read
        .find_contact_by_email("ada@example.com")
        .await
        .unwrap()
        .is_none());
    assert!(read
        .list_leads(&LeadFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty());
    assert!(read
        .list_contacts(&ContactFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty());
    assert!(read.list_events(0, 10).await.unwrap().is_empty());
    assert!(read.list_api_keys().await.unwrap().is_empty());
    assert_eq!(read.last_event_seq().await.unwrap(), 0);
    drop(read);

    let b_contact = contact(b.id, "ada@example.com");
    let mut tx = store.begin(b.id).await.unwrap();
    tx.insert_contact(&b_contact)
        .await
        .expect("the same email in another tenant is fine");
    assert!(is_not_found(tx.lock_lead(a_lead.id).await));
    let mut hijacked = a_lead.clone();
    hijacked.first_name = "Mallory".into();
    assert!(is_not_found(tx.update_lead(&hijacked).await));
    assert!(is_not_found(tx.delete_lead(a_lead.id).await));
    assert!(is_not_found(tx.revoke_api_key(key.id).await));
    assert!(is_not_found(tx.revoke_api_key(ApiKeyId::new()).await));
    assert_eq!(tx.move_leads(a_contact.id, b_contact.id).await.unwrap(), 0);
    assert_eq!(
        tx.move_activities(a_lead.id.0, b_contact.id.0)
            .await
            .unwrap(),
        0
    );
    let b_event = tx
        .append_event(&NewEvent::new(EventType::ContactCreated, "test", json!({})))
        .await
        .unwrap();
    assert_eq!(b_event.seq, 1, "each tenant has its own sequence");
    tx.commit().await.unwrap();

    // The schema itself refuses a B lead that points at A's contact.
    let mut tx = store.begin(b.id).await.unwrap();
    let cross = tx
        .insert_lead(&lead(b.id, Some(a_contact.id), "Cross"))
        .await;
    assert!(
        matches!(cross, Err(StoreError::Constraint(Constraint::ForeignKey))),
        "{cross:?}"
    );
    drop(tx);

    // Unique email within a tenant.
    let mut tx = store.begin(a.id).await.unwrap();
    let duplicate = tx.insert_contact(&contact(a.id, "ada@example.com")).await;
    assert!(
        matches!(
            duplicate,
            Err(StoreError::Constraint(Constraint::ContactEmailUnique))
        ),
        "{duplicate:?}"
    );
    drop(tx);

    // A dropped transaction leaves nothing behind, not even a sequence number.
    let mut tx = store.begin(a.id).await.unwrap();
    let ghost = lead(a.id, None, "Ghost");
    tx.insert_lead(&ghost).await.unwrap();
    tx.append_event(&NewEvent::new(EventType::LeadCreated, "test", json!({})))
        .await
        .unwrap();
    drop(tx);
    let mut read = store.read(a.id).await.unwrap();
    assert!(is_not_found(read.get_lead(ghost.id).await));
    assert_eq!(read.last_event_seq().await.unwrap(), 1);
    drop(read);

    // Keyset pages: newest first, `before` continues strictly below.
    let mut tx = store.begin(a.id).await.unwrap();
    let mut ids = vec![a_lead.id];
    for i in 0..5 {
        let l = lead(a.id, None, &format!("L{i}"));
        tx.insert_lead(&l).await.unwrap();
        ids.push(l.id);
    }
    tx.commit().await.unwrap();
    ids.reverse();
    let mut read = store.read(a.id).await.unwrap();
    let page = read
        .list_leads(&LeadFilter {
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|l| l.id).collect::<Vec<_>>(), ids[..4]);
    let rest = read
        .list_leads(&LeadFilter {
            limit: 4,
            before: Some(page[3].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|l| l.id).collect::<Vec<_>>(), ids[4..]);
    drop(read);

    // Conversations: written and updated by their tenant, invisible to the other.
    let mut conversation = crate::Conversation {
        id: crate::ConversationId::new(),
        tenant_id: a.id,
        title: Some("Morning".into()),
        language: Some("da".into()),
        transcript: json!([{"role": "user", "text": "vis nye leads"}]),
        created_at: now(),
        updated_at: now(),
    };
    let mut tx = store.begin(a.id).await.unwrap();
    tx.insert_conversation(&conversation).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin(a.id).await.unwrap();
    let mut locked = tx.lock_conversation(conversation.id).await.unwrap();
    locked.transcript = json!([{"role": "user", "text": "vis nye leads"}, {"role": "assistant", "text": "Du har ingen nye leads."}]);
    tx.update_conversation(&locked).await.unwrap();
    tx.commit().await.unwrap();
    conversation.transcript = locked.transcript.clone();
    let mut read = store.read(a.id).await.unwrap();
    let listed = read.list_conversations(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].transcript, conversation.transcript);
    drop(read);
    let mut other = store.begin(b.id).await.unwrap();
    assert!(is_not_found(other.get_conversation(conversation.id).await));
    assert!(is_not_found(other.update_conversation(&conversation).await));
    assert!(other.list_conversations(None, 10).await.unwrap().is_empty());
    drop(other);

    // Settling in a batch keeps the per-attempt fencing: a stale attempt settles nothing.
    // The first job acts for someone: its owner is kept beside the payload.
    let owner = crate::JobOwner {
        actor: crate::Actor {
            kind: crate::ActorKind::User,
            id: "someone".into(),
        },
        permissions: vec!["write:leads".into()],
        source_app: "crm-web".into(),
    };
    let mut tx = store.begin(a.id).await.unwrap();
    for n in 0..3 {
        tx.enqueue_job(&crate::NewJob {
            queue: "conformance".into(),
            queue_priority: 1,
            kind: "ping".into(),
            payload: json!({ "n": n }),
            priority: 0,
            run_at: now(),
            max_attempts: 3,
            idempotency_key: None,
            owner: (n == 0).then(|| owner.clone()),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let claimed = store
        .claim_jobs(&crate::ClaimRequest {
            queues: vec!["conformance".into()],
            now: now(),
            lease_until: now() + chrono::Duration::seconds(60),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    // Progress is fenced by the attempt, as settling is.
    let mut tx = store.begin(a.id).await.unwrap();
    tx.set_job_progress(claimed[0].id, 1, &json!({ "done": 1 }))
        .await
        .unwrap();
    assert!(is_not_found(
        tx.set_job_progress(claimed[0].id, 2, &json!({ "done": 2 }))
            .await
    ));
    tx.commit().await.unwrap();
    let owners: Vec<_> = claimed
        .iter()
        .map(|j| (j.payload["n"].clone(), j.owner.clone()))
        .collect();
    assert!(owners.contains(&(json!(0), Some(owner))), "{owners:?}");
    assert!(owners.contains(&(json!(1), None)), "{owners:?}");
    let settle =
        |job: &crate::Job, attempt: u32, settlement: crate::Settlement| crate::JobSettlement {
            id: job.id,
            attempt,
            settlement,
            now: now(),
        };
    let settled = store
        .settle_jobs(&[
            settle(
                &claimed[0],
                1,
                crate::Settlement::Completed {
                    result: json!({"ok": true}),
                },
            ),
            settle(
                &claimed[1],
                7,
                crate::Settlement::Completed { result: json!({}) },
            ),
            settle(
                &claimed[2],
                1,
                crate::Settlement::Dead {
                    error: crate::AttemptError {
                        attempt: 1,
                        at: now(),
                        message: "boom".into(),
                    },
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(settled, [true, false, true]);
    let mut read = store.read(a.id).await.unwrap();
    let states: Vec<crate::JobState> = [
        read.get_job(claimed[0].id).await.unwrap(),
        read.get_job(claimed[1].id).await.unwrap(),
        read.get_job(claimed[2].id).await.unwrap(),
    ]
    .iter()
    .map(|j| j.state)
    .collect();
    assert_eq!(
        states,
        [
            crate::JobState::Completed,
            crate::JobState::Running,
            crate::JobState::Dead
        ]
    );
    let dead = read.get_job(claimed[2].id).await.unwrap();
    assert_eq!(dead.errors.len(), 1);
    assert_eq!(
        read.get_job(claimed[0].id).await.unwrap().result,
        Some(json!({"ok": true}))
    );
    drop(read);

    users(store, a.id, b.id).await;
    batch_enqueue(store, a.id, b.id).await;
    search(store).await;
    rollup(store).await;
    invitations(store).await;

    // An inactive tenant shows in the key lookup.
    store.set_tenant_active(a.id, false).await.unwrap();
    assert!(
        !store
            .find_api_key(&[7; 32])
            .await
            .unwrap()
            .unwrap()
            .tenant_active
    );
    assert!(is_not_found(
        store.set_tenant_active(TenantId::new(), false).await
    ));
}

/// Users belong to tenants through memberships; refresh tokens rotate exactly once.
async fn users(store: &dyn Store, a: TenantId, b: TenantId) {
    let new_user = |email: &str| NewUser {
        email: email.into(),
        name: "Grace".into(),
        password_hash: "$argon2id$test".into(),
    };
    let grace = store
        .create_user(&new_user("Grace@Example.com"))
        .await
        .unwrap();
    assert_eq!(grace.email, "grace@example.com");
    assert!(matches!(
        store.create_user(&new_user("GRACE@example.com")).await,
        Err(StoreError::Constraint(Constraint::UserEmailUnique))
    ));
    let found = store
        .find_user_credentials("grace@EXAMPLE.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.user.id, found.password_hash.as_str()),
        (grace.id, "$argon2id$test")
    );
    assert!(store
        .find_user_credentials("nobody@example.com")
        .await
        .unwrap()
        .is_none());
    assert!(is_not_found(store.get_user(UserId::new()).await));

    // Admin in A, viewer in B; each tenant sees only its own membership.
    let mut tx = store.begin(a).await.unwrap();
    tx.upsert_member(grace.id, Role::User).await.unwrap();
    tx.upsert_member(grace.id, Role::Admin).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin(b).await.unwrap();
    tx.upsert_member(grace.id, Role::Viewer).await.unwrap();
    tx.commit().await.unwrap();
    let memberships = store.user_memberships(grace.id).await.unwrap();
    let roles: Vec<_> = memberships.iter().map(|m| (m.tenant.id, m.role)).collect();
    assert_eq!(roles, [(a, Role::Admin), (b, Role::Viewer)]);
    let mut read = store.read(a).await.unwrap();
    let members = read.list_members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].id, members[0].role), (grace.id, Role::Admin));
    drop(read);
    let mut tx = store.begin(b).await.unwrap();
    tx.delete_member(grace.id).await.unwrap();
    assert!(is_not_found(tx.delete_member(grace.id).await));
    assert!(is_not_found(tx.get_member(grace.id).await));
    tx.commit().await.unwrap();
    assert_eq!(store.user_memberships(grace.id).await.unwrap().len(), 1);
    let mut read = store.read(a).await.unwrap();
    assert_eq!(read.get_member(grace.id).await.unwrap().role, Role::Admin);
    drop(read);

    // A refresh token is spent once; its second use is reported as reuse; revoking the
    // family ends the tokens not yet spent.
    let family = uuid::Uuid::now_v7();
    let token = |hash: u8, expires_in: i64| NewRefreshToken {
        family_id: family,
        user_id: grace.id,
        token_hash: [hash; 32],
        expires_at: now() + chrono::Duration::seconds(expires_in),
        seal: [hash ^ 0xff; 32],
    };
    store.insert_refresh_token(&token(1, 60)).await.unwrap();
    store.insert_refresh_token(&token(2, 60)).await.unwrap();
    store.insert_refresh_token(&token(3, -1)).await.unwrap();
    let peeked = store.find_refresh_token(&[1; 32], now()).await.unwrap();
    assert_eq!(
        peeked.map(|t| (t.user_id, t.seal)),
        Some((grace.id, Some(vec![0xfe; 32])))
    );
    assert!(store
        .find_refresh_token(&[3; 32], now())
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store.use_refresh_token(&[1; 32], now()).await.unwrap(),
        RefreshTokenUse::Fresh(t) if t.family_id == family && t.user_id == grace.id
    ));
    assert!(store
        .find_refresh_token(&[1; 32], now())
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store.use_refresh_token(&[1; 32], now()).await.unwrap(),
        RefreshTokenUse::Reused(t) if t.family_id == family
    ));
    assert!(matches!(
        store.use_refresh_token(&[3; 32], now()).await.unwrap(),
        RefreshTokenUse::Invalid
    ));
    assert!(matches!(
        store.use_refresh_token(&[9; 32], now()).await.unwrap(),
        RefreshTokenUse::Invalid
    ));
    store.revoke_refresh_family(family, now()).await.unwrap();
    assert!(matches!(
        store.use_refresh_token(&[2; 32], now()).await.unwrap(),
        RefreshTokenUse::Invalid
    ));
    // Only the expired token goes; the spent one stays until it expires.
    assert_eq!(store.prune_refresh_tokens(now()).await.unwrap(), 1);
    assert_eq!(store.prune_refresh_tokens(now()).await.unwrap(), 0);
}

/// Many jobs in one call: answered in order, idempotency keys honoured within the batch,
/// against earlier jobs, and per tenant.
async fn batch_enqueue(store: &dyn Store, a: TenantId, b: TenantId) {
    let job = |n: u32, key: Option<&str>| crate::NewJob {
        queue: "batch".into(),
        queue_priority: 1,
        kind: "ping".into(),
        payload: json!({ "n": n }),
        priority: n as i32,
        run_at: now(),
        max_attempts: 2,
        idempotency_key: key.map(str::to_owned),
        owner: None,
    };
    let mut tx = store.begin(a).await.unwrap();
    let first = tx.enqueue_jobs(&[job(0, Some("k1"))]).await.unwrap();
    assert!(first[0].1);
    let batch = tx
        .enqueue_jobs(&[
            job(1, None),
            job(2, Some("k1")),
            job(3, Some("k2")),
            job(4, Some("k2")),
        ])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let created: Vec<bool> = batch.iter().map(|(_, new)| *new).collect();
    assert_eq!(created, [true, false, true, false]);
    assert_eq!(batch[0].0.payload, json!({ "n": 1 }));
    assert_eq!(batch[0].0.priority, 1);
    assert_eq!(
        batch[1].0.id, first[0].0.id,
        "an earlier job's key returns that job"
    );
    assert_eq!(
        batch[3].0.id, batch[2].0.id,
        "a key repeated within the batch"
    );
    assert_eq!(batch[2].0.payload, json!({ "n": 3 }));
    // B's keys are B's own.
    let mut tx = store.begin(b).await.unwrap();
    let other = tx
        .enqueue_jobs(&[job(5, Some("k1")), job(6, None)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(other.iter().all(|(job, new)| *new && job.tenant_id == b));
}

/// Free-text search finds what was typed, case aside, with wildcards taken literally.
async fn search(store: &dyn Store) {
    let tenant = store.create_tenant("Search", "conf-search").await.unwrap();
    let names = [
        "50% Club",
        "500 Club",
        "Under_score",
        "Underscore",
        r"C:\temp",
        "C:temp",
    ];
    let mut tx = store.begin(tenant.id).await.unwrap();
    for (i, name) in names.iter().enumerate() {
        let mut contact = contact(tenant.id, &format!("c{i}@example.com"));
        contact.company = Some(name.to_string());
        tx.insert_contact(&contact).await.unwrap();
        let mut lead = lead(tenant.id, None, name);
        lead.email = Some(format!("lead{i}@example.com"));
        tx.insert_lead(&lead).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut read = store.read(tenant.id).await.unwrap();
    for (text, expected) in [
        ("50%", &["50% Club"][..]),
        ("_", &["Under_score"]),
        (r"C:\t", &[r"C:\temp"]),
        ("CLUB", &["500 Club", "50% Club"]),
        ("LEAD1@", &["500 Club"]),
    ] {
        let leads = read
            .list_leads(&LeadFilter {
                text: Some(text.into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let found: Vec<&str> = leads.iter().map(|l| l.first_name.as_str()).collect();
        assert_eq!(found, expected, "leads matching {text:?}");
    }
    let contacts = read
        .list_contacts(&ContactFilter {
            text: Some("_".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let found: Vec<_> = contacts.iter().map(|c| c.company.as_deref()).collect();
    assert_eq!(found, [Some("Under_score")], "contacts matching \"_\"");
}

/// An invitation is found by its token until accepted, replaced or expired, and only its
/// own tenant accepts it.
async fn invitations(store: &dyn Store) {
    let a = store
        .create_tenant("Inviting", "conf-invite-a")
        .await
        .unwrap()
        .id;
    let b = store
        .create_tenant("Other", "conf-invite-b")
        .await
        .unwrap()
        .id;
    let invitation = |expires_in: chrono::Duration| crate::Invitation {
        id: crate::InvitationId::new(),
        tenant_id: a,
        email: "guest@example.com".into(),
        role: Role::User,
        invited_by: "admin".into(),
        created_at: now(),
        expires_at: now() + expires_in,
    };
    let store_invitation = |invitation: crate::Invitation, hash: [u8; 32]| async move {
        let mut tx = store.begin(a).await.unwrap();
        tx.replace_invitation(&crate::NewInvitation {
            invitation,
            token_hash: hash,
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
    };
    let first = invitation(chrono::Duration::days(7));
    store_invitation(first.clone(), [1; 32]).await;
    let found = store.find_invitation(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((found.id, found.tenant_id), (first.id, a));
    assert!(store.find_invitation(&[2; 32]).await.unwrap().is_none());

    // Inviting the same person again replaces the pending invitation and its token.
    let second = invitation(chrono::Duration::days(7));
    store_invitation(second.clone(), [2; 32]).await;
    assert!(store.find_invitation(&[1; 32]).await.unwrap().is_none());

    // Another tenant cannot accept it; its own tenant accepts it once.
    let mut tx = store.begin(b).await.unwrap();
    assert!(is_not_found(tx.accept_invitation(second.id).await));
    drop(tx);
    let mut tx = store.begin(a).await.unwrap();
    tx.accept_invitation(second.id).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.find_invitation(&[2; 32]).await.unwrap().is_none());
    let mut tx = store.begin(a).await.unwrap();
    assert!(is_not_found(tx.accept_invitation(second.id).await));
    drop(tx);

    // An expired one is not found.
    store_invitation(invitation(chrono::Duration::seconds(-1)), [3; 32]).await;
    assert!(store.find_invitation(&[3; 32]).await.unwrap().is_none());
}

/// A day's rollup counts what happened in its window, and is stored and read back whole.
async fn rollup(store: &dyn Store) {
    let tenant = store.create_tenant("Rollup", "conf-rollup").await.unwrap();
    let t = tenant.id;
    let deal = |status: DealStatus, closed: bool| Deal {
        id: DealId::new(),
        tenant_id: t,
        title: "deal".into(),
        amount: 100,
        currency: "DKK".into(),
        stage: None,
        status,
        contact_id: None,
        lead_id: None,
        closed_at: closed.then(now),
        created_at: now(),
        updated_at: now(),
    };
    let audit = |action: &str| NewAuditEntry {
        actor: Actor {
            kind: ActorKind::ApiKey,
            id: "k".into(),
        },
        source_app: "voice-agent".into(),
        action: action.into(),
        entity_type: "voice_command".into(),
        entity_id: "x".into(),
        before: None,
        after: None,
        request_id: None,
    };
    let mut tx = store.begin(t).await.unwrap();
    for (status, source) in [
        (LeadStatus::Converted, "web"),
        (LeadStatus::New, "web"),
        (LeadStatus::New, "phone"),
        (LeadStatus::Lost, "web"),
        (LeadStatus::Converted, "phone"),
    ] {
        let mut lead = lead(t, None, "L");
        lead.status = status;
        lead.source = source.into();
        tx.insert_lead(&lead).await.unwrap();
    }
    tx.insert_activity(&Activity {
        id: ActivityId::new(),
        tenant_id: t,
        activity_type: "CALL".into(),
        entity_type: EntityType::Lead,
        entity_id: uuid::Uuid::now_v7(),
        description: None,
        data: json!({}),
        created_at: now(),
    })
    .await
    .unwrap();
    tx.insert_audit(&audit(DailyRollup::VOICE_COMMAND_ACTION))
        .await
        .unwrap();
    tx.insert_audit(&audit("lead.create")).await.unwrap();
    tx.insert_deal(&deal(DealStatus::Won, true)).await.unwrap();
    tx.insert_deal(&deal(DealStatus::Won, false)).await.unwrap();
    tx.insert_deal(&deal(DealStatus::Lost, true)).await.unwrap();
    tx.commit().await.unwrap();

    let hour = chrono::Duration::hours(1);
    let mut read = store.read(t).await.unwrap();
    let rollup = read
        .compute_rollup("2024-05-01", now() - hour, now() + hour)
        .await
        .unwrap();
    assert_eq!(rollup.day, "2024-05-01");
    assert_eq!(rollup.leads_created, 5);
    assert_eq!(rollup.leads_by_status["CONVERTED"], 2);
    assert_eq!(rollup.leads_by_status["NEW"], 2);
    assert_eq!(rollup.leads_by_source["web"], 3);
    assert_eq!(rollup.conversion_rate, 0.4);
    assert_eq!(rollup.activities, 1);
    assert_eq!(rollup.voice_commands, 1);
    assert_eq!(rollup.deals_won, 1);
    let later = read
        .compute_rollup("2024-05-02", now() + hour, now() + hour * 2)
        .await
        .unwrap();
    assert_eq!((later.leads_created, later.conversion_rate), (0, 0.0));
    drop(read);

    let mut tx = store.begin(t).await.unwrap();
    tx.save_rollup(&rollup).await.unwrap();
    tx.commit().await.unwrap();
    let mut read = store.read(t).await.unwrap();
    assert_eq!(
        read.list_rollups("2024-05-01", "2024-05-01").await.unwrap(),
        [rollup]
    );
}

/// Says whether a backend's `plan` answers the filter on `column` of `table` from an index
/// (the column is part of the index condition, and the table is not read whole).
pub type UsesIndex = fn(plan: &str, table: &str, column: &str) -> bool;

/// The tenants [`seed_for_plans`] fills.
#[derive(Clone, Copy, Debug)]
pub struct PlanTenants {
    /// Thousands of rows, with many distinct emails, sources, types and contacts.
    pub big: TenantId,
    /// A few rows, next to the big one: where walking the whole table in id order to find
    /// its newest rows would cost the most.
    pub tiny: TenantId,
}

/// Tenant rows enough that a planner with statistics prefers its indexes. Run the
/// database's statistics job (ANALYZE) before [`query_plans`] where production has one
/// (PostgreSQL's autovacuum).
pub async fn seed_for_plans(store: &dyn Store) -> PlanTenants {
    let big = store.create_tenant("Plans", "plans-big").await.unwrap().id;
    let tiny = store
        .create_tenant("Neighbour", "plans-tiny")
        .await
        .unwrap()
        .id;
    for (tenant, leads, contact_count) in [(big, 3_000, 1_000), (tiny, 20, 5)] {
        let mut tx = store.begin(tenant).await.unwrap();
        let mut contacts = Vec::new();
        for i in 0..contact_count {
            let c = contact(tenant, &format!("contact{i}@plans.example"));
            tx.insert_contact(&c).await.unwrap();
            contacts.push(c.id);
        }
        for i in 0..leads {
            let mut l = lead(tenant, None, &format!("Lead {i}"));
            l.email = Some(format!("lead{i}@plans.example"));
            l.source = format!("source-{}", i % 40);
            tx.insert_lead(&l).await.unwrap();
            let activity = Activity {
                id: ActivityId::new(),
                tenant_id: tenant,
                activity_type: format!("TYPE_{}", i % 30),
                entity_type: crate::EntityType::Lead,
                entity_id: l.id.0,
                description: None,
                data: json!({}),
                created_at: now(),
            };
            tx.insert_activity(&activity).await.unwrap();
            tx.insert_audit(&NewAuditEntry {
                actor: Actor {
                    kind: ActorKind::ApiKey,
                    id: "k".into(),
                },
                source_app: "crm-web".into(),
                action: "lead.create".into(),
                entity_type: "lead".into(),
                entity_id: l.id.to_string(),
                before: None,
                after: None,
                request_id: None,
            })
            .await
            .unwrap();
            if i % 3 == 0 {
                tx.insert_deal(&Deal {
                    id: DealId::new(),
                    tenant_id: tenant,
                    title: format!("Deal {i}"),
                    amount: 100,
                    currency: "DKK".into(),
                    stage: None,
                    status: [DealStatus::Open, DealStatus::Won, DealStatus::Lost][(i / 3) % 3],
                    contact_id: Some(contacts[i % contacts.len()]),
                    lead_id: Some(l.id),
                    closed_at: None,
                    created_at: now(),
                    updated_at: now(),
                })
                .await
                .unwrap();
            }
        }
        tx.commit().await.unwrap();
    }
    PlanTenants { big, tiny }
}

/// Every lookup the API's hot paths make is answered from an index on the backend: the
/// import's per-row email check, the list filters, the per-record histories. `plans` is
/// the log the store was opened with; `uses_index` reads the backend's plan format.
pub async fn query_plans(
    store: &dyn Store,
    tenants: PlanTenants,
    plans: &PlanLog,
    uses_index: UsesIndex,
) {
    let mut read = store.read(tenants.big).await.unwrap();
    let some_lead = read
        .list_leads(&LeadFilter {
            limit: 1,
            ..LeadFilter::default()
        })
        .await
        .unwrap()
        .remove(0);
    let some_contact = read
        .list_contacts(&ContactFilter {
            limit: 1,
            ..ContactFilter::default()
        })
        .await
        .unwrap()
        .remove(0);
    plans.take();
    let lead_page = |filter: LeadFilter| LeadFilter {
        limit: 20,
        ..filter
    };
    let mut checks: Vec<(&str, &str, &str)> = Vec::new();

    store
        .read(tenants.tiny)
        .await
        .unwrap()
        .list_leads(&lead_page(LeadFilter::default()))
        .await
        .unwrap();
    checks.push(("a small tenant's newest leads", "leads", "tenant_id"));
    read.list_leads(&lead_page(LeadFilter {
        email: Some("lead1234@plans.example".into()),
        ..LeadFilter::default()
    }))
    .await
    .unwrap();
    checks.push((
        "leads by email (the import's duplicate check)",
        "leads",
        "email",
    ));
    read.list_leads(&lead_page(LeadFilter {
        email: Some("lead1234@plans.example".into()),
        before: Some(some_lead.id),
        ..LeadFilter::default()
    }))
    .await
    .unwrap();
    checks.push(("leads by email, second page", "leads", "email"));
    read.list_leads(&lead_page(LeadFilter {
        status: Some(LeadStatus::Qualified),
        ..LeadFilter::default()
    }))
    .await
    .unwrap();
    checks.push(("leads by status", "leads", "status"));
    read.list_leads(&lead_page(LeadFilter {
        source: Some("source-7".into()),
        ..LeadFilter::default()
    }))
    .await
    .unwrap();
    checks.push(("leads by source", "leads", "source"));
    read.list_contacts(&ContactFilter {
        email: Some("contact7@plans.example".into()),
        limit: 20,
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    checks.push(("contacts by email", "contacts", "email"));
    read.list_activities(&crate::ActivityFilter {
        entity_id: Some(some_lead.id.0),
        limit: 20,
        ..crate::ActivityFilter::default()
    })
    .await
    .unwrap();
    checks.push(("a record's activities", "activities", "entity_id"));
    read.list_activities(&crate::ActivityFilter {
        activity_type: Some("TYPE_7".into()),
        limit: 20,
        ..crate::ActivityFilter::default()
    })
    .await
    .unwrap();
    checks.push(("activities by type", "activities", "type"));
    read.list_deals(&crate::DealFilter {
        contact_id: Some(some_contact.id),
        limit: 20,
        ..crate::DealFilter::default()
    })
    .await
    .unwrap();
    checks.push(("a contact's deals", "deals", "contact_id"));
    read.list_deals(&crate::DealFilter {
        status: Some(DealStatus::Won),
        limit: 20,
        ..crate::DealFilter::default()
    })
    .await
    .unwrap();
    checks.push(("deals by status", "deals", "status"));
    read.list_audit(&crate::AuditFilter {
        entity_id: Some(some_lead.id.to_string()),
        limit: 20,
        ..crate::AuditFilter::default()
    })
    .await
    .unwrap();
    checks.push(("a record's audit trail", "audit_log", "entity_id"));

    let recorded = plans.take();
    assert_eq!(
        recorded.len(),
        checks.len(),
        "one plan per list query: {recorded:#?}"
    );
    let slow: Vec<String> = checks
        .iter()
        .zip(&recorded)
        .filter(|((_, table, column), plan)| !uses_index(plan, table, column))
        .map(|((what, _, column), plan)| format!("{what} (on {column}):\n{plan}"))
        .collect();
    assert!(
        slow.is_empty(),
        "lookups not answered from an index:\n{}",
        slow.join("\n\n")
    );
}
