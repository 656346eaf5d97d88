//! Test feeds, a server on 127.0.0.1:0 and a minimal HTTP/1.1 client.

use std::net::SocketAddr;
use std::path::Path;

use alsoborrowed_feed::{
    FeedIndex, Layout, SCHEMA_VERSION, ShardFeed, ShardTitle, TitleFeed, file_stem, shard_bits_for,
    shard_name, shard_of,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Title ids of the test feeds, some needing escapes in file names and URLs.
pub fn title_id(i: usize) -> String {
    match i % 11 {
        0 => format!("ISBN 978/{i}"),
        1 => format!("Ünïcode {i} ✓"),
        2 => format!("b{i}?x=1&y#z"),
        3 => format!("{i}%2F"),
        _ => format!("97887{i:08}"),
    }
}

/// Writes release `name` of a feed with 150 of 160 titles having lists
/// (seed changes the lists), in `layout`, and points `current` at it if
/// there is no `current` yet.
pub fn publish(export: &Path, name: &str, seed: usize, layout: Layout) {
    let n = 160;
    let mut titles: Vec<ShardTitle> = (0..150)
        .map(|i| {
            let len = 1 + (i * seed) % 5;
            let mut related = Vec::new();
            let mut j = 1;
            while related.len() < len {
                let other = title_id((i + j * (seed + 2)) % n);
                if other != title_id(i) && !related.contains(&other) {
                    related.push(other);
                }
                j += 1;
            }
            ShardTitle {
                title: title_id(i),
                related,
            }
        })
        .collect();
    titles.sort_by(|a, b| a.title.cmp(&b.title));
    let feed = export.join("releases").join(name).join("feed");
    let bits = shard_bits_for(titles.len() as u64);
    let index = FeedIndex {
        schema_version: SCHEMA_VERSION,
        layout,
        shard_bits: (layout == Layout::Shards).then_some(bits),
        max_related: 5,
        updated: "2026-11".into(),
    };
    match layout {
        Layout::Shards => {
            std::fs::create_dir_all(feed.join("shards")).unwrap();
            for shard in 0..1u32 << bits {
                let file = ShardFeed {
                    schema_version: SCHEMA_VERSION,
                    shard: shard_name(shard, bits),
                    titles: titles
                        .iter()
                        .filter(|t| shard_of(&t.title, bits) == shard)
                        .cloned()
                        .collect(),
                };
                let path = feed.join("shards").join(format!("{}.json", file.shard));
                std::fs::write(path, serde_json::to_vec(&file).unwrap()).unwrap();
            }
        }
        Layout::Titles => {
            std::fs::create_dir_all(feed.join("titles")).unwrap();
            for t in &titles {
                let file = TitleFeed {
                    schema_version: SCHEMA_VERSION,
                    title: t.title.clone(),
                    related: t.related.clone(),
                };
                let path = feed
                    .join("titles")
                    .join(format!("{}.json", file_stem(&t.title)));
                std::fs::write(path, serde_json::to_vec(&file).unwrap()).unwrap();
            }
        }
    }
    std::fs::write(feed.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    // Owner-only files beside the feed, never to be served.
    let release = export.join("releases").join(name);
    std::fs::write(release.join("pairs.csv"), "title_a,title_b\r\n").unwrap();
    std::fs::write(release.join("release.json"), "{}").unwrap();
    if !export.join("current").exists() {
        point_current(export, name);
        std::os::unix::fs::symlink("current/feed", export.join("feed")).unwrap();
    }
}

/// Points `current` at release `name` atomically, as `export` does.
pub fn point_current(export: &Path, name: &str) {
    let tmp = export.join("current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("releases/{name}"), &tmp).unwrap();
    std::fs::rename(&tmp, export.join("current")).unwrap();
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A server running in the background.
pub struct Running {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), serve::ServeError>>,
}

impl Running {
    /// Shuts down and waits for the server to return.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Starts a server for `feed` on 127.0.0.1:0, with three accept loops (this
/// runtime's and two threads of their own), as `serve` runs on a machine
/// with cores to spare: every test also covers the shared socket.
pub async fn start(feed: &Path, configure: impl FnOnce(&mut serve::Config)) -> Running {
    let mut config = serve::Config::new(feed.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.shutdown_grace = std::time::Duration::from_secs(2);
    configure(&mut config);
    let server = serve::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let (stop, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server.run_threads(3, async {
        let _ = rx.await;
    }));
    Running { addr, stop, task }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (status, headers)
}

/// Sends `request` as is on a new connection and returns all bytes read
/// until the server closes (at most 5 s).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    buf
}

/// `GET path` on a new connection with extra headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let bytes = raw(addr, req.as_bytes()).await;
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let (status, headers) = parse_head(&bytes[..split]);
    Response {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

/// One keep-alive connection, for load.
pub struct KeepAlive {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    pub async fn connect(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// `GET path`, reading the response by its content-length.
    pub async fn get(&mut self, path: &str) -> Response {
        let req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await.unwrap();
        loop {
            if let Some(split) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let (status, headers) = parse_head(&self.buf[..split]);
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if self.buf.len() >= split + 4 + len {
                    let body = self.buf[split + 4..split + 4 + len].to_vec();
                    self.buf.drain(..split + 4 + len);
                    return Response {
                        status,
                        headers,
                        body,
                    };
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                self.stream.read(&mut chunk),
            )
            .await
            .expect("response within 5 s")
            .unwrap();
            assert!(n > 0, "connection closed mid-response");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Waits (at most 10 s) until `/healthz` shows `counter` at `value`.
pub async fn wait_for_health(addr: SocketAddr, counter: &str, value: u64) {
    let started = std::time::Instant::now();
    loop {
        let r = get(addr, "/healthz", &[]).await;
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if body[counter] == value {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{counter} stayed at {} (expected {value})",
            body[counter]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
