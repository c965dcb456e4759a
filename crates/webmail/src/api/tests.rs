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
    let e = parse::<email::query::QueryArgs>(json!({"filter": {}, "sort": []})).err();
    let e = e.expect("sort is not supported");
    assert_eq!(e.kind, "invalidArguments");
    assert!(
        e.description.contains("unknown field `sort`"),
        "{}",
        e.description
    );
    let e = parse::<email::query::QueryArgs>(json!({"filter": {"inMailbox": 3}})).err();
    assert_eq!(e.map(|e| e.kind), Some("invalidArguments"));
    let e = parse::<email::query::QueryArgs>(json!({"filter": {"hasAttachment": "yes"}})).err();
    assert_eq!(e.map(|e| e.kind), Some("invalidArguments"));
    assert!(parse::<mailbox::GetArgs>(json!({})).is_ok());
    assert!(parse::<mailbox::GetArgs>(json!({"ids": null})).is_err());
    assert!(parse::<mailbox::EmptyArgs>(json!({})).is_err());
    assert!(parse::<state::ChangesArgs>(json!({"sinceState": ""})).is_ok());
    assert!(parse::<state::ChangesArgs>(json!({"sinceState": "", "maxChanges": 5})).is_err());
    assert!(parse::<thread::GetArgs>(json!({"ids": ["1-2"]})).is_ok());
    assert!(parse::<thread::GetArgs>(json!(["1-2"])).is_err());
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
