//! The shape of `src/`: data flows one way, so no module imports, directly or through others, a
//! module that imports it back; the generic modules name no AWS service, and each collector's
//! settings are in its own module, so that a new service or kind of target is added in its
//! collector and the registry alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module of a file under `src/`: `src/codepipeline/executions.rs` belongs to
/// `codepipeline`.
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix("src").unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without its comments, which may link to any module.
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| format!("{line}\n"))
        .collect()
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Which modules each module of the library refers to as `crate::name`, or in a
/// `use crate::{a, b}` list.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut paths = Vec::new();
    files(Path::new("src"), &mut paths);
    let modules: BTreeSet<String> = paths.iter().map(|p| module_of(p)).filter(|m| m != "lib" && m != "main").collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &paths {
        let from = module_of(path);
        if from == "lib" || from == "main" {
            continue;
        }
        let code = code(path);
        let mut referred = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(list) => list[..list.find('}').unwrap()].split(',').map(|n| n.trim().split("::").next().unwrap()).collect(),
                None => vec![rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap()],
            };
            referred.extend(names.into_iter().filter(|n| modules.contains(*n) && *n != from).map(str::to_string));
        }
        graph.entry(from).or_default().extend(referred);
    }
    graph
}

/// A path of imports from `module` back to itself, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>, module: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![module.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        for next in graph.get(path.last().unwrap()).into_iter().flatten() {
            if next == module {
                return Some(path.iter().cloned().chain([next.clone()]).collect());
            }
            if seen.insert(next.clone()) {
                stack.push(path.iter().cloned().chain([next.clone()]).collect());
            }
        }
    }
    None
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = imports();
    assert!(graph["scheduler"].contains("registry"), "the reader sees the imports: {graph:?}");
    assert!(graph["codepipeline"].contains("collector"), "{graph:?}");
    assert!(graph["config"].contains("registry") && graph["registry"].contains("codepipeline"), "{graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle(&graph, m)).map(|path| path.join(" → ")).collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn generic_modules_name_no_service_operation_or_collector() {
    let generic = [
        "scheduler",
        "collector",
        "signal",
        "target",
        "store",
        "scrape",
        "http",
        "exporter",
        "readiness",
        "reload",
        "status",
        "traces",
    ];
    // Every operation the exporter may call, as the IAM policy grants them.
    let policy: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("deploy/iam-policy.json").unwrap()).unwrap();
    let operations: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|statement| statement["Action"].as_array().unwrap())
        .map(|action| action.as_str().unwrap().split(':').nth(1).unwrap().to_string())
        .collect();
    assert!(operations.iter().any(|o| o == "GetPipelineState"), "{operations:?}");
    let names: Vec<String> = ["codepipeline::", "codeconnections::", "\"codepipeline\"", "\"codeconnections\""]
        .into_iter()
        .map(str::to_string)
        .chain(
            ["\"pipeline\"", "\"repository_sync\"", "\"resource_sync\"", "PipelineTarget", "RepositorySync", "ResourceSync"]
                .map(String::from),
        )
        .chain(operations)
        .collect();
    let mut found = Vec::new();
    for module in generic {
        let code = code(Path::new(&format!("src/{module}.rs")));
        // Everything before the unit tests, which may use any name for their fixtures.
        let code = code.split("#[cfg(test)]").next().unwrap();
        found
            .extend(names.iter().filter(|name| code.contains(name.as_str())).map(|name| format!("src/{module}.rs names {name}")));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The collectors: the modules that implement `collector::Collector`.
fn collectors() -> Vec<String> {
    let mut paths = Vec::new();
    files(Path::new("src"), &mut paths);
    let mut found: Vec<String> =
        paths.iter().filter(|path| code(path).contains("impl collector::Collector for")).map(|path| module_of(path)).collect();
    found.sort();
    found.dedup();
    found
}

/// The names of the types a settings file defines.
fn types(path: &Path) -> Vec<String> {
    let code = code(path);
    code.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches("pub ");
            let rest = line.strip_prefix("struct ").or_else(|| line.strip_prefix("enum "))?;
            Some(rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap().to_string())
        })
        .collect()
}

/// Whether `code` holds `word` with no letter, digit or `_` on either side, in any case.
fn names_word(code: &str, word: &str) -> bool {
    let code = code.to_ascii_lowercase();
    let word = word.to_ascii_lowercase();
    let part = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    code.match_indices(&word)
        .any(|(at, _)| !part(code[..at].chars().next_back()) && !part(code[at + word.len()..].chars().next()))
}

/// Each collector's section of the file (its YAML shape, validation and resolved settings) is in
/// the collector's own `settings` module, and `config` composes them through the registry without
/// naming one: neither its name (as a key, a field or a module path) nor a type of its settings.
/// The collectors and the features with sections of their own read the file through `yaml`
/// alone, never through `config`, which imports them.
#[test]
fn each_collector_holds_its_settings_and_config_names_none() {
    let graph = imports();
    let collectors = collectors();
    assert_eq!(collectors, ["codeconnections", "codepipeline"], "the reader finds the collectors");
    let config = code(Path::new("src/config.rs"));
    let config = config.split("#[cfg(test)]").next().unwrap();
    let mut found = Vec::new();
    for collector in &collectors {
        let settings = format!("src/{collector}/settings.rs");
        let types = types(Path::new(&settings));
        if !types.iter().any(|t| t == "Settings") {
            found.push(format!("{settings} defines no Settings: {types:?}"));
        }
        if names_word(config, collector) {
            found.push(format!("src/config.rs names the collector {collector}"));
        }
        for name in types.iter().filter(|t| *t != "Settings") {
            if names_word(config, name) {
                found.push(format!("src/config.rs names {name}, of {settings}"));
            }
        }
        if !graph["registry"].contains(collector) {
            found.push(format!("src/registry.rs does not name {collector}"));
        }
    }
    for module in
        collectors.iter().map(String::as_str).chain(["traces", "metrics_push", "events", "organization", "otlp", "yaml"])
    {
        if graph.get(module).is_some_and(|imports| imports.contains("config")) {
            found.push(format!("{module} imports config"));
        }
    }
    assert!(graph.get("yaml").is_none_or(BTreeSet::is_empty), "yaml imports no module of the crate: {:?}", graph.get("yaml"));
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// A run's timeline is built once and read by both the run-anatomy metrics and the trace: the data
/// flows one way, from `timeline` to `anatomy` and `trace`, and `anatomy` hands it to `trace`.
#[test]
fn the_run_timeline_flows_one_way() {
    let uses =
        |file: &str, module: &str| code(Path::new(&format!("src/codepipeline/{file}.rs"))).contains(&format!("super::{module}"));
    assert!(uses("anatomy", "timeline") && uses("trace", "timeline") && uses("anatomy", "trace"));
    assert!(!uses("trace", "anatomy"), "trace reads the timeline, not the anatomy");
    assert!(!uses("timeline", "anatomy") && !uses("timeline", "trace"), "the timeline reads neither of its readers");
}
