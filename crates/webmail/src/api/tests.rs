//! The method table, argument parsing and result references, without a server.

use serde_json::{Value, json};

use super::*;

#[test]
fn every_method_is_named_once_and_found_by_its_name() {
    for (name, method) in METHODS {
        assert_eq!(Method::named(name), Some(method), "{name}");
        assert_eq!(METHODS.iter().filter(|(_, m)| *m == method).count(), 1);
    }
    assert_eq!(Method::named("Mailbox/query"), None);
    assert_eq!(Method::named("mailbox/get"), None);
}

#[test]
fn only_writing_methods_reload_the_mailboxes() {
    let writing: Vec<&str> = METHODS
        .iter()
        .filter(|(_, m)| m.changes_mailboxes())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        writing,
        [
            "Mailbox/set",
            "pigeon:Mailbox/empty",
            "Email/set",
            "EmailSubmission/set"
        ]
    );
}

fn parse<A: serde::de::DeserializeOwned>(value: Value) -> Result<A, MethodError> {
    Arguments(value).parse()
}

#[test]
fn unknown_or_mistyped_arguments_are_invalid_arguments() {
    let e = parse::<email::query::QueryArgs>(json!({"filter": {}, "sortBy": []})).err();
    let e = e.expect("sortBy is no argument");
    assert_eq!(e.kind, "invalidArguments");
    assert!(
        e.description.contains("unknown field `sortBy`"),
        "{}",
        e.description
    );
    let e = parse::<email::query::QueryArgs>(json!({"filter": {"inMailbox": 3}})).err();
    assert_eq!(e.map(|e| e.kind), Some("invalidArguments"));
    let e = parse::<email::query::QueryArgs>(json!({"filter": {"hasAttachment": "yes"}})).err();
    assert_eq!(e.map(|e| e.kind), Some("invalidArguments"));
    assert!(parse::<mailbox::GetArgs>(json!({})).is_ok());
    assert!(parse::<mailbox::GetArgs>(json!({"ids": null, "properties": null})).is_ok());
    assert!(parse::<mailbox::GetArgs>(json!({"ids": null, "sort": null})).is_err());
    assert!(parse::<mailbox::EmptyArgs>(json!({})).is_err());
    assert!(parse::<state::ChangesArgs>(json!({"sinceState": ""})).is_ok());
    assert!(parse::<state::ChangesArgs>(json!({"sinceState": "", "maxChanges": 5})).is_ok());
    assert!(parse::<state::ChangesArgs>(json!({"sinceState": "", "maxChanges": -1})).is_err());
    assert!(parse::<state::ChangesArgs>(json!({"sinceState": "", "limit": 5})).is_err());
    assert!(parse::<thread::GetArgs>(json!({"ids": ["1-2"]})).is_ok());
    assert!(parse::<thread::GetArgs>(json!(["1-2"])).is_err());
}

/// Every argument RFC 8620 §5 and RFC 8621 define for our methods parses, with its type;
/// truly unknown ones still do not (RFC 8620 §3.6.2).
#[test]
fn standard_arguments_parse() {
    assert!(parse::<mailbox::GetArgs>(json!({"ids": ["1"], "properties": ["name"]})).is_ok());
    assert!(
        parse::<mailbox::SetArgs>(json!({
            "ifInState": "s", "create": {}, "update": {}, "destroy": [],
            "onDestroyRemoveEmails": true,
        }))
        .is_ok()
    );
    assert!(parse::<state::ChangesArgs>(json!({"sinceState": "", "maxChanges": null})).is_ok());
    assert!(
        parse::<thread::GetArgs>(json!({"ids": null, "properties": ["id", "emailIds"]})).is_ok()
    );
    assert!(
        parse::<email::get::GetArgs>(json!({
            "ids": ["1-1"], "properties": ["id", "subject"], "bodyProperties": ["partId"],
            "fetchTextBodyValues": true, "fetchHTMLBodyValues": false,
            "fetchAllBodyValues": false, "maxBodyValueBytes": 256,
        }))
        .is_ok()
    );
    assert!(parse::<email::get::GetArgs>(json!({"maxBodyValueBytes": 0})).is_err());
    assert!(parse::<email::get::GetArgs>(json!({"fetchHtmlBodyValues": true})).is_err());
    assert!(
        parse::<email::query::QueryArgs>(json!({
            "filter": {"inMailbox": "1", "minSize": 1, "hasKeyword": "$seen"},
            "sort": [{"property": "receivedAt", "isAscending": false}],
            "position": -10, "anchor": null, "anchorOffset": -1, "limit": 10,
            "calculateTotal": true, "collapseThreads": false,
        }))
        .is_ok()
    );
    assert!(
        parse::<email::query::QueryArgs>(json!({"filter": {"operator": "AND", "conditions": []}}))
            .is_ok(),
        "a FilterOperator parses (and is unsupportedFilter)"
    );
    assert!(parse::<email::query::QueryArgs>(json!({"limit": -1})).is_err());
    assert!(parse::<email::set::SetArgs>(json!({"ifInState": null})).is_ok());
    assert!(
        parse::<submission::SetArgs>(json!({
            "ifInState": "s", "create": {}, "update": {"x": {}}, "destroy": ["x"],
            "onSuccessUpdateEmail": {"#x": {"keywords/$draft": null}},
            "onSuccessDestroyEmail": ["#x"],
        }))
        .is_ok()
    );
}

#[test]
fn a_malformed_object_is_invalid_properties_naming_it() {
    let parsed = serde_json::from_value::<Objects<mailbox::NameOnly>>(json!({
        "unknown": {"name": "A", "role": "x"}, "missing": {}, "mistyped": {"name": 1},
    }));
    let Ok(objects) = parsed else {
        panic!("the map parses");
    };
    let errors: Vec<Value> = objects
        .0
        .into_iter()
        .filter_map(|(_, object)| object.err())
        .map(|e| MethodError::invalid_properties(e).to_set_error())
        .collect();
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|e| e["type"] == "invalidProperties"));
    assert_eq!(
        errors[0]["properties"],
        json!(["name"]),
        "missing, in key order"
    );
    assert_eq!(
        errors[1]["properties"],
        Value::Null,
        "serde does not name a mistyped one"
    );
    assert_eq!(errors[2]["properties"], json!(["role"]));
    let store = MethodError::new("invalidArguments", "bad name").to_set_error();
    assert_eq!(store["type"], "invalidProperties");
    assert_eq!(
        MethodError::new("notFound", "x").to_set_error()["type"],
        "notFound"
    );
}

#[test]
fn set_objects_fail_one_by_one_in_key_order() {
    let parsed = serde_json::from_value::<Objects<mailbox::NameOnly>>(json!({
        "b": {"name": "B"}, "a": {"name": 1}, "c": {"name": "C", "role": "x"},
    }));
    let Ok(objects) = parsed else {
        panic!("the map parses");
    };
    let results: Vec<(&str, bool)> = objects
        .0
        .iter()
        .map(|(key, object)| (key.as_str(), object.is_ok()))
        .collect();
    assert_eq!(results, [("a", false), ("b", true), ("c", false)]);
    assert!(parse::<mailbox::SetArgs>(json!({"create": []})).is_err());
    assert!(parse::<mailbox::SetArgs>(json!({"create": {"n": 1}})).is_ok());
    // RFC 8620 §5.3: each of create, update and destroy may be null.
    assert!(
        parse::<mailbox::SetArgs>(json!({"create": null, "update": null, "destroy": null})).is_ok()
    );
    assert!(
        parse::<email::set::SetArgs>(json!({"create": null, "update": null, "destroy": null}))
            .is_ok()
    );
}

#[test]
fn the_page_s_composition_parses() {
    let c = serde_json::from_value::<compose::Composition>(json!({
        "to": ["a@example.com"], "cc": [], "bcc": [], "subject": "s", "text": "t",
        "attachments": [{"blobId": "u1", "name": "a.txt", "type": "text/plain"}],
        "inReplyTo": null, "references": ["<x@y>"], "replyingTo": "1-2", "draftId": null,
    }));
    assert!(c.is_ok());
    let c: Result<compose::Composition, _> =
        serde_json::from_value(json!({"to": ["a@example.com"], "priority": 1}));
    assert!(c.is_err(), "unknown properties are refused");
}

#[test]
fn result_references_take_an_earlier_result() {
    let responses = vec![
        json!(["Email/query", {"ids": ["1-1", "1-2"]}, "q"]),
        json!(["error", {"type": "x"}, "bad"]),
    ];
    let mut args = json!({"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}});
    assert!(resolve_references(&mut args, &responses).is_ok());
    assert_eq!(args, json!({"ids": ["1-1", "1-2"]}));
    let mut args = json!({"#ids": {"resultOf": "q", "path": "/ids"}});
    assert!(resolve_references(&mut args, &responses).is_ok());
    assert_eq!(args, json!({"ids": ["1-1", "1-2"]}));
    let kind = |mut args: Value| {
        resolve_references(&mut args, &responses)
            .err()
            .map(|e| e.kind)
    };
    assert_eq!(
        kind(json!({"#ids": {"resultOf": "q", "name": "Email/get", "path": "/ids"}})),
        Some("invalidResultReference")
    );
    assert_eq!(
        kind(json!({"#ids": {"resultOf": "bad", "path": "/ids"}})),
        Some("invalidResultReference")
    );
    assert_eq!(
        kind(json!({"#ids": {"resultOf": "q", "path": "/nothing"}})),
        Some("invalidResultReference")
    );
    assert_eq!(kind(json!({"#ids": "q"})), Some("invalidResultReference"));
    assert_eq!(
        kind(json!({"ids": [], "#ids": {"resultOf": "q", "path": "/ids"}})),
        Some("invalidArguments")
    );
}
