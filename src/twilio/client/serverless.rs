//! Serverless v1: the Service, Environment, Assets and their versions, Builds and Deployments
//! that host the policies' TwiML documents.

use super::*;
use crate::twilio::error::{Operation, TwilioError};
use crate::twilio::types::*;

/// An asset version to upload.
#[derive(Clone, Debug, PartialEq)]
pub struct AssetUpload {
    /// Public path, with a leading `/` (`/alertcall/ack.xml`).
    pub path: String,
    /// Name of the `Content` file part.
    pub file_name: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

impl TwilioClient {
    /// `POST /v1/Services` with `UniqueName`, `FriendlyName`.
    pub async fn create_service(
        &self,
        unique_name: &str,
        friendly_name: &str,
    ) -> Result<Service, TwilioError> {
        let url = self.serverless_url(&["Services"])?;
        let form = vec![
            ("UniqueName".to_string(), unique_name.to_string()),
            ("FriendlyName".to_string(), friendly_name.to_string()),
        ];
        self.request(Operation::CreateService, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET /v1/Services`.
    pub async fn list_services(&self) -> Result<Vec<Service>, TwilioError> {
        let url = self.serverless_url(&["Services"])?;
        self.list(Operation::ListServices, url, &[], "services")
            .await
    }

    /// `GET /v1/Services/{Sid}`; the SID or the unique name.
    pub async fn fetch_service(&self, sid_or_unique_name: &str) -> Result<Service, TwilioError> {
        let url = self.serverless_url(&["Services", sid_or_unique_name])?;
        self.request(Operation::FetchService, Verb::Get, url, Body::Empty)
            .await
    }

    /// The service with this unique name, or `None` if Twilio has none (404).
    pub async fn find_service(&self, unique_name: &str) -> Result<Option<Service>, TwilioError> {
        match self.fetch_service(unique_name).await {
            Ok(service) => Ok(Some(service)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/Services/{ServiceSid}/Environments` with `UniqueName` (and `DomainSuffix`).
    pub async fn create_environment(
        &self,
        service_sid: &str,
        unique_name: &str,
        domain_suffix: Option<&str>,
    ) -> Result<Environment, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Environments"])?;
        let mut form = vec![("UniqueName".to_string(), unique_name.to_string())];
        if let Some(suffix) = domain_suffix {
            form.push(("DomainSuffix".to_string(), suffix.to_string()));
        }
        self.request(
            Operation::CreateEnvironment,
            Verb::Post,
            url,
            Body::Form(&form),
        )
        .await
    }

    /// `GET /v1/Services/{ServiceSid}/Environments`.
    pub async fn list_environments(
        &self,
        service_sid: &str,
    ) -> Result<Vec<Environment>, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Environments"])?;
        self.list(Operation::ListEnvironments, url, &[], "environments")
            .await
    }

    /// `POST /v1/Services/{ServiceSid}/Assets` with `FriendlyName`.
    pub async fn create_asset(
        &self,
        service_sid: &str,
        friendly_name: &str,
    ) -> Result<Asset, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Assets"])?;
        let form = vec![("FriendlyName".to_string(), friendly_name.to_string())];
        self.request(Operation::CreateAsset, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET /v1/Services/{ServiceSid}/Assets`.
    pub async fn list_assets(&self, service_sid: &str) -> Result<Vec<Asset>, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Assets"])?;
        self.list(Operation::ListAssets, url, &[], "assets").await
    }

    /// `DELETE /v1/Services/{ServiceSid}/Assets/{Sid}`.
    pub async fn delete_asset(
        &self,
        service_sid: &str,
        asset_sid: &str,
    ) -> Result<(), TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Assets", asset_sid])?;
        self.send(Operation::DeleteAsset, Verb::Delete, url, &Body::Empty)
            .await
            .map(|_| ())
    }

    /// `POST https://serverless-upload.twilio.com/v1/Services/{ServiceSid}/Assets/{AssetSid}/Versions`
    /// as multipart: `Path`, `Visibility=protected`, and the file as `Content`.
    pub async fn upload_asset_version(
        &self,
        service_sid: &str,
        asset_sid: &str,
        upload: &AssetUpload,
    ) -> Result<AssetVersion, TwilioError> {
        let url = build_url(
            &self.config.upload_base,
            &[
                "v1",
                "Services",
                service_sid,
                "Assets",
                asset_sid,
                "Versions",
            ],
        )?;
        self.request(
            Operation::UploadAssetVersion,
            Verb::Post,
            url,
            Body::Upload(upload),
        )
        .await
    }

    /// `GET /v1/Services/{ServiceSid}/Assets/{AssetSid}/Versions`.
    pub async fn list_asset_versions(
        &self,
        service_sid: &str,
        asset_sid: &str,
    ) -> Result<Vec<AssetVersion>, TwilioError> {
        let url =
            self.serverless_url(&["Services", service_sid, "Assets", asset_sid, "Versions"])?;
        self.list(Operation::ListAssetVersions, url, &[], "asset_versions")
            .await
    }

    /// `GET /v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions`.
    pub async fn list_function_versions(
        &self,
        service_sid: &str,
        function_sid: &str,
    ) -> Result<Vec<FunctionVersion>, TwilioError> {
        let url = self.serverless_url(&[
            "Services",
            service_sid,
            "Functions",
            function_sid,
            "Versions",
        ])?;
        self.list(
            Operation::ListFunctionVersions,
            url,
            &[],
            "function_versions",
        )
        .await
    }

    /// `GET /v1/Services/{ServiceSid}/Functions`.
    pub async fn list_functions(&self, service_sid: &str) -> Result<Vec<Function>, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Functions"])?;
        self.list(Operation::ListFunctions, url, &[], "functions")
            .await
    }

    /// `POST /v1/Services/{ServiceSid}/Functions`.
    pub async fn create_function(
        &self,
        service_sid: &str,
        friendly_name: &str,
    ) -> Result<Function, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Functions"])?;
        let form = vec![("FriendlyName".to_string(), friendly_name.to_string())];
        self.request(
            Operation::CreateFunction,
            Verb::Post,
            url,
            Body::Form(&form),
        )
        .await
    }

    /// `POST /v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions` on the upload host,
    /// multipart like an asset version (protected).
    pub async fn upload_function_version(
        &self,
        service_sid: &str,
        function_sid: &str,
        upload: &AssetUpload,
    ) -> Result<FunctionVersion, TwilioError> {
        let url = build_url(
            &self.config.upload_base,
            &[
                "v1",
                "Services",
                service_sid,
                "Functions",
                function_sid,
                "Versions",
            ],
        )?;
        self.request(
            Operation::UploadFunctionVersion,
            Verb::Post,
            url,
            Body::Upload(upload),
        )
        .await
    }

    /// `POST /v1/Services/{ServiceSid}/Builds` with Function versions, the npm `Dependencies`
    /// (a JSON array of `{name, version}`) and the Node.js `Runtime` they run on, beside the
    /// asset versions.
    pub async fn create_build_with_functions(
        &self,
        service_sid: &str,
        asset_version_sids: &[String],
        function_version_sids: &[String],
        dependencies: &str,
        runtime: &str,
    ) -> Result<Build, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Builds"])?;
        let mut form: Vec<(String, String)> = asset_version_sids
            .iter()
            .map(|sid| ("AssetVersions".to_string(), sid.clone()))
            .collect();
        form.extend(
            function_version_sids
                .iter()
                .map(|sid| ("FunctionVersions".to_string(), sid.clone())),
        );
        form.push(("Dependencies".to_string(), dependencies.to_string()));
        form.push(("Runtime".to_string(), runtime.to_string()));
        self.request(Operation::CreateBuild, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `POST /v1/Services/{ServiceSid}/Builds` with one `AssetVersions` key per version.
    pub async fn create_build(
        &self,
        service_sid: &str,
        asset_version_sids: &[String],
    ) -> Result<Build, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Builds"])?;
        let form: Vec<(String, String)> = asset_version_sids
            .iter()
            .map(|sid| ("AssetVersions".to_string(), sid.clone()))
            .collect();
        self.request(Operation::CreateBuild, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET /v1/Services/{ServiceSid}/Builds/{Sid}`.
    pub async fn fetch_build(
        &self,
        service_sid: &str,
        build_sid: &str,
    ) -> Result<Build, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Builds", build_sid])?;
        self.request(Operation::FetchBuild, Verb::Get, url, Body::Empty)
            .await
    }

    /// `GET /v1/Services/{ServiceSid}/Builds/{Sid}/Status`.
    pub async fn fetch_build_status(
        &self,
        service_sid: &str,
        build_sid: &str,
    ) -> Result<BuildStatusResource, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Builds", build_sid, "Status"])?;
        self.request(Operation::FetchBuildStatus, Verb::Get, url, Body::Empty)
            .await
    }

    /// Polls the build status every `interval` until `completed` (returns the build) or `failed`
    /// (error), giving up after `max_wait`.
    pub async fn wait_for_build(
        &self,
        service_sid: &str,
        build_sid: &str,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Build, TwilioError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let status = self.fetch_build_status(service_sid, build_sid).await?;
            match status.status {
                BuildStatus::Completed => return self.fetch_build(service_sid, build_sid).await,
                BuildStatus::Failed => {
                    return Err(TwilioError::Build {
                        build_sid: build_sid.to_string(),
                        outcome: "failed".to_string(),
                    })
                }
                BuildStatus::Building | BuildStatus::Unknown => {}
            }
            if tokio::time::Instant::now() + interval > deadline {
                return Err(TwilioError::Build {
                    build_sid: build_sid.to_string(),
                    outcome: format!("did not finish within {max_wait:?}"),
                });
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// `POST /v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Deployments` with `BuildSid`.
    pub async fn create_deployment(
        &self,
        service_sid: &str,
        environment_sid: &str,
        build_sid: &str,
    ) -> Result<Deployment, TwilioError> {
        let url = self.serverless_url(&[
            "Services",
            service_sid,
            "Environments",
            environment_sid,
            "Deployments",
        ])?;
        let form = vec![("BuildSid".to_string(), build_sid.to_string())];
        self.request(
            Operation::CreateDeployment,
            Verb::Post,
            url,
            Body::Form(&form),
        )
        .await
    }

    /// `POST .../Deployments` without `BuildSid` (optional in Twilio's spec): the environment
    /// serves nothing. Used when the last asset leaves, as a build needs at least one version.
    pub async fn clear_deployment(
        &self,
        service_sid: &str,
        environment_sid: &str,
    ) -> Result<Deployment, TwilioError> {
        let url = self.serverless_url(&[
            "Services",
            service_sid,
            "Environments",
            environment_sid,
            "Deployments",
        ])?;
        self.request(
            Operation::CreateDeployment,
            Verb::Post,
            url,
            Body::Form(&[]),
        )
        .await
    }

    /// `GET /v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Deployments`.
    pub async fn list_deployments(
        &self,
        service_sid: &str,
        environment_sid: &str,
    ) -> Result<Vec<Deployment>, TwilioError> {
        let url = self.serverless_url(&[
            "Services",
            service_sid,
            "Environments",
            environment_sid,
            "Deployments",
        ])?;
        self.list(Operation::ListDeployments, url, &[], "deployments")
            .await
    }

    /// The public URL of an asset: `{asset_scheme}://{domain_name}{path}`.
    pub fn asset_url(&self, environment: &Environment, path: &str) -> String {
        asset_url(&self.config.asset_scheme, &environment.domain_name, path)
    }
}

/// The multipart body of an asset version upload, in the toolkit's field order.
pub(super) fn upload_form(upload: &AssetUpload) -> Result<reqwest::multipart::Form, TwilioError> {
    let content = reqwest::multipart::Part::bytes(upload.content.clone())
        .file_name(upload.file_name.clone())
        .mime_str(&upload.content_type)
        .map_err(|e| {
            TwilioError::Invalid(format!("content type {:?}: {e}", upload.content_type))
        })?;
    Ok(reqwest::multipart::Form::new()
        .text("Path", upload.path.clone())
        .text("Visibility", "protected")
        .part("Content", content))
}

/// `{scheme}://{domain_name}{path}`, with exactly one `/` between domain and path.
pub fn asset_url(scheme: &str, domain_name: &str, path: &str) -> String {
    let domain = domain_name.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    format!("{scheme}://{domain}/{path}")
}
