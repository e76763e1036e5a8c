//! Twilio's side of X-Twilio-Signature: HMAC-SHA1, keyed with the Auth Token, over the URL
//! followed by `name` + `value` for each form parameter (names in byte order, each name's values
//! de-duplicated and sorted), base64 with padding.
//!
//! NB: written apart from alertcall's `twilio::signature` on purpose. Both are checked against
//! Twilio's published vectors, so a mistake in one cannot hide behind the other.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The signature Twilio sends with a request to `url` carrying form `params`.
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, value) in params {
        sorted.entry(name).or_default().insert(value);
    }
    // NB: HMAC takes keys of any length; the empty string never verifies anything.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (name, values) in sorted {
        for value in values {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// True when `signature` signs the request for `url` as given, without its port, or with the
/// scheme's default port: Twilio's validators accept all three because Twilio is inconsistent
/// about ports.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    !signature.is_empty()
        && port_variants(url).iter().any(|candidate| {
            let expected = compute(auth_token, candidate, params);
            !expected.is_empty() && constant_time_eq(expected.as_bytes(), signature.as_bytes())
        })
}

fn port_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return variants;
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    // The port follows the last ':' after any `user:pass@`, unless it is inside `[v6]`.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let port = authority[host_start..]
        .rsplit_once(':')
        .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    let (before, after) = (&url[..scheme_end], &url[authority_end..]);
    match port {
        Some((host, _)) => {
            let host_end = scheme_end + host_start + host.len();
            variants.push(format!("{}{after}", &url[..host_end]));
        }
        None => {
            let default = match url[..scheme_end - 3].to_ascii_lowercase().as_str() {
                "https" => "443",
                "http" => "80",
                _ => return variants,
            };
            variants.push(format!("{before}{authority}:{default}{after}"));
        }
    }
    variants
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Twilio's published vectors (twilio-python, -php, -csharp and -go request validator tests).
    const TOKEN: &str = "12345";
    const PATH: &str = "/myapp.php?foo=1&bar=2";

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn params() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn published_vectors() {
        let cases = [
            ("https://mycompany.com", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            ("https://mycompany.com:443", "kvajT1Ptam85bY51eRf/AJRuM3w="),
            ("http://mycompany.com:80", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
            ("http://mycompany.com:1234", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
            ("https://mycompany.com:1234", "CYn1h0gLBdNxDGkKJg6hYohgeD8="),
            ("https://MyCompany.com", "g9IN/x4Cft2g517EjYvEvM/W7LU="),
            ("https://MyCompany.com:1234", "PCqOZm8cnu/L6+u5i5fuEd+Iac4="),
            ("http://MyCompany.com", "XY7AlKOKL6im4yWyX84gldUrtis="),
            (
                "http://username:password@MyCompany.com",
                "PJ08CxXr7KLPjEQCTc8LkUSMwSM=",
            ),
            (
                "HTTP://username:password@MyCompany.com",
                "hy/l8pca+LFms4cvRdv8uiP6NGc=",
            ),
            (
                "http://Username:Password@MyCompany.com",
                "SkTSKyDJH9kUlhItI0slbgZ1UsI=",
            ),
            (
                "https://user:pass@mycompany.com",
                "CukzLTc1tT5dXEDIHm/tKBanW10=",
            ),
            ("https://user@mycompany.com", "2YRLlVAflCqxaNicjMpJcSTgzSs="),
        ];
        for (origin, expected) in cases {
            let url = format!("{origin}{PATH}");
            assert_eq!(compute(TOKEN, &url, &params()), expected, "{url}");
            assert!(verify(TOKEN, &url, &params(), expected), "{url}");
        }
    }

    #[test]
    fn ports_are_removed_or_defaulted() {
        let plain = format!("https://mycompany.com{PATH}");
        assert!(verify(
            TOKEN,
            &plain,
            &params(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        let custom = format!("https://mycompany.com:1234{PATH}");
        assert!(verify(
            TOKEN,
            &custom,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let creds = format!("https://user:pass@mycompany.com{PATH}");
        assert!(verify(
            TOKEN,
            &creds,
            &params(),
            "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="
        ));
        assert_eq!(
            port_variants("http://[::1]:4010/x"),
            ["http://[::1]:4010/x", "http://[::1]/x"]
        );
        assert_eq!(
            port_variants("http://[::1]/x"),
            ["http://[::1]/x", "http://[::1]:80/x"]
        );
    }

    #[test]
    fn values_are_deduplicated_and_names_sorted_by_key() {
        let url = format!("https://mycompany.com{PATH}");
        let repeated = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            compute(TOKEN, &url, &repeated),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
        let mut reason = params();
        reason.extend(pairs(&[
            ("ReasonConferenceEnded", "test"),
            ("Reason", "Participant"),
        ]));
        assert_eq!(
            compute(TOKEN, &url, &reason),
            "vOEb5UThFn24KEfnOFLQY2AE5FY="
        );
        assert!(!verify(
            TOKEN,
            &url,
            &reason,
            "95+Bu0JVPi0r/SsESZCVf0dWAjw="
        ));
        let http = format!("http://mycompany.com:1234{PATH}");
        assert!(verify(
            TOKEN,
            &http,
            &reason,
            "n2xBNyzSW7rfYStDtOFiFMv7qNo="
        ));
    }

    #[test]
    fn tampering_fails() {
        let url = format!("https://mycompany.com{PATH}");
        let signature = compute(TOKEN, &url, &params());
        assert!(!verify(
            TOKEN,
            &format!("https://MyCompany.com{PATH}"),
            &params(),
            &signature
        ));
        assert!(!verify("54321", &url, &params(), &signature));
        assert!(!verify(TOKEN, &url, &params()[1..], &signature));
        assert!(!verify(TOKEN, &url, &params(), ""));
    }
}
