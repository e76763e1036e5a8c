//! One Twilio account as the operator uses it, and where Twilio's APIs are.

use url::Url;

use super::{Credentials, TwilioClient, TwilioConfig};

/// Where the Twilio APIs are; overridden to point at the simulator.
#[derive(Clone, Debug, Default)]
pub struct TwilioEndpoints {
    pub api_url: Option<Url>,
    pub serverless_url: Option<Url>,
    pub upload_url: Option<Url>,
    /// Sync; defaults to `{serverless_url}/sync` when only the Serverless URL is overridden,
    /// where the simulator serves it.
    pub sync_url: Option<Url>,
    /// Scheme of hosted asset URLs (`http` for the simulator).
    pub asset_scheme: Option<String>,
}

impl TwilioEndpoints {
    /// Endpoints that refuse every connection, for operators that must never reach Twilio.
    pub fn unreachable() -> Self {
        let discard = Url::parse("http://127.0.0.1:9/").ok();
        Self {
            api_url: discard.clone(),
            serverless_url: discard.clone(),
            upload_url: discard.clone(),
            sync_url: discard,
            asset_scheme: None,
        }
    }

    pub fn config(&self, credentials: Credentials) -> TwilioConfig {
        let mut config = TwilioConfig::new(credentials);
        if let Some(url) = &self.api_url {
            config.api_base = url.clone();
        }
        if let Some(url) = &self.serverless_url {
            config.serverless_base = url.clone();
        }
        // The upload host follows the Serverless override unless set on its own, since a
        // simulator serves both.
        if let Some(url) = &self.sync_url {
            config.sync_base = url.clone();
        } else if let Some(url) = &self.serverless_url {
            config.sync_base = super::client::sim_sync_base(url);
        }
        if let Some(url) = self.upload_url.as_ref().or(self.serverless_url.as_ref()) {
            config.upload_base = url.clone();
        }
        if let Some(scheme) = &self.asset_scheme {
            config.asset_scheme = scheme.clone();
        } else if config.serverless_base.scheme() == "http" {
            config.asset_scheme = "http".to_string();
        }
        config
    }
}

/// One Twilio account as a policy sees it.
pub struct Account {
    pub account_sid: String,
    /// Needed to verify webhook signatures; absent with API-key credentials, in which case
    /// callbacks are not trusted and status comes from polling only.
    pub auth_token: Option<String>,
    pub client: TwilioClient,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::Credentials;

    #[test]
    fn simulator_endpoints_serve_http_assets_and_uploads() {
        let base = Url::parse("http://127.0.0.1:4010").ok();
        let endpoints = TwilioEndpoints {
            api_url: base.clone(),
            serverless_url: base.clone(),
            ..Default::default()
        };
        let config = endpoints.config(Credentials::AuthToken {
            account_sid: "AC1".into(),
            auth_token: "t".into(),
        });
        assert_eq!(Some(config.upload_base), base);
        assert_eq!(config.asset_scheme, "http");
    }
}
