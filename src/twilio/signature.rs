//! X-Twilio-Signature: HMAC-SHA1 over the full URL followed by the form parameters sorted by name
//! (each name's values de-duplicated and sorted), keyed with the account's Auth Token, base64.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The signature Twilio sends for a request to `url` with form `params`.
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut names: Vec<&str> = params.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut signed = String::from(url);
    for name in names {
        let mut values: Vec<&str> = params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
            .collect();
        values.sort_unstable();
        values.dedup();
        for value in values {
            signed.push_str(name);
            signed.push_str(value);
        }
    }
    // NB: HMAC accepts keys of any length, so this cannot fail; an empty MAC would only ever
    // produce a signature that verifies nothing.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(signed.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// True when `signature` matches the request, accepting the URL as given, without its port, and
/// with the scheme's default port added, as Twilio's own validators do.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    if signature.is_empty() {
        return false;
    }
    url_variants(url).iter().any(|candidate| {
        let expected = compute(auth_token, candidate, params);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(signature.as_bytes()))
    })
}

/// The URL as given, without its port, and with the scheme's default port.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    // An IPv6 literal's colons are not a port separator.
    let host_end = if hostport.starts_with('[') {
        hostport.find(']').map(|i| i + 1).unwrap_or(hostport.len())
    } else {
        hostport.find(':').unwrap_or(hostport.len())
    };
    let host = &hostport[..host_end];
    let has_port = hostport.len() > host_end;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => Some("443"),
        "http" => Some("80"),
        _ => None,
    };
    if has_port {
        variants.push(format!("{scheme}://{userinfo}{host}{tail}"));
    } else if let Some(port) = default_port {
        variants.push(format!("{scheme}://{userinfo}{host}:{port}{tail}"));
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn published_vector() {
        assert_eq!(
            compute(TOKEN, URL, &params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(verify(
            TOKEN,
            URL,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn default_port_variants_verify() {
        let with_443 = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(TOKEN, with_443, &params()),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        // Twilio may sign with or without the default port; both must verify either way.
        assert!(verify(
            TOKEN,
            with_443,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(verify(
            TOKEN,
            URL,
            &params(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        let http_80 = "http://mycompany.com:80/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(TOKEN, http_80, &params()),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        );
    }

    #[test]
    fn custom_port_is_kept_or_removed() {
        let custom = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(TOKEN, custom, &params()),
            "CYn1h0gLBdNxDGkKJg6hYohgeD8="
        );
        assert!(verify(
            TOKEN,
            custom,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let http_custom = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(TOKEN, http_custom, &params()),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        );
    }

    #[test]
    fn host_case_and_credentials_are_signed_as_given() {
        let upper = "https://MyCompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(TOKEN, upper, &params()),
            "g9IN/x4Cft2g517EjYvEvM/W7LU="
        );
        assert!(!verify(
            TOKEN,
            upper,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let creds = "http://username:password@MyCompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(TOKEN, creds, &params()),
            "PJ08CxXr7KLPjEQCTc8LkUSMwSM="
        );
        let user_pass = "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(TOKEN, user_pass, &params()),
            "CukzLTc1tT5dXEDIHm/tKBanW10="
        );
        assert!(verify(
            TOKEN,
            user_pass,
            &params(),
            "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="
        ));
    }

    #[test]
    fn repeated_keys_are_deduplicated_and_sorted() {
        let params: Vec<(String, String)> = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(compute(TOKEN, URL, &params), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn parameters_sort_by_name_not_by_concatenation() {
        let mut params = params();
        params.push(("ReasonConferenceEnded".into(), "test".into()));
        params.push(("Reason".into(), "Participant".into()));
        assert_eq!(compute(TOKEN, URL, &params), "vOEb5UThFn24KEfnOFLQY2AE5FY=");
        assert!(!verify(TOKEN, URL, &params, "95+Bu0JVPi0r/SsESZCVf0dWAjw="));
        let http = "http://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute(TOKEN, http, &params),
            "n2xBNyzSW7rfYStDtOFiFMv7qNo="
        );
        let http_custom = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert!(verify(
            TOKEN,
            http_custom,
            &params,
            "n2xBNyzSW7rfYStDtOFiFMv7qNo="
        ));
    }

    #[test]
    fn tampering_fails() {
        let signature = compute(TOKEN, URL, &params());
        let mut tampered = params();
        tampered[2].1 = "9".into();
        assert!(!verify(TOKEN, URL, &tampered, &signature));
        assert!(!verify("54321", URL, &params(), &signature));
        assert!(!verify(
            TOKEN,
            "https://mycompany.com/other.php?foo=1&bar=2",
            &params(),
            &signature
        ));
        assert!(!verify(TOKEN, URL, &params(), ""));
    }

    #[test]
    fn ipv6_host_port_is_not_confused_with_address() {
        let variants = url_variants("http://[::1]:4010/x");
        assert_eq!(variants, vec!["http://[::1]:4010/x", "http://[::1]/x"]);
    }
}
