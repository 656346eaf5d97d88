//! The record parser: the streaming reader (parallel quote-free pieces and
//! the csv crate's record reader, at fuzzed block and piece sizes) must agree
//! with the whole-file csv reader on every input, and never panic.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    extract::fuzz_paths_agree(data);
});
