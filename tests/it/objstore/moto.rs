//! An S3-compatible server for the tests: moto in server mode, started on a
//! free loopback port, one per test, stopped when dropped. The binary is
//! `$MOTO_SERVER` (`.ci/run` installs moto into a virtual
//! environment and sets it), else `moto_server` on the `PATH`. The bucket is
//! read back here with plain (unsigned) requests, which moto accepts.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

pub const BUCKET: &str = "usage";

pub struct Moto {
    child: Child,
    pub endpoint: String,
    http: reqwest::Client,
    /// Signed requests, for what moto does not answer unsigned (objects).
    store: AmazonS3,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto and creates [`BUCKET`].
    pub async fn start() -> Moto {
        genledger::client::install_crypto();
        let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Everything that can fail before the server runs comes first, so a
        // panic cannot leave it running unowned.
        let endpoint = format!("http://127.0.0.1:{port}");
        let store = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_bucket_name(BUCKET)
            .build()
            .unwrap();
        let http = reqwest::Client::new();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the S3 test server `{binary}` ({e}): install it with \
                     `python3 -m venv V && V/bin/pip install 'moto[server]>=5.2.5'` \
                     and set MOTO_SERVER=V/bin/moto_server"
                )
            });
        let moto = Moto {
            child,
            endpoint,
            http,
            store,
        };
        let started = Instant::now();
        loop {
            match moto.http.put(moto.url("")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if started.elapsed() > Duration::from_secs(60) => {
                    panic!("the S3 test server did not start on port {port}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        moto
    }

    /// `http://…/BUCKET/key`.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{BUCKET}/{key}", self.endpoint)
    }

    /// The environment that points genledger at this server.
    pub fn env(&self, cmd: &mut Command) {
        for (name, _) in std::env::vars() {
            if name.starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &self.endpoint);
    }

    /// Every key under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{BUCKET}?list-type=2&prefix={prefix}", self.endpoint);
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", urlencode(t)));
            }
            let body = self.get_text(url).await;
            keys.extend(tags(&body, "Key"));
            token = tags(&body, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                return keys;
            }
        }
    }

    /// The body of a GET of `url` (moto does not check signatures).
    async fn get_text(&self, url: String) -> String {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The multipart uploads not completed nor aborted, as (key, upload ID).
    pub async fn uploads(&self) -> Vec<(String, String)> {
        let url = format!("{}/{BUCKET}?uploads", self.endpoint);
        let body = self.get_text(url).await;
        tags(&body, "Upload")
            .iter()
            .map(|u| (tags(u, "Key")[0].clone(), tags(u, "UploadId")[0].clone()))
            .collect()
    }

    /// The parts uploaded so far to upload `id` of `key`.
    pub async fn parts(&self, key: &str, id: &str) -> usize {
        let url = format!("{}?uploadId={}", self.url(key), urlencode(id));
        let body = self.get_text(url).await;
        tags(&body, "Part").len()
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(got) => Some(got.bytes().await.unwrap()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("GET {key}: {e}"),
        }
    }

    /// A create-only put (`If-None-Match: *`), as genledger puts a manifest.
    pub async fn put_if_absent(&self, key: &str, body: &'static [u8]) -> object_store::Result<()> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from_static(body);
        self.store
            .put_opts(&ObjectPath::from(key), payload, options)
            .await
            .map(|_| ())
    }
}

/// The text of each `<tag>…</tag>` in `xml`, unescaped for `&amp;`.
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(after[..end].replace("&amp;", "&"));
        rest = &after[end + close.len()..];
    }
    found
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
