//! The simulator against Twilio's own OpenAPI documents (trimmed copies in `oai/`, see its
//! README): every route it serves exists with that method, every request parameter it reads is
//! documented for the operation, and the JSON it returns for representative operations has only
//! documented properties, of the documented types.
//!
//! Deliberate deviations are in the allow-lists below, each with its reason.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use twilio_sim::{SimConfig, SimHandle, Simulator, NUMBER_FIELDS, ROUTES, SYNC_ROUTES};

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "openapi-token";

const CALLS: &str = "/2010-04-01/Accounts/{AccountSid}/Calls.json";
const CALL: &str = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json";
const CONFERENCES: &str = "/2010-04-01/Accounts/{AccountSid}/Conferences.json";
const PARTICIPANTS: &str =
    "/2010-04-01/Accounts/{AccountSid}/Conferences/{ConferenceSid}/Participants.json";
const NUMBERS: &str = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json";
const NUMBER: &str = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json";
const SERVICES: &str = "/v1/Services";
const ASSETS: &str = "/v1/Services/{ServiceSid}/Assets";
const UPLOAD: &str = "/v1/Services/{ServiceSid}/Assets/{AssetSid}/Versions";
const BUILDS: &str = "/v1/Services/{ServiceSid}/Builds";
const ENVIRONMENTS: &str = "/v1/Services/{ServiceSid}/Environments";
const DEPLOYMENTS: &str = "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Deployments";
const FUNCTIONS: &str = "/v1/Services/{ServiceSid}/Functions";
const FUNCTION_UPLOAD: &str = "/v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions";
const VARIABLES: &str = "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Variables";
const SYNC_SERVICES: &str = "/v1/Services";
const SYNC_MAPS: &str = "/v1/Services/{ServiceSid}/Maps";
const SYNC_ITEMS: &str = "/v1/Services/{ServiceSid}/Maps/{MapSid}/Items";
const SYNC_ITEM: &str = "/v1/Services/{ServiceSid}/Maps/{MapSid}/Items/{Key}";

/// Routes the simulator serves that the documents do not describe.
const UNDOCUMENTED_ROUTES: &[(&str, &str)] = &[
    // The asset-version upload lives on serverless-upload.twilio.com and is not in the Serverless
    // document (its README says so); alertcall uploads this way, as Twilio's docs show.
    ("POST", UPLOAD),
    ("POST", FUNCTION_UPLOAD),
];

/// (method, path, parameter): parameters the simulator reads that the operation does not list.
const UNDOCUMENTED_PARAMS: &[(&str, &str, &str)] = &[];

/// Differences in responses that are the document's, not the simulator's: the start of an error
/// line, with array indexes removed.
const RESPONSE_DEVIATIONS: &[&str] = &[
    // Twilio returns `reason_conference_ended: null` until a conference ends (its own example
    // for the Conferences list shows it), but the document's `$ref` to the enum carries no
    // `nullable`, as for every enum-typed field of twilio-oai.
    "GET /2010-04-01/Accounts/{AccountSid}/Conferences.json.conferences.reason_conference_ended: null",
];

fn spec(path: &str) -> Value {
    let file = if path.starts_with("/v1/") {
        "twilio_serverless_v1.json"
    } else {
        "twilio_api_v2010.json"
    };
    document(file)
}

/// Sync's paths are Serverless's too (`/v1/Services`), so Sync checks name their document.
fn sync_spec() -> Value {
    document("twilio_sync_v1.json")
}

fn document(file: &str) -> Value {
    let path = format!("{}/oai/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    spec["paths"].get(path)?.get(method.to_ascii_lowercase())
}

/// Follows `$ref`s to the schema they name.
fn resolve<'a>(spec: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference.trim_start_matches('#');
        schema = spec
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {reference}"));
    }
    schema
}

/// Query parameters and form properties the operation documents.
fn documented_params(spec: &Value, op: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for parameter in op["parameters"].as_array().into_iter().flatten() {
        let parameter = resolve(spec, parameter);
        if let Some(name) = parameter["name"].as_str() {
            names.insert(name.to_string());
        }
    }
    for (_, media) in op["requestBody"]["content"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let schema = resolve(spec, &media["schema"]);
        for name in schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            names.insert(name.clone());
        }
    }
    names
}

/// Differences between `value` and `schema`, as readable lines.
fn check(spec: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            errors.push(format!("{at}: null, but the schema is not nullable"));
        }
        return;
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let fits = match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        // NB: a schema without a type (none among these operations) accepts anything.
        _ => true,
    };
    if !fits {
        errors.push(format!("{at}: {value} is not of type {ty}"));
        return;
    }
    if let (Some(values), Some(choices)) = (value.as_str(), schema["enum"].as_array()) {
        if !choices.iter().any(|c| c == values) {
            errors.push(format!(
                "{at}: {value} is not one of {}",
                Value::from(choices.clone())
            ));
        }
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        for (name, item) in object {
            let here = format!("{at}.{name}");
            match properties.get(name) {
                Some(property) => check(spec, property, item, &here, errors),
                None => errors.push(format!("{here}: not a documented property")),
            }
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            check(spec, &schema["items"], item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Checks a response of the operation against its schema for that status.
fn check_response(method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
    check_response_in(&spec(path), method, path, status, body)
}

fn check_response_in(
    spec: &Value,
    method: &str,
    path: &str,
    status: u16,
    body: &Value,
) -> Vec<String> {
    let Some(op) = operation(spec, method, path) else {
        return vec![format!("{method} {path}: no such operation")];
    };
    let Some(schema) =
        op["responses"][status.to_string()]["content"]["application/json"].get("schema")
    else {
        return vec![format!(
            "{method} {path}: no JSON response documented for {status}"
        )];
    };
    let mut errors = Vec::new();
    let at = format!("{method} {path}");
    check(spec, schema, body, &at, &mut errors);
    errors.retain(|e| {
        let plain = without_indexes(e);
        !RESPONSE_DEVIATIONS.iter().any(|d| plain.starts_with(d))
    });
    errors
}

fn without_indexes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_index = false;
    for c in text.chars() {
        match c {
            '[' => in_index = true,
            ']' if in_index => in_index = false,
            _ if in_index && c.is_ascii_digit() => {}
            _ => out.push(c),
        }
    }
    out
}

/// The checker itself finds what it is for.
#[test]
fn the_checker_reports_extra_properties_wrong_types_and_nulls() {
    let spec = spec(CALL);
    let schema = &operation(&spec, "GET", CALL).unwrap()["responses"]["200"]["content"]
        ["application/json"]["schema"];
    let call = serde_json::json!({
        "sid": "CA1", "status": "ringing", "duration": null, "extra": 1, "to": 5,
        "subresource_uris": {}
    });
    let mut errors = Vec::new();
    check(&spec, schema, &call, "call", &mut errors);
    errors.sort();
    assert_eq!(
        errors,
        [
            "call.extra: not a documented property",
            "call.to: 5 is not of type string"
        ]
    );
    let mut errors = Vec::new();
    check(
        &spec,
        schema,
        &serde_json::json!({"status": "sleeping"}),
        "call",
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn every_route_is_an_operation_of_the_documents() {
    let mut missing = Vec::new();
    for &(method, path) in ROUTES {
        let documented = operation(&spec(path), method, path).is_some();
        let allowed = UNDOCUMENTED_ROUTES.contains(&(method, path));
        match (documented, allowed) {
            (true, true) => missing.push(format!(
                "{method} {path}: documented, drop it from the allow-list"
            )),
            (false, false) => {
                missing.push(format!("{method} {path}: not in the OpenAPI documents"))
            }
            _ => {}
        }
    }
    let sync = sync_spec();
    for &(method, path) in SYNC_ROUTES {
        if operation(&sync, method, path).is_none() {
            missing.push(format!("{method} {path}: not in the Sync document"));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn every_parameter_read_is_documented() {
    let number_updates: Vec<&str> = std::iter::once("FriendlyName")
        .chain(NUMBER_FIELDS.iter().map(|(param, _)| *param))
        .collect();
    // What the handlers read (`get`/`get_all` on the form or query) per operation.
    let reads: &[(&str, &str, &[&str])] = &[
        (
            "POST",
            CALLS,
            &[
                "To",
                "From",
                "Method",
                "Url",
                "Twiml",
                "ApplicationSid",
                "Timeout",
                "TimeLimit",
                "StatusCallbackEvent",
                "MachineDetection",
                "StatusCallback",
                "StatusCallbackMethod",
                "Record",
            ],
        ),
        (
            "GET",
            CALLS,
            &[
                "To",
                "From",
                "Status",
                "ParentCallSid",
                "StartTime",
                "StartTime<",
                "StartTime>",
                "PageSize",
                "Page",
            ],
        ),
        (
            "POST",
            CALL,
            &["Status", "Method", "Url", "Twiml", "StatusCallback"],
        ),
        (
            "GET",
            CONFERENCES,
            &["FriendlyName", "Status", "PageSize", "Page"],
        ),
        (
            "POST",
            "/2010-04-01/Accounts/{AccountSid}/Conferences/{Sid}.json",
            &["Status"],
        ),
        ("GET", PARTICIPANTS, &["PageSize", "Page"]),
        (
            "GET",
            "/2010-04-01/Accounts/{AccountSid}/OutgoingCallerIds.json",
            &["PhoneNumber", "PageSize", "Page"],
        ),
        (
            "GET",
            NUMBERS,
            &["PhoneNumber", "FriendlyName", "PageSize", "Page"],
        ),
        ("POST", NUMBERS, &["AreaCode", "PhoneNumber"]),
        ("POST", NUMBERS, &number_updates),
        ("POST", NUMBER, &number_updates),
        (
            "POST",
            SERVICES,
            &[
                "UniqueName",
                "FriendlyName",
                "IncludeCredentials",
                "UiEditable",
            ],
        ),
        ("GET", SERVICES, &["PageSize", "Page"]),
        ("POST", ENVIRONMENTS, &["UniqueName", "DomainSuffix"]),
        ("POST", DEPLOYMENTS, &["BuildSid"]),
        ("POST", ASSETS, &["FriendlyName"]),
        (
            "POST",
            "/v1/Services/{ServiceSid}/Assets/{Sid}",
            &["FriendlyName"],
        ),
        ("POST", FUNCTIONS, &["FriendlyName"]),
        ("GET", FUNCTIONS, &["PageSize", "Page"]),
        (
            "POST",
            "/v1/Services/{ServiceSid}/Functions/{Sid}",
            &["FriendlyName"],
        ),
        ("POST", VARIABLES, &["Key", "Value"]),
        (
            "POST",
            "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Variables/{Sid}",
            &["Key", "Value"],
        ),
        (
            "POST",
            BUILDS,
            &[
                "AssetVersions",
                "FunctionVersions",
                "Dependencies",
                "Runtime",
            ],
        ),
    ];
    let mut errors = Vec::new();
    let sync = sync_spec();
    let sync_reads: &[(&str, &str, &[&str])] = &[
        ("POST", SYNC_SERVICES, &["FriendlyName"]),
        ("GET", SYNC_SERVICES, &["PageSize", "Page"]),
        ("POST", SYNC_MAPS, &["UniqueName", "CollectionTtl", "Ttl"]),
        ("GET", SYNC_MAPS, &["PageSize", "Page"]),
        ("POST", SYNC_ITEMS, &["Key", "Data", "ItemTtl", "Ttl"]),
        (
            "GET",
            SYNC_ITEMS,
            &["Order", "From", "Bounds", "PageSize", "Page"],
        ),
        ("POST", SYNC_ITEM, &["Data", "ItemTtl", "Ttl"]),
    ];
    for &(method, path, names) in sync_reads {
        let Some(op) = operation(&sync, method, path) else {
            errors.push(format!("Sync {method} {path}: no such operation"));
            continue;
        };
        let documented = documented_params(&sync, op);
        for name in names {
            if !documented.contains(*name) {
                errors.push(format!("Sync {method} {path}: {name} is not documented"));
            }
        }
    }
    for &(method, path, names) in reads {
        let spec = spec(path);
        let Some(op) = operation(&spec, method, path) else {
            errors.push(format!("{method} {path}: no such operation"));
            continue;
        };
        let documented = documented_params(&spec, op);
        for name in names {
            if !documented.contains(*name) && !UNDOCUMENTED_PARAMS.contains(&(method, path, name)) {
                errors.push(format!("{method} {path}: {name} is not documented"));
            }
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.basic_auth(AC, Some(TOKEN)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(url: String, form: &[(&str, &str)]) -> (u16, Value) {
    send(client().post(url).form(form)).await
}

async fn get(url: String) -> (u16, Value) {
    send(client().get(url)).await
}

/// Checks one response and collects its differences.
fn expect(
    errors: &mut Vec<String>,
    method: &str,
    path: &str,
    want: u16,
    got: (u16, Value),
) -> Value {
    let (status, body) = got;
    if status != want {
        errors.push(format!(
            "{method} {path}: status {status}, not {want}: {body}"
        ));
        return body;
    }
    errors.extend(check_response(method, path, status, &body));
    body
}

async fn wait_for_conference(sim: &SimHandle) -> Value {
    let url = format!(
        "{}/2010-04-01/Accounts/{AC}/Conferences.json",
        sim.api_url()
    );
    for _ in 0..500 {
        let (_, list) = get(url.clone()).await;
        if list["conferences"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no conference started");
}

#[tokio::test]
async fn v2010_responses_match_their_schemas() {
    let sim = Simulator::start(SimConfig {
        time_scale: 20.0,
        ..SimConfig::new(AC, TOKEN)
    })
    .await
    .expect("simulator starts");
    let api = format!("{}/2010-04-01/Accounts/{AC}", sim.api_url());
    let mut errors = Vec::new();
    let twiml = "<Response><Dial><Conference>OpenApiRoom</Conference></Dial></Response>";
    let created = post(
        format!("{api}/Calls.json"),
        &[
            ("To", "+15005550001"),
            ("From", "+15005550006"),
            ("Twiml", twiml),
            ("StatusCallback", "http://127.0.0.1:9/status"),
            ("StatusCallbackEvent", "answered"),
        ],
    )
    .await;
    let call = expect(&mut errors, "POST", CALLS, 201, created);
    let sid = call["sid"].as_str().unwrap_or_default().to_string();
    let conferences = wait_for_conference(&sim).await;
    errors.extend(check_response("GET", CONFERENCES, 200, &conferences));
    let fetched = get(format!("{api}/Calls/{sid}.json")).await;
    expect(&mut errors, "GET", CALL, 200, fetched);
    let listed = get(format!("{api}/Calls.json")).await;
    expect(&mut errors, "GET", CALLS, 200, listed);
    let cf = conferences["conferences"][0]["sid"]
        .as_str()
        .unwrap_or_default();
    let participants = get(format!("{api}/Conferences/{cf}/Participants.json")).await;
    expect(&mut errors, "GET", PARTICIPANTS, 200, participants);

    let number = post(
        format!("{api}/IncomingPhoneNumbers.json"),
        &[
            ("PhoneNumber", "+15005550123"),
            ("VoiceUrl", "http://127.0.0.1:9/voice"),
        ],
    )
    .await;
    let number = expect(&mut errors, "POST", NUMBERS, 201, number);
    let pn = number["sid"].as_str().unwrap_or_default();
    let fetched = get(format!("{api}/IncomingPhoneNumbers/{pn}.json")).await;
    expect(&mut errors, "GET", NUMBER, 200, fetched);
    let listed = get(format!("{api}/IncomingPhoneNumbers.json")).await;
    expect(&mut errors, "GET", NUMBERS, 200, listed);
    sim.shutdown().await;
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test]
async fn serverless_responses_match_their_schemas() {
    let sim = Simulator::start(SimConfig::new(AC, TOKEN))
        .await
        .expect("simulator starts");
    let base = format!("{}/v1/Services", sim.serverless_url());
    let mut errors = Vec::new();
    let service = post(
        base.clone(),
        &[("UniqueName", "oai"), ("FriendlyName", "oai")],
    )
    .await;
    let service = expect(&mut errors, "POST", SERVICES, 201, service);
    let zs = service["sid"].as_str().unwrap_or_default().to_string();
    let env = post(
        format!("{base}/{zs}/Environments"),
        &[("UniqueName", "production"), ("DomainSuffix", "prod")],
    )
    .await;
    let env = expect(&mut errors, "POST", ENVIRONMENTS, 201, env);
    let ze = env["sid"].as_str().unwrap_or_default().to_string();
    let asset = post(format!("{base}/{zs}/Assets"), &[("FriendlyName", "ack")]).await;
    let asset = expect(&mut errors, "POST", ASSETS, 201, asset);
    let zh = asset["sid"].as_str().unwrap_or_default().to_string();

    let content = reqwest::multipart::Part::bytes(b"<Response/>".to_vec())
        .file_name("ack.xml")
        .mime_str("application/xml")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("Path", "/ack.xml")
        .text("Visibility", "public")
        .part("Content", content);
    let upload = format!("{}/v1/Services/{zs}/Assets/{zh}/Versions", sim.upload_url());
    let (status, version) = send(client().post(upload).multipart(form)).await;
    assert_eq!(status, 201, "{version}");
    // NB: the upload is undocumented, but what it returns is an Asset Version.
    errors.extend(check_response(
        "GET",
        "/v1/Services/{ServiceSid}/Assets/{AssetSid}/Versions/{Sid}",
        200,
        &version,
    ));
    let zn = version["sid"].as_str().unwrap_or_default().to_string();

    let function = post(format!("{base}/{zs}/Functions"), &[("FriendlyName", "ack")]).await;
    let function = expect(&mut errors, "POST", FUNCTIONS, 201, function);
    let zh_function = function["sid"].as_str().unwrap_or_default().to_string();
    expect(
        &mut errors,
        "GET",
        FUNCTIONS,
        200,
        get(format!("{base}/{zs}/Functions")).await,
    );
    let source = reqwest::multipart::Part::bytes(b"exports.handler = () => {};".to_vec())
        .file_name("ack.js")
        .mime_str("application/javascript")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("Path", "/alertcall/ack")
        .text("Visibility", "protected")
        .part("Content", source);
    let upload = format!(
        "{}/v1/Services/{zs}/Functions/{zh_function}/Versions",
        sim.upload_url()
    );
    let (status, function_version) = send(client().post(upload).multipart(form)).await;
    assert_eq!(status, 201, "{function_version}");
    errors.extend(check_response(
        "GET",
        "/v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions/{Sid}",
        200,
        &function_version,
    ));
    let zn_function = function_version["sid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let content = get(format!(
        "{base}/{zs}/Functions/{zh_function}/Versions/{zn_function}/Content"
    ))
    .await;
    let content = expect(
        &mut errors,
        "GET",
        "/v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions/{Sid}/Content",
        200,
        content,
    );
    assert_eq!(content["content"], "exports.handler = () => {};");
    let variable = post(
        format!("{base}/{zs}/Environments/{ze}/Variables"),
        &[("Key", "ACK_MAP"), ("Value", "alertcall-acks")],
    )
    .await;
    expect(&mut errors, "POST", VARIABLES, 201, variable);
    expect(
        &mut errors,
        "GET",
        VARIABLES,
        200,
        get(format!("{base}/{zs}/Environments/{ze}/Variables")).await,
    );

    let build = post(
        format!("{base}/{zs}/Builds"),
        &[
            ("AssetVersions", &zn),
            ("FunctionVersions", &zn_function),
            ("Dependencies", "[]"),
            ("Runtime", "node22"),
        ],
    )
    .await;
    let build = expect(&mut errors, "POST", BUILDS, 201, build);
    assert_eq!(build["function_versions"][0]["sid"], zn_function.as_str());
    let zb = build["sid"].as_str().unwrap_or_default().to_string();
    let status_url = format!("{base}/{zs}/Builds/{zb}/Status");
    for _ in 0..500 {
        if get(status_url.clone()).await.1["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deployment = post(
        format!("{base}/{zs}/Environments/{ze}/Deployments"),
        &[("BuildSid", &zb)],
    )
    .await;
    expect(&mut errors, "POST", DEPLOYMENTS, 201, deployment);
    sim.shutdown().await;
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test]
async fn sync_responses_match_their_schemas() {
    let sim = Simulator::start(SimConfig::new(AC, TOKEN))
        .await
        .expect("simulator starts");
    let sync = sync_spec();
    let base = format!("{}/v1/Services", sim.sync_url());
    let mut errors = Vec::new();
    let mut expect_sync = |method: &str, path: &str, want: u16, got: (u16, Value)| {
        let (status, body) = got;
        if status != want {
            errors.push(format!(
                "{method} {path}: status {status}, not {want}: {body}"
            ));
        } else {
            errors.extend(check_response_in(&sync, method, path, status, &body));
        }
        body
    };
    let service = post(base.clone(), &[("FriendlyName", "alertcall")]).await;
    let service = expect_sync("POST", SYNC_SERVICES, 201, service);
    let is = service["sid"].as_str().unwrap_or_default().to_string();
    expect_sync("GET", SYNC_SERVICES, 200, get(base.clone()).await);
    let map = post(
        format!("{base}/{is}/Maps"),
        &[("UniqueName", "alertcall-acks")],
    )
    .await;
    expect_sync("POST", SYNC_MAPS, 201, map);
    let duplicate = post(
        format!("{base}/{is}/Maps"),
        &[("UniqueName", "alertcall-acks")],
    )
    .await;
    assert_eq!(duplicate.0, 409, "{}", duplicate.1);
    expect_sync(
        "GET",
        SYNC_MAPS,
        200,
        get(format!("{base}/{is}/Maps")).await,
    );
    let items = format!("{base}/{is}/Maps/alertcall-acks/Items");
    let data = r#"{"callSid":"CA1","attempt":"r0-1","digits":"1","at":"2026-01-01T00:00:00.000Z"}"#;
    let item = post(
        items.clone(),
        &[("Key", "CA1"), ("Data", data), ("ItemTtl", "600")],
    )
    .await;
    let item = expect_sync("POST", SYNC_ITEMS, 201, item);
    assert_eq!(item["data"]["attempt"], "r0-1");
    assert!(item["date_expires"].is_string(), "{item}");
    let duplicate = post(items.clone(), &[("Key", "CA1"), ("Data", data)]).await;
    assert_eq!(duplicate.0, 409, "{}", duplicate.1);
    assert_eq!(duplicate.1["code"], 54208, "{}", duplicate.1);
    expect_sync("GET", SYNC_ITEMS, 200, get(items.clone()).await);
    expect_sync("GET", SYNC_ITEM, 200, get(format!("{items}/CA1")).await);
    let missing = get(format!("{items}/CA2")).await;
    assert_eq!(
        (missing.0, missing.1["code"].clone()),
        (404, Value::from(20404))
    );
    let (status, _) = send(client().delete(format!("{items}/CA1"))).await;
    assert_eq!(status, 204);
    let unknown = get(format!("{base}/ISffffffffffffffffffffffffffffffff/Maps")).await;
    assert_eq!(unknown.0, 404);
    sim.shutdown().await;
    assert!(errors.is_empty(), "{errors:#?}");
}
