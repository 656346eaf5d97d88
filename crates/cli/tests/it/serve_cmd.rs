//! `alsoborrowed serve`: starts on a feed, answers, stops cleanly on
//! SIGTERM with exit 0; a missing feed is one error line and exit 1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::bin;

fn write_feed(dir: &std::path::Path) {
    let feed = dir.join("feed");
    std::fs::create_dir_all(feed.join("titles")).unwrap();
    std::fs::write(
        feed.join("index.json"),
        r#"{"schema_version":3,"layout":"titles","max_related":20,"updated":"2026-11"}"#,
    )
    .unwrap();
    std::fs::write(
        feed.join("titles/b1.json"),
        r#"{"schema_version":3,"title":"b1","related":["b2","b3"]}"#,
    )
    .unwrap();
}

#[test]
fn serves_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    write_feed(tmp.path());
    let mut child = bin()
        .args([
            "serve",
            "--threads",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--feed",
        ])
        .arg(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("(1 titles, updated 2026-11)"), "{line}");
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();

    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/v1/related/b1?limit=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(r#"{"title":"b1","related":["b2"]}"#),
        "{response}"
    );

    // The process asked the kernel for no transparent huge pages at start
    // (main.rs); kernels before 5.0 do not report it.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    if let Some(thp) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(thp.split_whitespace().nth(1), Some("0"), "{thp}");
    }

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("serve did not stop within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(
        !rest.contains("b1"),
        "no title in the server's output: {rest}"
    );
}

#[test]
fn a_missing_feed_is_one_line_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--feed"])
        .arg(tmp.path().join("nothing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: serving "), "{stderr}");
    assert!(stderr.contains("no feed found"), "{stderr}");
}
