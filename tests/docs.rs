//! The documentation cannot drift from the code: `docs/metrics.md` lists exactly the families the
//! exporter defines, with their types and labels; every alert links to its own section of
//! `docs/runbook.md`, and every section there belongs to an alert; every relative link and anchor
//! of the README and `docs/` resolves; and the configuration reference, the parser and
//! `config.example.yaml` know the same keys.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use codepipeline_exporter::config::Config;
use codepipeline_exporter::simulator::demo;
use common::{scrape, start_exporter_unthrottled, wait_for};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every family `src/` defines, by name: its type and HELP. Unit tests' fixtures are left out.
fn defined_families() -> BTreeMap<String, (String, String)> {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let pattern =
        regex::Regex::new(r#"Family\s*\{\s*name:\s*"([^"]+)",\s*help:\s*"((?:[^"\\]|\\.)*)",\s*kind:\s*Kind::(\w+)"#).unwrap();
    let mut families = BTreeMap::new();
    for file in files {
        let code = std::fs::read_to_string(&file).unwrap();
        let code = code.split("#[cfg(test)]").next().unwrap();
        for found in pattern.captures_iter(code) {
            families.insert(found[1].to_string(), (found[3].to_lowercase(), found[2].to_string()));
        }
    }
    families
}

/// The rows of docs/metrics.md's tables: family, type and labels (the AWS families' `account`
/// and `region` included, which the tables leave implied).
fn documented_families() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let doc = read("docs/metrics.md");
    let mut families = BTreeMap::new();
    let mut in_table = false;
    for line in doc.lines() {
        if line == "| metric | type | labels | meaning |" {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(cells.len() >= 4, "docs/metrics.md: a row of the wrong shape: {line}");
        let name = cells[0].trim_matches('`').to_string();
        let mut labels: BTreeSet<String> =
            cells[2].split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
        if name.starts_with("aws_") {
            labels.extend(["account".to_string(), "region".to_string()]);
        }
        assert!(families.insert(name.clone(), (cells[1].to_string(), labels)).is_none(), "{name} is documented twice");
    }
    families
}

/// The label names of every family in a text-format scrape; histograms' `le` left out.
fn scraped_labels(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut types = BTreeMap::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        types.insert(name.to_string(), kind.to_string());
    }
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let series = line.rsplit_once(' ').unwrap().0;
        let (name, rest) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|base| types.get(*base).is_some_and(|k| k == "histogram")))
            .unwrap_or(name);
        let names = labels.entry(family.to_string()).or_default();
        // Label values never hold `="` unescaped, so splitting there finds each name.
        for part in rest.split("\",") {
            if let Some((label, _)) = part.split_once("=\"")
                && label != "le"
            {
                names.insert(label.to_string());
            }
        }
    }
    labels
}

/// An OTLP receiver that takes every export, so that the demo's trace families are exported.
fn otlp_sink() -> std::net::SocketAddr {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_reference_lists_exactly_the_families_the_exporter_defines() {
    let defined = defined_families();
    let documented = documented_families();
    assert!(defined.len() > 80, "{} families found in src/", defined.len());
    let undocumented: Vec<&String> = defined.keys().filter(|name| !documented.contains_key(*name)).collect();
    assert!(undocumented.is_empty(), "defined but not in docs/metrics.md: {undocumented:?}");
    let unknown: Vec<&String> = documented.keys().filter(|name| !defined.contains_key(*name)).collect();
    assert!(unknown.is_empty(), "in docs/metrics.md but defined nowhere: {unknown:?}");
    for (name, (kind, help)) in &defined {
        assert_eq!(&documented[name].0, kind, "{name}: docs/metrics.md gives another type");
        assert!(help.len() > 10 && !help.ends_with(' '), "{name}: its HELP says nothing");
    }

    // The labels, as the demo (in events mode, with traces) serves them.
    let simulator = demo::start().await.unwrap();
    let yaml = format!(
        "interval: 500ms\nmetrics:\n  include: ['.*']\ntraces:\n  endpoint: http://{0}/v1/traces\nmetrics_push:\n  endpoint: http://{0}/v1/metrics\n  interval: 1s\naccounts:\n  - name: demo\n    regions: [us-east-1]\n    tags: [team]\n    codepipeline:\n      build_phases: true\n    events:\n      queue_url: {1}\n",
        otlp_sink(),
        demo::queue_url()
    );
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    // Runs end now and then; their anatomy and spans follow.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    loop {
        for (family, labels) in scraped_labels(&scrape(&exporter).await) {
            seen.entry(family).or_default().extend(labels);
        }
        let missing: Vec<&String> = defined.keys().filter(|name| !seen.contains_key(*name)).collect();
        if missing.len() <= ABSENT_FROM_THE_DEMO.len() || std::time::Instant::now() > deadline {
            assert_eq!(missing, ABSENT_FROM_THE_DEMO, "families the demo does not serve");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let wrong: Vec<String> = seen
        .iter()
        .filter_map(|(family, labels)| {
            let (_, documented) = documented.get(family)?;
            (labels != documented)
                .then(|| format!("{family}: docs/metrics.md lists {documented:?}, the exporter serves {labels:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Families the demo never serves, whose labels the test cannot see: a family of failed OTLP
/// exports has a series only once an export failed, which the demo's receiver never lets happen;
/// the demo's actions never fail on AWS's side, so no system error is counted
/// (tests/metrics_push.rs covers it);
/// builds whose phases cannot be read and clocks that disagree have series only once they occur,
/// which the demo's consistent account never makes happen (tests/wait.rs and the timeline's unit
/// tests cover them).
const ABSENT_FROM_THE_DEMO: [&str; 5] = [
    "aws_codepipeline_build_lookup_failures_total",
    "aws_codepipeline_timeline_clamps_total",
    "cicd_system_errors_total",
    "codepipeline_exporter_metric_export_errors_total",
    "codepipeline_exporter_trace_export_errors_total",
];

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings, a repeated one numbered as GitHub does.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let anchor = slug(heading);
        let n = counts.entry(anchor.clone()).or_default();
        anchors.insert(if *n == 0 { anchor.clone() } else { format!("{anchor}-{n}") });
        *n += 1;
    }
    anchors
}

/// The README and every page of docs/.
fn documents() -> Vec<String> {
    let mut pages: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    pages.insert(0, "README.md".into());
    pages
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let link = regex::Regex::new(r"\[[^\]]*\]\(([^)\s]+)\)").unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = read(&document);
        let text: String = {
            // Code blocks hold no links.
            let mut fenced = false;
            text.lines()
                .filter(|l| {
                    if l.starts_with("```") {
                        fenced = !fenced;
                    }
                    !fenced
                })
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let dir = Path::new(&document).parent().unwrap().to_path_buf();
        for found in link.captures_iter(&text) {
            let target = &found[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() { PathBuf::from(&document) } else { dir.join(path) };
            let full = Path::new(ROOT).join(&file);
            if !full.exists() {
                broken.push(format!("{document}: {target}: no file {}", file.display()));
                continue;
            }
            if !anchor.is_empty() {
                let anchors = anchors(&std::fs::read_to_string(&full).unwrap());
                if !anchors.contains(anchor) {
                    broken.push(format!("{document}: {target}: no heading #{anchor} in {}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(checked > 60, "{checked} links checked");
}

#[test]
fn every_page_is_reachable_from_the_readme_and_starts_with_what_it_is_for() {
    let readme = read("README.md");
    for page in documents().into_iter().skip(1) {
        let name = page.trim_start_matches("docs/");
        assert!(readme.contains(&format!("(docs/{name})")), "the README does not link {page}");
        let text = read(&page);
        let mut lines = text.lines();
        assert!(lines.next().is_some_and(|l| l.starts_with("# ")), "{page} has no title");
        assert_eq!(lines.next(), Some(""), "{page}");
        let purpose = lines.next().unwrap_or_default();
        assert!(purpose.len() > 40 && !purpose.starts_with('#'), "{page} does not start with what it is for");
    }
    assert!(readme.lines().count() <= 250, "the README has {} lines", readme.lines().count());
}

#[test]
fn every_alert_links_to_its_runbook_section_and_every_section_to_an_alert() {
    // The rule files link to the runbook the exporter serves; deployments set another base.
    const BASE: &str = "http://localhost:19264/runbook#";
    let rules: serde_json::Value = serde_saphyr::from_str(&read("deploy/prometheus/alerts.yml")).unwrap();
    let runbook = read("docs/runbook.md");
    let sections: BTreeSet<String> =
        runbook.lines().filter_map(|l| l.strip_prefix("## ")).map(|h| h.trim().to_string()).collect();
    let anchors = anchors(&runbook);
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let Some(alert) = rule["alert"].as_str() else { continue };
            alerts.insert(alert.to_string());
            let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_else(|| panic!("{alert} has no runbook_url"));
            let anchor = url.strip_prefix(BASE).unwrap_or_else(|| panic!("{alert}: {url} is not in {BASE}"));
            assert_eq!(anchor, slug(alert), "{alert} links to another section");
            assert!(anchors.contains(anchor), "{alert}: docs/runbook.md has no #{anchor}");
        }
    }
    assert!(alerts.len() >= 24, "{alerts:?}");
    let checked = common::runbook::assert_links("alerts.yml", &rules["groups"], "http://localhost:19264/runbook");
    assert_eq!((checked, alerts.len()), (30, 29), "two rules of CodeConnectionsConnectionUnavailable share one section");
    // The one section of no alert: the roles and tools every entry uses.
    let orphans: Vec<&String> = sections.difference(&alerts).filter(|s| *s != "Before you start").collect();
    assert!(orphans.is_empty(), "runbook sections of no alert: {orphans:?}");
}

/// The keys a section of the file takes, as the parser itself says when it meets one it does not
/// know.
fn accepted(yaml: &str) -> BTreeSet<String> {
    let message = Config::parse(yaml, Path::new("keys.yaml")).expect_err("an unknown key").to_string();
    let list = message.split("expected one of ").nth(1).unwrap_or_else(|| panic!("{message}"));
    list.split(',').map(|k| k.trim().trim_matches('`').to_string()).collect()
}

/// Every key path a YAML document holds, a list's entries as `[]`.
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                out.insert(path.clone());
                // Header names are values, not keys.
                if path != "traces.headers" && path != "metrics_push.headers" {
                    key_paths(value, &path, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_configuration_reference_the_parser_and_the_example_know_the_same_keys() {
    let account = "accounts:\n  - name: a\n";
    let sections = [
        ("", "zzz: 1\n".to_string()),
        ("metrics.", "metrics:\n  zzz: 1\n".to_string()),
        ("traces.", "traces:\n  zzz: 1\n".to_string()),
        ("metrics_push.", "metrics_push:\n  zzz: 1\n".to_string()),
        ("accounts[].", format!("{account}    zzz: 1\n")),
        ("accounts[].codepipeline.", format!("{account}    codepipeline:\n      zzz: 1\n")),
        ("accounts[].codeconnections.", format!("{account}    codeconnections:\n      zzz: 1\n")),
        (
            "accounts[].codeconnections.repository_syncs[].",
            format!(
                "{account}    codeconnections:\n      repository_syncs:\n        - repository_link_id: l\n          branch: b\n          zzz: 1\n"
            ),
        ),
        (
            "accounts[].events.",
            format!("{account}    events:\n      queue_url: https://sqs.us-east-1.amazonaws.com/1/q\n      zzz: 1\n"),
        ),
        ("organization.", "organization:\n  role_name: r\n  zzz: 1\n".to_string()),
        ("organization.include.", "organization:\n  role_name: r\n  include:\n    zzz: 1\n".to_string()),
        ("organization.exclude.", "organization:\n  role_name: r\n  exclude:\n    zzz: 1\n".to_string()),
        ("organization.codepipeline.", "organization:\n  role_name: r\n  codepipeline:\n    zzz: 1\n".to_string()),
        ("organization.codeconnections.", "organization:\n  role_name: r\n  codeconnections:\n    zzz: 1\n".to_string()),
        (
            "organization.events.",
            "organization:\n  role_name: r\n  events:\n    queue_url: https://sqs.us-east-1.amazonaws.com/1/q\n    zzz: 1\n"
                .to_string(),
        ),
    ];
    let mut parser = BTreeSet::new();
    for (prefix, yaml) in &sections {
        parser.extend(accepted(yaml).into_iter().map(|key| format!("{prefix}{key}")));
    }
    let reference: BTreeSet<String> = read("docs/configuration.md")
        .split("\n## Keys\n")
        .nth(1)
        .expect("docs/configuration.md has a Keys section")
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim_start_matches("| `").split('`').next().unwrap().to_string())
        .collect();
    assert_eq!(
        reference.difference(&parser).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented in docs/configuration.md, unknown to the parser"
    );
    assert_eq!(
        parser.difference(&reference).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "accepted by the parser, missing from docs/configuration.md"
    );
    let example: serde_json::Value = serde_saphyr::from_str(&read("config.example.yaml")).unwrap();
    let mut in_example = BTreeSet::new();
    key_paths(&example, "", &mut in_example);
    assert_eq!(in_example, parser, "config.example.yaml shows every key the parser takes, and no other");
}

/// A fenced block of a Markdown page: its info string, first line number, text, and the marker
/// comment (`<!-- check: … -->`) on the line before it, if any.
struct Block {
    page: String,
    line: usize,
    language: String,
    text: String,
    marker: Option<String>,
}

fn blocks(page: &str) -> Vec<Block> {
    let text = read(page);
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let end = (i + 1..lines.len()).find(|&j| lines[j].trim_start().starts_with("```")).unwrap_or(lines.len());
        let before = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim());
        let marker = before.and_then(|l| l.strip_prefix("<!-- check: ")).and_then(|l| l.strip_suffix(" -->"));
        blocks.push(Block {
            page: page.to_string(),
            line: i + 1,
            language: info.trim().to_string(),
            text: lines[i + 1..end].join("\n") + "\n",
            marker: marker.map(str::to_string),
        });
        i = end + 1;
    }
    blocks
}

/// What the exporter says of a configuration file, as a user runs `--config.check` on it.
fn config_check(dir: &Path, file: &str) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_codepipeline-exporter"))
        .args(["--config.check", "--config.file", file])
        .current_dir(dir)
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Every YAML block of the README and docs/ is a configuration that `--config.check` accepts,
/// unless it is marked as something else (`not-exporter-config`: Kubernetes, Helm, Prometheus)
/// or as an example of an error (`fails`), which must then fail with its file, line and column.
#[test]
fn every_configuration_block_of_the_docs_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for page in documents() {
        for block in blocks(&page).into_iter().filter(|b| b.language == "yaml" || b.language == "yml") {
            let at = format!("{}:{}", block.page, block.line);
            match block.marker.as_deref() {
                Some("not-exporter-config") => continue,
                None | Some("fails") => {}
                Some(other) => panic!("{at}: unknown marker {other:?}"),
            }
            std::fs::write(dir.path().join("block.yaml"), &block.text).unwrap();
            let (ok, errors) = config_check(dir.path(), "block.yaml");
            if block.marker.is_some() {
                assert!(!ok, "{at} is marked to fail, but --config.check accepts it");
                assert!(errors.contains("block.yaml:"), "{at}: the error names no location: {errors}");
            } else {
                assert!(ok, "{at} fails --config.check (mark it if it is not an exporter configuration):\n{errors}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 8, "configuration blocks");
}

/// The logical lines (backslash continuations joined) of the shell blocks that run the exporter:
/// `codepipeline-exporter …` as installed, or `cargo run --release -- …`.
fn exporter_commands() -> Vec<(String, Vec<String>)> {
    let mut commands = Vec::new();
    for page in documents() {
        for block in blocks(&page).into_iter().filter(|b| ["sh", "bash", "shell"].contains(&b.language.as_str())) {
            for line in block.text.replace("\\\n", " ").lines() {
                let line = line.split(" #").next().unwrap_or_default().trim();
                let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                let args = match words.first().map(String::as_str) {
                    Some("codepipeline-exporter") => words[1..].to_vec(),
                    Some("cargo") if line.starts_with("cargo run --release --") => words[4..].to_vec(),
                    _ => continue,
                };
                commands.push((format!("{}:{}: {line}", block.page, block.line), args));
            }
        }
    }
    commands
}

/// Every command of the docs that runs the exporter runs: a check exits 0; a server starts and
/// answers /-/healthy on the address it was given, and stops cleanly on SIGTERM. The files it
/// names are the YAML blocks of the same page that start with `# <file name>`.
#[test]
fn every_exporter_command_of_the_docs_runs() {
    let commands = exporter_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    for (at, args) in commands {
        let dir = tempfile::tempdir().unwrap();
        let page = at.split(':').next().unwrap();
        for block in blocks(page) {
            if let Some(name) = block.text.lines().next().and_then(|l| l.strip_prefix("# ")) {
                std::fs::write(dir.path().join(name.trim()), &block.text).unwrap();
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut args = args.clone();
        let once = args.iter().any(|a| ["--config.check", "--help", "--version"].contains(&a.as_str()));
        if let Some(i) = args.iter().position(|a| a == "--web.listen-address") {
            args[i + 1] = format!("127.0.0.1:{port}");
        } else if let Some(i) = args.iter().position(|a| a.starts_with("--web.listen-address=")) {
            args[i] = format!("--web.listen-address=127.0.0.1:{port}");
        } else {
            args.push(format!("--web.listen-address=127.0.0.1:{port}"));
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codepipeline-exporter"))
            .args(&args)
            .current_dir(dir.path())
            // No credentials and no instance metadata: the command must start all the same.
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if once {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{at}: {}", String::from_utf8_lossy(&output.stderr));
            continue;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let healthy = loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut errors = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut errors).unwrap();
                panic!("{at} exited with {status}: {errors}");
            }
            let answer = std::net::TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut stream| {
                std::io::Write::write_all(&mut stream, b"GET /-/healthy HTTP/1.0\r\n\r\n").ok()?;
                let mut reply = String::new();
                std::io::Read::read_to_string(&mut stream, &mut reply).ok()?;
                Some(reply)
            });
            if answer.is_some_and(|reply| reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")) {
                break true;
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = child.wait().unwrap();
        assert!(healthy, "{at}: /-/healthy did not answer within 30 s");
        assert!(status.success(), "{at}: exited with {status} on SIGTERM");
    }
}
