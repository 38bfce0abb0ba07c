//! The module graph stays a chain (docs/architecture.md): no cycle between src/'s top-level
//! modules, and no dataset named outside src/data/, src/models/ and the tables. The check is
//! scripts/dev/module_graph.py (also a tool for contributors); python3 is part of the set-up.

use std::path::Path;
use std::process::Command;

#[test]
fn modules_form_no_cycle_and_name_no_dataset_outside_the_tables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("scripts/dev/module_graph.py"))
        .arg(root.join("src"))
        .output()
        .expect("python3 runs (scripts/setup.sh needs it too)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/dev/module_graph.py found a cycle or a dataset name:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cycles: none"), "{text}");
}
