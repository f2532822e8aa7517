//! The API contract: an OpenAPI 3.1 document generated from the modules' routes.
//!
//! Each route a module registers ([`Module::get`](crate::Module::get), `post`, ...) is
//! documented from its handler's signature, through [`aide`]: the extractors say what the
//! request carries ([`JsonBody<T>`](crate::http::JsonBody) a JSON body of schema `T`, `Path`
//! the path parameters, `Query<T>` the query parameters, an authenticating extractor the security
//! requirement) and the return type what the response is (`Json<T>` 200, [`Created<T>`](crate::http::Created) 201,
//! `NoContent` 204, [`ApiError`] every error). Schemas come from `schemars::JsonSchema`,
//! derived on the request and response types. A handler whose argument or return type has no
//! documentation does not compile as a route, so a route cannot be left out of the contract.
//!
//! On top of what the handlers say, the document declares for every operation: its path
//! parameters (from the path template, as strings, unless the handler's `Path<T>` describes
//! them), the `Idempotency-Key` header on `POST`, `PUT` and `PATCH` (see
//! [`idempotency`](crate::idempotency)), and the one error shape as the `default` response
//! (`{"error":{"code","message"}}`, with `Retry-After` on 429 and 503). Operation ids are the
//! module's name (suffixed `-2`, `-3`, ... for a module's later routes), tags the module's name.
//!
//! The host serves the document at `GET /openapi.json` ([`Host::openapi`](crate::Host::openapi)).
//!
//! A module's own extractor documents itself by implementing [`aide::OperationInput`]
//! (re-exported here); an extractor that authenticates calls [`require_security`].

use std::borrow::Cow;

pub use aide;
pub use aide::generate::GenContext;
pub use aide::openapi::Operation;
pub use aide::{OperationInput, OperationOutput};
pub use schemars;

use aide::openapi::{
    Components, Header, HeaderStyle, Info, MediaType, OpenApi, Parameter, ParameterData,
    ParameterSchemaOrContent, PathItem, PathStyle, Paths, ReferenceOr, Response, Responses,
    SchemaObject, SecurityScheme, StatusCode, Tag,
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use crate::http::ApiError;

/// The OpenAPI version of the document.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// Where the host serves the document.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The operation extension that carries a security scheme from an extractor to the document's
/// components (removed when the document is built).
const SCHEME_EXTENSION: &str = "x-fairway-security-scheme";

/// The error body every error response has: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `invalid_field`, `list_not_found`, `unauthorized`.
    pub code: String,
    /// A human-readable message (for a bad field, it starts with the field's name).
    pub message: String,
}

/// The schema of a store position: a decimal string (96 bits at most). Use it on a response
/// field with `#[schemars(schema_with = "fairway_runtime::openapi::position")]`.
pub fn position(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": "^[0-9]{1,29}$",
        "description": "A position in the event store: a decimal string, increasing in commit order"
    })
}

/// The schema of an optional store position: [`position`] or `null`.
pub fn optional_position(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "pattern": "^[0-9]{1,29}$",
        "description": "A position in the event store (a decimal string), or null"
    })
}

/// Declares that `operation` needs the credentials of security scheme `name` (described by
/// `scheme`), and answers 401 without them. Called by an authenticating extractor's
/// [`OperationInput::operation_input`]; the scheme lands in the document's components.
pub fn require_security(
    ctx: &mut GenContext,
    operation: &mut Operation,
    name: &str,
    scheme: SecurityScheme,
) {
    let mut requirement = aide::openapi::SecurityRequirement::default();
    requirement.insert(name.to_owned(), Vec::new());
    if !operation.security.contains(&requirement) {
        operation.security.push(requirement);
    }
    let mut schemes = operation
        .extensions
        .get(SCHEME_EXTENSION)
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if let Ok(value) = serde_json::to_value(&scheme) {
        schemes.insert(name.to_owned(), value);
    }
    operation
        .extensions
        .insert(SCHEME_EXTENSION.to_owned(), schemes.into());
    set_response(
        operation,
        Some(401),
        error_response(ctx, "Missing, malformed, expired or revoked credentials"),
    );
}

/// An error response: the [`ErrorBody`] schema, `Retry-After` when it says when to come back.
pub fn error_response(ctx: &mut GenContext, description: &str) -> Response {
    let schema = ctx.schema.subschema_for::<ErrorBody>();
    json_response(description, schema)
}

fn retry_after_header(ctx: &mut GenContext) -> Header {
    Header {
        description: Some(
            "On 429 and 503: seconds after which a retry may succeed (at least 1)".to_owned(),
        ),
        style: HeaderStyle::Simple,
        required: false,
        deprecated: None,
        format: ParameterSchemaOrContent::Schema(SchemaObject {
            json_schema: ctx.schema.subschema_for::<u64>(),
            example: None,
            external_docs: None,
        }),
        example: None,
        examples: Default::default(),
        extensions: Default::default(),
    }
}

/// Sets the response for `status` (`None`: the default response), replacing an earlier one.
pub fn set_response(operation: &mut Operation, status: Option<u16>, response: Response) {
    let responses = operation.responses.get_or_insert_with(Responses::default);
    match status {
        Some(code) => {
            responses
                .responses
                .insert(StatusCode::Code(code), ReferenceOr::Item(response));
        }
        None => responses.default = Some(ReferenceOr::Item(response)),
    }
}

/// How to document one route; run when the document is built.
#[derive(Clone)]
pub struct RouteDoc {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// The path template, e.g. `/api/lists/{listId}`.
    pub path: String,
    /// Its operation id, when not the module's (see [`operation_id`]).
    pub id: Option<&'static str>,
    generate: fn(&mut GenContext) -> Operation,
}

impl std::fmt::Debug for RouteDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteDoc")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RouteDoc {
    /// The route `method path` whose handler takes `I` and returns `O`.
    pub fn of<I: OperationInput, O: OperationOutput>(method: &'static str, path: &str) -> RouteDoc {
        RouteDoc {
            method,
            path: path.to_owned(),
            id: None,
            generate: operation_of::<I, O>,
        }
    }

    /// A route with operation id `id`, documented by a function (the host's own routes).
    pub fn with(
        method: &'static str,
        path: &str,
        id: &'static str,
        generate: fn(&mut GenContext) -> Operation,
    ) -> RouteDoc {
        RouteDoc {
            method,
            path: path.to_owned(),
            id: Some(id),
            generate,
        }
    }
}

/// What aide's routers do for a handler: the inputs, then the responses inferred from the
/// return type, then the extractors' early responses (a request they refuse never reaches the
/// handler, so theirs win).
fn operation_of<I: OperationInput, O: OperationOutput>(ctx: &mut GenContext) -> Operation {
    let mut operation = Operation::default();
    I::operation_input(ctx, &mut operation);
    for (status, response) in O::inferred_responses(ctx, &mut operation) {
        set_response(&mut operation, status, response);
    }
    for (status, response) in I::inferred_early_responses(ctx, &mut operation) {
        set_response(&mut operation, status, response);
    }
    operation
}

/// One module's part of the document.
#[derive(Debug, Clone, Copy)]
pub struct ModuleRoutes<'a> {
    /// The module's name: operation id and tag.
    pub name: &'a str,
    /// One line about it: the tag's description and the operations' summary.
    pub description: &'a str,
    /// Its routes.
    pub routes: &'a [RouteDoc],
}

/// The operation id of a module's `index`-th route (from 0): the module's name, then
/// `NAME-2`, `NAME-3`, ...
pub fn operation_id(module: &str, index: usize) -> String {
    if index == 0 {
        module.to_owned()
    } else {
        format!("{module}-{}", index + 1)
    }
}

/// The names in a path template's `{name}` segments, in order.
pub fn path_parameters(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        let name = after[..end].trim_start_matches('*');
        if !name.is_empty() {
            out.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    out
}

fn has_parameter(operation: &Operation, location: &str, name: &str) -> bool {
    operation.parameters.iter().any(|p| match p {
        ReferenceOr::Item(p) => {
            let data = p.parameter_data_ref();
            let here = match p {
                Parameter::Path { .. } => "path",
                Parameter::Query { .. } => "query",
                Parameter::Header { .. } => "header",
                Parameter::Cookie { .. } => "cookie",
            };
            here == location && data.name.eq_ignore_ascii_case(name)
        }
        ReferenceOr::Reference { .. } => false,
    })
}

fn string_parameter_data(
    name: &str,
    description: &str,
    required: bool,
    schema: Schema,
) -> ParameterData {
    ParameterData {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required,
        deprecated: None,
        format: ParameterSchemaOrContent::Schema(SchemaObject {
            json_schema: schema,
            example: None,
            external_docs: None,
        }),
        example: None,
        examples: Default::default(),
        explode: None,
        extensions: Default::default(),
    }
}

/// The host-wide additions to one module operation (see the module docs).
fn complete(ctx: &mut GenContext, operation: &mut Operation, method: &str, path: &str) {
    for name in path_parameters(path) {
        if !has_parameter(operation, "path", &name) {
            operation
                .parameters
                .push(ReferenceOr::Item(Parameter::Path {
                    parameter_data: string_parameter_data(
                        &name,
                        "A path segment (its format is checked: 400 `invalid_field` naming it)",
                        true,
                        json_schema!({ "type": "string", "minLength": 1 }),
                    ),
                    style: PathStyle::Simple,
                }));
        }
    }
    if matches!(method, "POST" | "PUT" | "PATCH")
        && !has_parameter(operation, "header", crate::idempotency::IDEMPOTENCY_HEADER)
    {
        let max = crate::idempotency::MAX_KEY_LEN;
        operation
            .parameters
            .push(ReferenceOr::Item(Parameter::Header {
                parameter_data: string_parameter_data(
                    "Idempotency-Key",
                    "Makes the request safe to retry: the first 2xx response is stored (24 h) and \
                     replayed, with `Idempotent-Replayed: true`, for the same key and the same \
                     request of the same principal. The same key with another request is 422 \
                     `idempotency_key_reused`; while the first request runs, 409 \
                     `idempotency_in_progress`",
                    false,
                    json_schema!({
                        "type": "string",
                        "minLength": 1,
                        "maxLength": max,
                        "pattern": "^[\\x21-\\x7E]+$"
                    }),
                ),
                style: HeaderStyle::Simple,
            }));
    }
    let mut default = error_response(
        ctx,
        "An error: bad input (400, naming the field), unknown route (404), conflict (409), \
         unprocessable (422), body too large (413), wrong content type (415), too many requests \
         (429), unavailable or busy (503), internal (500)",
    );
    default.headers.insert(
        "Retry-After".to_owned(),
        ReferenceOr::Item(retry_after_header(ctx)),
    );
    set_response(operation, None, default);
}

fn put_operation(item: &mut PathItem, method: &str, operation: Operation) {
    let slot = match method {
        "GET" => &mut item.get,
        "POST" => &mut item.post,
        "PUT" => &mut item.put,
        "PATCH" => &mut item.patch,
        "DELETE" => &mut item.delete,
        "HEAD" => &mut item.head,
        "OPTIONS" => &mut item.options,
        _ => &mut item.trace,
    };
    *slot = Some(operation);
}

fn text_response(description: &str, content_type: &str) -> Response {
    let mut response = Response {
        description: description.to_owned(),
        ..Default::default()
    };
    response.content.insert(
        content_type.to_owned(),
        MediaType {
            schema: Some(SchemaObject {
                json_schema: json_schema!({ "type": "string" }),
                example: None,
                external_docs: None,
            }),
            ..Default::default()
        },
    );
    response
}

fn json_response(description: &str, schema: Schema) -> Response {
    let mut response = Response {
        description: description.to_owned(),
        ..Default::default()
    };
    response.content.insert(
        "application/json".to_owned(),
        MediaType {
            schema: Some(SchemaObject {
                json_schema: schema,
                example: None,
                external_docs: None,
            }),
            ..Default::default()
        },
    );
    response
}

/// `GET /health`: 200 `{"status":"ok"}` while the store answers, else 503.
fn health(ctx: &mut GenContext) -> Operation {
    let mut op = Operation {
        summary: Some("200 while the store answers, 503 when it does not".to_owned()),
        ..Default::default()
    };
    set_response(
        &mut op,
        Some(200),
        json_response(
            "The store answers",
            json_schema!({
                "type": "object",
                "properties": { "status": { "const": "ok" } },
                "required": ["status"]
            }),
        ),
    );
    set_response(
        &mut op,
        Some(503),
        error_response(ctx, "The store does not answer"),
    );
    op
}

/// `GET /metrics`: Prometheus text.
fn metrics(_: &mut GenContext) -> Operation {
    let mut op = Operation {
        summary: Some("Prometheus metrics (text exposition format)".to_owned()),
        ..Default::default()
    };
    set_response(
        &mut op,
        Some(200),
        text_response("The metrics", "text/plain"),
    );
    op
}

/// `GET /openapi.json`: this document.
fn contract(_: &mut GenContext) -> Operation {
    let mut op = Operation {
        summary: Some("This OpenAPI 3.1 document (no credentials needed)".to_owned()),
        ..Default::default()
    };
    set_response(
        &mut op,
        Some(200),
        json_response("The document", json_schema!({ "type": "object" })),
    );
    op
}

/// The host's own routes, as [`ModuleRoutes`] of a module named `host`.
pub fn host_routes() -> Vec<RouteDoc> {
    vec![
        RouteDoc::with("GET", "/health", "health", health),
        RouteDoc::with("GET", "/metrics", "metrics", metrics),
        RouteDoc::with("GET", OPENAPI_PATH, "openapi", contract),
    ]
}

/// The document describing `modules` (the host's own routes first when given as a module).
/// Built in one pass with a fresh schema generator, so schema names are unique (`Body`,
/// `Body2`, ...) and every `$ref` resolves in `#/components/schemas`.
pub fn document(title: &str, version: &str, modules: &[ModuleRoutes<'_>]) -> OpenApi {
    aide::generate::reset_context();
    let mut api = aide::generate::in_context(|ctx| build(ctx, title, version, modules));
    aide::generate::reset_context();
    // Keys in a stable order: the document is the same on every run.
    if let Some(c) = api.components.as_mut() {
        c.schemas.sort_keys();
        c.security_schemes.sort_keys();
    }
    api
}

fn build(
    ctx: &mut GenContext,
    title: &str,
    version: &str,
    modules: &[ModuleRoutes<'_>],
) -> OpenApi {
    let mut paths = Paths::default();
    let mut components = Components::default();
    let mut tags = Vec::new();
    for module in modules {
        tags.push(Tag {
            name: module.name.to_owned(),
            description: (!module.description.is_empty()).then(|| module.description.to_owned()),
            ..Default::default()
        });
        for (index, route) in module.routes.iter().enumerate() {
            let mut operation = (route.generate)(ctx);
            complete(ctx, &mut operation, route.method, &route.path);
            operation.operation_id = Some(
                route
                    .id
                    .map_or_else(|| operation_id(module.name, index), str::to_owned),
            );
            operation.tags = vec![module.name.to_owned()];
            if operation.summary.is_none() && !module.description.is_empty() {
                operation.summary = Some(module.description.to_owned());
            }
            if let Some(serde_json::Value::Object(schemes)) =
                operation.extensions.shift_remove(SCHEME_EXTENSION)
            {
                for (name, scheme) in schemes {
                    if let Ok(s) = serde_json::from_value::<SecurityScheme>(scheme) {
                        components
                            .security_schemes
                            .insert(name, ReferenceOr::Item(s));
                    }
                }
            }
            let item = paths
                .paths
                .entry(route.path.clone())
                .or_insert_with(|| ReferenceOr::Item(PathItem::default()));
            if let ReferenceOr::Item(item) = item {
                put_operation(item, route.method, operation);
            }
        }
    }
    for (name, schema) in ctx.schema.take_definitions(true) {
        if let Ok(json_schema) = Schema::try_from(schema) {
            components.schemas.insert(
                name,
                SchemaObject {
                    json_schema,
                    example: None,
                    external_docs: None,
                },
            );
        }
    }
    OpenApi {
        openapi: Cow::Borrowed(OPENAPI_VERSION),
        info: Info {
            title: title.to_owned(),
            version: version.to_owned(),
            description: Some(
                "Generated from the modules' routes and their request and response types. Every \
                 error is `{\"error\":{\"code\",\"message\"}}`. Routes marked with the `token` \
                 security scheme need `Authorization: Token <JWT>` (from `POST /api/users/login`)."
                    .to_owned(),
            ),
            ..Default::default()
        },
        paths: Some(paths),
        components: Some(components),
        tags,
        ..Default::default()
    }
}

impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, _: &mut Operation) -> Option<Response> {
        Some(error_response(ctx, "An error"))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<u16>, Response)> {
        Self::operation_response(ctx, operation)
            .map(|r| vec![(None, r)])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
