//! Object storage as the output: what `output.dir` names (a local
//! directory, `file://`, `s3://`, `gs://` or `az://`), the store built from
//! each cloud's standard environment ([`bucket`]), and the primitives the
//! commit protocol without rename needs. It knows nothing of the ledger: the
//! protocol that records each step lives in `ledger::commit`, as it does for
//! `atomic_file`'s local primitives.

mod bucket;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

pub use bucket::{MULTIPART_BYTES, PART_BYTES, Presence, Remote};
pub use object_store::memory::InMemory;

/// Which cloud a remote output is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    S3,
    Gcs,
    Azure,
}

impl Cloud {
    /// The URL scheme genledger prints for it.
    pub fn scheme(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gs",
            Cloud::Azure => "az",
        }
    }
}

/// A bucket (or container) and a prefix in it: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub cloud: Cloud,
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

impl RemoteUrl {
    /// The URL of an object at `relative` (`/`-separated) under the prefix.
    pub fn object_url(&self, relative: &str) -> String {
        let key = self.key(relative);
        format!("{}://{}/{key}", self.cloud.scheme(), self.bucket)
    }

    /// The object key of `relative` under the prefix.
    pub fn key(&self, relative: &str) -> String {
        let relative = relative.trim_start_matches('/');
        match (self.prefix.is_empty(), relative.is_empty()) {
            (true, _) => relative.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{relative}", self.prefix),
        }
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.cloud.scheme(), self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Where `output.dir` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(RemoteUrl),
}

/// Reads `output.dir`: a plain path, `file://` (a local path), or a bucket
/// URL. Any other `scheme://` is an error: taken as a path it would make a
/// local directory named `s3:` or `hdfs:`, which nobody means.
pub fn parse_location(text: &str) -> Result<Location, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Ok(Location::Local(PathBuf::from(text)));
    };
    let is_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Ok(Location::Local(PathBuf::from(text)));
    }
    let cloud = match scheme.to_ascii_lowercase().as_str() {
        "file" => return file_url(text),
        "s3" | "s3a" => Cloud::S3,
        "gs" => Cloud::Gcs,
        "az" | "azure" | "abfs" | "abfss" => Cloud::Azure,
        other => {
            return Err(format!(
                "`{text}` has the scheme `{other}`, which genledger cannot write to; \
                 give a local directory, `file://`, `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` or `az://CONTAINER/PREFIX`"
            ));
        }
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "`{text}` names no bucket; write it as `{scheme}://BUCKET/PREFIX`"
        ));
    }
    if bucket.contains(['@', '?', '#']) || prefix.contains(['?', '#']) {
        return Err(format!(
            "`{text}` is not a plain `{scheme}://BUCKET/PREFIX`; credentials and options come from the environment"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
        && !prefix.is_empty()
    {
        return Err(format!(
            "`{text}` has an empty, `.` or `..` segment in its prefix"
        ));
    }
    Ok(Location::Remote(RemoteUrl {
        cloud,
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    }))
}

fn file_url(text: &str) -> Result<Location, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    if url
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(format!(
            "`{text}` names the host `{}`; a `file://` output is on this machine: `file:///PATH`",
            url.host_str().unwrap_or_default()
        ));
    }
    url.to_file_path()
        .map(Location::Local)
        .map_err(|()| format!("`{text}` is not a local path"))
}

/// Why an endpoint URL cannot be used: plain `http://` goes only to
/// loopback (as for the API), since it carries credentials and data in the
/// clear. `Ok(true)`: plain http to loopback, to be allowed explicitly.
pub fn check_endpoint(name: &str, endpoint: &str) -> Result<bool, String> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| format!("`{name}` = `{endpoint}` is not a valid URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(false),
        "http" if is_loopback(&url) => Ok(true),
        "http" => Err(format!(
            "`{name}` = `{endpoint}` is plain http to a host that is not loopback; use https \
             (plain http is allowed only to 127.0.0.1, ::1 or localhost)"
        )),
        other => Err(format!(
            "`{name}` = `{endpoint}` has the scheme `{other}`; use https"
        )),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// A failed operation on the remote output, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("failed to {action} `{url}`")]
    Store {
        action: &'static str,
        url: String,
        source: object_store::Error,
    },
    #[error("`{url}` already exists; it is written once and never replaced")]
    AlreadyExists { url: String },
    #[error("failed to read `{}` to upload it", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use `{url}`: {message}")]
    Setup { url: String, message: String },
    #[error("the object storage client stopped while working on `{url}`")]
    Stopped { url: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(text: &str) -> RemoteUrl {
        match parse_location(text).unwrap() {
            Location::Remote(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bucket_urls_plain_paths_and_file_urls_are_told_apart() {
        let s3 = remote("s3://bucket/usage/openrouter/");
        assert_eq!((s3.cloud, s3.bucket.as_str()), (Cloud::S3, "bucket"));
        assert_eq!(s3.to_string(), "s3://bucket/usage/openrouter");
        assert_eq!(
            s3.object_url("_manifests/r-0.json"),
            "s3://bucket/usage/openrouter/_manifests/r-0.json"
        );
        assert_eq!(remote("gs://b").key("x/y"), "x/y");
        assert_eq!(remote("az://container/p").cloud, Cloud::Azure);
        assert_eq!(
            parse_location("out/dir").unwrap(),
            Location::Local("out/dir".into())
        );
        assert_eq!(
            parse_location("file:///var/lib/out").unwrap(),
            Location::Local("/var/lib/out".into())
        );
    }

    #[test]
    fn an_unknown_scheme_or_a_bucket_url_without_bucket_is_refused() {
        let err = parse_location("hdfs://namenode/out").unwrap_err();
        assert!(err.contains("scheme `hdfs`"), "{err}");
        assert!(parse_location("http://example.com/out").is_err());
        assert!(
            parse_location("s3:///prefix")
                .unwrap_err()
                .contains("no bucket")
        );
        assert!(parse_location("s3://b/a//c").is_err());
        assert!(parse_location("s3://b/../c").is_err());
        assert!(parse_location("file://otherhost/x").is_err());
    }

    #[test]
    fn plain_http_endpoints_only_to_loopback() {
        assert_eq!(
            check_endpoint("AWS_ENDPOINT", "http://127.0.0.1:9000"),
            Ok(true)
        );
        assert_eq!(
            check_endpoint("AWS_ENDPOINT", "http://localhost:9000"),
            Ok(true)
        );
        assert_eq!(
            check_endpoint("AWS_ENDPOINT", "http://[::1]:9000"),
            Ok(true)
        );
        assert_eq!(
            check_endpoint("AWS_ENDPOINT", "https://minio.lan"),
            Ok(false)
        );
        let refused = check_endpoint("AWS_ENDPOINT", "http://minio.lan:9000").unwrap_err();
        assert!(refused.contains("not loopback"), "{refused}");
    }
}
