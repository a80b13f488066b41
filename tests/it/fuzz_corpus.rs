//! The fuzz corpora as a regression test: every saved input under `fuzz/corpus/<target>/` goes
//! through the same property checks as its fuzz target (`voxproxy::fuzzing`), without libFuzzer,
//! so CI keeps every crash once found and every input that reached new code.

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut targets_dir: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    targets_dir.sort();
    let mut known: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    known.sort_unstable();
    assert_eq!(
        targets_dir, known,
        "a corpus for every target, and a target for every corpus"
    );
    for (name, check) in TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "fuzz/corpus/{name}/{} breaks a property (replay it: cd fuzz && cargo fuzz run {name} corpus/{name}/{})",
                path.file_name().unwrap().to_string_lossy(),
                path.file_name().unwrap().to_string_lossy(),
            );
            inputs += 1;
        }
        assert!(inputs > 0, "fuzz/corpus/{name} is empty");
    }
}
