//! Tests of the document: template parameters, operation ids, a host's whole document.

use super::*;

#[test]
fn path_parameters_are_read_from_the_template() {
    assert_eq!(
        path_parameters("/api/lists/{listId}/items/{itemId}/complete"),
        ["listId", "itemId"]
    );
    assert_eq!(path_parameters("/health"), Vec::<String>::new());
    assert_eq!(path_parameters("/files/{*rest}"), ["rest"]);
    assert_eq!(path_parameters("/broken/{open"), Vec::<String>::new());
}

/// A module with a documented body, an authenticated route and a 201, served by a host:
/// the document has all three, the schemes in the components, no helper extension left.
#[test]
fn a_hosts_document_has_its_modules_routes_schemas_and_schemes() {
    use crate::http::{Created, JsonBody};
    use crate::{Host, Module, ModuleKind, Runtime};

    #[derive(serde::Deserialize, JsonSchema)]
    struct Note {
        /// The text.
        #[allow(dead_code)]
        text: String,
    }
    struct Authed;
    impl OperationInput for Authed {
        fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
            require_security(
                ctx,
                operation,
                "key",
                SecurityScheme::ApiKey {
                    location: aide::openapi::ApiKeyLocation::Header,
                    name: "X-Key".to_owned(),
                    description: None,
                    extensions: Default::default(),
                },
            );
        }
    }
    impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Authed {
        type Rejection = ApiError;
        async fn from_request_parts(
            _: &mut axum::http::request::Parts,
            _: &S,
        ) -> Result<Self, ApiError> {
            Ok(Authed)
        }
    }
    async fn add(JsonBody(_): JsonBody<Note>) -> Result<Created<ErrorDetail>, ApiError> {
        Err(ApiError::not_found("x"))
    }
    async fn secret(_: Authed) -> Result<axum::Json<String>, ApiError> {
        Ok(axum::Json(String::new()))
    }
    let module = Module::new(ModuleKind::Command, "notes")
        .describe("Notes")
        .post("/notes/{id}", add)
        .get("/secret", secret);
    let host = Host::new(
        Runtime::new(std::sync::Arc::new(dcb_core::MemoryStore::new())),
        vec![module],
    );
    let doc = serde_json::to_value(host.openapi()).unwrap_or_default();
    assert_eq!(doc["openapi"], "3.1.0");
    let post = &doc["paths"]["/notes/{id}"]["post"];
    assert_eq!(post["operationId"], "notes");
    assert_eq!(post["summary"], "Notes");
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Note"
    );
    assert!(post["responses"]["201"].is_object(), "{post}");
    assert!(post["responses"]["415"].is_object(), "{post}");
    assert_eq!(post["parameters"][0]["name"], "id");
    assert_eq!(post["parameters"][1]["name"], "Idempotency-Key");
    let get = &doc["paths"]["/secret"]["get"];
    assert_eq!(get["operationId"], "notes-2");
    assert_eq!(get["security"], serde_json::json!([{ "key": [] }]));
    assert!(get["responses"]["401"].is_object(), "{get}");
    assert!(get["parameters"].as_array().is_none_or(|p| p.is_empty()));
    assert_eq!(doc["components"]["securitySchemes"]["key"]["name"], "X-Key");
    assert!(!doc.to_string().contains(SCHEME_EXTENSION));
    assert_eq!(doc["paths"]["/health"]["get"]["operationId"], "health");
    assert_eq!(
        doc["paths"]["/openapi.json"]["get"]["operationId"],
        "openapi"
    );
    for name in ["Note", "Error", "ErrorDetail"] {
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
    // The same document every time.
    assert_eq!(
        serde_json::to_value(host.openapi()).unwrap_or_default(),
        doc
    );
}

#[test]
fn operation_ids_number_a_modules_later_routes() {
    assert_eq!(operation_id("todo-add-item", 0), "todo-add-item");
    assert_eq!(operation_id("registration", 2), "registration-3");
}
