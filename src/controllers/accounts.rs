//! Twilio accounts, resolved from the credentials Secret a CallPolicy names. One client per
//! Secret version, shared by every controller, so a rotated token is picked up on the next use.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::ResourceExt;
use tokio::sync::Mutex;

use crate::api::CallPolicy;
use crate::twilio::{Account, Credentials, TwilioClient, TwilioEndpoints, TwilioError};

/// Why a policy's account could not be resolved. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("Secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} lacks {missing}: it needs accountSid and authToken, or accountSid, apiKeySid and apiKeySecret")]
    SecretIncomplete {
        namespace: String,
        name: String,
        missing: String,
    },
    #[error("reading Secret {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("building the Twilio client: {0}")]
    Client(#[from] TwilioError),
}

impl AccountError {
    /// Stable short reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AccountError::SecretNotFound { .. } => "SecretNotFound",
            AccountError::SecretIncomplete { .. } => "SecretIncomplete",
            AccountError::Kube { .. } => "SecretUnreadable",
            AccountError::Client(_) => "TwilioClientError",
        }
    }

    /// A missing or incomplete Secret needs a person; an API error may pass.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            AccountError::SecretNotFound { .. } | AccountError::SecretIncomplete { .. }
        )
    }
}

/// Credentials read from a Secret's data.
pub fn credentials_from_secret(
    secret: &Secret,
) -> Result<(Credentials, Option<String>), Vec<&'static str>> {
    let value = |key: &str| -> Option<String> {
        let from_data = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok());
        let from_string_data = secret
            .string_data
            .as_ref()
            .and_then(|data| data.get(key).cloned());
        from_data
            .or(from_string_data)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let Some(account_sid) = value("accountSid") else {
        return Err(vec!["accountSid"]);
    };
    // NB: an API key, when the Secret has one, authenticates REST even next to an auth token:
    // the key is what the owner chose to revoke or rotate. The token then only verifies
    // Twilio's webhook signatures, which no API key can do.
    let auth_token = value("authToken");
    match (value("apiKeySid"), value("apiKeySecret"), auth_token) {
        (Some(key_sid), Some(key_secret), auth_token) => Ok((
            Credentials::ApiKey {
                account_sid,
                key_sid,
                key_secret,
            },
            auth_token,
        )),
        (_, _, Some(auth_token)) => Ok((
            Credentials::AuthToken {
                account_sid,
                auth_token: auth_token.clone(),
            },
            Some(auth_token),
        )),
        (None, None, None) => Err(vec!["authToken"]),
        (None, Some(_), None) => Err(vec!["apiKeySid"]),
        (Some(_), None, None) => Err(vec!["apiKeySecret"]),
    }
}

type CacheKey = (String, String);

/// How long an account read from its Secret is used without reading the Secret again. Pages
/// dial on it: a page in a storm should not wait for a Secret read the last page just made. A
/// rotated credential is picked up within this long, or as soon as Twilio refuses the old one.
pub const ACCOUNT_FRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// An account and the Secret version it was built from.
struct Cached {
    version: String,
    read_at: std::time::Instant,
    account: Arc<Account>,
}

/// Resolves and caches accounts by Secret.
pub struct Accounts {
    client: kube::Client,
    endpoints: TwilioEndpoints,
    cache: Mutex<HashMap<CacheKey, Cached>>,
}

impl Accounts {
    pub fn new(client: kube::Client, endpoints: TwilioEndpoints) -> Self {
        Self {
            client,
            endpoints,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn endpoints(&self) -> &TwilioEndpoints {
        &self.endpoints
    }

    /// The account of a policy, from its credentials Secret.
    pub async fn for_policy(&self, policy: &CallPolicy) -> Result<Arc<Account>, AccountError> {
        let namespace = policy.namespace().unwrap_or_default();
        let name = policy.spec.twilio.credentials_secret_ref.name.clone();
        let key = (namespace.clone(), name.clone());
        if let Some(cached) = self.cache.lock().await.get(&key) {
            // NB: refused credentials are the likeliest to have been rotated just now.
            if cached.read_at.elapsed() < ACCOUNT_FRESH
                && !cached.account.client.credentials_refused()
            {
                return Ok(cached.account.clone());
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let secret = match secrets.get_opt(&name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err(AccountError::SecretNotFound { namespace, name }),
            Err(source) => {
                return Err(AccountError::Kube {
                    namespace,
                    name,
                    source: Box::new(source),
                })
            }
        };
        let version = secret.resource_version().unwrap_or_default();
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get_mut(&key) {
            if cached.version == version {
                cached.read_at = std::time::Instant::now();
                return Ok(cached.account.clone());
            }
        }
        let (credentials, auth_token) =
            credentials_from_secret(&secret).map_err(|missing| AccountError::SecretIncomplete {
                namespace: namespace.clone(),
                name: name.clone(),
                missing: missing.join(", "),
            })?;
        let account_sid = credentials.account_sid().to_string();
        let client = TwilioClient::new(self.endpoints.config(credentials))?;
        let account = Arc::new(Account {
            account_sid,
            auth_token,
            client,
        });
        cache.insert(
            key,
            Cached {
                version,
                read_at: std::time::Instant::now(),
                account: account.clone(),
            },
        );
        Ok(account)
    }

    /// The account last resolved for this policy's Secret, without reading it: what verifies
    /// a request before the operator may spend an API call on it. A rotated Secret is seen at
    /// the next [`Accounts::for_policy`].
    pub fn cached_for(&self, policy: &CallPolicy) -> Option<Arc<Account>> {
        let key = (
            policy.namespace().unwrap_or_default(),
            policy.spec.twilio.credentials_secret_ref.name.clone(),
        );
        let cache = self.cache.try_lock().ok()?;
        cache.get(&key).map(|cached| cached.account.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    /// Accounts on an API server that is not there (any Secret read fails), holding a fresh
    /// account for the Secret of the returned policy, with its Twilio client.
    async fn one_fresh_account(endpoints: TwilioEndpoints) -> (Accounts, CallPolicy, TwilioClient) {
        let accounts = Accounts::new(crate::fixtures::unreachable_client(), endpoints);
        let mut policy = CallPolicy::new("p", crate::fixtures::policy_spec());
        policy.metadata.namespace = Some("ns".into());
        let credentials = Credentials::AuthToken {
            account_sid: "AC1".into(),
            auth_token: "t".into(),
        };
        let client = TwilioClient::new(accounts.endpoints.config(credentials))
            .unwrap_or_else(|e| panic!("twilio client: {e}"));
        let account = Arc::new(Account {
            account_sid: "AC1".into(),
            auth_token: Some("t".into()),
            client: client.clone(),
        });
        let key = (
            "ns".to_string(),
            policy.spec.twilio.credentials_secret_ref.name.clone(),
        );
        let fresh = Cached {
            version: "1".into(),
            read_at: std::time::Instant::now(),
            account,
        };
        accounts.cache.lock().await.insert(key, fresh);
        (accounts, policy, client)
    }

    fn read_again(result: Result<Arc<Account>, AccountError>, why: &str) {
        match result {
            Err(AccountError::Kube { .. }) => {}
            other => panic!("{why} must be read again, got {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn a_fresh_account_is_used_without_reading_its_secret_and_a_stale_one_is_read_again() {
        let (accounts, policy, _) = one_fresh_account(TwilioEndpoints::default()).await;
        let fresh = accounts.for_policy(&policy).await;
        assert_eq!(
            fresh.map(|a| a.account_sid.clone()).ok().as_deref(),
            Some("AC1")
        );
        let stale = std::time::Instant::now()
            .checked_sub(ACCOUNT_FRESH)
            .unwrap_or_else(|| panic!("the monotonic clock is younger than {ACCOUNT_FRESH:?}"));
        for cached in accounts.cache.lock().await.values_mut() {
            cached.read_at = stale;
        }
        read_again(accounts.for_policy(&policy).await, "a stale account");
    }

    #[tokio::test]
    async fn an_account_twilio_refused_is_read_again_however_fresh() {
        // NB: a "Twilio" that refuses every request; only a Secret read explains the error below.
        let twilio = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let base = twilio
            .local_addr()
            .map(|addr| format!("http://{addr}/"))
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = twilio.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let body = r#"{"code":20003,"message":"Authenticate","status":401}"#;
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let endpoints = TwilioEndpoints {
            api_url: url::Url::parse(&base).ok(),
            ..TwilioEndpoints::default()
        };
        let (accounts, policy, twilio_client) = one_fresh_account(endpoints).await;
        assert!(
            accounts.for_policy(&policy).await.is_ok(),
            "fresh: not read"
        );
        let refused = twilio_client.fetch_call("CA1").await;
        assert_eq!(refused.err().and_then(|e| e.status()), Some(401));
        assert!(twilio_client.credentials_refused());
        read_again(accounts.for_policy(&policy).await, "refused credentials");
    }

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn auth_token_credentials() {
        let result = credentials_from_secret(&secret(&[("accountSid", "AC1"), ("authToken", "t")]));
        let Ok((credentials, token)) = result else {
            panic!("expected credentials");
        };
        assert_eq!(credentials.account_sid(), "AC1");
        assert_eq!(token.as_deref(), Some("t"));
    }

    #[test]
    fn api_key_credentials_have_no_token_for_signatures() {
        let result = credentials_from_secret(&secret(&[
            ("accountSid", "AC1"),
            ("apiKeySid", "SK1"),
            ("apiKeySecret", "s"),
        ]));
        assert!(matches!(result, Ok((Credentials::ApiKey { .. }, None))));
    }

    #[test]
    fn api_key_authenticates_and_auth_token_only_verifies_signatures() {
        let result = credentials_from_secret(&secret(&[
            ("accountSid", "AC1"),
            ("authToken", "t"),
            ("apiKeySid", "SK1"),
            ("apiKeySecret", "s"),
        ]));
        let Ok((Credentials::ApiKey { key_sid, .. }, token)) = result else {
            panic!("expected API key credentials");
        };
        assert_eq!(key_sid, "SK1");
        assert_eq!(token.as_deref(), Some("t"));
    }

    #[test]
    fn half_an_api_key_next_to_an_auth_token_uses_the_token() {
        let result = credentials_from_secret(&secret(&[
            ("accountSid", "AC1"),
            ("authToken", "t"),
            ("apiKeySid", "SK1"),
        ]));
        assert!(matches!(
            result,
            Ok((Credentials::AuthToken { .. }, Some(_)))
        ));
    }

    #[test]
    fn missing_keys_are_named() {
        assert_eq!(
            credentials_from_secret(&secret(&[])).err(),
            Some(vec!["accountSid"])
        );
        assert_eq!(
            credentials_from_secret(&secret(&[("accountSid", "AC1")])).err(),
            Some(vec!["authToken"])
        );
        assert_eq!(
            credentials_from_secret(&secret(&[("accountSid", "AC1"), ("apiKeySid", "SK")])).err(),
            Some(vec!["apiKeySecret"])
        );
        assert_eq!(
            credentials_from_secret(&secret(&[("accountSid", "AC1"), ("authToken", "  ")])).err(),
            Some(vec!["authToken"])
        );
    }
}
