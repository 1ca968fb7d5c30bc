//! docs/openapi.json against the services: the routes it lists under `/douyin/` are the
//! routes the services register, no more and no fewer, each is served, and the query API
//! serves the document itself.
//!
//! The registered routes are read from the services' sources (their actix route attributes)
//! rather than asked of the running services, which cannot list what they serve; the stack
//! is then asked for every documented route, which catches an attribute whose handler is
//! never registered.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use system_tests::TestStack;

/// A route: its method, upper case, and its path as registered.
type Route = (String, String);

/// The client's routes: the ones the document and the services must agree on.
const CLIENT_PREFIX: &str = "/douyin/";

/// Methods actix has route attributes for, and OpenAPI path items have operations for.
const METHODS: [&str; 9] = [
    "get", "post", "put", "delete", "head", "options", "patch", "trace", "connect",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("system-tests is in the workspace")
        .to_owned()
}

fn document() -> Value {
    let path = workspace().join("docs/openapi.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// Every operation of the document, by method and path.
fn documented(document: &Value) -> BTreeSet<Route> {
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for method in item.keys().filter(|key| METHODS.contains(&key.as_str())) {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

/// The Rust files of a service's sources.
fn sources(service: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                found.push((path, text));
            }
        }
    }
    let mut found = vec![];
    walk(&workspace().join(service).join("src"), &mut found);
    assert!(!found.is_empty(), "no sources found for {service}");
    found
}

/// The string literal `text` starts with (after white space), and what follows it.
fn string_literal(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some((&rest[..end], &rest[end + 1..]))
}

/// Routes declared with actix's attributes in `source`: `#[get("/path")]`, `#[post(...)]`,
/// ..., and `#[route("/path", method = "GET", method = "POST")]`.
fn attribute_routes(source: &str) -> Vec<Route> {
    let mut routes = vec![];
    for (start, _) in source.match_indices("#[") {
        let attribute = &source[start + 2..];
        let Some(open) = attribute.find('(') else {
            continue;
        };
        let name = attribute[..open].trim();
        let Some((path, rest)) = string_literal(&attribute[open + 1..]) else {
            continue;
        };
        if METHODS.contains(&name) {
            routes.push((name.to_uppercase(), path.to_owned()));
        } else if name == "route" {
            let arguments = &rest[..rest.find(")]").unwrap_or(rest.len())];
            for (at, _) in arguments.match_indices("method") {
                let value = arguments[at + "method".len()..].trim_start();
                if let Some((method, _)) = value.strip_prefix('=').and_then(string_literal) {
                    routes.push((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes
}

/// The client routes the command and query APIs declare. Panics at a client path written
/// anywhere else in their sources: a route registered another way (`web::resource`, say)
/// that this reading would miss.
fn registered() -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    let mut literals = vec![];
    for service in ["command-api", "query-api"] {
        for (file, source) in sources(service) {
            routes.extend(
                attribute_routes(&source)
                    .into_iter()
                    .filter(|(_, path)| path.starts_with(CLIENT_PREFIX)),
            );
            let quoted = format!("\"{CLIENT_PREFIX}");
            for (at, _) in source.match_indices(&quoted) {
                let (path, _) = string_literal(&source[at..]).expect("a closed literal");
                literals.push((file.clone(), path.to_owned()));
            }
        }
    }
    for (file, path) in literals {
        assert!(
            routes.iter().any(|(_, registered)| *registered == path),
            "{} names {path} outside a route attribute: register client routes with \
             #[get(...)] or #[post(...)], or teach this test the other way",
            file.display()
        );
    }
    routes
}

fn client_routes(routes: &BTreeSet<Route>) -> BTreeSet<Route> {
    routes
        .iter()
        .filter(|(_, path)| path.starts_with(CLIENT_PREFIX))
        .cloned()
        .collect()
}

#[test]
fn the_document_lists_exactly_the_client_routes_the_services_register() {
    let documented = client_routes(&documented(&document()));
    let registered = registered();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unregistered.is_empty(),
        "registered but not in docs/openapi.json (run scripts/openapi.py once it lists \
         them): {undocumented:?}; in docs/openapi.json but not registered: {unregistered:?}"
    );
    // Both sides empty would agree too: the reading of the sources must have found the
    // contract's 16 routes.
    assert!(
        registered.len() >= 16,
        "only {registered:?} found in the sources"
    );
}

#[test]
fn route_attributes_are_read_whatever_their_spelling() {
    let source = r#"
        #[get("/douyin/a/")]
        async fn a() {}
        #[post( "/douyin/b/" )]
        async fn b() {}
        #[route("/douyin/c/", method = "GET", method="PUT")]
        async fn c() {}
        #[derive(Debug)]
        #[cfg(test)]
        struct D;
    "#;
    let route = |method: &str, path: &str| (method.to_owned(), path.to_owned());
    assert_eq!(
        attribute_routes(source),
        vec![
            route("GET", "/douyin/a/"),
            route("POST", "/douyin/b/"),
            route("GET", "/douyin/c/"),
            route("PUT", "/douyin/c/"),
        ]
    );
}

/// What the services answer for a path no route matches.
fn is_no_such_route(status: reqwest::StatusCode, body: &str) -> bool {
    status == reqwest::StatusCode::NOT_FOUND
        && serde_json::from_str::<Value>(body)
            .is_ok_and(|body| body["status_msg"] == "no such route")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served_and_so_is_the_document() {
    let stack = TestStack::spawn().await;
    let document = document();

    // The stack has no route of this name: the check below would see a missing route.
    let probe = stack
        .http
        .get(format!("{}/douyin/no/such/route/", stack.query_url))
        .send()
        .await
        .unwrap();
    let status = probe.status();
    assert!(is_no_such_route(status, &probe.text().await.unwrap()));

    for (method, path) in documented(&document) {
        // nginx sends POST to the command API and every other method to the query API.
        let base = match method.as_str() {
            "POST" => &stack.command_url,
            _ => &stack.query_url,
        };
        // A key of the shape the server makes: the route answers it (with its own 404).
        let url = format!("{base}{}", path.replace("{key}", "videos/1.mp4"));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = stack
            .http
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(
            !is_no_such_route(status, &body),
            "{method} {path} is documented but not served: HTTP {status} {body}"
        );
        // Whatever it answers, it answers the envelope.
        let body: Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {body:?}"));
        assert!(
            body["status_code"].is_i64() && body["status_msg"].is_string(),
            "{method} {path}: {body}"
        );
    }

    let served = stack
        .http
        .get(format!("{}/openapi.json", stack.query_url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/json");
    let served: Value = served.json().await.unwrap();
    assert_eq!(served, document, "/openapi.json is not docs/openapi.json");
}
