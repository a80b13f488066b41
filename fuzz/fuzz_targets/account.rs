//! Fuzz target `account`: the checks are [`voxproxy::fuzzing::account`], shared with the corpus replay
//! test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| voxproxy::fuzzing::account(data));
