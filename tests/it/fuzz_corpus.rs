//! The fuzz corpora as a regression test: every saved input under `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same property checks as its fuzz target
//! (`voxproxy::fuzzing`), without libFuzzer, so CI keeps every crash once found and every input
//! that reached new code.

use std::path::Path;

/// A fuzz target's checks: panics when an input breaks a property.
type Check = fn(&[u8]);

/// The targets, as `fuzz/fuzz_targets/` names them, and their checks.
const TARGETS: &[(&str, Check)] = &[
    ("target", voxproxy::fuzzing::target),
    ("account", voxproxy::fuzzing::account),
    ("method", voxproxy::fuzzing::method),
    ("credentials", voxproxy::fuzzing::credentials),
    ("clients", voxproxy::fuzzing::clients),
];

#[test]
fn every_corpus_input_keeps_its_targets_promises() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut known: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    known.sort_unstable();
    assert_eq!(
        dirs(&fuzz.join("corpus")),
        known,
        "a corpus for every target, and a target for every corpus"
    );
    for dir in dirs(&fuzz.join("regressions")) {
        assert!(
            known.contains(&dir.as_str()),
            "regressions/{dir} names no target"
        );
    }
    for (name, check) in TARGETS {
        let mut inputs = 0;
        // The minimised corpus, then the inputs that once broke something (kept by name: a
        // merge would keep them only while no other input reaches the same code).
        for set in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(set).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(
                    outcome.is_ok(),
                    "fuzz/{set}/{name}/{file} breaks a property (replay it: cd fuzz && cargo fuzz run -s none {name} {set}/{name}/{file})"
                );
                inputs += 1;
            }
        }
        assert!(inputs > 0, "fuzz/corpus/{name} is empty");
    }
}

/// The names of the directories in `dir`, sorted.
fn dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
