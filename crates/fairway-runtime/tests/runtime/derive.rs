//! `#[derive(DomainEvent)]`: an event is a struct and two attributes.

use fairway_runtime::testing::nothing;
use fairway_runtime::{DomainEvent, NewEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(type = "StudentSubscribedToCourse")]
#[serde(rename_all = "camelCase")]
pub struct Subscribed {
    #[tag("course")]
    pub course_id: String,
    #[tag("student")]
    pub student_id: u64,
    #[event(sensitive = "accessToken")]
    pub access_token: String,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub struct Pinged {
    #[event(sensitive)]
    pub secret: String,
}

#[test]
fn the_derive_declares_type_tags_and_sensitive_fields() {
    let e = Subscribed {
        course_id: "c1".into(),
        student_id: 7,
        access_token: "t".into(),
        note: "hi".into(),
    };
    assert_eq!(Subscribed::TYPE, "StudentSubscribedToCourse");
    assert_eq!(e.tags(), vec!["course:c1", "student:7"]);
    assert_eq!(Subscribed::SENSITIVE_FIELDS, &["accessToken"]);
    // Defaults: the struct's name, no tags.
    assert_eq!(Pinged::TYPE, "Pinged");
    assert!(Pinged { secret: "s".into() }.tags().is_empty());
    assert_eq!(Pinged::SENSITIVE_FIELDS, &["secret"]);
    let new: NewEvent = e.into();
    assert_eq!(new.event_type(), "StudentSubscribedToCourse");
    assert_eq!(new.tags(), vec!["course:c1", "student:7"]);
}

#[test]
fn derived_events_work_in_the_harness() {
    let g = nothing().and(Pinged { secret: "s".into() });
    assert_eq!(g.events()[0].event_type, "Pinged");
}

fn upcast_price(from: u32, mut data: serde_json::Value) -> Result<serde_json::Value, String> {
    match from {
        1 => {
            data["currency"] = serde_json::json!("EUR");
            Ok(data)
        }
        v => Err(format!("no upcaster from version {v}")),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(type = "PriceChanged", version = 2, upcast = upcast_price)]
#[event(former = "PriceSet", former = "PriceFixed")]
pub struct PriceChanged {
    #[tag("item")]
    pub item: String,
    pub currency: String,
}

#[test]
fn the_derive_declares_version_upcaster_and_former_names() {
    assert_eq!(PriceChanged::VERSION, 2);
    assert_eq!(PriceChanged::FORMER_TYPES, &["PriceSet", "PriceFixed"]);
    assert_eq!(Pinged::VERSION, 1);
    assert!(Pinged::FORMER_TYPES.is_empty());
    let old: PriceChanged =
        fairway_runtime::decode_as("PriceSet", 1, br#"{"item":"pen"}"#).unwrap();
    assert_eq!(old.currency, "EUR");
    let current: PriceChanged =
        fairway_runtime::decode_as("PriceChanged", 2, br#"{"item":"pen","currency":"USD"}"#)
            .unwrap();
    assert_eq!(current.currency, "USD");
}
