//! Serverless v1: Services, Environments, Assets, Asset Versions (multipart upload), Builds and
//! Deployments, and the deployed assets served under their Environment's domain.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::routes::{error, get, get_all, json_status, missing, not_found, parse_form, Form};
use super::state::{
    iso8601, Asset, AssetVersion, Build, Deployment, Environment, Function, FunctionVersion, Inner,
    Service, Variable,
};
use crate::signature;

/// Lists with Serverless paging (`meta` with `next_page_url`).
pub(crate) fn page(sim: &Inner, items: Vec<Value>, key: &str, path: &str, query: &Form) -> Value {
    let size = get(query, "PageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page = get(query, "Page")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let url = |page: usize| format!("{}{path}?PageSize={size}&Page={page}", sim.origin);
    let start = page.saturating_mul(size);
    let total = items.len();
    let slice: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    json!({
        key: slice,
        "meta": {
            "first_page_url": url(0),
            "key": key,
            "next_page_url": (start + size < total).then(|| format!("{}&PageToken=PA{}", url(page + 1), start + size)),
            "page": page,
            "page_size": size,
            "previous_page_url": (page > 0).then(|| url(page - 1)),
            "url": url(page),
        }
    })
}

fn service_json(sim: &Inner, s: &Service) -> Value {
    let url = format!("{}/v1/Services/{}", sim.origin, s.sid);
    json!({
        "sid": s.sid,
        "account_sid": sim.account(),
        "friendly_name": s.friendly_name,
        "unique_name": s.unique_name,
        "include_credentials": s.include_credentials,
        "ui_editable": s.ui_editable,
        "domain_base": s.unique_name,
        "date_created": iso8601(s.date_created),
        "date_updated": iso8601(s.date_created),
        "url": url,
        "links": {
            "environments": format!("{url}/Environments"),
            "functions": format!("{url}/Functions"),
            "assets": format!("{url}/Assets"),
            "builds": format!("{url}/Builds"),
        },
    })
}

fn environment_json(sim: &Inner, e: &Environment) -> Value {
    let url = format!(
        "{}/v1/Services/{}/Environments/{}",
        sim.origin, e.service_sid, e.sid
    );
    json!({
        "sid": e.sid,
        "account_sid": sim.account(),
        "service_sid": e.service_sid,
        "build_sid": e.build_sid,
        "unique_name": e.unique_name,
        "domain_suffix": e.domain_suffix,
        "domain_name": e.domain_name,
        "date_created": iso8601(e.date_created),
        "date_updated": iso8601(e.date_updated),
        "url": url,
        "links": {
            "variables": format!("{url}/Variables"),
            "deployments": format!("{url}/Deployments"),
            "logs": format!("{url}/Logs"),
        },
    })
}

fn asset_json(sim: &Inner, a: &Asset) -> Value {
    let url = format!(
        "{}/v1/Services/{}/Assets/{}",
        sim.origin, a.service_sid, a.sid
    );
    json!({
        "sid": a.sid,
        "account_sid": sim.account(),
        "service_sid": a.service_sid,
        "friendly_name": a.friendly_name,
        "date_created": iso8601(a.date_created),
        "date_updated": iso8601(a.date_updated),
        "url": url,
        "links": {"asset_versions": format!("{url}/Versions")},
    })
}

fn version_json(sim: &Inner, v: &AssetVersion) -> Value {
    json!({
        "sid": v.sid,
        "account_sid": sim.account(),
        "service_sid": v.service_sid,
        "asset_sid": v.asset_sid,
        "path": v.path,
        "visibility": v.visibility,
        "date_created": iso8601(v.date_created),
        "url": format!("{}/v1/Services/{}/Assets/{}/Versions/{}", sim.origin, v.service_sid, v.asset_sid, v.sid),
    })
}

fn function_json(sim: &Inner, f: &Function) -> Value {
    let url = format!(
        "{}/v1/Services/{}/Functions/{}",
        sim.origin, f.service_sid, f.sid
    );
    json!({
        "sid": f.sid,
        "account_sid": sim.account(),
        "service_sid": f.service_sid,
        "friendly_name": f.friendly_name,
        "date_created": iso8601(f.date_created),
        "date_updated": iso8601(f.date_updated),
        "url": url,
        "links": {"function_versions": format!("{url}/Versions")},
    })
}

fn function_version_json(sim: &Inner, v: &FunctionVersion) -> Value {
    let url = format!(
        "{}/v1/Services/{}/Functions/{}/Versions/{}",
        sim.origin, v.service_sid, v.function_sid, v.sid
    );
    json!({
        "sid": v.sid,
        "account_sid": sim.account(),
        "service_sid": v.service_sid,
        "function_sid": v.function_sid,
        "path": v.path,
        "visibility": v.visibility,
        "date_created": iso8601(v.date_created),
        "url": url,
        "links": {"function_version_content": format!("{url}/Content")},
    })
}

fn variable_json(sim: &Inner, v: &Variable) -> Value {
    json!({
        "sid": v.sid,
        "account_sid": sim.account(),
        "service_sid": v.service_sid,
        "environment_sid": v.environment_sid,
        "key": v.key,
        "value": v.value,
        "date_created": iso8601(v.date_created),
        "date_updated": iso8601(v.date_updated),
        "url": format!("{}/v1/Services/{}/Environments/{}/Variables/{}", sim.origin, v.service_sid, v.environment_sid, v.sid),
    })
}

fn build_json(
    sim: &Inner,
    b: &Build,
    versions: &[AssetVersion],
    functions: &[FunctionVersion],
) -> Value {
    let url = format!(
        "{}/v1/Services/{}/Builds/{}",
        sim.origin, b.service_sid, b.sid
    );
    let asset_versions: Vec<Value> = b
        .asset_versions
        .iter()
        .filter_map(|sid| versions.iter().find(|v| &v.sid == sid))
        .map(|v| {
            json!({
                "sid": v.sid,
                "account_sid": sim.account(),
                "service_sid": v.service_sid,
                "asset_sid": v.asset_sid,
                "date_created": iso8601(v.date_created),
                "path": v.path,
                "visibility": v.visibility.to_ascii_uppercase(),
            })
        })
        .collect();
    let function_versions: Vec<Value> = b
        .function_versions
        .iter()
        .filter_map(|sid| functions.iter().find(|v| &v.sid == sid))
        .map(|v| {
            json!({
                "sid": v.sid,
                "account_sid": sim.account(),
                "service_sid": v.service_sid,
                "function_sid": v.function_sid,
                "date_created": iso8601(v.date_created),
                "path": v.path,
                "visibility": v.visibility.to_ascii_uppercase(),
            })
        })
        .collect();
    json!({
        "sid": b.sid,
        "account_sid": sim.account(),
        "service_sid": b.service_sid,
        "status": b.status,
        "asset_versions": asset_versions,
        "function_versions": function_versions,
        "dependencies": b.dependencies,
        "runtime": b.runtime,
        "date_created": iso8601(b.date_created),
        "date_updated": iso8601(b.date_updated),
        "url": url,
        "links": {"build_status": format!("{url}/Status")},
    })
}

fn deployment_json(sim: &Inner, d: &Deployment) -> Value {
    json!({
        "sid": d.sid,
        "account_sid": sim.account(),
        "service_sid": d.service_sid,
        "environment_sid": d.environment_sid,
        "build_sid": d.build_sid,
        "date_created": iso8601(d.date_created),
        "date_updated": iso8601(d.date_created),
        "url": format!("{}/v1/Services/{}/Environments/{}/Deployments/{}", sim.origin, d.service_sid, d.environment_sid, d.sid),
    })
}

/// Serverless API routes; `rest` is the path after `/v1`.
pub(crate) async fn route(sim: &Arc<Inner>, req: Request, rest: &[String]) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_form(req.uri().query().unwrap_or("").as_bytes());
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    if method == Method::POST {
        if let ["Services", service, "Assets", asset, "Versions"] = rest.as_slice() {
            return upload(sim, req, service, Upload::Asset, asset, &path).await;
        }
        if let ["Services", service, "Functions", function, "Versions"] = rest.as_slice() {
            return upload(sim, req, service, Upload::Function, function, &path).await;
        }
    }
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(400, 20001, "Unreadable request body"),
    };
    let form = parse_form(&body);
    let now = sim.clock.now();
    let m = method.as_str();
    if let ["Services"] = rest.as_slice() {
        return match m {
            "GET" => {
                let st = sim.lock();
                let items = st.services.iter().map(|s| service_json(sim, s)).collect();
                json_status(200, page(sim, items, "services", &path, &query))
            }
            "POST" => {
                let Some(unique) = get(&form, "UniqueName") else {
                    return missing("UniqueName");
                };
                let Some(friendly) = get(&form, "FriendlyName") else {
                    return missing("FriendlyName");
                };
                let mut st = sim.lock();
                if st.services.iter().any(|s| s.unique_name == unique) {
                    return error(
                        409,
                        20409,
                        format!("Service with UniqueName {unique} already exists"),
                    );
                }
                let service = Service {
                    sid: sim.sid("ZS"),
                    unique_name: unique.to_string(),
                    friendly_name: friendly.to_string(),
                    include_credentials: get(&form, "IncludeCredentials") != Some("false"),
                    ui_editable: get(&form, "UiEditable") == Some("true"),
                    date_created: now,
                };
                let v = service_json(sim, &service);
                st.services.push(service);
                json_status(201, v)
            }
            _ => not_found(&path),
        };
    }
    let ["Services", service_ref, rest @ ..] = rest.as_slice() else {
        return not_found(&path);
    };
    let mut st = sim.lock();
    let Some(service) = st
        .services
        .iter()
        .find(|s| s.sid == *service_ref || s.unique_name == *service_ref)
        .cloned()
    else {
        return not_found(&path);
    };
    let zs = service.sid.clone();
    match (m, rest) {
        ("GET", []) => json_status(200, service_json(sim, &service)),
        ("DELETE", []) => {
            st.services.retain(|s| s.sid != zs);
            st.environments.retain(|e| e.service_sid != zs);
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", ["Environments"]) => {
            let items = st
                .environments
                .iter()
                .filter(|e| e.service_sid == zs)
                .map(|e| environment_json(sim, e))
                .collect();
            json_status(200, page(sim, items, "environments", &path, &query))
        }
        ("POST", ["Environments"]) => {
            let Some(unique) = get(&form, "UniqueName") else {
                return missing("UniqueName");
            };
            if st
                .environments
                .iter()
                .any(|e| e.service_sid == zs && e.unique_name == unique)
            {
                return error(
                    409,
                    20409,
                    format!("Environment with UniqueName {unique} already exists"),
                );
            }
            let suffix = get(&form, "DomainSuffix").filter(|s| !s.is_empty());
            let base: String = format!("{}-{}", service.unique_name, suffix.unwrap_or(unique))
                .to_ascii_lowercase()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let mut slug = base.clone();
            let mut n = 1;
            while st.environments.iter().any(|e| e.slug == slug) {
                n += 1;
                slug = format!("{base}-{n}");
            }
            let env = Environment {
                sid: sim.sid("ZE"),
                service_sid: zs.clone(),
                unique_name: unique.to_string(),
                domain_suffix: suffix.map(str::to_string),
                domain_name: format!("{}/twil.io/{slug}", sim.authority),
                slug,
                build_sid: None,
                date_created: now,
                date_updated: now,
            };
            let v = environment_json(sim, &env);
            st.environments.push(env);
            json_status(201, v)
        }
        (_, ["Environments", env_ref, rest @ ..]) => {
            let Some(env) = st
                .environments
                .iter()
                .find(|e| e.service_sid == zs && (e.sid == *env_ref || e.unique_name == *env_ref))
                .cloned()
            else {
                return not_found(&path);
            };
            match (m, rest) {
                ("GET", []) => json_status(200, environment_json(sim, &env)),
                ("DELETE", []) => {
                    st.environments.retain(|e| e.sid != env.sid);
                    StatusCode::NO_CONTENT.into_response()
                }
                ("GET", ["Variables"]) => {
                    let items = st
                        .variables
                        .iter()
                        .filter(|v| v.environment_sid == env.sid)
                        .map(|v| variable_json(sim, v))
                        .collect();
                    json_status(200, page(sim, items, "variables", &path, &query))
                }
                ("POST", ["Variables"]) => {
                    let Some(key) = get(&form, "Key") else {
                        return missing("Key");
                    };
                    let Some(value) = get(&form, "Value") else {
                        return missing("Value");
                    };
                    if st
                        .variables
                        .iter()
                        .any(|v| v.environment_sid == env.sid && v.key == key)
                    {
                        return error(
                            409,
                            20409,
                            format!("Variable with Key {key} already exists"),
                        );
                    }
                    let variable = Variable {
                        sid: sim.sid("ZV"),
                        service_sid: zs.clone(),
                        environment_sid: env.sid.clone(),
                        key: key.to_string(),
                        value: value.to_string(),
                        date_created: now,
                        date_updated: now,
                    };
                    let v = variable_json(sim, &variable);
                    st.variables.push(variable);
                    json_status(201, v)
                }
                ("GET", ["Variables", sid]) => match st
                    .variables
                    .iter()
                    .find(|v| v.environment_sid == env.sid && v.sid == *sid)
                {
                    Some(v) => json_status(200, variable_json(sim, v)),
                    None => not_found(&path),
                },
                ("POST", ["Variables", sid]) => {
                    let Some(variable) = st
                        .variables
                        .iter_mut()
                        .find(|v| v.environment_sid == env.sid && v.sid == *sid)
                    else {
                        return not_found(&path);
                    };
                    if let Some(key) = get(&form, "Key") {
                        variable.key = key.to_string();
                    }
                    if let Some(value) = get(&form, "Value") {
                        variable.value = value.to_string();
                    }
                    variable.date_updated = now;
                    json_status(200, variable_json(sim, variable))
                }
                ("DELETE", ["Variables", sid]) => {
                    let before = st.variables.len();
                    st.variables
                        .retain(|v| !(v.environment_sid == env.sid && v.sid == *sid));
                    if st.variables.len() == before {
                        return not_found(&path);
                    }
                    StatusCode::NO_CONTENT.into_response()
                }
                ("GET", ["Deployments"]) => {
                    let items = st
                        .deployments
                        .iter()
                        .filter(|d| d.environment_sid == env.sid)
                        .map(|d| deployment_json(sim, d))
                        .collect();
                    json_status(200, page(sim, items, "deployments", &path, &query))
                }
                ("GET", ["Deployments", sid]) => {
                    match st
                        .deployments
                        .iter()
                        .find(|d| d.environment_sid == env.sid && d.sid == *sid)
                    {
                        Some(d) => json_status(200, deployment_json(sim, d)),
                        None => not_found(&path),
                    }
                }
                ("POST", ["Deployments"]) => {
                    let build_sid = get(&form, "BuildSid").map(str::to_string);
                    if let Some(b) = &build_sid {
                        match st
                            .builds
                            .iter()
                            .find(|x| x.sid == *b && x.service_sid == zs)
                        {
                            None => return not_found(&format!("/v1/Services/{zs}/Builds/{b}")),
                            Some(x) if x.status != "completed" => {
                                return error(
                                    400,
                                    20001,
                                    format!("Build {b} is {} and cannot be deployed", x.status),
                                )
                            }
                            Some(_) => {}
                        }
                    }
                    let deployment = Deployment {
                        sid: sim.sid("ZD"),
                        service_sid: zs.clone(),
                        environment_sid: env.sid.clone(),
                        build_sid: build_sid.clone().unwrap_or_default(),
                        date_created: now,
                    };
                    if let Some(e) = st.environments.iter_mut().find(|e| e.sid == env.sid) {
                        e.build_sid = build_sid;
                        e.date_updated = now;
                    }
                    let v = deployment_json(sim, &deployment);
                    st.deployments.push(deployment);
                    json_status(201, v)
                }
                _ => not_found(&path),
            }
        }
        ("GET", ["Assets"]) => {
            let items = st
                .assets
                .iter()
                .filter(|a| a.service_sid == zs)
                .map(|a| asset_json(sim, a))
                .collect();
            json_status(200, page(sim, items, "assets", &path, &query))
        }
        ("POST", ["Assets"]) => {
            let Some(friendly) = get(&form, "FriendlyName") else {
                return missing("FriendlyName");
            };
            let asset = Asset {
                sid: sim.sid("ZH"),
                service_sid: zs.clone(),
                friendly_name: friendly.to_string(),
                date_created: now,
                date_updated: now,
            };
            let v = asset_json(sim, &asset);
            st.assets.push(asset);
            json_status(201, v)
        }
        (_, ["Assets", asset_sid, rest @ ..]) => {
            let Some(index) = st
                .assets
                .iter()
                .position(|a| a.service_sid == zs && a.sid == *asset_sid)
            else {
                return not_found(&path);
            };
            match (m, rest) {
                ("GET", []) => json_status(200, asset_json(sim, &st.assets[index])),
                ("POST", []) => {
                    let Some(friendly) = get(&form, "FriendlyName") else {
                        return missing("FriendlyName");
                    };
                    let asset = &mut st.assets[index];
                    asset.friendly_name = friendly.to_string();
                    asset.date_updated = now;
                    json_status(200, asset_json(sim, asset))
                }
                ("DELETE", []) => {
                    st.assets.remove(index);
                    StatusCode::NO_CONTENT.into_response()
                }
                ("GET", ["Versions"]) => {
                    let items = st
                        .asset_versions
                        .iter()
                        .filter(|v| v.asset_sid == *asset_sid)
                        .map(|v| version_json(sim, v))
                        .collect();
                    json_status(200, page(sim, items, "asset_versions", &path, &query))
                }
                ("GET", ["Versions", sid]) => {
                    match st
                        .asset_versions
                        .iter()
                        .find(|v| v.asset_sid == *asset_sid && v.sid == *sid)
                    {
                        Some(v) => json_status(200, version_json(sim, v)),
                        None => not_found(&path),
                    }
                }
                _ => not_found(&path),
            }
        }
        ("GET", ["Functions"]) => {
            let items = st
                .functions
                .iter()
                .filter(|f| f.service_sid == zs)
                .map(|f| function_json(sim, f))
                .collect();
            json_status(200, page(sim, items, "functions", &path, &query))
        }
        ("POST", ["Functions"]) => {
            let Some(friendly) = get(&form, "FriendlyName") else {
                return missing("FriendlyName");
            };
            let function = Function {
                sid: sim.sid("ZH"),
                service_sid: zs.clone(),
                friendly_name: friendly.to_string(),
                date_created: now,
                date_updated: now,
            };
            let v = function_json(sim, &function);
            st.functions.push(function);
            json_status(201, v)
        }
        (_, ["Functions", function_sid, rest @ ..]) => {
            let Some(index) = st
                .functions
                .iter()
                .position(|f| f.service_sid == zs && f.sid == *function_sid)
            else {
                return not_found(&path);
            };
            let version = |sid: &str| {
                st.function_versions
                    .iter()
                    .find(|v| v.function_sid == *function_sid && v.sid == sid)
                    .cloned()
            };
            match (m, rest) {
                ("GET", []) => json_status(200, function_json(sim, &st.functions[index])),
                ("POST", []) => {
                    let Some(friendly) = get(&form, "FriendlyName") else {
                        return missing("FriendlyName");
                    };
                    let function = &mut st.functions[index];
                    function.friendly_name = friendly.to_string();
                    function.date_updated = now;
                    json_status(200, function_json(sim, function))
                }
                ("DELETE", []) => {
                    st.functions.remove(index);
                    StatusCode::NO_CONTENT.into_response()
                }
                ("GET", ["Versions"]) => {
                    let items = st
                        .function_versions
                        .iter()
                        .filter(|v| v.function_sid == *function_sid)
                        .map(|v| function_version_json(sim, v))
                        .collect();
                    json_status(200, page(sim, items, "function_versions", &path, &query))
                }
                ("GET", ["Versions", sid]) => match version(sid) {
                    Some(v) => json_status(200, function_version_json(sim, &v)),
                    None => not_found(&path),
                },
                ("GET", ["Versions", sid, "Content"]) => match version(sid) {
                    Some(v) => json_status(
                        200,
                        json!({
                            "sid": v.sid,
                            "account_sid": sim.account(),
                            "service_sid": v.service_sid,
                            "function_sid": v.function_sid,
                            "content": String::from_utf8_lossy(&v.content),
                            "url": format!("{}/v1/Services/{}/Functions/{}/Versions/{}/Content", sim.origin, v.service_sid, v.function_sid, v.sid),
                        }),
                    ),
                    None => not_found(&path),
                },
                _ => not_found(&path),
            }
        }
        ("GET", ["Builds"]) => {
            let items = st
                .builds
                .iter()
                .filter(|b| b.service_sid == zs)
                .map(|b| build_json(sim, b, &st.asset_versions, &st.function_versions))
                .collect();
            json_status(200, page(sim, items, "builds", &path, &query))
        }
        ("POST", ["Builds"]) => {
            let versions = get_all(&form, "AssetVersions");
            let function_versions = get_all(&form, "FunctionVersions");
            for v in &function_versions {
                if !st
                    .function_versions
                    .iter()
                    .any(|x| &x.sid == v && x.service_sid == zs)
                {
                    return error(
                        400,
                        20001,
                        format!("Function Version {v} does not exist in service {zs}"),
                    );
                }
            }
            if versions.is_empty() && function_versions.is_empty() {
                return error(
                    400,
                    20001,
                    "At least one of AssetVersions or FunctionVersions is required",
                );
            }
            for v in &versions {
                if !st
                    .asset_versions
                    .iter()
                    .any(|x| &x.sid == v && x.service_sid == zs)
                {
                    return error(
                        400,
                        20001,
                        format!("Asset Version {v} does not exist in service {zs}"),
                    );
                }
            }
            let dependencies = match get(&form, "Dependencies") {
                Some(text) => match serde_json::from_str::<Value>(text) {
                    Ok(v) => v,
                    Err(_) => return error(400, 20001, "Dependencies must be a JSON array"),
                },
                None => json!([]),
            };
            let build = Build {
                sid: sim.sid("ZB"),
                service_sid: zs.clone(),
                status: "building".into(),
                asset_versions: versions,
                function_versions,
                dependencies,
                runtime: get(&form, "Runtime").unwrap_or("node22").to_string(),
                date_created: now,
                date_updated: now,
            };
            let v = build_json(sim, &build, &st.asset_versions, &st.function_versions);
            let sid = build.sid.clone();
            st.builds.push(build);
            drop(st);
            let sim = sim.clone();
            tokio::spawn(async move {
                // NB: building takes two simulated seconds, so clients must poll Status.
                tokio::time::sleep(sim.clock.real(2.0)).await;
                let now = sim.clock.now();
                if let Some(b) = sim.lock().builds.iter_mut().find(|b| b.sid == sid) {
                    b.status = "completed".into();
                    b.date_updated = now;
                }
            });
            json_status(201, v)
        }
        (_, ["Builds", sid, rest @ ..]) => {
            let Some(build) = st
                .builds
                .iter()
                .find(|b| b.service_sid == zs && b.sid == *sid)
                .cloned()
            else {
                return not_found(&path);
            };
            match (m, rest) {
                ("GET", []) => json_status(
                    200,
                    build_json(sim, &build, &st.asset_versions, &st.function_versions),
                ),
                ("GET", ["Status"]) => json_status(
                    200,
                    json!({
                        "sid": build.sid,
                        "account_sid": sim.account(),
                        "service_sid": zs,
                        "status": build.status,
                        "url": format!("{}/v1/Services/{zs}/Builds/{}/Status", sim.origin, build.sid),
                    }),
                ),
                ("DELETE", []) => {
                    st.builds.retain(|b| b.sid != build.sid);
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => not_found(&path),
            }
        }
        _ => not_found(&path),
    }
}

/// What an upload creates a version of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upload {
    Asset,
    Function,
}

/// `POST /v1/Services/{ZS}/Assets/{ZH}/Versions` or `.../Functions/{ZH}/Versions` (multipart:
/// `Path`, `Visibility`, `Content`), as Twilio's serverless-upload host takes them.
async fn upload(
    sim: &Arc<Inner>,
    req: Request,
    service_ref: &str,
    kind: Upload,
    parent_sid: &str,
    path: &str,
) -> Response {
    let (zs, exists) = {
        let st = sim.lock();
        let zs = st
            .services
            .iter()
            .find(|s| s.sid == service_ref || s.unique_name == service_ref)
            .map(|s| s.sid.clone());
        let exists = zs.as_ref().is_some_and(|zs| match kind {
            Upload::Asset => st
                .assets
                .iter()
                .any(|a| &a.service_sid == zs && a.sid == parent_sid),
            Upload::Function => st
                .functions
                .iter()
                .any(|f| &f.service_sid == zs && f.sid == parent_sid),
        });
        (zs.unwrap_or_default(), exists)
    };
    if !exists {
        return not_found(path);
    }
    let mut multipart = match Multipart::from_request(req, &()).await {
        Ok(m) => m,
        Err(e) => {
            return error(
                400,
                20001,
                format!("expected a multipart/form-data upload: {e}"),
            )
        }
    };
    let (mut version_path, mut visibility, mut content) = (None, None, None);
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                let content_type = field.content_type().map(str::to_string);
                let Ok(bytes) = field.bytes().await else {
                    return error(400, 20001, "unreadable multipart field");
                };
                match name.as_str() {
                    "Path" => version_path = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "Visibility" => visibility = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "Content" => content = Some((bytes.to_vec(), content_type)),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => return error(400, 20001, format!("malformed multipart body: {e}")),
        }
    }
    let Some(mut version_path) = version_path else {
        return missing("Path");
    };
    let Some(visibility) = visibility else {
        return missing("Visibility");
    };
    let Some((content, content_type)) = content else {
        return missing("Content");
    };
    let visibility = visibility.to_ascii_lowercase();
    if !matches!(visibility.as_str(), "public" | "protected" | "private") {
        return error(
            400,
            20001,
            format!("Visibility must be public, protected or private, not {visibility:?}"),
        );
    }
    if !version_path.starts_with('/') {
        version_path.insert(0, '/');
    }
    let now = sim.clock.now();
    let v = match kind {
        Upload::Asset => {
            let content_type = content_type
                .filter(|c| c != "application/octet-stream")
                .unwrap_or_else(|| guess_type(&version_path).to_string());
            let version = AssetVersion {
                sid: sim.sid("ZN"),
                service_sid: zs,
                asset_sid: parent_sid.to_string(),
                path: version_path,
                visibility,
                content,
                content_type,
                date_created: now,
            };
            let v = version_json(sim, &version);
            sim.lock().asset_versions.push(version);
            v
        }
        Upload::Function => {
            let version = FunctionVersion {
                sid: sim.sid("ZN"),
                service_sid: zs,
                function_sid: parent_sid.to_string(),
                path: version_path,
                visibility,
                content,
                date_created: now,
            };
            let v = function_version_json(sim, &version);
            sim.lock().function_versions.push(version);
            v
        }
    };
    json_status(201, v)
}

fn guess_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "xml" => "application/xml",
        "json" => "application/json",
        "html" => "text/html",
        "txt" => "text/plain",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

/// What a deployed path is.
enum Deployed {
    Asset(AssetVersion),
    /// The version, its environment, and whether the service gives Functions credentials.
    Function(FunctionVersion, Environment, bool),
}

/// Serves a deployed asset or runs a deployed Function at `/twil.io/<slug>/<path>`; protected
/// ones need X-Twilio-Signature.
pub(crate) async fn serve_asset(sim: &Arc<Inner>, req: Request, rest: &[String]) -> Response {
    let uri_path = req.uri().path().to_string();
    let Some((slug, tail)) = rest.split_first() else {
        return not_found(&uri_path);
    };
    let version_path = format!("/{}", tail.join("/"));
    let found = {
        let st = sim.lock();
        let env = st.environments.iter().find(|e| &e.slug == slug);
        let build = env
            .and_then(|e| e.build_sid.as_ref())
            .and_then(|b| st.builds.iter().find(|x| &x.sid == b));
        let asset = build.and_then(|b| {
            b.asset_versions
                .iter()
                .filter_map(|v| st.asset_versions.iter().find(|x| &x.sid == v))
                .find(|v| v.path == version_path)
                .cloned()
        });
        let function = build.and_then(|b| {
            b.function_versions
                .iter()
                .filter_map(|v| st.function_versions.iter().find(|x| &x.sid == v))
                .find(|v| v.path == version_path)
                .cloned()
        });
        match (asset, function, env) {
            (Some(a), _, _) => Some(Deployed::Asset(a)),
            (None, Some(f), Some(e)) => {
                let credentials = st
                    .services
                    .iter()
                    .any(|s| s.sid == e.service_sid && s.include_credentials);
                Some(Deployed::Function(f, e.clone(), credentials))
            }
            _ => None,
        }
    };
    let Some(deployed) = found else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let visibility = match &deployed {
        Deployed::Asset(v) => v.visibility.clone(),
        Deployed::Function(v, ..) => v.visibility.clone(),
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&sim.authority)
        .to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri_path.clone());
    let query = parse_form(req.uri().query().unwrap_or("").as_bytes());
    let method = req.method().clone();
    let signature = req
        .headers()
        .get("X-Twilio-Signature")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let body = axum::body::to_bytes(req.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    let params = if is_form {
        parse_form(&body)
    } else {
        Vec::new()
    };
    match visibility.as_str() {
        "public" => {}
        "protected" => {
            let url = format!("http://{host}{path_and_query}");
            if !signature::verify(&sim.config.auth_token, &url, &params, &signature) {
                return (
                    StatusCode::FORBIDDEN,
                    "Forbidden: a valid X-Twilio-Signature is required",
                )
                    .into_response();
            }
        }
        _ => return (StatusCode::FORBIDDEN, "Forbidden: private asset").into_response(),
    }
    match deployed {
        // NB: Twilio documents static assets as fetched, never as answering POST; a pessimist
        // refuses it, so every document alertcall hosts must be requested with GET.
        Deployed::Asset(_) if method != Method::GET && method != Method::HEAD => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "Method Not Allowed: a static asset answers GET",
        )
            .into_response(),
        Deployed::Asset(version) => (
            [(header::CONTENT_TYPE, version.content_type)],
            version.content,
        )
            .into_response(),
        Deployed::Function(version, env, credentials) => {
            // NB: a Function's `event` holds the query's parameters and the body's.
            let mut event = query;
            event.extend(params);
            super::functions::invoke(sim, &version, &env, credentials, &event)
        }
    }
}
