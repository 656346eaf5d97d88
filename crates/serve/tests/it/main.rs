//! Integration tests: a real server on 127.0.0.1 and a raw HTTP/1.1 client,
//! bounded in requests and time.

mod support;
mod widget;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use alsoborrowed_feed::Feed;
use support::{Running, get, publish, raw, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_title_is_answered_as_the_feed_has_it() {
    let tmp = tempfile::tempdir().unwrap();
    publish(tmp.path(), "a", 1, alsoborrowed_feed::Layout::Shards);
    let feed = Feed::open(tmp.path()).unwrap();
    let server = start(tmp.path(), |_| {}).await;
    let titles: Vec<&str> = feed.titles().collect();
    assert!(titles.len() > 100);
    for title in &titles {
        for limit in [None, Some(1), Some(3), Some(1000)] {
            let path = match limit {
                None => format!("/api/v1/related/{}", support::encode(title)),
                Some(n) => format!("/api/v1/related/{}?limit={n}", support::encode(title)),
            };
            let r = get(server.addr, &path, &[]).await;
            assert_eq!(r.status, 200, "{path}");
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let expected = feed.similar(title, limit.unwrap_or(usize::MAX));
            assert_eq!(body["title"], *title);
            assert_eq!(body["related"], serde_json::json!(expected), "{path}");
            assert_eq!(body.as_object().unwrap().len(), 2, "only title and related");
        }
    }
    // A title without a list: 404 and an empty list.
    let r = get(server.addr, "/api/v1/related/not%20a%20title", &[]).await;
    assert_eq!(r.status, 404);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"title": "not a title", "related": []})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_and_metadata_come_from_the_release() {
    let tmp = tempfile::tempdir().unwrap();
    publish(tmp.path(), "a", 1, alsoborrowed_feed::Layout::Titles);
    let server = start(tmp.path(), |_| {}).await;
    let feed_dir = tmp.path().join("current/feed");
    let on_disk = std::fs::read(feed_dir.join("index.json")).unwrap();
    let r = get(server.addr, "/feed/index.json", &[]).await;
    assert_eq!((r.status, &r.body), (200, &on_disk));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let mut checked = 0;
    for entry in std::fs::read_dir(feed_dir.join("titles")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        // The file stem has `%`, which a URL spells `%25`.
        let url = format!("/feed/titles/{}", name.replace('%', "%25"));
        let r = get(server.addr, &url, &[]).await;
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(
            r.body,
            std::fs::read(feed_dir.join("titles").join(&name)).unwrap()
        );
        checked += 1;
    }
    assert!(checked > 100);
    // Owner-only files of the release and paths out of the feed are not served.
    for path in [
        "/feed/../pairs.csv",
        "/feed/%2E%2E/pairs.csv",
        "/pairs.csv",
        "/release.json",
        "/current/pairs.csv",
        "/feed/titles/nothing.json",
        "/feed/",
    ] {
        let r = get(server.addr, path, &[]).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("title_a"));
    }
    let r = get(server.addr, "/api/v1/index", &[]).await;
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["layout"], "titles");
    assert_eq!(body["updated"], "2026-11");
    assert_eq!(body["max_related"], 5);
    assert!(body["titles"].as_u64().unwrap() > 100);
    let r = get(server.addr, "/healthz", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["status"], "ok");
    assert!(body["requests"].as_u64().unwrap() > 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_headers_on_every_response_and_cors_only_for_configured_origins() {
    let tmp = tempfile::tempdir().unwrap();
    publish(tmp.path(), "a", 1, alsoborrowed_feed::Layout::Shards);
    let title = Feed::open(tmp.path())
        .unwrap()
        .titles()
        .next()
        .unwrap()
        .to_owned();
    let server = start(tmp.path(), |c| {
        c.cors_origins = vec!["https://catalogue.example".into()];
    })
    .await;
    let paths = [
        format!("/api/v1/related/{}", support::encode(&title)),
        "/api/v1/related/unknown".into(),
        "/api/v1/related/%FF".into(),
        "/api/v1/index".into(),
        "/feed/index.json".into(),
        "/healthz".into(),
        "/also-borrowed.js".into(),
        "/nothing".into(),
    ];
    for path in &paths {
        let r = get(
            server.addr,
            path,
            &[("Origin", "https://catalogue.example")],
        )
        .await;
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("http"), "no other origin allowed: {csp}");
        assert!(r.header("set-cookie").is_none(), "{path}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://catalogue.example"),
            "{path}"
        );
        let r = get(server.addr, path, &[("Origin", "https://tracker.example")]).await;
        assert!(r.header("access-control-allow-origin").is_none(), "{path}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_make_repeat_requests_cheap() {
    let tmp = tempfile::tempdir().unwrap();
    publish(tmp.path(), "a", 1, alsoborrowed_feed::Layout::Shards);
    let title = Feed::open(tmp.path())
        .unwrap()
        .titles()
        .next()
        .unwrap()
        .to_owned();
    let server = start(tmp.path(), |_| {}).await;
    for path in [
        format!("/api/v1/related/{}?limit=2", support::encode(&title)),
        "/feed/index.json".into(),
        "/api/v1/index".into(),
    ] {
        let r = get(server.addr, &path, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
        let etag = r.header("etag").unwrap().to_owned();
        let again = get(server.addr, &path, &[("If-None-Match", &etag)]).await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        let other = get(server.addr, &path, &[("If-None-Match", "\"other\"")]).await;
        assert_eq!(other.status, 200);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_status_codes() {
    let tmp = tempfile::tempdir().unwrap();
    publish(tmp.path(), "a", 1, alsoborrowed_feed::Layout::Shards);
    let title = Feed::open(tmp.path())
        .unwrap()
        .titles()
        .next()
        .unwrap()
        .to_owned();
    let server = start(tmp.path(), |_| {}).await;
    let t = support::encode(&title);
    let long = format!("/api/v1/related/{}", "x".repeat(3000));
    let cases: Vec<(String, u16)> = vec![
        ("/api/v1/related/%FF%FE".into(), 400),
        (format!("/api/v1/related/{t}?limit=0"), 400),
        (format!("/api/v1/related/{t}?limit=abc"), 400),
        (format!("/api/v1/related/{t}?limit=-3"), 400),
        (long, 414),
        ("/api/v1/related/".into(), 404),
        ("/api/v1/related/a/b".into(), 404),
    ];
    for (path, status) in &cases {
        let r = get(server.addr, path, &[]).await;
        assert_eq!(r.status, *status, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    }
    // Other methods.
    let r = raw(
        server.addr,
        b"POST /api/v1/index HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        r.starts_with(b"HTTP/1.1 405"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // A request head over 16 KiB.
    let mut big = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend(b"\r\nconnection: close\r\n\r\n");
    let r = raw(server.addr, &big).await;
    assert!(
        r.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // Garbage instead of HTTP.
    let r = raw(server.addr, b"\x16\x03\x01garbage\r\n\r\n").await;
    assert!(r.is_empty() || r.starts_with(b"HTTP/1.1 400"));
    // The server still answers.
    assert_eq!(get(server.addr, "/healthz", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_too_many_connections_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    publish(tmp.path(), "a", 1, alsoborrowed_feed::Layout::Shards);
    let server = start(tmp.path(), |c| {
        c.header_timeout = Duration::from_secs(1);
        c.max_connections = 2;
    })
    .await;
    // Two slow clients hold the two connections...
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost").await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so a third connection gets 503 at once.
    let r = raw(server.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(
        r.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // The slow ones are cut off after the header timeout (408 or a close).
    for mut s in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "slow client not cut off");
        assert!(buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"));
    }
    // Then the server answers again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(server.addr, "/healthz", &[]).await.status, 200);
    let health = get(server.addr, "/healthz", &[]).await;
    let body: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(body["refused_connections"], 1);
    server.stop().await;
}

/// Clients hammer the API while `current` moves between releases (and once
/// to a broken one): no request fails, and every answer is the list of one
/// whole release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_switch_under_load_without_a_failed_request() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path();
    publish(export, "a", 1, alsoborrowed_feed::Layout::Shards);
    let feed_a = Feed::open(&export.join("releases/a")).unwrap();
    publish(export, "b", 2, alsoborrowed_feed::Layout::Titles);
    let feed_b = Feed::open(&export.join("releases/b")).unwrap();
    support::point_current(export, "a");
    let server = start(export, |c| c.poll_interval = Duration::from_millis(20)).await;
    let titles: Vec<String> = feed_a
        .titles()
        .chain(feed_b.titles())
        .collect::<HashSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .take(60)
        .collect();
    let answers: Vec<(String, Vec<String>, Vec<String>)> = titles
        .iter()
        .map(|t| {
            (
                t.clone(),
                feed_a.similar(t, 20).to_vec(),
                feed_b.similar(t, 20).to_vec(),
            )
        })
        .collect();
    let answers = Arc::new(answers);
    let done = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (answers, done, requests) = (answers.clone(), done.clone(), requests.clone());
        let addr = server.addr;
        clients.push(tokio::spawn(async move {
            let mut conn = support::KeepAlive::connect(addr).await;
            let mut i = c;
            while !done.load(Ordering::Relaxed) {
                let (title, a, b) = &answers[i % answers.len()];
                i += 1;
                let r = conn
                    .get(&format!("/api/v1/related/{}", support::encode(title)))
                    .await;
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                let got: Vec<String> = serde_json::from_value(body["related"].clone()).unwrap();
                let expected_status = |list: &Vec<String>| if list.is_empty() { 404 } else { 200 };
                let is_a = got == *a && r.status == expected_status(a);
                let is_b = got == *b && r.status == expected_status(b);
                assert!(
                    is_a || is_b,
                    "answer of neither release (status {})",
                    r.status
                );
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let settle = || tokio::time::sleep(Duration::from_millis(100));
    for (k, release) in ["b", "a", "b"].into_iter().enumerate() {
        settle().await;
        support::point_current(export, release);
        support::wait_for_health(server.addr, "reloads", k as u64 + 1).await;
    }
    // A broken release: a shard file is missing.
    publish(export, "c", 3, alsoborrowed_feed::Layout::Shards);
    let shards = export.join("releases/c/feed/shards");
    let first = std::fs::read_dir(&shards).unwrap().next().unwrap().unwrap();
    std::fs::remove_file(first.path()).unwrap();
    settle().await;
    support::point_current(export, "c");
    support::wait_for_health(server.addr, "reload_failures", 1).await;
    let live_b = Feed::open(&export.join("releases/b")).unwrap();
    let t = live_b.titles().next().unwrap().to_owned();
    let r = get(
        server.addr,
        &format!("/api/v1/related/{}", support::encode(&t)),
        &[],
    )
    .await;
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body["related"],
        serde_json::json!(live_b.similar(&t, 20)),
        "old release kept"
    );
    settle().await;
    support::point_current(export, "a");
    support::wait_for_health(server.addr, "reloads", 4).await;
    settle().await;
    done.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let health = get(server.addr, "/healthz", &[]).await;
    let body: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(body["reloads"], 4, "b, a, b, a");
    assert!(
        requests.load(Ordering::Relaxed) > 100,
        "the clients did run"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_open_request_finish() {
    let tmp = tempfile::tempdir().unwrap();
    publish(tmp.path(), "a", 1, alsoborrowed_feed::Layout::Shards);
    let server: Running = start(tmp.path(), |_| {}).await;
    let mut conn = support::KeepAlive::connect(server.addr).await;
    assert_eq!(conn.get("/healthz").await.status, 200);
    let addr = server.addr;
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("shutdown within its grace period");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

/// HTTPS with a certificate made by the `openssl` command (on every Debian
/// host; the test fails without it under CI and skips otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_configured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    publish(tmp.path(), "a", 1, alsoborrowed_feed::Layout::Shards);
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is needed under CI"
        );
        eprintln!("skipped: no openssl command to make a test certificate");
        return;
    }
    // A key that does not parse is a clear start-up error.
    let mut bad = serve::Config::new(tmp.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    bad.tls = Some((cert.clone(), cert.clone()));
    let err = serve::Server::bind(bad)
        .await
        .err()
        .expect("a certificate is no key");
    assert!(err.to_string().contains("cert.pem"), "{err}");

    let server = start(tmp.path(), |c| c.tls = Some((cert.clone(), key.clone()))).await;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&cert).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name =
        rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /api/v1/index HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"layout\":\"shards\""), "{text}");
    // Plain HTTP on the TLS port gets nothing useful, quickly.
    let r = raw(server.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(!r.starts_with(b"HTTP/1.1 200"));
    server.stop().await;
}
