//! Who may call what: API keys for clients, a shared secret for cluster members.
//!
//! Every gRPC server of Grape (the public port of `grape dev` and `grape compute`, a meta
//! member's port, the Qdrant gRPC port) checks its [`Keys`] in `crate::net::server`'s layer, and
//! every RPC is classified by its path into the [`Access`] it needs ([`method_access`]):
//!
//! - [`Access::Open`]: health checks, always answered.
//! - [`Access::Read`] / [`Access::Write`]: the public API. When an API key is configured
//!   (`--api-key`, `--read-only-api-key`), a call without one is `UNAUTHENTICATED`, and a write
//!   with the read-only key is `PERMISSION_DENIED`. Without keys the public API is open.
//! - [`Access::Member`]: the internal services (Raft transport, the leaf service, and the
//!   meta methods only nodes use: `Write`, `ReadCatalog`, `Watch`, `Heartbeat`). With
//!   `--cluster-secret` set, only a caller presenting it gets through; without one, the
//!   read-write API key stands in for it; with neither, they are open (a single `grape dev`).
//!
//! A caller presents an API key as Qdrant's clients do (`api-key: KEY` or
//! `authorization: Bearer KEY`) and the cluster secret as `grape-cluster-secret: SECRET`. A
//! cluster member presents the secret, which grants everything. What this process presents
//! on its own outgoing calls is set once with [`present`] and added by the [`Outgoing`]
//! interceptor. Keys are compared in constant time and never appear in messages or logs.

use std::fmt;
use std::sync::OnceLock;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::Status;

/// Header carrying an API key (Qdrant's name).
pub const API_KEY_HEADER: &str = "api-key";
/// Header carrying the cluster secret between members.
pub const CLUSTER_SECRET_HEADER: &str = "grape-cluster-secret";

/// A key or secret: compared in constant time, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from its text; `None` for an empty one (an unset flag or variable).
    pub fn new(text: impl Into<String>) -> Option<Secret> {
        let text = text.into();
        (!text.is_empty()).then_some(Secret(text))
    }

    /// The secret itself, for sending it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time independent of where they differ.
    fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// The read-write API key (`--api-key`).
    pub read_write: Option<Secret>,
    /// The read-only API key (`--read-only-api-key`).
    pub read_only: Option<Secret>,
    /// The cluster members' shared secret (`--cluster-secret`).
    pub cluster_secret: Option<Secret>,
}

/// What an RPC needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health checks.
    Open,
    /// A read of the public API.
    Read,
    /// A change through the public API.
    Write,
    /// Cluster members only.
    Member,
}

/// Who a caller proved to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    ReadOnly,
    ReadWrite,
    Member,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, or a wrong one: `UNAUTHENTICATED` (HTTP 401).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential that does not allow this call: `PERMISSION_DENIED` (HTTP 403).
    #[error("{0}")]
    PermissionDenied(String),
}

impl AuthError {
    /// The gRPC status a client gets.
    pub fn status(&self) -> Status {
        match self {
            AuthError::Unauthenticated(m) => Status::unauthenticated(m.clone()),
            AuthError::PermissionDenied(m) => Status::permission_denied(m.clone()),
        }
    }
}

impl Keys {
    /// Whether any API key is configured (the public API then needs one).
    pub fn api_keys_required(&self) -> bool {
        self.read_write.is_some() || self.read_only.is_some()
    }

    /// Whether this server checks anything at all.
    pub fn is_open(&self) -> bool {
        !self.api_keys_required() && self.cluster_secret.is_none()
    }

    /// Checks that the caller whose request carries `headers` may make a call needing `needed`.
    pub fn check(&self, needed: Access, headers: &http::HeaderMap) -> Result<(), AuthError> {
        if needed == Access::Open || self.is_open() {
            return Ok(());
        }
        let caller = self.caller(headers)?;
        let unauthenticated = |what: &str| {
            Err(AuthError::Unauthenticated(format!(
                "{what}: send it in the `{API_KEY_HEADER}` header or as `authorization: Bearer …`"
            )))
        };
        match needed {
            Access::Open => Ok(()),
            Access::Read | Access::Write if !self.api_keys_required() => Ok(()),
            Access::Read | Access::Write if caller == Caller::Anonymous => unauthenticated("this server needs an API key"),
            Access::Read => Ok(()),
            Access::Write if matches!(caller, Caller::ReadWrite | Caller::Member) => Ok(()),
            Access::Write => Err(AuthError::PermissionDenied("the read-only API key cannot change anything".into())),
            Access::Member => match (&self.cluster_secret, caller) {
                (_, Caller::Member) => Ok(()),
                (None, Caller::ReadWrite) => Ok(()),
                (None, _) if self.read_write.is_none() => Ok(()),
                (_, Caller::Anonymous) => Err(AuthError::Unauthenticated(
                    "this service is for cluster members: send the cluster secret in the `grape-cluster-secret` header".into(),
                )),
                _ => Err(AuthError::PermissionDenied("this service is for cluster members only, not for API clients".into())),
            },
        }
    }

    /// Who presented what in `headers`; a credential that matches nothing is refused here.
    fn caller(&self, headers: &http::HeaderMap) -> Result<Caller, AuthError> {
        if let Some(presented) = header_text(headers, CLUSTER_SECRET_HEADER) {
            return match &self.cluster_secret {
                Some(secret) if secret.matches(presented) => Ok(Caller::Member),
                _ => Err(AuthError::Unauthenticated("invalid cluster secret".into())),
            };
        }
        let Some(key) = presented_api_key(headers) else { return Ok(Caller::Anonymous) };
        if self.read_write.as_ref().is_some_and(|k| k.matches(key)) {
            Ok(Caller::ReadWrite)
        } else if self.read_only.as_ref().is_some_and(|k| k.matches(key)) {
            Ok(Caller::ReadOnly)
        } else if !self.api_keys_required() {
            // A key sent to a server that needs none is ignored, as Qdrant does.
            Ok(Caller::Anonymous)
        } else {
            Err(AuthError::Unauthenticated("invalid API key".into()))
        }
    }
}

/// The API key in `headers`: `api-key`, else a bearer token.
fn presented_api_key(headers: &http::HeaderMap) -> Option<&str> {
    header_text(headers, API_KEY_HEADER).or_else(|| {
        let value = header_text(headers, http::header::AUTHORIZATION.as_str())?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    })
}

fn header_text<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The access a gRPC method needs, from its path (`/package.Service/Method`). Methods of no
/// known service need [`Access::Write`], the strictest a client can have.
pub fn method_access(path: &str) -> Access {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let read_if = |reads: &[&str]| if reads.contains(&method) { Access::Read } else { Access::Write };
    match service {
        "grpc.health.v1.Health" | "qdrant.Qdrant" => Access::Open,
        "grape.raft.v1.RaftService" | "grape.compute.v1.Leaf" => Access::Member,
        "grape.meta.v1.Meta" => match method {
            "Write" | "ReadCatalog" | "Watch" | "Heartbeat" => Access::Member,
            _ => read_if(&["Status", "ConfigGet", "ConfigList", "ConfigHistory"]),
        },
        "grape.v1.Grape" => read_if(&["ListCollections", "DescribeCollection", "Get", "Search", "Sql", "Status", "ListJobs", "GetJob"]),
        "qdrant.Collections" => read_if(&[
            "Get",
            "List",
            "ListCollectionAliases",
            "ListAliases",
            "CollectionClusterInfo",
            "CollectionExists",
            "ListShardKeys",
        ]),
        "qdrant.Points" => match method {
            "Get" | "Scroll" | "Count" | "Facet" => Access::Read,
            m if ["Search", "Recommend", "Discover", "Query"].iter().any(|p| m.starts_with(p)) => Access::Read,
            _ => Access::Write,
        },
        _ => Access::Write,
    }
}

/// What this process presents on its outgoing calls.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// An API key (the CLI's `--api-key`; a server's read-write key, which stands in for the
    /// cluster secret when there is none).
    pub api_key: Option<Secret>,
    /// The cluster secret (members).
    pub cluster_secret: Option<Secret>,
}

static PRESENTED: OnceLock<Credentials> = OnceLock::new();

/// Sets what this process presents on every outgoing call, once at start; later calls are
/// ignored (a process has one identity).
pub fn present(credentials: Credentials) {
    let _ = PRESENTED.set(credentials);
}

/// The headers [`present`] set, as (name, value) pairs.
fn presented_headers() -> impl Iterator<Item = (&'static str, &'static str)> {
    let credentials = PRESENTED.get();
    let key = credentials.and_then(|c| c.api_key.as_ref()).map(|k| (API_KEY_HEADER, k.expose()));
    let secret = credentials.and_then(|c| c.cluster_secret.as_ref()).map(|s| (CLUSTER_SECRET_HEADER, s.expose()));
    key.into_iter().chain(secret)
}

/// Adds this process's credentials to an HTTP request's headers (for a proxied request).
pub fn add_credentials(headers: &mut http::HeaderMap) {
    for (name, value) in presented_headers() {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

/// Adds this process's credentials to gRPC metadata.
pub fn add_credentials_to_metadata(metadata: &mut MetadataMap) {
    for (name, value) in presented_headers() {
        if let Ok(value) = value.parse::<AsciiMetadataValue>() {
            metadata.insert(name, value);
        }
    }
}

/// The interceptor that adds this process's credentials, and the id of the request being
/// served ([`crate::trace`]), to each outgoing call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outgoing;

impl Interceptor for Outgoing {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        add_credentials_to_metadata(request.metadata_mut());
        // The request this call serves, so the callee's log names the same id.
        if let Some(id) = crate::trace::current_request_id().and_then(|id| id.parse::<AsciiMetadataValue>().ok()) {
            request.metadata_mut().insert(crate::trace::REQUEST_ID_HEADER, id);
        }
        Ok(request)
    }
}

/// A channel whose calls carry this process's credentials.
pub type AuthedChannel = tonic::service::interceptor::InterceptedService<Channel, Outgoing>;

/// `channel` with this process's credentials on every call: pass it to a generated client's
/// `new`.
pub fn authed(channel: Channel) -> AuthedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, Outgoing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rw: Option<&str>, ro: Option<&str>, secret: Option<&str>) -> Keys {
        Keys { read_write: rw.and_then(Secret::new), read_only: ro.and_then(Secret::new), cluster_secret: secret.and_then(Secret::new) }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs.iter().map(|(n, v)| (http::HeaderName::from_static(n), http::HeaderValue::from_str(v).expect("value"))).collect()
    }

    #[test]
    fn without_keys_everything_is_open() {
        let open = keys(None, None, None);
        for access in [Access::Open, Access::Read, Access::Write, Access::Member] {
            assert_eq!(open.check(access, &headers(&[])), Ok(()));
            assert_eq!(open.check(access, &headers(&[("api-key", "whatever")])), Ok(()));
        }
    }

    #[test]
    fn api_keys_split_reads_from_writes() {
        let k = keys(Some("rw"), Some("ro"), Some("s"));
        let none = headers(&[]);
        let ro = headers(&[("api-key", "ro")]);
        let rw = headers(&[("authorization", "Bearer rw")]);
        let wrong = headers(&[("api-key", "nope")]);
        assert_eq!(k.check(Access::Open, &none), Ok(()));
        assert!(matches!(k.check(Access::Read, &none), Err(AuthError::Unauthenticated(_))));
        assert!(matches!(k.check(Access::Read, &wrong), Err(AuthError::Unauthenticated(_))));
        assert_eq!(k.check(Access::Read, &ro), Ok(()));
        assert!(matches!(k.check(Access::Write, &ro), Err(AuthError::PermissionDenied(_))));
        assert_eq!(k.check(Access::Write, &rw), Ok(()));
        assert!(matches!(k.check(Access::Member, &rw), Err(AuthError::PermissionDenied(_))));
        assert!(matches!(k.check(Access::Member, &none), Err(AuthError::Unauthenticated(_))));
        let member = headers(&[("grape-cluster-secret", "s")]);
        for access in [Access::Read, Access::Write, Access::Member] {
            assert_eq!(k.check(access, &member), Ok(()));
        }
        assert!(matches!(k.check(Access::Member, &headers(&[("grape-cluster-secret", "x")])), Err(AuthError::Unauthenticated(_))));
    }

    #[test]
    fn without_a_secret_the_read_write_key_admits_members() {
        let k = keys(Some("rw"), None, None);
        assert_eq!(k.check(Access::Member, &headers(&[("api-key", "rw")])), Ok(()));
        assert!(k.check(Access::Member, &headers(&[])).is_err());
        // A secret alone guards the internal services and leaves the public API open.
        let k = keys(None, None, Some("s"));
        assert_eq!(k.check(Access::Write, &headers(&[])), Ok(()));
        assert!(k.check(Access::Member, &headers(&[])).is_err());
    }

    #[test]
    fn methods_are_classified_by_path() {
        assert_eq!(method_access("/grape.v1.Grape/Search"), Access::Read);
        assert_eq!(method_access("/grape.v1.Grape/Insert"), Access::Write);
        assert_eq!(method_access("/grape.meta.v1.Meta/Write"), Access::Member);
        assert_eq!(method_access("/grape.meta.v1.Meta/Status"), Access::Read);
        assert_eq!(method_access("/grape.meta.v1.Meta/DrainNode"), Access::Write);
        assert_eq!(method_access("/grape.compute.v1.Leaf/SearchSegments"), Access::Member);
        assert_eq!(method_access("/grape.raft.v1.RaftService/Vote"), Access::Member);
        assert_eq!(method_access("/qdrant.Points/SearchBatch"), Access::Read);
        assert_eq!(method_access("/qdrant.Points/Upsert"), Access::Write);
        assert_eq!(method_access("/qdrant.Collections/CollectionExists"), Access::Read);
        assert_eq!(method_access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(method_access("/who.Knows/What"), Access::Write);
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2").expect("set");
        assert!(!format!("{secret:?} {:?}", keys(Some("hunter2"), None, None)).contains("hunter2"));
        assert!(Secret::new("").is_none());
    }
}
