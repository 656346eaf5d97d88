//! The C interface: the checked-in header is what cbindgen makes now; the C
//! example (compiled with `cc`) and the Python ctypes example print the
//! same lists as the Rust API; error paths return codes, not crashes.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use alsoborrowed_feed::{FeedIndex, Layout, SCHEMA_VERSION, TitleFeed, file_stem};
use alsoborrowed_feed_c::*;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn title_id(i: usize) -> String {
    match i % 7 {
        0 => format!("ISBN 978/{i}"),
        1 => format!("Ünïcode {i} ✓"),
        _ => format!("97887{i:08}"),
    }
}

/// A per-title feed of 40 titles with lists of 1 to 6 titles.
fn write_feed(dir: &Path) {
    let feed = dir.join("feed");
    std::fs::create_dir_all(feed.join("titles")).unwrap();
    for i in 0..40 {
        let related: Vec<String> = (1..=1 + i % 6)
            .map(|j| title_id((i + j * 3) % 47))
            .collect();
        let file = TitleFeed {
            schema_version: SCHEMA_VERSION,
            title: title_id(i),
            related,
        };
        let path = feed
            .join("titles")
            .join(format!("{}.json", file_stem(&file.title)));
        std::fs::write(path, serde_json::to_vec(&file).unwrap()).unwrap();
    }
    let index = FeedIndex {
        schema_version: SCHEMA_VERSION,
        layout: Layout::Titles,
        shard_bits: None,
        max_related: 6,
        updated: "2026-11".into(),
    };
    std::fs::write(feed.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn generated_header() -> String {
    let dir = Path::new(MANIFEST_DIR);
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn checked_in_header_is_current() {
    let path = Path::new(MANIFEST_DIR).join("include/alsoborrowed_feed.h");
    let fresh = generated_header();
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/alsoborrowed_feed.h is stale: run UPDATE_HEADER=1 cargo test -p feed-c"
    );
}

/// The shared library cargo built for this test run.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let lib = dir.join("libalsoborrowed_feed_c.so");
        if lib.is_file() {
            return lib;
        }
    }
    panic!(
        "libalsoborrowed_feed_c.so not found next to {}",
        exe.display()
    );
}

fn expected(feed_dir: &Path, title: &str, n: usize) -> String {
    let feed = alsoborrowed_feed::Feed::open(feed_dir).unwrap();
    feed.similar(title, n)
        .iter()
        .map(|t| format!("{t}\n"))
        .collect()
}

fn cases() -> Vec<(String, usize)> {
    let mut cases: Vec<(String, usize)> = (0..8).map(|i| (title_id(i), 20)).collect();
    cases.push((title_id(5), 2));
    cases.push(("not a title".into(), 20));
    cases
}

#[test]
fn c_example_prints_the_rust_list() {
    let tmp = tempfile::tempdir().unwrap();
    write_feed(tmp.path());
    let lib = library();
    let exe = tmp.path().join("similar");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(Path::new(MANIFEST_DIR).join("include"))
        .arg(Path::new(MANIFEST_DIR).join("examples/c/similar.c"))
        .arg("-o")
        .arg(&exe)
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.parent().unwrap().display()))
        .status()
        .expect("running cc");
    assert!(status.success(), "cc failed");
    for (title, n) in cases() {
        let out = Command::new(&exe)
            .arg(tmp.path())
            .arg(&title)
            .arg(n.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            expected(tmp.path(), &title, n)
        );
    }
    let out = Command::new(&exe)
        .arg(tmp.path().join("missing"))
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error 3: "), "{stderr}");
    assert!(stderr.contains("no feed found"), "{stderr}");
}

#[test]
fn python_example_prints_the_rust_list() {
    let tmp = tempfile::tempdir().unwrap();
    write_feed(tmp.path());
    let script = Path::new(MANIFEST_DIR).join("examples/python/similar.py");
    for (title, n) in cases() {
        let out = Command::new("python3")
            .arg(&script)
            .arg(library())
            .arg(tmp.path())
            .arg(&title)
            .arg(n.to_string())
            .env("PYTHONIOENCODING", "utf-8")
            .output()
            .expect("running python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            expected(tmp.path(), &title, n)
        );
    }
}

fn message(error: *const abf_error) -> String {
    // SAFETY: `error` is live and the message NUL-terminated.
    unsafe { CStr::from_ptr(abf_error_message(error)) }
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn errors_are_codes_with_messages() {
    let tmp = tempfile::tempdir().unwrap();
    write_feed(tmp.path());
    // SAFETY (whole test): every pointer passed is NULL, a live handle from
    // this library, or a valid buffer of the stated length.
    unsafe {
        let error = abf_error_new();
        assert!(abf_feed_open(std::ptr::null(), error).is_null());
        assert_eq!(abf_error_code(error), abf_code::ABF_ERR_NULL);
        assert_eq!(message(error), "path is NULL");

        let bad_utf8 = c"\xff\xfe";
        assert!(abf_feed_open(bad_utf8.as_ptr(), error).is_null());
        assert_eq!(abf_error_code(error), abf_code::ABF_ERR_UTF8);

        let missing = std::ffi::CString::new(tmp.path().join("nope").to_str().unwrap()).unwrap();
        assert!(abf_feed_open(missing.as_ptr(), error).is_null());
        assert_eq!(abf_error_code(error), abf_code::ABF_ERR_NOT_A_FEED);
        assert!(message(error).contains("no feed found"));

        let broken = tempfile::tempdir().unwrap();
        std::fs::create_dir(broken.path().join("feed")).unwrap();
        std::fs::write(broken.path().join("feed/index.json"), "{").unwrap();
        let broken_path = std::ffi::CString::new(broken.path().to_str().unwrap()).unwrap();
        assert!(abf_feed_open(broken_path.as_ptr(), error).is_null());
        assert_eq!(abf_error_code(error), abf_code::ABF_ERR_FORMAT);

        let path = std::ffi::CString::new(tmp.path().to_str().unwrap()).unwrap();
        let feed = abf_feed_open(path.as_ptr(), error);
        assert!(!feed.is_null());
        assert_eq!(abf_error_code(error), abf_code::ABF_OK);
        assert_eq!(message(error), "");
        assert_eq!(abf_feed_len(feed), 40);
        assert_eq!(abf_feed_max_related(feed), 6);
        assert_eq!(
            CStr::from_ptr(abf_feed_updated(feed)).to_str(),
            Ok("2026-11")
        );

        let bad = [0xffu8, 0x00];
        assert!(abf_feed_similar(feed, bad.as_ptr().cast(), 1, 5, error).is_null());
        assert_eq!(abf_error_code(error), abf_code::ABF_ERR_UTF8);
        assert!(abf_feed_similar(std::ptr::null(), bad.as_ptr().cast(), 0, 5, error).is_null());
        assert_eq!(abf_error_code(error), abf_code::ABF_ERR_NULL);
        assert!(abf_feed_similar(feed, std::ptr::null(), 0, 5, error).is_null());
        // A NULL error is allowed: the call still fails cleanly.
        assert!(abf_feed_similar(feed, std::ptr::null(), 0, 5, std::ptr::null_mut()).is_null());

        let title = title_id(3);
        let list = abf_feed_similar(feed, title.as_ptr().cast(), title.len(), 100, error);
        assert!(!list.is_null());
        // The list outlives the feed.
        abf_feed_free(feed);
        let rust = alsoborrowed_feed::Feed::open(tmp.path()).unwrap();
        let expected = rust.similar(&title, 100);
        assert_eq!(abf_list_len(list), expected.len());
        for (i, t) in expected.iter().enumerate() {
            let mut len = 0usize;
            let p = abf_list_get_bytes(list, i, &mut len);
            assert_eq!(
                std::slice::from_raw_parts(p.cast::<u8>(), len),
                t.as_bytes()
            );
            assert_eq!(
                CStr::from_ptr(abf_list_get(list, i)).to_str(),
                Ok(t.as_str())
            );
        }
        assert!(abf_list_get(list, expected.len()).is_null());
        abf_list_free(list);

        // NULL handles are harmless everywhere.
        abf_list_free(std::ptr::null_mut());
        abf_feed_free(std::ptr::null_mut());
        assert_eq!(abf_list_len(std::ptr::null()), 0);
        assert_eq!(abf_feed_len(std::ptr::null()), 0);
        assert!(abf_list_get(std::ptr::null(), 0).is_null());
        assert_eq!(abf_error_code(std::ptr::null()), abf_code::ABF_ERR_NULL);
        abf_error_free(error);
        abf_error_free(std::ptr::null_mut());
    }
}
