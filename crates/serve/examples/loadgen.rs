//! Load generator and checker for `benches/serve.sh` (HTTP/1.1 keep-alive
//! on loopback, bounded in time and requests).
//!
//! ```text
//! loadgen mix LOANS_CSV FEED SAMPLE OUT_API OUT_STATIC
//!     title mix: the titles of SAMPLE loans spread over LOANS_CSV (popular
//!     titles come up as often as they are borrowed), as API paths and as
//!     the static file a page would fetch for each
//! loadgen load ADDR PATHS CONNECTIONS SECONDS MAX_REQUESTS
//!     requests the paths round-robin; prints throughput and latency
//! loadgen check ADDR FEED
//!     asks the API for every title of FEED and compares with `similar`
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alsoborrowed_feed::{Feed, Layout, file_stem, shard_name, shard_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn encode(text: &str) -> String {
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

fn mix(args: &[String]) -> Result<(), String> {
    let [csv, feed, sample, out_api, out_static] = args else {
        return Err("mix LOANS_CSV FEED SAMPLE OUT_API OUT_STATIC".into());
    };
    let feed = Feed::open(Path::new(feed)).map_err(|e| e.to_string())?;
    let sample: usize = sample.parse().map_err(|_| "SAMPLE is a number")?;
    let file = std::fs::File::open(csv).map_err(|e| format!("{csv}: {e}"))?;
    let lines = BufReader::new(file).lines().skip(1);
    // Every k-th loan of the file, so the mix follows borrowing popularity.
    let total = BufReader::new(std::fs::File::open(csv).map_err(|e| e.to_string())?)
        .lines()
        .count()
        .saturating_sub(1);
    let step = (total / sample.max(1)).max(1);
    let mut api = String::new();
    let mut files = String::new();
    let mut with_list = 0usize;
    let mut n = 0usize;
    for line in lines.step_by(step).take(sample) {
        let line = line.map_err(|e| e.to_string())?;
        let Some(title) = line.split(',').nth(1) else {
            continue;
        };
        n += 1;
        if !feed.similar(title, 1).is_empty() {
            with_list += 1;
        }
        api.push_str(&format!("/api/v1/related/{}\n", encode(title)));
        let file = match (feed.index().layout, feed.index().shard_bits) {
            (Layout::Shards, Some(bits)) => {
                format!(
                    "/feed/shards/{}.json",
                    shard_name(shard_of(title, bits), bits)
                )
            }
            _ => format!("/feed/titles/{}.json", encode(&file_stem(title))),
        };
        files.push_str(&file);
        files.push('\n');
    }
    std::fs::write(out_api, api).map_err(|e| e.to_string())?;
    std::fs::write(out_static, files).map_err(|e| e.to_string())?;
    println!("{n} requests in the mix, {with_list} for titles with a list");
    Ok(())
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// GET `path`; returns the status and body.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let body = self.buf[end + 4..end + 4 + len].to_vec();
                    self.buf.drain(..end + 4 + len);
                    return Ok((status, body));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

async fn load(args: &[String]) -> Result<(), String> {
    let [addr, paths, connections, seconds, max_requests] = args else {
        return Err("load ADDR PATHS CONNECTIONS SECONDS MAX_REQUESTS".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|_| "ADDR is host:port")?;
    let paths: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(paths)
            .map_err(|e| format!("{paths}: {e}"))?
            .lines()
            .map(str::to_owned)
            .collect(),
    );
    let connections: usize = connections.parse().map_err(|_| "CONNECTIONS")?;
    let seconds: u64 = seconds.parse().map_err(|_| "SECONDS")?;
    let max_requests: usize = max_requests.parse().map_err(|_| "MAX_REQUESTS")?;
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (paths, next, stop) = (paths.clone(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let (mut errors, mut not_found) = (0u64, 0u64);
            let Ok(mut conn) = Conn::connect(addr).await else {
                return (latencies, 1, 0);
            };
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max_requests || Instant::now() >= deadline {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                let path = &paths[i % paths.len()];
                let t = Instant::now();
                match conn.get(path).await {
                    Ok((200, _)) => {}
                    Ok((404, _)) => not_found += 1,
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        match Conn::connect(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
                latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            (latencies, errors, not_found)
        }));
    }
    let mut all = Vec::new();
    let (mut errors, mut not_found) = (0, 0);
    for t in tasks {
        let (l, e, nf) = t.await.map_err(|e| e.to_string())?;
        all.extend(l);
        errors += e;
        not_found += nf;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    println!(
        "requests {} errors {errors} not_found {not_found} seconds {elapsed:.2} \
         throughput {:.0}/s p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    if errors > 0 {
        return Err(format!("{errors} failed requests"));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Answer {
    title: String,
    related: Vec<String>,
}

async fn check(args: &[String]) -> Result<(), String> {
    let [addr, feed] = args else {
        return Err("check ADDR FEED".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|_| "ADDR is host:port")?;
    let feed = Feed::open(Path::new(feed)).map_err(|e| e.to_string())?;
    let max = feed.index().max_related as usize;
    let mut conn = Conn::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut checked, mut wrong) = (0usize, 0usize);
    for title in feed.titles() {
        let (status, body) = conn
            .get(&format!("/api/v1/related/{}", encode(title)))
            .await
            .map_err(|e| e.to_string())?;
        let answer: Option<Answer> = serde_json::from_slice(&body).ok();
        let ok = status == 200
            && answer.is_some_and(|a| a.title == title && a.related == feed.similar(title, max));
        if !ok {
            wrong += 1;
        }
        checked += 1;
    }
    println!("checked {checked} titles, {wrong} answers differ from similar()");
    if wrong > 0 || checked != feed.len() {
        return Err("the API and the feed disagree".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("mix") => mix(&args[1..]),
        Some("load") => runtime.block_on(load(&args[1..])),
        Some("check") => runtime.block_on(check(&args[1..])),
        _ => Err("usage: loadgen mix|load|check ...".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
