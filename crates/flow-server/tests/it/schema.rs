//! The OpenAPI document states the limits the server enforces: a client that builds its
//! requests from `/openapi.json` is not refused, and the values just past the schema's
//! bounds are refused.
//!
//! First the document is read: the create bodies of leads, contacts, deals and activities
//! and the list routes' query parameters carry `minLength`, `maxLength`, `pattern`,
//! `format`, `minimum` and `maximum`, the patterns being those of `flow_app::validate`
//! (the utoipa attributes repeat them as literals). Then requests are built from those
//! numbers: a value of exactly `maxLength` characters the pattern allows, the `minimum`
//! and the `maximum` are accepted (2xx); one character or one unit past them, or a
//! character the pattern refuses, is a 4xx.
//!
//! That the patterns themselves refuse the refused values is not checked here: no regex
//! engine is a dependency of this crate. The doc comments of the pattern constants say
//! where the patterns are stricter than the server.

use flow_app::{
    services::{activities::ACTIVITY_TYPE_PATTERN, deals::CURRENCY_PATTERN},
    validate::{
        EMAIL_PATTERN, NAME_PATTERN, OPTIONAL_NAME_PATTERN, PHONE_PATTERN, PRINTABLE_PATTERN,
        SLUG_PATTERN, TEXT_PATTERN,
    },
};
use serde_json::{json, Value};

use crate::helpers::{send, spawn_app, Reply, TestApp};

/// A string field's character rule, recognised by its schema `pattern`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Name,
    OptionalName,
    Text,
    Printable,
    Email,
    Phone,
    Slug,
    ActivityType,
    Currency,
}

impl Kind {
    fn of(pattern: &str) -> Kind {
        [
            (NAME_PATTERN, Kind::Name),
            (OPTIONAL_NAME_PATTERN, Kind::OptionalName),
            (TEXT_PATTERN, Kind::Text),
            (PRINTABLE_PATTERN, Kind::Printable),
            (EMAIL_PATTERN, Kind::Email),
            (PHONE_PATTERN, Kind::Phone),
            (SLUG_PATTERN, Kind::Slug),
            (ACTIVITY_TYPE_PATTERN, Kind::ActivityType),
            (CURRENCY_PATTERN, Kind::Currency),
        ]
        .into_iter()
        .find(|(known, _)| *known == pattern)
        .unwrap_or_else(|| panic!("a pattern that is none of the server's rules: {pattern}"))
        .1
    }

    /// A value of exactly `len` characters that the pattern allows.
    fn allowed(self, len: usize) -> String {
        match self {
            // Characters, not bytes: `ø` is two bytes of UTF-8.
            Kind::Name | Kind::OptionalName | Kind::Text | Kind::Printable => "ø".repeat(len),
            Kind::Email => format!("{}@{}.dk", "a".repeat(64), "d".repeat(len - 68)),
            Kind::Phone => format!("{}{}", "-".repeat(len - 15), "1".repeat(15)),
            Kind::Slug => "s".repeat(len),
            Kind::ActivityType => "T".repeat(len),
            Kind::Currency => "E".repeat(len),
        }
    }

    /// Values of allowed length with a character (or a shape) the pattern refuses.
    fn refused(self) -> &'static [&'static str] {
        match self {
            Kind::Name => &["   ", "Jane <b>", "a=b", "x\u{7}"],
            Kind::OptionalName => &["Jane <b>", "O\"Brien", "a;b", "x\u{9f}"],
            Kind::Text => &["bell \u{7}", "escape \u{1b}[0m"],
            Kind::Printable => &["\u{1}", "a\u{7f}b"],
            Kind::Email => &["jane@localhost", "jane doe@example.com", "<a>@example.com"],
            Kind::Phone => &["12345", "1234567890123456", "call me 12345678"],
            Kind::Slug => &["web site", "web/site"],
            Kind::ActivityType => &["1CALL", "CALL-ME"],
            Kind::Currency => &["DK1", "D K"],
        }
    }
}

/// The bounds of one string field or parameter, as its schema states them.
#[derive(Debug)]
struct StringRule {
    kind: Kind,
    min_length: u64,
    max_length: usize,
}

impl StringRule {
    fn of(schema: &Value) -> StringRule {
        let pattern = schema["pattern"].as_str();
        let max_length = schema["maxLength"].as_u64();
        let (Some(pattern), Some(max_length)) = (pattern, max_length) else {
            panic!("a string without pattern or maxLength: {schema}");
        };
        StringRule {
            kind: Kind::of(pattern),
            min_length: schema["minLength"].as_u64().unwrap_or(0),
            max_length: max_length as usize,
        }
    }

    /// Values the schema allows: the longest, and the shortest when there is a minimum.
    fn allowed_values(&self) -> Vec<String> {
        let mut values = vec![self.kind.allowed(self.max_length)];
        if self.min_length > 0 {
            values.push(self.kind.allowed(self.min_length as usize));
        }
        values
    }

    /// Values just outside: one character too long (or too short), a refused character.
    fn refused_values(&self) -> Vec<String> {
        let mut values = vec![self.kind.allowed(self.max_length + 1)];
        if self.min_length > 0 {
            values.push(self.kind.allowed(self.min_length as usize - 1));
        }
        values.extend(self.kind.refused().iter().map(|v| v.to_string()));
        values
    }
}

async fn openapi(app: &TestApp) -> Value {
    send(app.client.get(app.url("/openapi.json")))
        .await
        .expect(200)
        .body
}

/// The schema of `component.field`.
fn property<'d>(doc: &'d Value, component: &str, field: &str) -> &'d Value {
    let schema = &doc["components"]["schemas"][component]["properties"][field];
    assert!(schema.is_object(), "no {component}.{field} in the document");
    schema
}

/// The schema of query parameter `name` of `GET path`.
fn query_param<'d>(doc: &'d Value, path: &str, name: &str) -> &'d Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .and_then(|params| {
            params
                .iter()
                .find(|p| p["name"] == name && p["in"] == "query")
        })
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("no query parameter {name} of GET {path}"))
}

/// The string properties of `component` and their schemas.
fn string_properties<'d>(doc: &'d Value, component: &str) -> Vec<(&'d str, &'d Value)> {
    let properties = doc["components"]["schemas"][component]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no component {component}"));
    properties
        .iter()
        .filter(|(_, schema)| {
            let types = &schema["type"];
            types == "string"
                || types
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("string")))
        })
        .map(|(name, schema)| (name.as_str(), schema))
        .collect()
}

/// How a failure message shows `value`: its length and its first characters.
fn shown(value: &str) -> String {
    let start: String = value.chars().take(24).collect();
    format!("{start:?} ({} characters)", value.chars().count())
}

#[track_caller]
fn accepted(reply: Reply, what: &str) {
    assert!(
        reply.status.is_success(),
        "{what}: allowed by the schema but refused with {}: {}",
        reply.status,
        reply.body
    );
}

#[track_caller]
fn refused(reply: Reply, what: &str) {
    assert!(
        reply.status.is_client_error(),
        "{what}: outside the schema but answered {}: {}",
        reply.status,
        reply.body
    );
}

/// `value` for a query string: everything but unreserved characters percent-encoded.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_document_states_the_servers_limits() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;

    // (component, field, minLength, maxLength, pattern) of the create bodies.
    let bodies = [
        ("CreateLead", "firstName", Some(1), 100, NAME_PATTERN),
        ("CreateLead", "lastName", None, 100, OPTIONAL_NAME_PATTERN),
        ("CreateLead", "email", None, 254, EMAIL_PATTERN),
        ("CreateLead", "phone", None, 32, PHONE_PATTERN),
        ("CreateLead", "company", None, 200, OPTIONAL_NAME_PATTERN),
        ("CreateLead", "source", Some(1), 64, SLUG_PATTERN),
        ("CreateLead", "notes", None, 10_000, TEXT_PATTERN),
        (
            "ContactInput",
            "firstName",
            None,
            100,
            OPTIONAL_NAME_PATTERN,
        ),
        ("ContactInput", "lastName", None, 100, OPTIONAL_NAME_PATTERN),
        ("ContactInput", "email", None, 254, EMAIL_PATTERN),
        ("ContactInput", "phone", None, 32, PHONE_PATTERN),
        ("ContactInput", "company", None, 200, OPTIONAL_NAME_PATTERN),
        ("ContactInput", "source", Some(1), 64, SLUG_PATTERN),
        ("CreateDeal", "title", Some(1), 200, NAME_PATTERN),
        ("CreateDeal", "currency", Some(3), 3, CURRENCY_PATTERN),
        ("CreateDeal", "stage", None, 64, OPTIONAL_NAME_PATTERN),
        ("CreateActivity", "type", Some(1), 40, ACTIVITY_TYPE_PATTERN),
        ("CreateActivity", "description", None, 10_000, TEXT_PATTERN),
    ];
    for (component, field, min_length, max_length, pattern) in bodies {
        let schema = property(&doc, component, field);
        let what = format!("{component}.{field}: {schema}");
        assert_eq!(schema["minLength"].as_u64(), min_length, "{what}");
        assert_eq!(schema["maxLength"].as_u64(), Some(max_length), "{what}");
        assert_eq!(schema["pattern"].as_str(), Some(pattern), "{what}");
    }
    for component in ["CreateLead", "ContactInput", "UpdateLead", "UpdateContact"] {
        assert_eq!(property(&doc, component, "email")["format"], "email");
    }
    let amount = property(&doc, "CreateDeal", "amount");
    assert_eq!(amount["minimum"], 0, "{amount}");
    assert_eq!(amount["maximum"], 1_000_000_000_000_000_i64, "{amount}");

    // Every free-text string of the bodies a client writes has a length and a pattern (ids
    // and days have a format instead, the lead status an enum).
    for component in [
        "CreateLead",
        "UpdateLead",
        "ChangeStatus",
        "AssignLead",
        "ContactInput",
        "UpdateContact",
        "CreateDeal",
        "UpdateDeal",
        "CreateActivity",
    ] {
        for (field, schema) in string_properties(&doc, component) {
            if schema.get("format").is_some_and(|f| f != "email") || schema.get("enum").is_some() {
                continue;
            }
            assert!(
                schema["maxLength"].is_u64() && schema["pattern"].is_string(),
                "{component}.{field} is unbounded: {schema}"
            );
        }
    }

    // The page size of every list route, and the search text.
    for (path, maximum) in [
        ("/leads", 100),
        ("/contacts", 100),
        ("/deals", 100),
        ("/activities", 100),
        ("/audit", 100),
        ("/conversations", 100),
        ("/admin/queues/{name}/jobs", 100),
        ("/events/log", 1000),
    ] {
        let limit = query_param(&doc, path, "limit");
        assert_eq!(limit["minimum"], 1, "{path} limit: {limit}");
        assert_eq!(limit["maximum"], maximum, "{path} limit: {limit}");
    }
    for path in ["/leads", "/contacts"] {
        let q = query_param(&doc, path, "q");
        assert_eq!(q["maxLength"], 100, "{path} q: {q}");
        assert_eq!(q["pattern"], PRINTABLE_PATTERN, "{path} q: {q}");
    }
}

#[tokio::test]
async fn requests_built_from_the_schema_are_accepted_and_just_past_it_refused() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let key = &app.a.key;
    let lead = app.create_lead(key, "Activity", None).await;

    // (component, path, key, a valid body, the string fields to probe). Contacts are created
    // in tenant B: the leads before them made tenant A's contacts with the same emails.
    let bodies = [
        (
            "CreateLead",
            "/leads",
            &app.a.key,
            json!({ "firstName": "Jane" }),
            &[
                "firstName",
                "lastName",
                "email",
                "phone",
                "company",
                "source",
                "notes",
            ][..],
        ),
        (
            "ContactInput",
            "/contacts",
            &app.b.key,
            json!({ "firstName": "Jane" }),
            &[
                "firstName",
                "lastName",
                "email",
                "phone",
                "company",
                "source",
            ],
        ),
        (
            "CreateDeal",
            "/deals",
            &app.a.key,
            json!({ "title": "Deal", "amount": 100 }),
            &["title", "currency", "stage"],
        ),
        (
            "CreateActivity",
            "/activities",
            &app.a.key,
            json!({ "type": "CALL", "entityType": "lead", "entityId": lead["id"] }),
            &["type", "description"],
        ),
    ];
    for (component, path, key, valid, fields) in &bodies {
        accepted(app.post(path, key, valid.clone()).await, component);
        for field in *fields {
            let rule = StringRule::of(property(&doc, component, field));
            let with = |value: &str| {
                let mut body = valid.clone();
                body[*field] = json!(value);
                body
            };
            let what = |value: &str| format!("{component}.{field} {}", shown(value));
            for value in rule.allowed_values() {
                accepted(app.post(path, key, with(&value)).await, &what(&value));
            }
            for value in rule.refused_values() {
                refused(app.post(path, key, with(&value)).await, &what(&value));
            }
        }
    }

    // A deal's amount: the minimum and maximum, and one past each.
    let amount = property(&doc, "CreateDeal", "amount");
    let (min, max) = (amount["minimum"].as_i64(), amount["maximum"].as_i64());
    let (Some(min), Some(max)) = (min, max) else {
        panic!("amount without integer bounds: {amount}");
    };
    for (value, ok) in [(min, true), (max, true), (min - 1, false), (max + 1, false)] {
        let reply = app
            .post("/deals", key, json!({ "title": "Deal", "amount": value }))
            .await;
        let what = format!("CreateDeal.amount {value}");
        if ok {
            accepted(reply, &what)
        } else {
            refused(reply, &what)
        }
    }

    // The list routes' query parameters: every one with bounds in the schema.
    for path in [
        "/leads",
        "/contacts",
        "/deals",
        "/activities",
        "/audit",
        "/events/log",
        "/conversations",
        "/admin/queues/{name}/jobs",
    ] {
        let url = path.replace("{name}", "lead-processing");
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        for param in params.iter().filter(|p| p["in"] == "query") {
            let name = param["name"].as_str().unwrap();
            let schema = &param["schema"];
            let (mut good, mut bad) = (Vec::new(), Vec::new());
            if schema["pattern"].is_string() {
                let rule = StringRule::of(schema);
                good.extend(rule.allowed_values());
                bad.extend(rule.refused_values());
            }
            if let Some(min) = schema["minimum"].as_i64() {
                good.push(min.to_string());
                bad.push((min - 1).to_string());
            }
            if let Some(max) = schema["maximum"].as_i64() {
                good.push(max.to_string());
                bad.push((max + 1).to_string());
            }
            for value in good {
                let reply = app
                    .get(&format!("{url}?{name}={}", encode(&value)), key)
                    .await;
                accepted(reply, &format!("GET {url}?{name}={}", shown(&value)));
            }
            for value in bad {
                let reply = app
                    .get(&format!("{url}?{name}={}", encode(&value)), key)
                    .await;
                refused(reply, &format!("GET {url}?{name}={}", shown(&value)));
            }
        }
    }
}
