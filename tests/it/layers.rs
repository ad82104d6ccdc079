//! The layers of `src/` (the map in `src/lib.rs`), read off the source: a
//! top-level module may use what sits in its own layer or below it, never
//! above, and two modules never use each other. Every `crate::<module>` path
//! in every file of a module counts, `use` lines and inline paths alike, tests
//! in the file included. And only `broker` names a lapin type.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Bottom to top.
const LAYERS: &[&[&str]] = &[
    &[
        "event",
        "field_error",
        "dead_letter",
        "config",
        "shutdown",
        "telemetry",
    ],
    &["subscriptions"],
    &["broker"],
    &["metrics"],
    &["delivery"],
    &["ingest"],
    &["api"],
    &["app", "cli", "sink"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The `.rs` files of a top-level module: `src/<m>.rs`, or everything under `src/<m>/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut files = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules `src/lib.rs` declares.
fn declared_modules() -> BTreeSet<String> {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').to_owned())
        .collect()
}

/// Every module named right after `crate::` in `text`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .filter(|(at, _)| !text[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, _)| {
            let rest = &text[at + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

/// The modules a `use crate::{...}` group opens: `a`, `b` in `crate::{a::x, b}`.
fn grouped_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::{") {
        let mut depth = 0;
        let mut item_start = at + "crate::{".len();
        for (offset, c) in text[item_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    found.insert(first_segment(&text[item_start..item_start + offset]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    let end = at + "crate::{".len() + offset;
                    found.insert(first_segment(&text[item_start..end]));
                    item_start = end + 1;
                }
                _ => {}
            }
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn first_segment(item: &str) -> String {
    let item = item.trim();
    let end = item
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(item.len());
    item[..end].to_owned()
}

/// What each top-level module uses of the others, in both spellings:
/// `crate::a::b` and `crate::{a::b, c}`.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    declared_modules()
        .into_iter()
        .map(|module| {
            let mut used = BTreeSet::new();
            for file in files_of(&module) {
                let text = fs::read_to_string(file).unwrap();
                used.extend(crate_paths(&text));
                used.extend(grouped_paths(&text));
            }
            // `crate::{` itself names no module.
            used.remove("");
            used.remove(&module);
            (module, used)
        })
        .collect()
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = declared_modules()
        .into_iter()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "add {unplaced:?} to LAYERS (and the map in src/lib.rs)"
    );
}

#[test]
fn no_module_uses_one_from_a_layer_above_it() {
    let mut upward = Vec::new();
    for (module, used) in uses() {
        let own = layer_of(&module).unwrap_or(usize::MAX);
        for other in used {
            let theirs = layer_of(&other).unwrap_or(usize::MAX);
            if theirs > own {
                upward.push(format!(
                    "{module} (layer {own}) uses crate::{other} (layer {theirs})"
                ));
            }
        }
    }
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}

#[test]
fn no_two_modules_use_each_other() {
    let uses = uses();
    let mut cycles = Vec::new();
    for (module, used) in &uses {
        for other in used {
            if module < other && uses.get(other).is_some_and(|back| back.contains(module)) {
                cycles.push(format!("{module} <-> {other}"));
            }
        }
    }
    assert!(cycles.is_empty(), "{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_both_spellings_of_a_use() {
    let text = "use crate::{\n    broker::{a, b},\n    event::Event,\n};\nlet x = crate::metrics::Metrics::new(false);";
    assert_eq!(
        grouped_paths(text),
        BTreeSet::from(["broker".into(), "event".into()])
    );
    assert!(crate_paths(text).contains("metrics"));
    assert!(!crate_paths("herald_crate::x").contains("x"));
}

/// `lapin::Type`, `lapin::module::Type` or a `use lapin` line: a lapin type named.
fn names_a_lapin_type(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    if code.trim_start().starts_with("use lapin") {
        return true;
    }
    code.match_indices("lapin::").any(|(at, _)| {
        let path = &code[at + "lapin::".len()..];
        let segments: Vec<&str> = path
            .split("::")
            .map(|s| {
                let end = s
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(s.len());
                &s[..end]
            })
            .collect();
        segments
            .iter()
            .any(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
    })
}

#[test]
fn only_the_broker_names_lapin_types() {
    let mut found = Vec::new();
    for module in declared_modules().into_iter().filter(|m| m != "broker") {
        for file in files_of(&module) {
            let text = fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if names_a_lapin_type(line) {
                    found.push(format!("{}:{}: {line}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    assert!(names_a_lapin_type("use lapin::{Channel, options};"));
    assert!(names_a_lapin_type("fn f(d: lapin::message::Delivery) {}"));
    assert!(!names_a_lapin_type(
        r#".add_directive("lapin::returned_messages=off".parse()?)"#
    ));
}
