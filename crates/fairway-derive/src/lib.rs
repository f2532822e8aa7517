//! `fairway-derive`: `#[derive(DomainEvent)]`, so that a Fairway event is a struct and two
//! attributes. Re-exported by `fairway-runtime` (use it as `fairway_runtime::DomainEvent`, the
//! same name as the trait, like serde's derives); this crate has no other use.
//!
//! Layer: a compile-time helper of `fairway-runtime`. It depends on nothing of Fairway and
//! generates code that names only `::fairway_runtime`.
//!
//! ```text
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, fairway_runtime::DomainEvent)]
//! #[event(type = "StudentSubscribed")]          // optional: the struct's name by default
//! #[event(version = 2, upcast = upcast_subscribed)] // optional: the shape's version, v1 -> v2
//! #[event(former = "StudentEnrolled")]          // optional, repeatable: names it had before
//! pub struct StudentSubscribed {
//!     #[tag("course")] pub course_id: String,  // tag "course:<course_id>"
//!     #[tag("student")] pub student_id: String,
//!     #[event(sensitive)] pub token: String,    // shown redacted by the console
//! }
//! ```
//!
//! A tagged field's value is formatted with `Display`. A sensitive field's JSON name is its
//! Rust name unless it carries `#[event(sensitive = "jsonName")]` (after a serde rename).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr, parse_macro_input};

/// Implements `fairway_runtime::DomainEvent` for a struct with named fields.
///
/// - `#[event(type = "Name")]` on the struct: the stored event type (default: the struct name).
/// - `#[tag("prefix")]` on a field: the event carries the tag `prefix:<field>` (any number).
/// - `#[event(sensitive)]` or `#[event(sensitive = "jsonName")]` on a field: listed in
///   `SENSITIVE_FIELDS`.
/// - `#[event(version = N)]` on the struct: `VERSION` (default 1); with `upcast = path`, a
///   `fn(u32, serde_json::Value) -> Result<serde_json::Value, String>` used as `upcast`.
/// - `#[event(former = "OldName")]` on the struct (repeatable): `FORMER_TYPES`.
#[proc_macro_derive(DomainEvent, attributes(event, tag))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let name = &input.ident;
    let mut event_type = LitStr::new(&name.to_string(), name.span());
    let mut version: Option<syn::LitInt> = None;
    let mut upcast: Option<syn::Path> = None;
    let mut former: Vec<LitStr> = Vec::new();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("type") {
                event_type = meta.value()?.parse()?;
                if event_type.value().is_empty() {
                    return Err(meta.error("the event type must not be empty"));
                }
                Ok(())
            } else if meta.path.is_ident("version") {
                let v: syn::LitInt = meta.value()?.parse()?;
                if v.base10_parse::<u32>()? < 1 {
                    return Err(meta.error("the version starts at 1"));
                }
                version = Some(v);
                Ok(())
            } else if meta.path.is_ident("upcast") {
                upcast = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("former") {
                let f: LitStr = meta.value()?.parse()?;
                if f.value().is_empty() {
                    return Err(meta.error("a former type name must not be empty"));
                }
                former.push(f);
                Ok(())
            } else {
                Err(meta.error(
                    "expected `#[event(type = \"...\")]`, `version = N`, `upcast = path` or \
                     `former = \"...\"`",
                ))
            }
        })?;
    }
    let version_item = version.map(|v| quote! { const VERSION: u32 = #v; });
    let upcast_item = upcast.map(|f| {
        quote! {
            fn upcast(
                from: u32,
                data: ::fairway_runtime::__private::serde_json::Value,
            ) -> ::std::result::Result<::fairway_runtime::__private::serde_json::Value, ::std::string::String> {
                #f(from, data)
            }
        }
    });
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            name,
            "#[derive(DomainEvent)] needs a struct with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            name,
            "#[derive(DomainEvent)] needs a struct with named fields",
        ));
    };
    let mut tags = Vec::new();
    let mut sensitive = Vec::new();
    for field in &fields.named {
        let Some(ident) = &field.ident else { continue };
        for attr in &field.attrs {
            if attr.path().is_ident("tag") {
                let prefix: LitStr = attr.parse_args()?;
                if prefix.value().is_empty() {
                    return Err(syn::Error::new_spanned(
                        prefix,
                        "a tag prefix must not be empty",
                    ));
                }
                tags.push(quote! { ::fairway_runtime::tag(#prefix, &self.#ident) });
            } else if attr.path().is_ident("event") {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("sensitive") {
                        let json = if meta.input.peek(syn::Token![=]) {
                            meta.value()?.parse::<LitStr>()?
                        } else {
                            LitStr::new(&ident.to_string(), ident.span())
                        };
                        sensitive.push(json);
                        Ok(())
                    } else {
                        Err(meta.error("expected `#[event(sensitive)]` on a field"))
                    }
                })?;
            }
        }
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::fairway_runtime::DomainEvent for #name #ty_generics #where_clause {
            const TYPE: &'static str = #event_type;
            const SENSITIVE_FIELDS: &'static [&'static str] = &[#(#sensitive),*];
            const FORMER_TYPES: &'static [&'static str] = &[#(#former),*];
            #version_item
            #upcast_item
            fn tags(&self) -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![#(#tags),*]
            }
        }
    })
}
