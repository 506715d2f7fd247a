//! Keeps the docs honest: every crate is in ARCHITECTURE.md, and every Rust source file
//! starts with a `//!` comment saying what it owns.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            // Build output (e.g. the fuzz workspace's own `target/`) is not ours.
            if entry.file_name() != "target" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_crate_is_in_the_codemap() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for entry in std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            arch.contains(&format!("crates/{name}")),
            "ARCHITECTURE.md does not mention crates/{name}"
        );
    }
}

#[test]
fn every_module_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    assert!(files.len() > 20);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` doc comment: {missing:?}"
    );
}

/// The text of the codemap section of crate `name` (`### \`crates/name\`` up to the next
/// heading).
fn crate_section<'a>(arch: &'a str, name: &str) -> Option<&'a str> {
    let start = arch.find(&format!("### `crates/{name}`"))?;
    let rest = &arch[start + 4..];
    let end = [rest.find("\n### "), rest.find("\n## ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[test]
fn every_module_file_is_named_in_its_crates_section() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let section = crate_section(&arch, &name).unwrap_or("");
        let src = entry.path().join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for file in files {
            let rel = file
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            if rel == "lib.rs" || rel == "main.rs" {
                continue;
            }
            // `dir/mod.rs` may be named as the folder, `dir/`.
            let named = section.contains(&rel)
                || rel
                    .strip_suffix("mod.rs")
                    .is_some_and(|dir| !dir.is_empty() && section.contains(dir));
            if !named {
                missing.push(format!("crates/{name}/src/{rel}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's crate sections do not name these module files: {missing:?}"
    );
}

#[test]
fn the_where_is_table_points_at_real_functions() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let table = arch
        .split("## Where is")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Where is …` table");
    let table = table.split("\n## ").next().unwrap_or(table);
    let mut checked = 0;
    let mut wrong = Vec::new();
    // Every `crates/…/x.rs::name` in the table: the file exists and defines `name`.
    for cell in table.split('`').skip(1).step_by(2) {
        let Some((path, item)) = cell.split_once(".rs::") else {
            continue;
        };
        let file = root().join(format!("{path}.rs"));
        let item = item.rsplit("::").next().unwrap_or(item);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let defined = [
            "fn ", "struct ", "enum ", "trait ", "const ", "type ", "mod ",
        ]
        .iter()
        .any(|kw| {
            text.contains(&format!("{kw}{item}("))
                || text.contains(&format!("{kw}{item} "))
                || text.contains(&format!("{kw}{item}<"))
                || text.contains(&format!("{kw}{item}:"))
                || text.contains(&format!("{kw}{item};"))
        });
        checked += 1;
        if !defined {
            wrong.push(cell.to_owned());
        }
    }
    assert!(
        checked >= 20,
        "the table names at least 20 places ({checked})"
    );
    assert!(
        wrong.is_empty(),
        "the where-is table names places that do not exist: {wrong:?}"
    );
}
