//! The network as an operator meets it, all on loopback: a private CA this
//! machine does not trust, a certificate for another name, a proxy that
//! refuses or will not tunnel. What no retry heals stops the run within a few
//! requests (exit 5, one message naming the cause and the fix, IDs pending);
//! once the setup is fixed, the next run exports everything exactly once.
//! TLS is served by a relay in front of the plain simulator, which stays plain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use genledger::ledger::Ledger;
use genledger::simulator::{SimConfig, SimHandle};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::PrivateKeyDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const DAY: Duration = Duration::from_secs(86_400);
const IDS: usize = 200;
/// `--concurrency` of every run here: the most requests a stopped run may send.
const CONCURRENCY: u64 = 4;

/// A test CA and a server certificate it signed for `names`, ready to serve.
struct Pki {
    ca_pem: String,
    server: Arc<ServerConfig>,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "genledger test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    Pki {
        ca_pem,
        server: Arc::new(server),
    }
}

/// A loopback listener that counts the connections it accepts and hands
/// each to `serve`.
async fn listen<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicU64>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (addr, accepted)
}

/// TLS in front of `backend`: the handshake, then bytes relayed both ways.
async fn tls_front(backend: SocketAddr, server: Arc<ServerConfig>) -> (SocketAddr, Arc<AtomicU64>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    listen(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            // A client that does not trust the certificate ends the handshake.
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let Ok(mut plain) = TcpStream::connect(backend).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        }
    })
    .await
}

/// A proxy that answers every request, CONNECT included, with `answer`.
async fn proxy_answering(answer: &'static str) -> (SocketAddr, Arc<AtomicU64>) {
    listen(move |mut stream| async move {
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head).await;
        let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The HTTPS base URL of a TLS front (by address: no name to resolve).
fn https_base(front: SocketAddr) -> String {
    format!("https://{front}/api/v1")
}

/// `genledger export` of `input` to `out` against `base`, with none of this
/// machine's proxy or CA variables leaking in.
fn export_cmd(base: &str, input: &Path, out: &Path) -> Command {
    let mut cmd = genledger();
    for name in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(name);
    }
    cmd.args([
        "export",
        "--no-progress",
        "--summary",
        "json",
        "--rps",
        "5000",
    ])
    .args(["--concurrency", &CONCURRENCY.to_string()])
    .arg("--input")
    .arg(input)
    .arg("--output")
    .arg(out)
    .args(["--base-url", base])
    .env("OPENROUTER_API_KEY", KEY)
    .env("GENLEDGER_FETCH__BACKOFF_INITIAL", "1ms")
    .env("GENLEDGER_FETCH__BACKOFF_MAX", "5ms");
    cmd
}

/// A run's exit code, stderr and JSON summary.
struct Ran {
    code: Option<i32>,
    stderr: String,
    summary: serde_json::Value,
}

async fn ran(cmd: Command) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = run(cmd).await;
    let stderr = text(&stderr);
    let summary = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("a JSON summary ({e}); stderr: {stderr}"));
    Ran {
        code: status.code(),
        stderr,
        summary,
    }
}

impl Ran {
    fn count(&self, name: &str) -> u64 {
        self.summary["counts"][name].as_u64().unwrap()
    }

    /// Exit 5, the one message (cause and fix), nothing exported, a few
    /// requests at most, and each ID that was started left pending as `stopped`.
    fn assert_stopped(&self, out: &Path, message: &[&str]) {
        let stderr = &self.stderr;
        assert_eq!(self.code, Some(5), "{stderr}");
        let line = format!("error: cannot reach the API: {}", message[0]);
        assert!(stderr.contains(&line), "{stderr}");
        for part in &message[1..] {
            assert!(stderr.contains(part), "{part} in {stderr}");
        }
        assert!(stderr.contains("IDs not exported stay pending"), "{stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "one line, no log per request: {stderr}"
        );
        let requests = self.count("requests");
        assert!((1..=CONCURRENCY).contains(&requests), "{requests} requests");
        assert_eq!((self.count("exported"), self.count("failed")), (0, 0));
        let stopped = failure_rows(out);
        assert_eq!(self.count("pending"), IDS as u64, "{}", self.summary);
        assert!(
            stopped.iter().all(|row| &row[2] == "stopped"),
            "{stopped:?}"
        );
        let tried = stopped.iter().filter(|row| &row[4] != "0").count() as u64;
        assert!((1..=CONCURRENCY).contains(&tried), "{tried} IDs tried");
        let counts = ledger(out).status_counts().unwrap();
        assert_eq!(counts, (IDS as u64, 0, 0), "the ledger: all pending");
    }

    /// Exit 0, every ID exported.
    fn assert_exported_all(&self) {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        assert_eq!(self.count("exported"), IDS as u64, "{}", self.summary);
    }
}

fn ledger(out: &Path) -> Ledger {
    Ledger::open(&out.join("_state/genledger.db"), out).unwrap()
}

/// Every ID exported once, and only once, across the runs into `out`.
fn assert_exported_once(out: &Path, ids: &[String]) {
    let mut seen: Vec<String> = parquet_rows(out)
        .into_iter()
        .map(|row| row["id"].clone().unwrap())
        .collect();
    seen.sort();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(
        ledger(out).status_counts().unwrap(),
        (0, ids.len() as u64, 0)
    );
}

/// A simulator, a temporary directory and an input of `IDS` IDs.
async fn setup(tag: &str) -> (SimHandle, tempfile::TempDir, PathBuf, Vec<String>) {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(IDS, DAY, tag);
    let input = write_lines(dir.path(), "ids.txt", &ids);
    (sim, dir, input, ids)
}

#[tokio::test]
async fn untrusted_certificate_stops_at_once_and_ssl_cert_file_heals_the_next_run() {
    let (sim, dir, input, ids) = setup("tls").await;
    let pki = pki(&["localhost", "127.0.0.1"]);
    let (front, handshakes) = tls_front(sim.addr(), pki.server.clone()).await;
    let out = dir.path().join("out");
    let base = https_base(front);

    let stopped = ran(export_cmd(&base, &input, &out)).await;
    stopped.assert_stopped(
        &out,
        &[
            "the TLS certificate of `127.0.0.1` is not trusted: it is signed by a certificate authority (CA) this machine does not trust",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "replaces the system store",
        ],
    );
    assert!(handshakes.load(Ordering::SeqCst) <= CONCURRENCY);
    assert_eq!(sim.stats().requests, 0);

    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let mut trusted = export_cmd(&base, &input, &out);
    trusted.env("SSL_CERT_FILE", &ca);
    let healed = ran(trusted).await;
    healed.assert_exported_all();
    assert_exported_once(&out, &ids);
}

#[tokio::test]
async fn certificate_for_another_name_stops_at_once_naming_the_host() {
    let (sim, dir, input, _) = setup("name").await;
    let pki = pki(&["other.test"]);
    let (front, _) = tls_front(sim.addr(), pki.server.clone()).await;
    let out = dir.path().join("out");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let mut cmd = export_cmd(&https_base(front), &input, &out);
    cmd.env("SSL_CERT_FILE", &ca);
    let stopped = ran(cmd).await;
    stopped.assert_stopped(
        &out,
        &[
            "the TLS certificate of `127.0.0.1` is for another host name (other.test)",
            "api.base_url",
        ],
    );
    assert_eq!(sim.stats().requests, 0);
}

#[tokio::test]
async fn refused_proxy_stops_at_once_and_no_proxy_bypasses_it() {
    let (sim, dir, input, ids) = setup("proxy").await;
    let pki = pki(&["127.0.0.1"]);
    let (front, handshakes) = tls_front(sim.addr(), pki.server.clone()).await;
    let out = dir.path().join("out");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let proxy = format!("127.0.0.1:{}", closed_port().await);
    let via_proxy = || {
        let mut cmd = export_cmd(&https_base(front), &input, &out);
        cmd.env("HTTPS_PROXY", format!("http://user:secret@{proxy}"))
            .env("SSL_CERT_FILE", &ca);
        cmd
    };

    let stopped = ran(via_proxy()).await;
    stopped.assert_stopped(
        &out,
        &[
            &format!("the proxy `{proxy}` (from HTTPS_PROXY) refused the connection"),
            "add `127.0.0.1` to NO_PROXY",
        ],
    );
    assert!(!stopped.stderr.contains("secret"), "{}", stopped.stderr);
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);

    let mut direct = via_proxy();
    direct.env("NO_PROXY", "localhost,127.0.0.1");
    ran(direct).await.assert_exported_all();
    assert_exported_once(&out, &ids);
}

#[tokio::test]
async fn proxy_refusing_the_tunnel_stops_at_once() {
    let (sim, dir, input, _) = setup("connect").await;
    let (proxy, tunnels) =
        proxy_answering("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await;
    let out = dir.path().join("out");
    let mut cmd = export_cmd("https://127.0.0.1:9/api/v1", &input, &out);
    cmd.env("https_proxy", format!("http://{proxy}"));
    let stopped = ran(cmd).await;
    stopped.assert_stopped(
        &out,
        &[&format!(
            "the proxy `{proxy}` (from https_proxy) would not connect to `127.0.0.1`: it refused the tunnel (CONNECT)"
        )],
    );
    let tunnels = tunnels.load(Ordering::SeqCst);
    assert!((1..=CONCURRENCY).contains(&tunnels), "{tunnels} CONNECTs");
    assert_eq!(sim.stats().requests, 0);
}

/// A server that refuses may be restarting: the run retries it as before.
#[tokio::test]
async fn refused_api_host_without_proxy_stays_transient() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(3, DAY, "down");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let base = format!("http://127.0.0.1:{}/api/v1", closed_port().await);
    let mut cmd = export_cmd(&base, &input, &out);
    cmd.env("GENLEDGER_FETCH__MAX_ATTEMPTS", "2");
    let finished = ran(cmd).await;
    assert_eq!(finished.code, Some(1), "{}", finished.stderr);
    assert_eq!(finished.count("requests"), 6, "each ID tried twice");
    let rows = failure_rows(&out);
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|row| &row[2] == "retries_exhausted"),
        "{rows:?}"
    );
}

/// `SSL_CERT_FILE` replaces the system store, so one naming nothing readable
/// leaves no CA at all: a setup error that names it, before any request.
#[tokio::test]
async fn unreadable_ssl_cert_file_is_an_error_naming_it() {
    let (_sim, dir, input, _) = setup("nocas").await;
    let out = dir.path().join("out");
    let missing = dir.path().join("missing.pem");
    let mut cmd = export_cmd("https://127.0.0.1:9/api/v1", &input, &out);
    cmd.env("SSL_CERT_FILE", &missing);
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let named = format!(
        "with the CAs of SSL_CERT_FILE=`{}` alone",
        missing.display()
    );
    assert!(stderr.contains(&named), "{stderr}");
    assert!(stderr.contains("replace the system store"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
