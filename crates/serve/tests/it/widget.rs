//! The `<also-borrowed>` widget in headless Chromium: a page served by the
//! server shows exactly the feed's lists in order (static feed of both
//! layouts, and the API), nothing for a title without a list, and Chromium
//! makes no request to any other origin. Needs Debian's `chromium`; fails
//! without it when `CI` is set, skips with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alsoborrowed_feed::{Feed, Layout};

use crate::support::{publish, start, title_id};

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let path = Path::new(dir).join(name);
            if path.is_file() {
                return Some(path);
            }
        }
    }
    None
}

/// `encodeURIComponent`.
fn encode_uri_component(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn escape_attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unescape_text(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Runs Chromium headless on `url` with `extra` arguments, at most 90 s.
fn run_chromium(browser: &Path, profile: &Path, url: &str, extra: &[String]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--metrics-recording-only",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Case {
    name: String,
    title: String,
    limit: Option<usize>,
}

fn page(cases: &[Case], with_api: bool) -> String {
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>widget test</title><link rel=\"stylesheet\" href=\"style.css\">\
         <script type=\"module\" src=\"/also-borrowed.js\"></script>\
         <script type=\"module\" src=\"test.js\"></script></head><body>\n",
    );
    for c in cases {
        let limit = c
            .limit
            .map(|n| format!(" limit=\"{n}\""))
            .unwrap_or_default();
        let t = escape_attr(&c.title);
        html.push_str(&format!(
            "<also-borrowed data-case=\"feed-{}\" title-id=\"{t}\" feed=\"/feed/\" \
             href-template=\"/record/{{id}}?view=full\"{limit}></also-borrowed>\n",
            c.name
        ));
        if with_api {
            html.push_str(&format!(
                "<also-borrowed data-case=\"api-{}\" title-id=\"{t}\" api=\"/api/v1\" \
                 href-template=\"/record/{{id}}?view=full\"{limit}></also-borrowed>\n",
                c.name
            ));
        }
    }
    html.push_str("<pre id=\"result\"></pre></body></html>\n");
    html
}

const STYLE: &str = "body { font-family: sans-serif; margin: 2em; }\n\
also-borrowed { display: block; border: 1px solid #ccc; padding: 0 1em; margin: 1em 0; \
--also-borrowed-link-color: #0645ad; }\n\
#result { white-space: pre-wrap; font-size: 8px; }\n";

async fn check_layout(browser: &Path, layout: Layout, screenshot: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    publish(&export, "a", 1, layout);
    let feed = Feed::open(&export).unwrap();
    let mut cases: Vec<Case> = (0..6)
        .map(|i| Case {
            name: format!("t{i}"),
            title: title_id(i),
            limit: None,
        })
        .collect();
    let longest = feed
        .titles()
        .max_by_key(|t| feed.similar(t, 100).len())
        .unwrap()
        .to_owned();
    cases.push(Case {
        name: "limit".into(),
        title: longest,
        limit: Some(2),
    });
    cases.push(Case {
        name: "unknown".into(),
        title: "no such title".into(),
        limit: None,
    });
    let pages = tmp.path().join("pages");
    std::fs::create_dir(&pages).unwrap();
    std::fs::write(pages.join("index.html"), page(&cases, true)).unwrap();
    std::fs::write(pages.join("style.css"), STYLE).unwrap();
    let test_js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/widget/test.js");
    std::fs::copy(test_js, pages.join("test.js")).unwrap();
    let server = start(&export, |c| c.pages = Some(pages.clone())).await;
    let origin = format!("http://127.0.0.1:{}", server.addr.port());
    let url = format!("{origin}/");
    let net_log = tmp.path().join("net-log.json");
    let profile = tmp.path().join("profile");
    let browser_path = browser.to_path_buf();
    let (dom, screenshot_path) = {
        let (net_log, profile, url) = (net_log.clone(), profile.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let dom = run_chromium(
                &browser_path,
                &profile,
                &url,
                &[
                    "--dump-dom".into(),
                    format!("--log-net-log={}", net_log.display()),
                ],
            );
            let shot = screenshot.then(|| {
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("widget");
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join("also-borrowed.png");
                let _ = std::fs::remove_file(&path);
                run_chromium(
                    &browser_path,
                    &profile,
                    &url,
                    &[
                        format!("--screenshot={}", path.display()),
                        "--window-size=1000,1600".into(),
                        "--hide-scrollbars".into(),
                    ],
                );
                path
            });
            (dom, shot)
        })
        .await
        .unwrap()
    };
    server.stop().await;

    let start_tag = "<pre id=\"result\">";
    let at = dom
        .find(start_tag)
        .unwrap_or_else(|| panic!("no result in the page:\n{dom}"));
    let rest = &dom[at + start_tag.len()..];
    let text = unescape_text(&rest[..rest.find("</pre>").unwrap()]);
    assert!(!text.is_empty(), "the widgets did not finish:\n{dom}");
    let results_page: serde_json::Value = serde_json::from_str(&text).unwrap();
    let results = results_page["widgets"].as_array().unwrap();
    assert_eq!(results.len(), cases.len() * 2);
    for r in results {
        let name = r["case"].as_str().unwrap();
        let case = cases
            .iter()
            .find(|c| name.ends_with(&format!("-{}", c.name)))
            .unwrap();
        let expected = feed.similar(&case.title, case.limit.unwrap_or(usize::MAX));
        let shown: Vec<&str> = r["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            shown, expected,
            "{layout:?} {name}: the feed's list in order"
        );
        if expected.is_empty() {
            assert_eq!(r["state"], "empty", "{name}");
            assert_eq!(r["hidden"], true, "{name}");
            assert_eq!(r["children"], 0, "{name}: no error box");
        } else {
            assert_eq!(r["state"], "loaded", "{name}");
            assert_eq!(r["labelled"], true, "{name}: a labelled list");
            for (link, title) in r["list"].as_array().unwrap().iter().zip(expected) {
                let href = format!("/record/{}?view=full", encode_uri_component(title));
                assert_eq!(link["href"], href.as_str(), "{name}");
                assert_eq!(link["referrer"], "no-referrer", "{name}");
            }
        }
    }

    // Every request the page made (net-log requests with an initiator;
    // Chromium's own background requests have none) is to the test server,
    // and the page saw no resource of, and no CSP block for, another origin.
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&net_log).unwrap()).unwrap();
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    let mut from_page = Vec::new();
    for event in log["events"].as_array().unwrap() {
        let params = &event["params"];
        // Phase-end events carry no parameters.
        if event["type"] != start_job
            || params["url"].is_null()
            || params["initiator"] == "not an origin"
        {
            continue;
        }
        from_page.push((
            params["initiator"].as_str().unwrap_or("").to_owned(),
            params["url"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let foreign: Vec<_> = from_page
        .iter()
        .filter(|(initiator, url)| *initiator != origin || !url.starts_with(&format!("{origin}/")))
        .collect();
    assert!(foreign.is_empty(), "requests to other origins: {foreign:?}");
    assert!(
        from_page
            .iter()
            .any(|(_, u)| u.ends_with("/also-borrowed.js")),
        "the net log saw the page's requests: {from_page:?}"
    );
    let page_saw = &results_page;
    assert_eq!(page_saw["violations"], serde_json::json!([]), "CSP blocks");
    for resource in page_saw["resources"].as_array().unwrap() {
        let url = resource.as_str().unwrap();
        assert!(
            url.starts_with(&format!("{origin}/")),
            "page resource {url}"
        );
    }

    if let Some(path) = screenshot_path {
        assert!(path.is_file(), "chromium wrote no screenshot");
        eprintln!("widget screenshot: {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_renders_the_feeds_lists_in_chromium() {
    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is missing, and CI needs it (apt-get install chromium)");
        }
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    check_layout(&browser, Layout::Shards, true).await;
    check_layout(&browser, Layout::Titles, false).await;
}
