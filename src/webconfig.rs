//! `--web.config.file`: TLS, basic authentication and response headers, in the format of
//! Prometheus's exporter-toolkit, so that the same file serves every exporter of a fleet.
//!
//! TLS is rustls. Passwords are bcrypt hashes; a successful check is remembered (keyed by a
//! keyed hash of the credentials, never the password) so that a scraper presenting the same
//! credentials every 15 seconds does not pay bcrypt's deliberate slowness every time.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper::header::{HeaderName, HeaderValue};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::yaml;

/// Everything that can be wrong with a web configuration file.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read the web configuration file: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid { path: String, line: u64, column: u64, message: String },
    #[error("{path}: {message}")]
    Setting { path: String, message: String },
}

/// The headers exporter-toolkit lets a web configuration set.
const ALLOWED_HEADERS: [&str; 5] =
    ["Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "X-XSS-Protection", "Content-Security-Policy"];
/// Successful credential checks remembered; beyond this the oldest half is forgotten.
const REMEMBERED_LOGINS: usize = 256;
/// bcrypt checks running at once: each takes tens of milliseconds of a core by design, so a flood
/// of bad passwords waits here rather than taking every core.
const CONCURRENT_CHECKS: usize = 2;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    http2: Option<bool>,
}

/// A validated web configuration.
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    users: BTreeMap<String, String>,
    logins: Mutex<HashSet<u64>>,
    hasher: RandomState,
    checks: Semaphore,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            tls: None,
            headers: Vec::new(),
            users: BTreeMap::new(),
            logins: Mutex::default(),
            hasher: RandomState::new(),
            checks: Semaphore::new(CONCURRENT_CHECKS),
        }
    }
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&String> = self.users.keys().collect();
        f.debug_struct("WebConfig").field("tls", &self.tls.is_some()).field("users", &users).finish()
    }
}

/// The outcome of checking a request's credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    Denied,
}

impl WebConfig {
    /// Reads and validates `path`; files it names are relative to its directory.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read { path: name.clone(), source })?;
        let raw: RawWebConfig = match serde_saphyr::from_str::<Option<RawWebConfig>>(&text) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(WebConfig::default()),
            Err(err) => {
                let (line, column, message) = yaml::yaml_error(&err);
                return Err(WebConfigError::Invalid { path: name, line, column, message });
            }
        };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let tls_error = |message: String| WebConfigError::Setting { path: name.clone(), message };
        let tls = raw.tls_server_config.map(|tls| tls_config(&tls, &dir).map(Arc::new)).transpose().map_err(tls_error)?;
        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            if http.http2 == Some(true) {
                tracing::warn!("http_server_config.http2 is ignored: the exporter serves HTTP/1.1");
            }
            for (header, value) in http.headers {
                let Some(allowed) = ALLOWED_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&header)) else {
                    return Err(WebConfigError::Setting {
                        path: name,
                        message: format!(
                            "http_server_config.headers: {header:?} cannot be set; allowed: {}",
                            ALLOWED_HEADERS.join(", ")
                        ),
                    });
                };
                let value = HeaderValue::from_str(&value).map_err(|_| WebConfigError::Setting {
                    path: name.clone(),
                    message: format!("http_server_config.headers: the value of {header} is not a valid header value"),
                })?;
                headers.push((HeaderName::from_static(static_lowercase(allowed)), value));
            }
        }
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(WebConfigError::Setting {
                    path: name,
                    message: format!("basic_auth_users: the password of {user:?} is not a bcrypt hash"),
                });
            }
        }
        Ok(WebConfig { tls, headers, users, ..WebConfig::default() })
    }

    /// Checks the `Authorization` header of a request against `basic_auth_users`.
    pub async fn check(&self, authorization: Option<&str>) -> Access {
        if self.users.is_empty() {
            return Access::Allowed;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Access::Denied;
        };
        let key = self.hasher.hash_one((&user, &password));
        if self.logins.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            return Access::Allowed;
        }
        // An unknown user is checked against a hash too, so that timing does not tell which
        // users exist.
        const UNKNOWN: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
        let hash = self.users.get(&user).cloned();
        let Ok(_permit) = self.checks.acquire().await else { return Access::Denied };
        let candidate = hash.clone().unwrap_or_else(|| UNKNOWN.to_string());
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password.as_bytes(), &candidate).unwrap_or(false))
            .await
            .unwrap_or(false);
        if matches && hash.is_some() {
            let mut logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
            if logins.len() >= REMEMBERED_LOGINS {
                logins.clear();
            }
            logins.insert(key);
            Access::Allowed
        } else {
            Access::Denied
        }
    }
}

fn static_lowercase(header: &str) -> &'static str {
    match header {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

/// `Basic base64(user:password)`.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes().take_while(|b| *b != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

fn tls_config(raw: &RawTls, dir: &Path) -> Result<ServerConfig, String> {
    let file = |name: &str| -> PathBuf {
        let path = Path::new(name);
        if path.is_absolute() { path.to_path_buf() } else { dir.join(path) }
    };
    let cert_path = file(&raw.cert_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|err| format!("tls_server_config.cert_file {}: {err}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_server_config.cert_file {}: no certificate in the file", cert_path.display()));
    }
    let key_path = file(&raw.key_file);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|err| format!("tls_server_config.key_file {}: {err}", key_path.display()))?;
    let version = |name: &str, value: &Option<String>| match value.as_deref() {
        None => Ok(None),
        Some("TLS12") => Ok(Some(&rustls::version::TLS12)),
        Some("TLS13") => Ok(Some(&rustls::version::TLS13)),
        Some(other) => Err(format!("tls_server_config.{name} {other:?}: TLS12 or TLS13 (older versions are not offered)")),
    };
    let min = version("min_version", &raw.min_version)?;
    let max = version("max_version", &raw.max_version)?;
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = vec![&rustls::version::TLS12, &rustls::version::TLS13];
    if min == Some(&rustls::version::TLS13) {
        versions.retain(|v| v.version == rustls::ProtocolVersion::TLSv1_3);
    }
    if max == Some(&rustls::version::TLS12) {
        versions.retain(|v| v.version == rustls::ProtocolVersion::TLSv1_2);
    }
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions).map_err(|err| err.to_string())?;
    let auth = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let ca = raw
                .client_ca_file
                .as_deref()
                .ok_or_else(|| format!("tls_server_config.client_auth_type {auth} needs client_ca_file"))?;
            let ca_path = file(ca);
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&ca_path)
                .map_err(|err| format!("tls_server_config.client_ca_file {}: {err}", ca_path.display()))?
            {
                let cert = cert.map_err(|err| format!("tls_server_config.client_ca_file {}: {err}", ca_path.display()))?;
                roots.add(cert).map_err(|err| format!("tls_server_config.client_ca_file {}: {err}", ca_path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == "VerifyClientCertIfGiven" { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|err| format!("tls_server_config.client_ca_file: {err}"))?)
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type {other:?}: NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ));
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| format!("tls_server_config: {err}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_credentials() {
        assert_eq!(parse_basic("Basic dXNlcjpwYXNz"), Some(("user".into(), "pass".into())));
        assert_eq!(parse_basic("basic YTpiOmM="), Some(("a".into(), "b:c".into())));
        assert_eq!(parse_basic("Bearer dXNlcjpwYXNz"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
