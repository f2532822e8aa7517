//! Event evolution: events stored with an old shape (and under an old type name) are caught by
//! `check_events` once the type changes, and read correctly once an upcaster is registered.

use std::time::UNIX_EPOCH;

use dcb_core::{EventStore, MemoryStore, Query, QueryItem, ReadOptions};
use fairway_runtime::check::{Decoder, check_events};
use fairway_runtime::{
    DecodeError, DomainEvent, EventSet, Host, Module, ModuleKind, NewEvent, Runtime,
    SCHEMA_VERSION_KEY, Sequenced, restrict_set, tag,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// The shape the log was written with: prices in euros as a float, and an older type name for
/// discounts.
mod v1 {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub struct PriceSet {
        pub item: String,
        pub euros: f64,
    }
    impl DomainEvent for PriceSet {
        const TYPE: &'static str = "PriceSet";
        fn tags(&self) -> Vec<String> {
            vec![tag("item", &self.item)]
        }
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub struct DiscountGiven {
        pub item: String,
        pub percent: u8,
    }
    impl DomainEvent for DiscountGiven {
        const TYPE: &'static str = "DiscountGiven";
        fn tags(&self) -> Vec<String> {
            vec![tag("item", &self.item)]
        }
    }
}

/// The new shape, changed carelessly: integer cents and a currency, no upcaster.
mod v2_broken {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub struct PriceSet {
        pub item: String,
        pub cents: u64,
        pub currency: String,
    }
    impl DomainEvent for PriceSet {
        const TYPE: &'static str = "PriceSet";
        fn tags(&self) -> Vec<String> {
            vec![tag("item", &self.item)]
        }
    }

    fairway_runtime::event_set! {
        /// What the pricing module reads.
        pub enum Pricing { PriceSet(PriceSet) }
    }
}

/// The new shape done right: version 2 with an upcaster from 1, and the discount renamed.
mod v2 {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct PriceSet {
        pub item: String,
        pub cents: u64,
        pub currency: String,
    }
    impl DomainEvent for PriceSet {
        const TYPE: &'static str = "PriceSet";
        const VERSION: u32 = 2;
        fn tags(&self) -> Vec<String> {
            vec![tag("item", &self.item)]
        }
        fn upcast(from: u32, mut data: Value) -> Result<Value, String> {
            match from {
                1 => {
                    let euros = data["euros"].as_f64().ok_or("euros is not a number")?;
                    data["cents"] = json!((euros * 100.0).round() as u64);
                    data["currency"] = json!("EUR");
                    Ok(data)
                }
                v => Err(format!("no upcaster from version {v}")),
            }
        }
    }

    /// Was `DiscountGiven`; same shape.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct DiscountApplied {
        pub item: String,
        pub percent: u8,
    }
    impl DomainEvent for DiscountApplied {
        const TYPE: &'static str = "DiscountApplied";
        const FORMER_TYPES: &'static [&'static str] = &["DiscountGiven"];
        fn tags(&self) -> Vec<String> {
            vec![tag("item", &self.item)]
        }
    }

    fairway_runtime::event_set! {
        /// What the pricing module reads.
        pub enum Pricing { PriceSet(PriceSet), DiscountApplied(DiscountApplied) }
    }
}

async fn append(store: &MemoryStore, event: impl Into<NewEvent>) {
    let e = event.into().to_event(Uuid::new_v4(), UNIX_EPOCH).unwrap();
    store.append(vec![e], vec![]).await.unwrap();
}

/// Three old-shape events: two prices (positions 1 and 3) and a discount under its old name (2).
async fn old_log() -> MemoryStore {
    let store = MemoryStore::new();
    let p = |item: &str, euros| v1::PriceSet {
        item: item.into(),
        euros,
    };
    append(&store, p("pen", 1.5)).await;
    append(
        &store,
        v1::DiscountGiven {
            item: "pen".into(),
            percent: 10,
        },
    )
    .await;
    append(&store, p("ink", 12.25)).await;
    store
}

#[tokio::test]
async fn check_catches_the_old_shape_and_the_upcaster_fixes_it() {
    let store = old_log().await;

    // The careless change: every stored price fails, by position and type.
    let broken = [Decoder::of::<v2_broken::Pricing>("pricing")];
    let report = check_events(&store, &broken, 100, |_| {}).await.unwrap();
    assert_eq!(report.events, 3);
    assert_eq!(report.failed, 2, "{report:?}");
    assert!(!report.ok());
    let failed: Vec<(u64, &str)> = report
        .failures
        .iter()
        .map(|f| (f.position.as_u64().unwrap(), f.event_type.as_str()))
        .collect();
    assert_eq!(failed, vec![(1, "PriceSet"), (3, "PriceSet")]);
    assert!(
        report.failures[0].error.contains("missing field `cents`"),
        "{:?}",
        report.failures[0]
    );
    assert_eq!(report.failures[0].modules, vec!["pricing".to_owned()]);
    assert_eq!(report.types["PriceSet"].failed, 2);
    // The discount is read by nobody in the broken version: counted, never a failure.
    assert!(report.types["DiscountGiven"].readers.is_empty());

    // The upcaster (and the rename): everything decodes.
    let fixed = [Decoder::of::<v2::Pricing>("pricing")];
    let report = check_events(&store, &fixed, 100, |_| {}).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.events, 3);
    assert_eq!(report.types["DiscountGiven"].readers, vec!["pricing"]);

    // And reads decode to the new shape.
    let all = store
        .read(Query::All, ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let decoded: Vec<v2::Pricing> = all
        .into_iter()
        .map(|e| Sequenced::<v2::Pricing>::decode(e).unwrap().event)
        .collect();
    match &decoded[..] {
        [
            v2::Pricing::PriceSet(a),
            v2::Pricing::DiscountApplied(d),
            v2::Pricing::PriceSet(b),
        ] => {
            assert_eq!((a.cents, a.currency.as_str()), (150, "EUR"));
            assert_eq!(d.percent, 10);
            assert_eq!((b.cents, b.currency.as_str()), (1225, "EUR"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn new_events_carry_their_version_and_decode_without_upcasting() {
    let store = MemoryStore::new();
    append(
        &store,
        v2::PriceSet {
            item: "pen".into(),
            cents: 99,
            currency: "USD".into(),
        },
    )
    .await;
    let stored = store
        .read(Query::All, ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(
        stored[0]
            .event
            .metadata
            .get(SCHEMA_VERSION_KEY)
            .map(String::as_str),
        Some("2")
    );
    let e = Sequenced::<v2::Pricing>::decode(stored[0].clone()).unwrap();
    match e.event {
        v2::Pricing::PriceSet(p) => assert_eq!((p.cents, p.currency.as_str()), (99, "USD")),
        other => panic!("{other:?}"),
    }
    // A version-1 event in the new shape would be upcast; an upcaster error is typed.
    let err =
        v2::Pricing::decode_versioned("PriceSet", 1, br#"{"item":"x","euros":"no"}"#).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Upcast { from: 1, .. }),
        "{err:?}"
    );
    // An unreadable stored version is a typed error too.
    let mut bad = stored[0].clone();
    bad.event
        .metadata
        .insert(SCHEMA_VERSION_KEY.to_owned(), "two".to_owned());
    assert!(matches!(
        Sequenced::<v2::Pricing>::decode(bad),
        Err(DecodeError::Data { .. })
    ));
}

#[tokio::test]
async fn a_rename_keeps_old_events_in_reads_and_conditions() {
    let store = old_log().await;
    // A decision's query names the new type; restricted to the set it also matches the old name.
    let query = Query::item(QueryItem::new().types(["DiscountApplied"]).tag("item:pen"));
    let restricted = restrict_set::<v2::Pricing>(&query).unwrap();
    let found = store
        .read(restricted.clone(), ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(&*found[0].event.event_type, "DiscountGiven");
    // An empty item means the whole set, old names included.
    let whole = restrict_set::<v2::Pricing>(&Query::tagged("item:pen")).unwrap();
    let n = store
        .read(whole, ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .len();
    assert_eq!(n, 2);
    // The set lists every stored name it decodes.
    assert_eq!(
        v2::Pricing::stored_types(),
        vec!["PriceSet", "DiscountApplied", "DiscountGiven"]
    );
    // The restricted query as an append condition fails on the old-named event.
    let condition = dcb_core::AppendCondition::none_match(restricted);
    let e = v2::DiscountApplied {
        item: "pen".into(),
        percent: 5,
    };
    let event = NewEvent::from(e)
        .to_event(Uuid::new_v4(), UNIX_EPOCH)
        .unwrap();
    let err = store
        .append(vec![event], vec![condition])
        .await
        .unwrap_err();
    assert!(
        matches!(err, dcb_core::StoreError::ConditionFailed { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_host_lists_each_modules_decoders() {
    let store = old_log().await;
    let module = Module::new(ModuleKind::View, "pricing").reads::<v2_broken::Pricing>();
    let host = Host::new(Runtime::new(std::sync::Arc::new(store)), vec![module]);
    let decoders = host.decoders();
    assert_eq!(decoders.len(), 1);
    assert_eq!(decoders[0].module, "pricing");
    assert_eq!(decoders[0].types, vec!["PriceSet"]);
}
