//! Sync v1: Services, Maps and Map Items, served under `/sync` (Twilio serves them on
//! sync.twilio.com with the same `/v1/Services` paths as Serverless, so one origin needs a
//! prefix). Every account has a Sync service addressable as `default`; it is created on first use.
//! TTLs run on simulated time: an expired item or map is gone.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::routes::{error, get, json_status, missing, not_found, parse_form, Form};
use super::serverless::page;
use super::state::{iso8601, Inner, State, SyncMap, SyncMapItem, SyncService};

/// The path prefix of the Sync API on the simulator's origin.
pub(crate) const PREFIX: &str = "/sync";

/// Twilio's error for a Map Item key that already exists.
pub(crate) const DUPLICATE_KEY: u32 = 54208;
/// Twilio's error for a Sync object unique name already taken [U: from Sync's error list].
pub(crate) const DUPLICATE_UNIQUE_NAME: u32 = 54301;

/// A Sync error: HTTP status, Twilio code, message.
pub(crate) type SyncError = (u16, u32, String);

fn respond(result: Result<(u16, Value), SyncError>) -> Response {
    match result {
        Ok((status, value)) => json_status(status, value),
        Err((status, code, message)) => error(status, code, message),
    }
}

fn base(sim: &Inner) -> String {
    format!("{}{PREFIX}/v1/Services", sim.origin)
}

fn service_json(sim: &Inner, s: &SyncService) -> Value {
    let url = format!("{}/{}", base(sim), s.sid);
    json!({
        "sid": s.sid,
        "unique_name": s.unique_name,
        "account_sid": sim.account(),
        "friendly_name": s.friendly_name,
        "date_created": iso8601(s.date_created),
        "date_updated": iso8601(s.date_created),
        "url": url,
        "webhook_url": null,
        "webhooks_from_rest_enabled": false,
        "reachability_webhooks_enabled": false,
        "acl_enabled": false,
        "reachability_debouncing_enabled": false,
        "reachability_debouncing_window": 5000,
        "links": {
            "documents": format!("{url}/Documents"),
            "lists": format!("{url}/Lists"),
            "maps": format!("{url}/Maps"),
            "streams": format!("{url}/Streams"),
        },
    })
}

fn map_json(sim: &Inner, m: &SyncMap) -> Value {
    let url = format!("{}/{}/Maps/{}", base(sim), m.service_sid, m.sid);
    json!({
        "sid": m.sid,
        "unique_name": m.unique_name,
        "account_sid": sim.account(),
        "service_sid": m.service_sid,
        "url": url,
        "links": {
            "items": format!("{url}/Items"),
            "permissions": format!("{url}/Permissions"),
        },
        "revision": m.revision.to_string(),
        "date_expires": m.date_expires.map(iso8601),
        "date_created": iso8601(m.date_created),
        "date_updated": iso8601(m.date_updated),
        "created_by": "system",
    })
}

fn item_json(sim: &Inner, i: &SyncMapItem) -> Value {
    let key = url::form_urlencoded::byte_serialize(i.key.as_bytes()).collect::<String>();
    json!({
        "key": i.key,
        "account_sid": sim.account(),
        "service_sid": i.service_sid,
        "map_sid": i.map_sid,
        "url": format!("{}/{}/Maps/{}/Items/{key}", base(sim), i.service_sid, i.map_sid),
        "revision": i.revision.to_string(),
        "data": i.data,
        "date_expires": i.date_expires.map(iso8601),
        "date_created": iso8601(i.date_created),
        "date_updated": iso8601(i.date_updated),
        "created_by": "system",
    })
}

/// Drops what has expired by `now`.
fn expire(st: &mut State, now: Timestamp) {
    let gone: Vec<String> = st
        .sync_maps
        .iter()
        .filter(|m| m.date_expires.is_some_and(|at| at <= now))
        .map(|m| m.sid.clone())
        .collect();
    st.sync_maps.retain(|m| !gone.contains(&m.sid));
    st.sync_items
        .retain(|i| !gone.contains(&i.map_sid) && !i.expired(now));
}

/// The service `reference` names (SID, unique name, or `default`, created on first use).
fn service_sid(sim: &Inner, st: &mut State, reference: &str, now: Timestamp) -> Option<String> {
    if let Some(s) = st
        .sync_services
        .iter()
        .find(|s| s.sid == reference || s.unique_name.as_deref() == Some(reference))
    {
        return Some(s.sid.clone());
    }
    if reference != "default" {
        return None;
    }
    let sid = sim.sid("IS");
    st.sync_services.push(SyncService {
        sid: sid.clone(),
        unique_name: Some("default".into()),
        friendly_name: Some("Default Service".into()),
        date_created: now,
    });
    Some(sid)
}

fn map_index(st: &State, service: &str, reference: &str) -> Option<usize> {
    st.sync_maps.iter().position(|m| {
        m.service_sid == service
            && (m.sid == reference || m.unique_name.as_deref() == Some(reference))
    })
}

fn item_index(st: &State, map_sid: &str, key: &str) -> Option<usize> {
    st.sync_items
        .iter()
        .position(|i| i.map_sid == map_sid && i.key == key)
}

fn ttl(form: &Form, names: &[&str]) -> Result<Option<i64>, SyncError> {
    // NB: the OpenAPI document says the first name wins over its alias when both are sent.
    for name in names {
        if let Some(text) = get(form, name) {
            return match text.parse::<i64>() {
                Ok(seconds) if (0..=31_536_000).contains(&seconds) => {
                    Ok((seconds > 0).then_some(seconds))
                }
                _ => Err((
                    400,
                    20001,
                    format!("{name} must be a number of seconds from 0 to 31536000"),
                )),
            };
        }
    }
    Ok(None)
}

fn expires(now: Timestamp, seconds: Option<i64>) -> Option<Timestamp> {
    seconds.map(|s| now + SignedDuration::from_secs(s))
}

/// Creates a Map Item: the one write the acknowledgement function makes, shared by the REST
/// route and the function's emulation.
pub(crate) fn create_item(
    sim: &Inner,
    service: &str,
    map: &str,
    key: &str,
    data: Value,
    ttl_seconds: Option<i64>,
) -> Result<Value, SyncError> {
    let now = sim.clock.now();
    let mut st = sim.lock();
    expire(&mut st, now);
    let path = format!("{PREFIX}/v1/Services/{service}/Maps/{map}/Items");
    let zs = service_sid(sim, &mut st, service, now).ok_or_else(|| not_found_error(&path))?;
    let index = map_index(&st, &zs, map).ok_or_else(|| not_found_error(&path))?;
    if key.is_empty() || key.chars().count() > 320 {
        return Err((400, 20001, "Key must be 1 to 320 characters".into()));
    }
    if !data.is_object() {
        return Err((400, 54006, "Data must be a JSON object".into()));
    }
    if data.to_string().len() > 16 * 1024 {
        return Err((413, 54006, "Data is over the 16 KiB limit".into()));
    }
    let map_sid = st.sync_maps[index].sid.clone();
    if st
        .sync_items
        .iter()
        .any(|i| i.map_sid == map_sid && i.key == key)
    {
        return Err((
            409,
            DUPLICATE_KEY,
            format!("Item with key {key} already exists in Map {map_sid}"),
        ));
    }
    let map = &mut st.sync_maps[index];
    map.revision += 1;
    map.date_updated = now;
    let item = SyncMapItem {
        key: key.to_string(),
        service_sid: zs,
        map_sid,
        data,
        revision: 0,
        date_expires: expires(now, ttl_seconds),
        date_created: now,
        date_updated: now,
    };
    let value = item_json(sim, &item);
    st.sync_items.push(item);
    Ok(value)
}

fn not_found_error(path: &str) -> SyncError {
    (
        404,
        20404,
        format!("The requested resource {path} was not found"),
    )
}

/// Sync routes; `rest` is the path after `/sync/v1`.
pub(crate) async fn route(sim: &Arc<Inner>, req: Request, rest: &[String]) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = parse_form(req.uri().query().unwrap_or("").as_bytes());
    let body = match axum::body::to_bytes(req.into_body(), 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(400, 20001, "Unreadable request body"),
    };
    let form = parse_form(&body);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let now = sim.clock.now();
    let m = method.as_str();
    if let ["Services"] = rest.as_slice() {
        return match m {
            "GET" => {
                let st = sim.lock();
                let items = st
                    .sync_services
                    .iter()
                    .map(|s| service_json(sim, s))
                    .collect();
                json_status(200, page(sim, items, "services", &path, &query))
            }
            "POST" => {
                let service = SyncService {
                    sid: sim.sid("IS"),
                    unique_name: None,
                    friendly_name: get(&form, "FriendlyName").map(str::to_string),
                    date_created: now,
                };
                let v = service_json(sim, &service);
                sim.lock().sync_services.push(service);
                json_status(201, v)
            }
            _ => not_found(&path),
        };
    }
    let ["Services", service_ref, rest @ ..] = rest.as_slice() else {
        return not_found(&path);
    };
    if let ("POST", ["Maps", map, "Items"]) = (m, rest) {
        let Some(key) = get(&form, "Key") else {
            return missing("Key");
        };
        let Some(data) = get(&form, "Data") else {
            return missing("Data");
        };
        let Ok(data) = serde_json::from_str::<Value>(data) else {
            return error(400, 54006, "Data must be a JSON string");
        };
        let seconds = match ttl(&form, &["ItemTtl", "Ttl"]) {
            Ok(s) => s,
            Err(e) => return respond(Err(e)),
        };
        return respond(create_item(sim, service_ref, map, key, data, seconds).map(|v| (201, v)));
    }
    let mut st = sim.lock();
    expire(&mut st, now);
    let Some(zs) = service_sid(sim, &mut st, service_ref, now) else {
        return not_found(&path);
    };
    match (m, rest) {
        ("GET", []) => match st.sync_services.iter().find(|s| s.sid == zs) {
            Some(s) => json_status(200, service_json(sim, s)),
            None => not_found(&path),
        },
        ("DELETE", []) => {
            st.sync_services.retain(|s| s.sid != zs);
            st.sync_maps.retain(|x| x.service_sid != zs);
            st.sync_items.retain(|x| x.service_sid != zs);
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", ["Maps"]) => {
            let items = st
                .sync_maps
                .iter()
                .filter(|x| x.service_sid == zs)
                .map(|x| map_json(sim, x))
                .collect();
            json_status(200, page(sim, items, "maps", &path, &query))
        }
        ("POST", ["Maps"]) => {
            let unique = get(&form, "UniqueName").filter(|u| !u.is_empty());
            if let Some(u) = unique {
                if map_index(&st, &zs, u).is_some() {
                    return error(
                        409,
                        DUPLICATE_UNIQUE_NAME,
                        format!("Map with UniqueName {u} already exists"),
                    );
                }
            }
            let seconds = match ttl(&form, &["CollectionTtl", "Ttl"]) {
                Ok(s) => s,
                Err(e) => return respond(Err(e)),
            };
            let map = SyncMap {
                sid: sim.sid("MP"),
                service_sid: zs.clone(),
                unique_name: unique.map(str::to_string),
                revision: 0,
                date_expires: expires(now, seconds),
                date_created: now,
                date_updated: now,
            };
            let v = map_json(sim, &map);
            st.sync_maps.push(map);
            json_status(201, v)
        }
        (_, ["Maps", map_ref, rest @ ..]) => {
            let Some(index) = map_index(&st, &zs, map_ref) else {
                return not_found(&path);
            };
            let map_sid = st.sync_maps[index].sid.clone();
            match (m, rest) {
                ("GET", []) => json_status(200, map_json(sim, &st.sync_maps[index])),
                ("DELETE", []) => {
                    st.sync_maps.remove(index);
                    st.sync_items.retain(|i| i.map_sid != map_sid);
                    StatusCode::NO_CONTENT.into_response()
                }
                ("GET", ["Items"]) => {
                    let mut items: Vec<&SyncMapItem> = st
                        .sync_items
                        .iter()
                        .filter(|i| i.map_sid == map_sid)
                        .collect();
                    items.sort_by(|a, b| a.key.cmp(&b.key));
                    let descending = get(&query, "Order") == Some("desc");
                    if descending {
                        items.reverse();
                    }
                    if let Some(from) = get(&query, "From") {
                        let inclusive = get(&query, "Bounds") != Some("exclusive");
                        items.retain(|i| {
                            let order = i.key.as_str().cmp(from);
                            let after = if descending {
                                order.is_lt()
                            } else {
                                order.is_gt()
                            };
                            after || (inclusive && order.is_eq())
                        });
                    }
                    let values = items.into_iter().map(|i| item_json(sim, i)).collect();
                    json_status(200, page(sim, values, "items", &path, &query))
                }
                ("GET", ["Items", key]) => match item_index(&st, &map_sid, key) {
                    Some(at) => json_status(200, item_json(sim, &st.sync_items[at])),
                    None => not_found(&path),
                },
                ("POST", ["Items", key]) => {
                    let Some(at) = item_index(&st, &map_sid, key) else {
                        return not_found(&path);
                    };
                    let seconds = match ttl(&form, &["ItemTtl", "Ttl"]) {
                        Ok(s) => s,
                        Err(e) => return respond(Err(e)),
                    };
                    if let Some(data) = get(&form, "Data") {
                        let Ok(data) = serde_json::from_str::<Value>(data) else {
                            return error(400, 54006, "Data must be a JSON string");
                        };
                        st.sync_items[at].data = data;
                    }
                    let item = &mut st.sync_items[at];
                    if seconds.is_some() {
                        item.date_expires = expires(now, seconds);
                    }
                    item.revision += 1;
                    item.date_updated = now;
                    let v = item_json(sim, item);
                    json_status(200, v)
                }
                ("DELETE", ["Items", key]) => match item_index(&st, &map_sid, key) {
                    Some(at) => {
                        st.sync_items.remove(at);
                        StatusCode::NO_CONTENT.into_response()
                    }
                    None => not_found(&path),
                },
                _ => not_found(&path),
            }
        }
        _ => not_found(&path),
    }
}
