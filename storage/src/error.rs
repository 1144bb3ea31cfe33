//! Storage errors: a small [`StorageErrorKind`] that callers branch on, a human context, and the
//! underlying error as source (the Quickwit shape).

use std::error::Error as StdError;
use std::fmt;

/// Boxed source error carried by a [`StorageError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong, coarse enough for callers to decide what to do (retry, report, give up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum StorageErrorKind {
    /// The object (or segment) does not exist.
    #[error("not found")]
    NotFound,
    /// A create-only write found an object already at the path.
    #[error("already exists")]
    AlreadyExists,
    /// A conditional request's precondition (e.g. an ETag match) failed.
    #[error("precondition failed")]
    Precondition,
    /// Missing or invalid credentials, or access denied.
    #[error("unauthorized")]
    Unauthorized,
    /// The store did not answer in time.
    #[error("timeout")]
    Timeout,
    /// The store is unreachable or refused the request for now.
    #[error("unavailable")]
    Unavailable,
    /// An object exists but its content is not what it should be (bad Lance file, wrong size or
    /// row count).
    #[error("corrupt")]
    Corrupt,
    /// A storage URL could not be parsed or names an unsupported scheme.
    #[error("invalid storage url")]
    InvalidUrl,
    /// The caller passed data or a path that cannot be stored (bad path, mixed schemas, ...).
    #[error("invalid data")]
    InvalidData,
    /// Any other I/O failure.
    #[error("io error")]
    Io,
}

impl StorageErrorKind {
    /// Builds an error of this kind with a context message.
    pub fn with_context(self, context: impl Into<String>) -> StorageError {
        StorageError::new(self, context)
    }
}

/// An error from the storage layer: a [`StorageErrorKind`], what was being done, and the cause.
///
/// Displays as `kind: context: source`, leaving out empty parts, e.g.
/// `not found: read segment collections/docs/shard-0/….lance: Object at location … not found`.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(*.kind, .context, .source.as_deref()))]
pub struct StorageError {
    /// The kind callers branch on.
    pub kind: StorageErrorKind,
    /// What was being done, outermost first (see [`StorageError::add_context`]).
    pub context: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<BoxError>,
}

fn render(kind: StorageErrorKind, context: &str, source: Option<&(dyn StdError + Send + Sync)>) -> String {
    let mut out = kind.to_string();
    if !context.is_empty() {
        out.push_str(": ");
        out.push_str(context);
    }
    if let Some(source) = source {
        out.push_str(": ");
        out.push_str(&source.to_string());
    }
    out
}

impl StorageError {
    /// An error of `kind` with a context message and no source.
    pub fn new(kind: StorageErrorKind, context: impl Into<String>) -> Self {
        StorageError { kind, context: context.into(), source: None }
    }

    /// Sets the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Prepends what the caller was doing to the context: `ctx: previous context`.
    pub fn add_context(mut self, ctx: impl fmt::Display) -> Self {
        self.context = if self.context.is_empty() { ctx.to_string() } else { format!("{ctx}: {}", self.context) };
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }
}

/// Finds a timeout anywhere in an error's source chain (HTTP clients report them as I/O errors).
fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        current = e.source();
    }
    false
}

impl From<object_store::Error> for StorageError {
    fn from(err: object_store::Error) -> Self {
        use object_store::Error as E;
        let kind = match &err {
            E::NotFound { .. } => StorageErrorKind::NotFound,
            E::AlreadyExists { .. } => StorageErrorKind::AlreadyExists,
            E::Precondition { .. } | E::NotModified { .. } => StorageErrorKind::Precondition,
            E::Unauthenticated { .. } | E::PermissionDenied { .. } => StorageErrorKind::Unauthorized,
            E::InvalidPath { .. } => StorageErrorKind::InvalidData,
            E::UnknownConfigurationKey { .. } => StorageErrorKind::InvalidUrl,
            other if is_timeout(other) => StorageErrorKind::Timeout,
            _ => StorageErrorKind::Io,
        };
        StorageError { kind, context: String::new(), source: Some(Box::new(err)) }
    }
}

impl From<std::io::Error> for StorageError {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::NotFound => StorageErrorKind::NotFound,
            K::AlreadyExists => StorageErrorKind::AlreadyExists,
            K::PermissionDenied => StorageErrorKind::Unauthorized,
            K::TimedOut => StorageErrorKind::Timeout,
            K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted | K::NotConnected => StorageErrorKind::Unavailable,
            K::InvalidData | K::UnexpectedEof => StorageErrorKind::Corrupt,
            _ => StorageErrorKind::Io,
        };
        StorageError { kind, context: String::new(), source: Some(Box::new(err)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(msg: &str) -> BoxError {
        msg.to_string().into()
    }

    #[test]
    fn object_store_errors_keep_their_kind() {
        let cases = [
            (object_store::Error::NotFound { path: "a".into(), source: boxed("x") }, StorageErrorKind::NotFound),
            (object_store::Error::AlreadyExists { path: "a".into(), source: boxed("x") }, StorageErrorKind::AlreadyExists),
            (object_store::Error::Precondition { path: "a".into(), source: boxed("x") }, StorageErrorKind::Precondition),
            (object_store::Error::Unauthenticated { path: "a".into(), source: boxed("x") }, StorageErrorKind::Unauthorized),
            (object_store::Error::PermissionDenied { path: "a".into(), source: boxed("x") }, StorageErrorKind::Unauthorized),
            (object_store::Error::Generic { store: "S3", source: boxed("boom") }, StorageErrorKind::Io),
            (
                object_store::Error::Generic { store: "S3", source: Box::new(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow")) },
                StorageErrorKind::Timeout,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(StorageError::from(err).kind(), kind);
        }
    }

    #[test]
    fn display_has_kind_context_and_source() {
        let err = StorageError::from(object_store::Error::NotFound { path: "p/x".into(), source: boxed("gone") })
            .add_context("read segment p/x")
            .add_context("load shard 3");
        let shown = err.to_string();
        assert!(shown.starts_with("not found: load shard 3: read segment p/x: "), "{shown}");
        assert!(shown.contains("gone"), "{shown}");
        assert!(StdError::source(&err).is_some());
    }

    #[test]
    fn display_without_context_or_source() {
        assert_eq!(StorageError::new(StorageErrorKind::Corrupt, "").to_string(), "corrupt");
        assert_eq!(StorageErrorKind::InvalidUrl.with_context("bad").to_string(), "invalid storage url: bad");
    }
}
