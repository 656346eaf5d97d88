//! C interface to the alsoborrowed feed reader, for catalogue software that
//! is not written in Rust (Perl, PHP, Python, Java's FFM, C).
//!
//! In the manner of the regex crate's former C API (`rure`): opaque handles
//! ([`abf_feed`], [`abf_list`], [`abf_error`]), an explicit `*_free` for
//! each, errors as codes with messages, and no panic across the boundary
//! (every function catches one and reports [`abf_code::ABF_ERR_PANIC`]).
//! The header `include/alsoborrowed_feed.h` is generated from this file by
//! cbindgen; a test fails when the checked-in copy is stale.
//!
//! Ownership, for every pointer this library returns:
//! - a handle from `abf_feed_open`, `abf_feed_similar` or `abf_error_new`
//!   belongs to the caller, who frees it once with the matching `*_free`;
//! - a string (`const char *`) belongs to the handle it came from and stays
//!   valid until that handle is freed (or, for an error's message, until
//!   the error is used again); the caller never frees it;
//! - strings are UTF-8 and NUL-terminated; `abf_list_get_bytes` also gives
//!   the length, for ids that contain a NUL byte.
//!
//! Handles are not synchronized: share an `abf_feed` between threads only
//! for reading (it is immutable once open); an `abf_error` or `abf_list`
//! belongs to one thread at a time.

#![allow(non_camel_case_types)]

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use alsoborrowed_feed::{Feed, FeedError};

/// Result codes. 0 is success; every other code comes with a message in
/// the [`abf_error`] passed in.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum abf_code {
    /// Success.
    ABF_OK = 0,
    /// A required pointer argument was NULL.
    ABF_ERR_NULL = 1,
    /// A string argument was not valid UTF-8.
    ABF_ERR_UTF8 = 2,
    /// The path holds no feed.
    ABF_ERR_NOT_A_FEED = 3,
    /// A file of the feed could not be read.
    ABF_ERR_IO = 4,
    /// A file of the feed breaks the format.
    ABF_ERR_FORMAT = 5,
    /// A bug: the library panicked (and caught it).
    ABF_ERR_PANIC = 6,
}

/// An open feed, loaded into memory. Free with [`abf_feed_free`].
pub struct abf_feed {
    feed: Feed,
    updated: Box<[u8]>,
}

/// A title's related titles, best first: an owned copy, independent of the
/// feed. Free with [`abf_list_free`].
pub struct abf_list {
    // Each id followed by a NUL byte.
    titles: Vec<Box<[u8]>>,
}

/// The code and message of the last failed call that was given this error.
/// Free with [`abf_error_free`].
pub struct abf_error {
    code: abf_code,
    // The message followed by a NUL byte.
    message: Box<[u8]>,
}

fn nul_terminated(text: &str) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    bytes.into_boxed_slice()
}

fn set_error(error: *mut abf_error, code: abf_code, message: &str) {
    // SAFETY: the caller passes NULL or a pointer from `abf_error_new` that
    // it has not freed and does not use from another thread meanwhile.
    if let Some(error) = unsafe { error.as_mut() } {
        error.code = code;
        error.message = nul_terminated(message);
    }
}

fn clear_error(error: *mut abf_error) {
    set_error(error, abf_code::ABF_OK, "");
}

/// Runs `body`, turning a panic into `ABF_ERR_PANIC` and `fallback`.
fn guarded<T>(error: *mut abf_error, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            set_error(
                error,
                abf_code::ABF_ERR_PANIC,
                "internal error (a bug in alsoborrowed-feed; please report it)",
            );
            fallback
        }
    }
}

fn feed_error_code(e: &FeedError) -> abf_code {
    match e {
        FeedError::Io { .. } => abf_code::ABF_ERR_IO,
        FeedError::NotAFeed { .. } => abf_code::ABF_ERR_NOT_A_FEED,
        _ => abf_code::ABF_ERR_FORMAT,
    }
}

/// A new error value for the calls below to report into (code `ABF_OK`,
/// empty message). Never NULL. Free with [`abf_error_free`].
#[unsafe(no_mangle)]
pub extern "C" fn abf_error_new() -> *mut abf_error {
    Box::into_raw(Box::new(abf_error {
        code: abf_code::ABF_OK,
        message: nul_terminated(""),
    }))
}

/// Frees an error from [`abf_error_new`]; NULL is ignored.
///
/// # Safety
/// `error` is NULL or from `abf_error_new` and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_error_free(error: *mut abf_error) {
    if !error.is_null() {
        // SAFETY: per the contract, `error` came from `Box::into_raw` in
        // `abf_error_new` and is freed once.
        drop(unsafe { Box::from_raw(error) });
    }
}

/// The code of the last call that reported into `error` (`ABF_OK` if it
/// succeeded); `ABF_ERR_NULL` for a NULL `error`.
///
/// # Safety
/// `error` is NULL or a live pointer from `abf_error_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_error_code(error: *const abf_error) -> abf_code {
    // SAFETY: per the contract.
    unsafe { error.as_ref() }.map_or(abf_code::ABF_ERR_NULL, |e| e.code)
}

/// The message of the last failed call that reported into `error`, in
/// English, naming files and reasons, never a title; empty after a success.
/// Owned by `error`: valid until `error` is passed to another call or
/// freed. Never NULL for a non-NULL `error`.
///
/// # Safety
/// `error` is NULL or a live pointer from `abf_error_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_error_message(error: *const abf_error) -> *const c_char {
    // SAFETY: per the contract.
    match unsafe { error.as_ref() } {
        Some(e) => e.message.as_ptr().cast(),
        None => c"".as_ptr(),
    }
}

/// Opens a feed: an export directory (its `current` release), a release
/// directory or a feed directory, as `alsoborrowed_feed::Feed::open`, and
/// loads it into memory. Returns NULL on failure, with the code and message
/// in `error` (which may be NULL). Free the feed with [`abf_feed_free`].
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `error` is NULL or a live
/// pointer from `abf_error_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_feed_open(
    path: *const c_char,
    error: *mut abf_error,
) -> *mut abf_feed {
    guarded(error, std::ptr::null_mut(), || {
        if path.is_null() {
            set_error(error, abf_code::ABF_ERR_NULL, "path is NULL");
            return std::ptr::null_mut();
        }
        // SAFETY: `path` is non-NULL and NUL-terminated per the contract.
        let path = unsafe { CStr::from_ptr(path) };
        let Ok(path) = path.to_str() else {
            set_error(error, abf_code::ABF_ERR_UTF8, "path is not valid UTF-8");
            return std::ptr::null_mut();
        };
        match Feed::open(Path::new(path)) {
            Ok(feed) => {
                clear_error(error);
                let updated = nul_terminated(&feed.index().updated);
                Box::into_raw(Box::new(abf_feed { feed, updated }))
            }
            Err(e) => {
                set_error(error, feed_error_code(&e), &e.to_string());
                std::ptr::null_mut()
            }
        }
    })
}

/// Frees a feed from [`abf_feed_open`]; NULL is ignored. Lists taken from
/// it stay valid.
///
/// # Safety
/// `feed` is NULL or from `abf_feed_open` and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_feed_free(feed: *mut abf_feed) {
    if !feed.is_null() {
        // SAFETY: per the contract, from `Box::into_raw`, freed once.
        drop(unsafe { Box::from_raw(feed) });
    }
}

/// Number of titles with a list; 0 for NULL.
///
/// # Safety
/// `feed` is NULL or a live pointer from `abf_feed_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_feed_len(feed: *const abf_feed) -> usize {
    // SAFETY: per the contract.
    unsafe { feed.as_ref() }.map_or(0, |f| f.feed.len())
}

/// Most related titles per title (the index's `max_related`); 0 for NULL.
///
/// # Safety
/// `feed` is NULL or a live pointer from `abf_feed_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_feed_max_related(feed: *const abf_feed) -> u32 {
    // SAFETY: per the contract.
    unsafe { feed.as_ref() }.map_or(0, |f| f.feed.index().max_related)
}

/// The month the lists were made for, `"YYYY-MM"`. Owned by `feed`: valid
/// until `abf_feed_free(feed)`. An empty string for NULL.
///
/// # Safety
/// `feed` is NULL or a live pointer from `abf_feed_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_feed_updated(feed: *const abf_feed) -> *const c_char {
    // SAFETY: per the contract.
    match unsafe { feed.as_ref() } {
        Some(f) => f.updated.as_ptr().cast(),
        None => c"".as_ptr(),
    }
}

/// Up to `n` titles related to the title `title` (`title_len` bytes of
/// UTF-8, no NUL needed), best first, as a new list the caller frees with
/// [`abf_list_free`]. A title without a list gives an empty list (not an
/// error). Returns NULL on failure (NULL argument, invalid UTF-8), with the
/// code and message in `error` (which may be NULL).
///
/// # Safety
/// `feed` is NULL or a live pointer from `abf_feed_open`; `title` is NULL
/// or points to `title_len` readable bytes; `error` is NULL or a live
/// pointer from `abf_error_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_feed_similar(
    feed: *const abf_feed,
    title: *const c_char,
    title_len: usize,
    n: usize,
    error: *mut abf_error,
) -> *mut abf_list {
    guarded(error, std::ptr::null_mut(), || {
        // SAFETY: per the contract.
        let Some(feed) = (unsafe { feed.as_ref() }) else {
            set_error(error, abf_code::ABF_ERR_NULL, "feed is NULL");
            return std::ptr::null_mut();
        };
        if title.is_null() {
            set_error(error, abf_code::ABF_ERR_NULL, "title is NULL");
            return std::ptr::null_mut();
        }
        // SAFETY: `title` is non-NULL and points to `title_len` readable
        // bytes per the contract; the slice does not outlive this call.
        let bytes = unsafe { std::slice::from_raw_parts(title.cast::<u8>(), title_len) };
        let Ok(title) = std::str::from_utf8(bytes) else {
            set_error(error, abf_code::ABF_ERR_UTF8, "title is not valid UTF-8");
            return std::ptr::null_mut();
        };
        let titles = feed
            .feed
            .similar(title, n)
            .iter()
            .map(|t| nul_terminated(t))
            .collect();
        clear_error(error);
        Box::into_raw(Box::new(abf_list { titles }))
    })
}

/// Frees a list from [`abf_feed_similar`]; NULL is ignored.
///
/// # Safety
/// `list` is NULL or from `abf_feed_similar` and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_list_free(list: *mut abf_list) {
    if !list.is_null() {
        // SAFETY: per the contract, from `Box::into_raw`, freed once.
        drop(unsafe { Box::from_raw(list) });
    }
}

/// Number of titles in the list; 0 for NULL.
///
/// # Safety
/// `list` is NULL or a live pointer from `abf_feed_similar`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_list_len(list: *const abf_list) -> usize {
    // SAFETY: per the contract.
    unsafe { list.as_ref() }.map_or(0, |l| l.titles.len())
}

/// The `i`-th title of the list (0 is the best), NUL-terminated UTF-8.
/// Owned by `list`: valid until `abf_list_free(list)`. NULL when `list` is
/// NULL or `i` is out of range.
///
/// # Safety
/// `list` is NULL or a live pointer from `abf_feed_similar`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_list_get(list: *const abf_list, i: usize) -> *const c_char {
    // SAFETY: per the contract.
    let list = unsafe { list.as_ref() };
    list.and_then(|l| l.titles.get(i))
        .map_or(std::ptr::null(), |t| t.as_ptr().cast())
}

/// As [`abf_list_get`], and writes the title's length in bytes (without the
/// NUL) to `len` (if not NULL), for ids that contain a NUL byte.
///
/// # Safety
/// `list` is NULL or a live pointer from `abf_feed_similar`; `len` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn abf_list_get_bytes(
    list: *const abf_list,
    i: usize,
    len: *mut usize,
) -> *const c_char {
    // SAFETY: per the contract.
    let list = unsafe { list.as_ref() };
    match list.and_then(|l| l.titles.get(i)) {
        Some(t) => {
            // SAFETY: `len` is NULL or writable per the contract.
            if let Some(len) = unsafe { len.as_mut() } {
                *len = t.len() - 1;
            }
            t.as_ptr().cast()
        }
        None => std::ptr::null(),
    }
}
