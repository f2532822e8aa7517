//! The API contract of the real binary: `GET /openapi.json` is an OpenAPI 3.1 document that
//! describes every route the host serves (the host's own catalog, read from the console, plus
//! `/health`, `/metrics` and `/openapi.json`), every documented operation is served, every
//! `$ref` resolves, errors share the one schema, POSTs declare `Idempotency-Key` and the
//! authenticated routes the `token` scheme. Then the regressions the contract test
//! (`cargo xtask contract`, schemathesis) found.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, data_dir};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `GET path` on another listener of the same process (the console's).
fn get_at(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

fn console_addr(startup_line: &str) -> SocketAddr {
    let rest = startup_line.split("console: http://").nth(1).unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// Every `METHOD path` the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "$ref" {
                    out.push(x.as_str().unwrap().to_owned());
                } else {
                    refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// A path template with each `{param}` filled with a harmless value.
fn fill(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let name = &rest[start + 1..end];
        out.push_str(if name == "email" { "a@x.io" } else { "x1" });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_document_describes_every_route_the_host_serves() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let r = s.get("/openapi.json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Fairway");

    // The host's own list of what it serves: its catalog, as the console shows it.
    let (status, catalog) = get_at(console_addr(&s.startup_line), "/console/api/modules");
    assert_eq!(status, 200, "{catalog}");
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for m in catalog["modules"].as_array().unwrap() {
        for route in m["routes"].as_array().unwrap() {
            served.insert((
                route["method"].as_str().unwrap().to_owned(),
                route["path"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert!(served.len() >= 19, "{served:?}");
    for own in ["/health", "/metrics", "/openapi.json"] {
        served.insert(("GET".to_owned(), own.to_owned()));
    }
    let documented = operations(&doc);
    assert_eq!(
        documented,
        served,
        "documented but not served: {:?}; served but not documented: {:?}",
        documented.difference(&served).collect::<Vec<_>>(),
        served.difference(&documented).collect::<Vec<_>>()
    );

    // Every documented operation is routed: never the fallback's 404 `no such route`, never 405.
    for (method, path) in &documented {
        let target = fill(path);
        let r = s.request(
            method,
            &target,
            &[("content-type", "application/json")],
            Some(b"{}"),
        );
        assert_ne!(r.status, 405, "{method} {target}: {}", r.text());
        if r.status == 404 {
            assert_ne!(
                r.json()["error"]["message"],
                "no such route",
                "{method} {target}"
            );
        }
    }

    // Every reference resolves inside the document.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r} points outside the schemas"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }

    // The catalog (`cargo xtask catalog`, generated from the sources) links each module's
    // routes to their operations in this document: every id it names is here.
    let ids: BTreeSet<String> = documented
        .iter()
        .filter_map(|(m, p)| doc["paths"][p][m.to_lowercase()]["operationId"].as_str())
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), documented.len(), "operation ids are not unique");
    let catalog_md = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/catalog.md"
    ))
    .unwrap();
    let mut linked = 0;
    for line in catalog_md.lines() {
        let Some((_, list)) = line
            .strip_prefix("- OpenAPI operations (")
            .and_then(|l| l.split_once("): "))
        else {
            continue;
        };
        for id in list.split(", ") {
            let id = id.trim_matches('`');
            assert!(ids.contains(id), "docs/catalog.md names operation {id:?}");
            linked += 1;
        }
    }
    assert_eq!(
        linked,
        served.len() - 3,
        "the catalog links every module route"
    );

    // Errors: one schema, the default response of every operation.
    assert_eq!(
        doc["components"]["schemas"]["Error"]["required"],
        json!(["error"])
    );
    for (method, path) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(
            op["operationId"].as_str().is_some_and(|id| !id.is_empty()),
            "{method} {path}"
        );
        if path.starts_with("/api/") {
            assert_eq!(
                op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{method} {path}"
            );
            // Some success response is documented.
            let ok = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with('2'));
            assert!(ok, "{method} {path}: {}", op["responses"]);
        }
        let headers: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "header")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            headers.contains(&"Idempotency-Key"),
            matches!(method.as_str(), "POST" | "PUT" | "PATCH"),
            "{method} {path}: {headers:?}"
        );
        // Path parameters: each `{name}` of the template, required.
        for name in path
            .split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(n, _)| n))
        {
            let declared = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] == "path" && p["name"] == name && p["required"] == true);
            assert!(declared, "{method} {path}: no path parameter {name}");
        }
    }

    // A request body is a schema of its own, e.g. the todo item's `text`.
    let add = &doc["paths"]["/api/lists/{listId}/items/{itemId}"]["post"];
    let body_ref = add["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    let body = &doc["components"]["schemas"][body_ref.rsplit('/').next().unwrap()];
    assert_eq!(body["required"], json!(["text"]), "{body}");
    assert!(add["responses"].get("201").is_some(), "{add}");

    // Authentication: the routes taking a user's token declare the scheme and a 401; the
    // others do not.
    assert_eq!(
        doc["components"]["securitySchemes"]["token"],
        json!({
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": doc["components"]["securitySchemes"]["token"]["description"],
        })
    );
    let authed = [
        ("get", "/api/user"),
        ("put", "/api/user/email"),
        ("put", "/api/user/password"),
        ("patch", "/api/user/details"),
    ];
    for (method, path) in &documented {
        let m = method.to_lowercase();
        let op = &doc["paths"][path][&m];
        let needs = authed.contains(&(m.as_str(), path.as_str()));
        assert_eq!(
            op["security"] == json!([{ "token": [] }]),
            needs,
            "{method} {path}"
        );
        assert_eq!(
            op["responses"].get("401").is_some(),
            needs,
            "{method} {path}"
        );
    }
    s.stop();
}

#[test]
fn the_document_needs_no_credentials_and_is_the_same_on_every_run() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let first = s.get("/openapi.json");
    assert_eq!(first.status, 200);
    // Credentials of any kind change nothing: the contract is public.
    let with_token = s.request(
        "GET",
        "/openapi.json",
        &[("authorization", "Token garbage")],
        None,
    );
    assert_eq!(with_token.status, 200);
    assert_eq!(with_token.body, first.body);
    let s = s.restart();
    let again = s.get("/openapi.json");
    assert_eq!(
        again.body, first.body,
        "the document changed across a restart"
    );
    s.stop();
}

// ---- Regressions found by the contract test (`cargo xtask contract`) ----

/// `?after=` a position past the store's head made a view route wait the view's whole timeout
/// (5 s), then answer 503, a server error, although no command ever returned that position and
/// none may for a long time. It is the client's mistake: 400 `invalid_field` naming `after`, at
/// once. A position the store has reached still waits for the view and answers 200.
#[test]
fn regression_after_past_the_head_is_a_bad_request_not_a_503() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let created = s.post_json("/api/lists/l1", &json!({"name": "L1"}));
    assert_eq!(created.status, 201, "{}", created.text());
    let head: u64 = created.json()["position"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for path in [
        format!("/api/borrowers/ann/books?after={}", head + 950_779_835),
        format!("/api/lists/l1?after={}", head + 1),
    ] {
        let r = s.get(&path);
        r.assert_error(400, "invalid_field");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("after"),
            "{path}: {}",
            r.text()
        );
    }
    let r = s.get(&format!("/api/lists/l1?after={head}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "L1");
    let r = s.get(&format!("/api/borrowers/ann/books?after={head}"));
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop();
}
