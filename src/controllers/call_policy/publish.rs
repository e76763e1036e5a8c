//! Publishing the TwiML documents as protected Serverless assets, and removing them.
//!
//! NB: a deployment replaces the whole environment, so each build carries the active build's
//! versions of every other policy; the per-service lock keeps two reconciles from racing.

use std::collections::HashSet;
use std::time::Duration;

use super::decide::{asset_prefix, foreign, keep_versions, Foreign};
use super::{twilio, Error, State, ENVIRONMENT};
use crate::api::{TwimlStatus, TwimlUrls};
use crate::page::documents::HostedDocuments;
use crate::page::ledger::SYNC_SERVICE;
use crate::twilio::client::AssetUpload;
use crate::twilio::functions::ack;
use crate::twilio::types::{Build, Environment};
use crate::twilio::Account;
use crate::twilio::TwilioClient;

const DOCUMENTS: [&str; 2] = ["ack.xml", "bridge.xml"];

async fn find_or_create_environment(
    client: &TwilioClient,
    service_sid: &str,
) -> Result<Environment, Error> {
    let environments = client
        .list_environments(service_sid)
        .await
        .map_err(twilio("listing Serverless environments"))?;
    if let Some(environment) = environments
        .into_iter()
        .find(|e| e.unique_name == ENVIRONMENT)
    {
        return Ok(environment);
    }
    client
        .create_environment(service_sid, ENVIRONMENT, None)
        .await
        .map_err(twilio("creating the Serverless environment"))
}

/// The environment's active build, if it has one that still exists.
async fn active_build(
    client: &TwilioClient,
    service_sid: &str,
    environment: &Environment,
) -> Result<Option<Build>, Error> {
    let Some(build_sid) = environment.build_sid.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match client.fetch_build(service_sid, build_sid).await {
        Ok(build) => Ok(Some(build)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(twilio("reading the active build")(error)),
    }
}

/// Asset version SIDs of the active build, except those of `exclude` assets and of assets that
/// no longer exist.
fn other_versions(
    build: Option<&Build>,
    exclude: &HashSet<String>,
    existing: &HashSet<String>,
) -> Vec<String> {
    let Some(build) = build else {
        return Vec::new();
    };
    keep_versions(
        build.asset_versions.as_deref().unwrap_or_default(),
        exclude,
        existing,
    )
}

/// The Function the install's policies share: the acknowledgement ledger's writer.
const ACK_FUNCTION: &str = "alertcall-ack";
/// The npm packages the function's Runtime provides: `context.getTwilioClient()` is the
/// `twilio` package's client.
const DEPENDENCIES: &str = r#"[{"name":"twilio","version":"5.3.4"}]"#;
/// The Node.js runtime Twilio runs the function on.
const RUNTIME: &str = "node22";

/// Uploads the acknowledgement function's source as a new version of the shared Function.
async fn upload_ack_function(
    client: &TwilioClient,
    service_sid: &str,
    functions: Vec<crate::twilio::types::Function>,
) -> Result<String, Error> {
    let function = match functions
        .into_iter()
        .find(|f| f.friendly_name == ACK_FUNCTION)
    {
        Some(function) => function,
        None => client
            .create_function(service_sid, ACK_FUNCTION)
            .await
            .map_err(twilio("creating the acknowledgement function"))?,
    };
    let version = client
        .upload_function_version(
            service_sid,
            &function.sid,
            &AssetUpload {
                path: ack::PATH.to_string(),
                file_name: "ack.js".to_string(),
                content_type: "application/javascript".to_string(),
                content: ack::SOURCE.as_bytes().to_vec(),
            },
        )
        .await
        .map_err(twilio("uploading the acknowledgement function"))?;
    Ok(version.sid)
}

/// The map every keypress is written into exists (a second create answers 409).
pub async fn ensure_ack_map(client: &TwilioClient) -> Result<(), Error> {
    match client.create_sync_map(SYNC_SERVICE, ack::DEFAULT_MAP).await {
        Ok(_) => Ok(()),
        Err(error) if error.is_conflict() => Ok(()),
        Err(error) => Err(twilio("creating the acknowledgement Sync map")(error)),
    }
}

/// Function version SIDs of the active build (the acknowledgement function's).
fn function_versions(build: Option<&Build>) -> Vec<String> {
    build
        .and_then(|b| b.function_versions.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_string))
        .collect()
}

async fn build_and_deploy(
    client: &TwilioClient,
    service_sid: &str,
    environment: &Environment,
    versions: &[String],
    function_versions: &[String],
) -> Result<String, Error> {
    if versions.is_empty() {
        client
            .clear_deployment(service_sid, &environment.sid)
            .await
            .map_err(twilio("emptying the Serverless environment"))?;
        return Ok(String::new());
    }
    let build = client
        .create_build_with_functions(
            service_sid,
            versions,
            function_versions,
            DEPENDENCIES,
            RUNTIME,
        )
        .await
        .map_err(twilio("creating the Serverless build"))?;
    client
        .wait_for_build(
            service_sid,
            &build.sid,
            Duration::from_secs(1),
            Duration::from_secs(300),
        )
        .await
        .map_err(twilio("waiting for the Serverless build"))?;
    client
        .create_deployment(service_sid, &environment.sid, &build.sid)
        .await
        .map_err(twilio("deploying the Serverless build"))?;
    Ok(build.sid)
}

/// The refusal of a service that holds `found`, naming its path (read from its versions; its
/// friendly name when it has none or they cannot be read).
async fn refuse(client: &TwilioClient, service_sid: &str, found: Foreign) -> Error {
    let (kind, path) = match &found {
        Foreign::Asset { sid, friendly_name } => (
            "asset",
            client
                .list_asset_versions(service_sid, sid)
                .await
                .ok()
                .and_then(|versions| versions.into_iter().next_back())
                .map(|v| v.path)
                .unwrap_or_else(|| friendly_name.clone()),
        ),
        Foreign::Function { sid, friendly_name } => (
            "function",
            client
                .list_function_versions(service_sid, sid)
                .await
                .ok()
                .and_then(|versions| versions.into_iter().next_back())
                .map(|v| v.path)
                .unwrap_or_else(|| friendly_name.clone()),
        ),
    };
    Error::ForeignService {
        service_sid: service_sid.to_string(),
        kind,
        path,
    }
}

/// The documents' hash, and where they live: moving the policy to another account (a new
/// Secret) or install must publish again even though the documents did not change.
fn publication_hash(docs: &HostedDocuments, account_sid: &str, instance: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!(
        "{}\n{account_sid}\n{instance}\n{}",
        docs.content_hash(),
        ack::SOURCE
    ));
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(super) async fn publish(
    account: &Account,
    state: &State,
    namespace: &str,
    name: &str,
    docs: &HostedDocuments,
    current: Option<&TwimlStatus>,
) -> Result<TwimlStatus, Error> {
    let client = &account.client;
    let account_sid = account.account_sid.as_str();
    let auth_token = account.auth_token.as_deref();
    let instance = &state.ctx.config.instance_name;
    let hash = publication_hash(docs, account_sid, instance);
    // NB: before the short-circuit, so a map deleted by hand comes back at the next resync.
    ensure_ack_map(client).await?;
    if let Some(current) = current {
        if current.content_hash == hash
            && !current.build_sid.is_empty()
            && !current.urls.ack.is_empty()
            && !current.urls.ack_function.is_empty()
        {
            if still_served(state, auth_token, &current.urls.ack, &docs.ack).await {
                return Ok(current.clone());
            }
            tracing::info!(
                namespace,
                name,
                "the hosted ack document is gone or changed; publishing again"
            );
        }
    }
    let lock = state.publish_lock(&format!("{account_sid}/{instance}"));
    let _guard = lock.lock().await;
    publish_documents(client, account_sid, instance, namespace, name, docs).await
}

/// Uploads the documents, builds and deploys them, without the hash check or the per-service
/// lock: the caller holds the lock (the controller) or is the only publisher (`alertcall demo`).
pub async fn publish_documents(
    client: &TwilioClient,
    account_sid: &str,
    instance: &str,
    namespace: &str,
    name: &str,
    docs: &HostedDocuments,
) -> Result<TwimlStatus, Error> {
    let hash = publication_hash(docs, account_sid, instance);
    let service = match client
        .find_service(instance)
        .await
        .map_err(twilio("looking up the Serverless service"))?
    {
        Some(service) => service,
        None => client
            .create_service(instance, &format!("alertcall {instance}"))
            .await
            .map_err(twilio("creating the Serverless service"))?,
    };
    let environment = find_or_create_environment(client, &service.sid).await?;
    let mut assets = client
        .list_assets(&service.sid)
        .await
        .map_err(twilio("listing Serverless assets"))?;
    let functions = client
        .list_functions(&service.sid)
        .await
        .map_err(twilio("listing Serverless functions"))?;
    if let Some(found) = foreign(&assets, &functions, ACK_FUNCTION) {
        return Err(refuse(client, &service.sid, found).await);
    }
    let prefix = asset_prefix(namespace, name);
    // NB: every asset in the policy's folder, so documents an older version uploaded (no-ack)
    // leave the environment with this build instead of being carried over.
    let mut ours: HashSet<String> = assets
        .iter()
        .filter(|a| a.friendly_name.starts_with(&prefix))
        .map(|a| a.sid.clone())
        .collect();
    let mut new_versions = Vec::new();
    let mut urls = TwimlUrls::default();
    for (file, content) in DOCUMENTS.iter().zip([&docs.ack, &docs.bridge]) {
        let friendly = format!("{prefix}{file}");
        let asset = match assets.iter().find(|a| a.friendly_name == friendly) {
            Some(asset) => asset.clone(),
            None => {
                let asset = client
                    .create_asset(&service.sid, &friendly)
                    .await
                    .map_err(twilio("creating a Serverless asset"))?;
                assets.push(asset.clone());
                asset
            }
        };
        let path = format!("/{friendly}");
        let version = client
            .upload_asset_version(
                &service.sid,
                &asset.sid,
                &AssetUpload {
                    path: path.clone(),
                    file_name: (*file).to_string(),
                    content_type: "application/xml".into(),
                    content: content.as_bytes().to_vec(),
                },
            )
            .await
            .map_err(twilio("uploading a TwiML document"))?;
        ours.insert(asset.sid.clone());
        new_versions.push(version.sid);
        let url = client.asset_url(&environment, &path);
        match *file {
            "ack.xml" => urls.ack = url,
            _ => urls.bridge = url,
        }
    }
    let function_version = upload_ack_function(client, &service.sid, functions).await?;
    urls.ack_function = client.asset_url(&environment, ack::PATH);
    let existing: HashSet<String> = assets.iter().map(|a| a.sid.clone()).collect();
    let active = active_build(client, &service.sid, &environment).await?;
    let mut versions = other_versions(active.as_ref(), &ours, &existing);
    versions.extend(new_versions);
    let build_sid = build_and_deploy(
        client,
        &service.sid,
        &environment,
        &versions,
        &[function_version],
    )
    .await?;
    // Documents an older version published are out of the build now; a failure here leaves
    // only an unused asset behind, which the policy's deletion removes.
    let current: Vec<String> = DOCUMENTS.iter().map(|f| format!("{prefix}{f}")).collect();
    for stale in assets
        .iter()
        .filter(|a| a.friendly_name.starts_with(&prefix) && !current.contains(&a.friendly_name))
    {
        if let Err(error) = client.delete_asset(&service.sid, &stale.sid).await {
            tracing::debug!(%error, asset = stale.friendly_name, "deleting an old document");
        }
    }
    tracing::info!(namespace, name, build_sid, "TwiML documents published");
    Ok(TwimlStatus {
        service_sid: service.sid,
        build_sid,
        content_hash: hash,
        urls,
    })
}

/// The one GET a resync spends on the documents: the ack document fetched as Twilio would
/// (signed). Only a 404 or different content counts as drift; anything else (no auth token with
/// API-key credentials, a network error, a 5xx) is not a reason to upload again.
async fn still_served(state: &State, auth_token: Option<&str>, url: &str, expected: &str) -> bool {
    let Some(token) = auth_token else {
        return true;
    };
    let signature = crate::twilio::signature::compute(token, url, &[]);
    let response = match state
        .http
        .get(url)
        .header("X-Twilio-Signature", signature)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%error, url, "cannot check the hosted document");
            return true;
        }
    };
    match response.status().as_u16() {
        404 => false,
        200 => response.text().await.map_or(true, |body| body == expected),
        _ => true,
    }
}

/// Removes the policy's assets from the environment (a new build without them) and deletes them.
pub(super) async fn unpublish(
    client: &TwilioClient,
    state: &State,
    account_sid: &str,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let instance = &state.ctx.config.instance_name;
    let lock = state.publish_lock(&format!("{account_sid}/{instance}"));
    let _guard = lock.lock().await;
    let Some(service) = client
        .find_service(instance)
        .await
        .map_err(twilio("looking up the Serverless service"))?
    else {
        return Ok(());
    };
    let assets = client
        .list_assets(&service.sid)
        .await
        .map_err(twilio("listing Serverless assets"))?;
    let prefix = asset_prefix(namespace, name);
    let ours: HashSet<String> = assets
        .iter()
        .filter(|a| a.friendly_name.starts_with(&prefix))
        .map(|a| a.sid.clone())
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    let existing: HashSet<String> = assets.iter().map(|a| a.sid.clone()).collect();
    let environment = find_or_create_environment(client, &service.sid).await?;
    let active = active_build(client, &service.sid, &environment).await?;
    let versions = other_versions(active.as_ref(), &ours, &existing);
    let function_versions = function_versions(active.as_ref());
    build_and_deploy(
        client,
        &service.sid,
        &environment,
        &versions,
        &function_versions,
    )
    .await?;
    for sid in &ours {
        match client.delete_asset(&service.sid, sid).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(twilio("deleting a Serverless asset")(error)),
        }
    }
    tracing::info!(namespace, name, "TwiML documents removed");
    Ok(())
}
