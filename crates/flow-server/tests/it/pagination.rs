//! Keyset pagination: no row skipped or repeated while rows are inserted concurrently.

use std::collections::HashSet;

use serde_json::json;

use crate::helpers::{ids, spawn_app};

#[tokio::test]
async fn pages_skip_and_repeat_nothing_while_rows_are_inserted() {
    let app = std::sync::Arc::new(spawn_app().await);
    let key = app.a.key.clone();
    let mut existing = HashSet::new();
    for i in 0..60 {
        let lead = app
            .post("/leads", &key, json!({"firstName": format!("Before{i}")}))
            .await
            .expect(201)
            .body;
        existing.insert(lead["id"].as_str().unwrap().to_owned());
    }

    let writer = {
        let app = app.clone();
        let key = key.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                app.post("/leads", &key, json!({"firstName": format!("During{i}")}))
                    .await
                    .expect(201);
            }
        })
    };

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..200 {
        let path = match &cursor {
            Some(c) => format!("/leads?limit=7&cursor={c}"),
            None => "/leads?limit=7".to_owned(),
        };
        let page = app.get(&path, &key).await.expect(200).body;
        let items = page["data"].as_array().unwrap();
        assert!(items.len() <= 7);
        seen.extend(ids(items));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();

    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a row was repeated across pages");
    let missed: Vec<_> = existing.difference(&unique).collect();
    assert!(
        missed.is_empty(),
        "rows present before paging were skipped: {missed:?}"
    );

    let all = app.list_all("/leads", &key).await;
    assert_eq!(all.len(), 160);
}

#[tokio::test]
async fn filtered_pages_follow_the_filter() {
    let app = spawn_app().await;
    let key = &app.a.key;
    for i in 0..25 {
        let source = if i % 2 == 0 { "even" } else { "odd" };
        app.post(
            "/leads",
            key,
            json!({"firstName": format!("L{i}"), "source": source}),
        )
        .await
        .expect(201);
    }
    let first = app
        .get("/leads?source=even&limit=10", key)
        .await
        .expect(200)
        .body;
    assert_eq!(first["data"].as_array().unwrap().len(), 10);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = app
        .get(&format!("/leads?source=even&limit=10&cursor={cursor}"), key)
        .await
        .expect(200)
        .body;
    assert_eq!(second["data"].as_array().unwrap().len(), 3);
    assert!(second["nextCursor"].is_null());
    for lead in first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
    {
        assert_eq!(lead["source"], "even");
    }
}
