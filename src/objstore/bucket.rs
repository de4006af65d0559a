//! One bucket (and prefix) as the output, through the `object_store` crate:
//! built from each cloud's standard environment, and driven from plain
//! threads (the sink's, start-up's) on a small runtime of its own.

use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};

use super::{Cloud, RemoteError, RemoteUrl, check_endpoint};

/// Files above this size are uploaded in parts. A single `PUT` holds the
/// whole file in memory and resends all of it when retried; parts keep the
/// upload to one part in memory (within the 64 MiB RSS budget) and retry
/// one part at a time. 8 MiB is above the 5 MiB minimum part size of S3,
/// GCS's XML API and R2, and a file at the sink's 1 GiB rotation size takes
/// 128 parts, far below the 10,000 allowed.
pub const MULTIPART_BYTES: u64 = 8 << 20;
/// The size of every part but the last (R2 wants them equal).
pub const PART_BYTES: usize = 8 << 20;

/// What both halves of the `object_store` API offer: objects, and multipart
/// uploads by their ID (so that an upload can be recorded and aborted later).
trait Bucket: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Bucket for T {}

/// Whether an object is under a name, and whether it is the one expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Absent,
    /// Its size and SHA-256 are those expected.
    Whole,
    /// Something else is there.
    Different,
}

/// A connected remote output.
pub struct Remote {
    url: RemoteUrl,
    store: Arc<dyn Bucket>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Dropped from async code too (a daemon's session): never block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Remote {
    /// Builds the store for `url` from the cloud's environment (`AWS_*`,
    /// `GOOGLE_*` and application default credentials, `AZURE_*`). A plain
    /// `http://` endpoint is refused unless it is loopback.
    pub fn connect(url: &RemoteUrl) -> Result<Remote, RemoteError> {
        let setup = |message: String| RemoteError::Setup {
            url: url.to_string(),
            message,
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = build_store(url).map_err(setup)?;
        Remote::with_store(url.clone(), store).map_err(|e| setup(e.to_string()))
    }

    /// A remote output over an in-memory store, for tests.
    pub fn in_memory(url: RemoteUrl) -> Remote {
        // Starting a one-thread runtime fails only if the OS refuses a thread.
        Remote::with_store(url, Arc::new(super::InMemory::new())).expect("a runtime thread")
    }

    fn with_store(url: RemoteUrl, store: Arc<dyn Bucket>) -> std::io::Result<Remote> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("genledger-objstore")
            .enable_all()
            .build()?;
        Ok(Remote {
            url,
            store,
            runtime: Some(runtime),
        })
    }

    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    /// Runs `work` on the store's runtime and waits for it, from any thread
    /// (also one inside another runtime, where `block_on` would panic).
    fn block<T: Send + 'static>(
        &self,
        relative: &str,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, RemoteError> {
        let stopped = || RemoteError::Stopped {
            url: self.url.object_url(relative),
        };
        let runtime = self.runtime.as_ref().ok_or_else(stopped)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv().map_err(|_| stopped())
    }

    fn key(&self, relative: &str) -> Key {
        Key::from(self.url.key(relative))
    }

    fn failed(
        &self,
        action: &'static str,
        relative: &str,
        source: object_store::Error,
    ) -> RemoteError {
        RemoteError::Store {
            action,
            url: self.url.object_url(relative),
            source,
        }
    }

    /// Uploads the local file `local` whole to `relative` in one request;
    /// `create_only` refuses to replace an object already there.
    pub fn put_file(
        &self,
        relative: &str,
        local: &Path,
        create_only: bool,
    ) -> Result<(), RemoteError> {
        let data = std::fs::read(local).map_err(|source| RemoteError::Read {
            path: local.to_owned(),
            source,
        })?;
        self.put_bytes(relative, Bytes::from(data), create_only)
    }

    /// Writes `data` to `relative` in one request (see [`Remote::put_file`]).
    pub fn put_bytes(
        &self,
        relative: &str,
        data: Bytes,
        create_only: bool,
    ) -> Result<(), RemoteError> {
        let (store, key) = (self.store.clone(), self.key(relative));
        let mode = if create_only {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let put = self.block(relative, async move {
            store.put_opts(&key, PutPayload::from(data), options).await
        })?;
        match put {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(RemoteError::AlreadyExists {
                url: self.url.object_url(relative),
            }),
            Err(e) => Err(self.failed("upload", relative, e)),
        }
    }

    /// Starts a multipart upload to `relative` and returns its ID, to be
    /// recorded before any part is sent.
    pub fn start_upload(&self, relative: &str) -> Result<String, RemoteError> {
        let (store, key) = (self.store.clone(), self.key(relative));
        self.block(relative, async move { store.create_multipart(&key).await })?
            .map_err(|e| self.failed("start a multipart upload of", relative, e))
    }

    /// Sends `local` as the parts of upload `id` and completes it: only then
    /// does the object appear, whole, under its name.
    pub fn finish_upload(&self, relative: &str, id: &str, local: &Path) -> Result<(), RemoteError> {
        let read_failed = |source| RemoteError::Read {
            path: local.to_owned(),
            source,
        };
        let mut file = File::open(local).map_err(read_failed)?;
        let mut parts: Vec<PartId> = Vec::new();
        loop {
            let mut buf = Vec::with_capacity(PART_BYTES);
            (&mut file)
                .take(PART_BYTES as u64)
                .read_to_end(&mut buf)
                .map_err(read_failed)?;
            if buf.is_empty() && !parts.is_empty() {
                break;
            }
            let last = buf.len() < PART_BYTES;
            let (store, key, id_owned, idx) = (
                self.store.clone(),
                self.key(relative),
                id.to_owned(),
                parts.len(),
            );
            let part = self.block(relative, async move {
                store
                    .put_part(&key, &id_owned, idx, PutPayload::from(buf))
                    .await
            })?;
            parts.push(part.map_err(|e| self.failed("upload a part of", relative, e))?);
            if last {
                break;
            }
        }
        let (store, key, id_owned) = (self.store.clone(), self.key(relative), id.to_owned());
        self.block(relative, async move {
            store.complete_multipart(&key, &id_owned, parts).await
        })?
        .map(|_| ())
        .map_err(|e| self.failed("complete the multipart upload of", relative, e))
    }

    /// Aborts upload `id`; one that is gone already (completed, aborted) is
    /// no error.
    pub fn abort_upload(&self, relative: &str, id: &str) -> Result<(), RemoteError> {
        let (store, key, id) = (self.store.clone(), self.key(relative), id.to_owned());
        match self.block(
            relative,
            async move { store.abort_multipart(&key, &id).await },
        )? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) if gone_upload(&e) => Ok(()),
            Err(e) => Err(self.failed("abort the multipart upload of", relative, e)),
        }
    }

    /// Whether the object at `relative` is there with exactly `bytes` bytes
    /// whose SHA-256 is `sha256`; it is read back to tell.
    pub fn presence(
        &self,
        relative: &str,
        bytes: Option<i64>,
        sha256: Option<&str>,
    ) -> Result<Presence, RemoteError> {
        let data = match self.read(relative)? {
            None => return Ok(Presence::Absent),
            Some(data) => data,
        };
        let whole = bytes == Some(data.len() as i64)
            && sha256 == Some(hex::encode(Sha256::digest(&data)).as_str());
        Ok(if whole {
            Presence::Whole
        } else {
            Presence::Different
        })
    }

    /// The object at `relative`, or `None` when there is none.
    pub fn read(&self, relative: &str) -> Result<Option<Bytes>, RemoteError> {
        let (store, key) = (self.store.clone(), self.key(relative));
        let got = self.block(relative, async move {
            match store.get(&key).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        got.map_err(|e| self.failed("read", relative, e))
    }

    /// Removes the object at `relative`, if any.
    pub fn delete(&self, relative: &str) -> Result<(), RemoteError> {
        let (store, key) = (self.store.clone(), self.key(relative));
        match self.block(relative, async move { store.delete(&key).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("delete", relative, e)),
        }
    }

    /// The objects under `relative` (a folder), as paths relative to the
    /// output's prefix.
    pub fn list(&self, relative: &str) -> Result<Vec<String>, RemoteError> {
        let (store, key) = (self.store.clone(), self.key(relative));
        let listed = self.block(relative, async move {
            let mut names = Vec::new();
            let mut stream = store.list(Some(&key));
            while let Some(meta) = stream.next().await {
                names.push(meta?.location.to_string());
            }
            Ok::<_, object_store::Error>(names)
        })?;
        let names = listed.map_err(|e| self.failed("list", relative, e))?;
        let prefix = match self.url.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.url.prefix),
        };
        Ok(names
            .into_iter()
            .filter_map(|n| n.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }
}

/// S3 answers `NoSuchUpload` (404) for an upload completed or aborted; some
/// stores say it in a generic error.
fn gone_upload(error: &object_store::Error) -> bool {
    let text = format!("{error:?}");
    text.contains("NoSuchUpload") || text.contains("404")
}

/// The store for `url`, from the environment, with a plain-http endpoint
/// allowed only to loopback.
fn build_store(url: &RemoteUrl) -> Result<Arc<dyn Bucket>, String> {
    let root = format!("{}://{}", url.cloud.scheme(), url.bucket);
    let built: Result<Arc<dyn Bucket>, object_store::Error> = match url.cloud {
        Cloud::S3 => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let mut builder = AmazonS3Builder::from_env().with_url(&root);
            if let Some(endpoint) = builder.get_config_value(&AmazonS3ConfigKey::Endpoint) {
                let loopback_http = check_endpoint("AWS_ENDPOINT", &endpoint)?;
                builder = builder.with_allow_http(loopback_http);
            }
            builder.build().map(|s| Arc::new(s) as _)
        }
        Cloud::Gcs => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let builder = GoogleCloudStorageBuilder::from_env().with_url(&root);
            if let Some(base) = builder.get_config_value(&GoogleConfigKey::BaseUrl) {
                check_endpoint("GOOGLE_BASE_URL", &base)?;
            }
            builder.build().map(|s| Arc::new(s) as _)
        }
        Cloud::Azure => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(&root);
            if let Some(endpoint) = builder.get_config_value(&AzureConfigKey::Endpoint) {
                let loopback_http = check_endpoint("AZURE_STORAGE_ENDPOINT", &endpoint)?;
                builder = builder.with_allow_http(loopback_http);
            }
            builder.build().map(|s| Arc::new(s) as _)
        }
    };
    built.map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> Remote {
        Remote::in_memory(RemoteUrl {
            cloud: Cloud::S3,
            bucket: "b".into(),
            prefix: "p/q".into(),
        })
    }

    #[test]
    fn a_create_only_put_is_refused_the_second_time() {
        let r = remote();
        r.put_bytes("_manifests/a.json", Bytes::from_static(b"1"), true)
            .unwrap();
        let again = r.put_bytes("_manifests/a.json", Bytes::from_static(b"2"), true);
        assert!(
            matches!(again, Err(RemoteError::AlreadyExists { .. })),
            "{again:?}"
        );
        assert_eq!(
            r.read("_manifests/a.json").unwrap().unwrap(),
            Bytes::from_static(b"1")
        );
        assert_eq!(
            r.list("_manifests").unwrap(),
            vec!["_manifests/a.json".to_owned()]
        );
    }

    #[test]
    fn a_multipart_upload_appears_only_when_completed_and_can_be_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("f");
        let data: Vec<u8> = (0..PART_BYTES * 2 + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(&local, &data).unwrap();
        let r = remote();
        let id = r.start_upload("t/f").unwrap();
        assert_eq!(r.presence("t/f", None, None).unwrap(), Presence::Absent);
        r.finish_upload("t/f", &id, &local).unwrap();
        let sha = hex::encode(Sha256::digest(&data));
        let size = Some(data.len() as i64);
        assert_eq!(
            r.presence("t/f", size, Some(&sha)).unwrap(),
            Presence::Whole
        );
        assert_eq!(
            r.presence("t/f", Some(1), Some(&sha)).unwrap(),
            Presence::Different
        );
        let other = r.start_upload("t/g").unwrap();
        r.abort_upload("t/g", &other).unwrap();
        r.delete("t/f").unwrap();
        r.delete("t/f").unwrap();
        assert!(r.list("").unwrap().is_empty());
    }
}
