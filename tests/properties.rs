//! Every answer AWS's model allows, through the real SDK into the exporter: property tests.
//!
//! A seeded generator builds answers from botocore's model of CodePipeline (the one `scripts/test.sh`
//! installs into `target/tools`) for the calls of a pipeline's poll: GetPipelineState, GetPipeline
//! and ListPipelineExecutions. It picks every enum value and values the SDK does not know (with
//! quotes, backslashes, line feeds and non-ASCII), leaves optional members out or puts them in,
//! makes lists empty, short or long, strings at their length limits (with the same characters
//! where the model's pattern allows them), timestamps at the epoch and in year 9999, and pages
//! that name a next page that ends early. The simulator serves each answer in the SDK's protocol
//! (its scripted-answer hook), and the real exporter polls it.
//!
//! A case is one pipeline, `case-NNNNNN`, seeded by its number; cases run 200 at a time, each batch
//! with a fresh simulator and exporter. For every case it must hold that the exporter does not
//! panic, its target reports `target_up` (no poll is stuck), every series is unique and its label
//! values escaped, and each stage and action status AWS gave is the one 1 of its state set,
//! unknown values included. Each batch's exposition is parsed here, and checked by
//! `promtool check metrics` too (one promtool run per batch, which covers all its cases). The
//! resident memory after the last batch must stay within 256 MiB of that after the first.
//!
//! `PROPERTY_CASES` sets the number of cases (2,000 by default) and `PROPERTY_SEED` the seed:
//! `PROPERTY_CASES=100000 cargo test --release --test properties`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ciborium::Value;
use codepipeline_exporter::simulator::{SimPipeline, Simulator, World};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value as Json;

/// Cases polled by one exporter.
const BATCH: usize = 200;
const DEFAULT_SEED: u64 = 0x5eed_c0de;

/// Values of an enum the SDK does not know, as a later model may add: plain, and with every
/// character a label value must escape.
const UNKNOWN_ENUM_VALUES: &[&str] = &["Paused", "Queued \"soon\"\\\nnäher ✓"];

/// Text with every character a label value escapes, and non-ASCII, repeated to a length.
const SPECIAL: &str = "q\"b\\s\nñ€😀x";

/// Generates values of a model's shapes.
struct Generator<'a> {
    shapes: &'a serde_json::Map<String, Json>,
    patterns: BTreeMap<String, Option<regex::Regex>>,
    rng: StdRng,
}

impl<'a> Generator<'a> {
    fn new(model: &'a Json, seed: u64) -> Generator<'a> {
        Generator { shapes: model["shapes"].as_object().unwrap(), patterns: BTreeMap::new(), rng: StdRng::seed_from_u64(seed) }
    }

    fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    fn value(&mut self, name: &str, depth: usize) -> Value {
        let shape = &self.shapes[name];
        match shape["type"].as_str().unwrap() {
            "structure" => {
                let required: BTreeSet<&str> =
                    shape["required"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
                let mut members = Vec::new();
                for (member, target) in shape["members"].as_object().unwrap() {
                    let target = target["shape"].as_str().unwrap();
                    let present = required.contains(member.as_str()) || (depth < 6 && self.rng.random_bool(0.6));
                    if present {
                        members.push((Value::Text(member.clone()), self.value(target, depth + 1)));
                    }
                }
                Value::Map(members)
            }
            "list" => {
                let member = shape["member"]["shape"].as_str().unwrap().to_string();
                let (min, max) = (limit(shape, "min").unwrap_or(0), limit(shape, "max").unwrap_or(40).min(40));
                // Deeper lists stay short, so that a case stays small.
                let long = if depth < 3 { max } else { max.min(3) };
                let len = match self.rng.random_range(0..4) {
                    0 => min,
                    1 => long,
                    _ => self.rng.random_range(min..=min.max(long.min(4))),
                };
                Value::Array((0..len).map(|_| self.value(&member, depth + 1)).collect())
            }
            "map" => {
                let (key, value) = (shape["key"]["shape"].as_str().unwrap(), shape["value"]["shape"].as_str().unwrap());
                let len = self.rng.random_range(0..3);
                Value::Map((0..len).map(|_| (self.value(key, depth + 1), self.value(value, depth + 1))).collect())
            }
            "string" => Value::Text(self.string(name)),
            "integer" | "long" => {
                let min = shape["min"].as_i64().unwrap_or(if shape["type"] == "integer" { i32::MIN.into() } else { i64::MIN });
                let max = shape["max"].as_i64().unwrap_or(if shape["type"] == "integer" { i32::MAX.into() } else { i64::MAX });
                let pick = match self.rng.random_range(0..4) {
                    0 => min,
                    1 => max,
                    2 => 0.clamp(min, max),
                    _ => self.rng.random_range(min..=max),
                };
                Value::Integer(pick.into())
            }
            "boolean" => Value::Bool(self.rng.random_bool(0.5)),
            "double" | "float" => Value::Float(self.rng.random_range(-1e6..1e6)),
            "timestamp" => {
                let seconds = match self.rng.random_range(0..4) {
                    0 => 0.0,
                    1 => 253_402_300_799.0,
                    _ => 1_700_000_000.0 + f64::from(self.rng.random_range(0..10_000_000u32)) / 8.0,
                };
                Value::Tag(1, Box::new(Value::Float(seconds)))
            }
            "blob" => Value::Bytes(vec![0, 1, 2]),
            other => panic!("shape type {other} of {name}"),
        }
    }

    /// A string of the shape `name`: an enum value (or one the SDK does not know), or text within
    /// its length limits that its pattern allows, the special characters whenever it does.
    fn string(&mut self, name: &str) -> String {
        let shape = &self.shapes[name];
        if let Some(values) = shape["enum"].as_array() {
            if self.rng.random_bool(0.15) {
                return UNKNOWN_ENUM_VALUES[self.rng.random_range(0..UNKNOWN_ENUM_VALUES.len())].to_string();
            }
            return values[self.rng.random_range(0..values.len())].as_str().unwrap().to_string();
        }
        let min = limit(shape, "min").unwrap_or(0);
        let max = limit(shape, "max").unwrap_or(256).min(1024);
        let len = match self.rng.random_range(0..3) {
            0 => max,
            1 => min.max(1).min(max),
            _ => self.rng.random_range(min.max(1).min(max)..=max),
        };
        let pattern = self
            .patterns
            .entry(name.to_string())
            .or_insert_with(|| shape["pattern"].as_str().and_then(|p| regex::Regex::new(p).ok()))
            .clone();
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.rng.random::<u32>(),
            self.rng.random::<u16>(),
            self.rng.random_range(0..0x1000),
            self.rng.random_range(0..0x1000),
            self.rng.random::<u64>() & 0xffff_ffff_ffff
        );
        let candidates = [
            SPECIAL.chars().cycle().take(len).collect::<String>(),
            "aZ0._-@".chars().cycle().take(len).collect::<String>(),
            uuid,
            "111122223333".to_string(),
            "AWS".to_string(),
            "arn:aws:iam::111122223333:role/r".to_string(),
            "arn:aws:lambda:us-east-1:111122223333:function:f".to_string(),
            "arn:aws:codepipeline:us-east-1:111122223333:p".to_string(),
            "a".to_string(),
        ];
        let fits = |s: &String| {
            let chars = s.chars().count();
            chars >= min && chars <= max && pattern.as_ref().is_none_or(|p| p.is_match(s))
        };
        candidates.iter().find(|c| fits(c)).cloned().unwrap_or_else(|| panic!("no candidate fits the shape {name}"))
    }
}

fn limit(shape: &Json, name: &str) -> Option<usize> {
    shape[name].as_i64().map(|n| n.max(0) as usize)
}

fn member<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    value.as_map()?.iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v)
}

fn set(value: &mut Value, name: &str, to: Value) {
    let Value::Map(entries) = value else { panic!("not a map") };
    entries.retain(|(k, _)| k.as_text() != Some(name));
    entries.push((Value::Text(name.into()), to));
}

/// One case: the answers for its pipeline, and the status each stage and action had, as AWS gave
/// it (the first of a name, as the exporter keeps the first).
struct Case {
    name: String,
    state: Value,
    pipeline: Value,
    executions: Vec<Value>,
    stage_statuses: BTreeMap<String, Option<String>>,
    action_statuses: BTreeMap<(String, String), Option<String>>,
}

fn case(generator: &mut Generator, seed: u64, number: usize) -> Case {
    generator.reseed(seed ^ (number as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let name = format!("case-{number:06}");
    let mut state = generator.value("GetPipelineStateOutput", 0);
    set(&mut state, "pipelineName", Value::Text(name.clone()));
    let mut stage_statuses = BTreeMap::new();
    let mut action_statuses = BTreeMap::new();
    let mut stages = Vec::new();
    // The exporter keeps the first stage of each name (a missing name is the empty one), and the
    // first action of each name inside it; so does what is expected of it.
    for stage in member(&state, "stageStates").and_then(Value::as_array).into_iter().flatten() {
        let stage_name = member(stage, "stageName").and_then(Value::as_text).unwrap_or_default();
        if stage_statuses.contains_key(stage_name) {
            continue;
        }
        let status = member(stage, "latestExecution").and_then(|e| member(e, "status")).and_then(Value::as_text);
        stage_statuses.insert(stage_name.to_string(), status.map(str::to_string));
        let mut actions = Vec::new();
        for action in member(stage, "actionStates").and_then(Value::as_array).into_iter().flatten() {
            let action_name = member(action, "actionName").and_then(Value::as_text).unwrap_or_default();
            let key = (stage_name.to_string(), action_name.to_string());
            if action_statuses.contains_key(&key) {
                continue;
            }
            let status = member(action, "latestExecution").and_then(|e| member(e, "status")).and_then(Value::as_text);
            action_statuses.insert(key, status.map(str::to_string));
            actions.push(action_name.to_string());
        }
        stages.push((stage_name.to_string(), actions));
    }
    // The declaration names the stages and actions the state has, as AWS's does.
    let mut pipeline = generator.value("GetPipelineOutput", 0);
    let mut declaration = generator.value("PipelineDeclaration", 1);
    set(&mut declaration, "name", Value::Text(name.clone()));
    let declared = stages
        .iter()
        .map(|(stage, actions)| {
            let mut declared = generator.value("StageDeclaration", 2);
            set(&mut declared, "name", Value::Text(stage.clone()));
            let actions = actions
                .iter()
                .map(|action| {
                    let mut declared = generator.value("ActionDeclaration", 3);
                    set(&mut declared, "name", Value::Text(action.clone()));
                    declared
                })
                .collect();
            set(&mut declared, "actions", Value::Array(actions));
            declared
        })
        .collect();
    set(&mut declaration, "stages", Value::Array(declared));
    set(&mut pipeline, "pipeline", declaration);
    // Pages of the history, the first naming a next page that may end early (empty).
    let mut first = generator.value("ListPipelineExecutionsOutput", 0);
    let mut executions = Vec::new();
    if generator.rng.random_bool(0.3) {
        set(&mut first, "nextToken", Value::Text("page-2".into()));
        executions.push(first);
        let mut second = generator.value("ListPipelineExecutionsOutput", 0);
        if generator.rng.random_bool(0.5) {
            set(&mut second, "pipelineExecutionSummaries", Value::Array(Vec::new()));
        }
        let Value::Map(entries) = &mut second else { unreachable!() };
        entries.retain(|(k, _)| k.as_text() != Some("nextToken"));
        executions.push(second);
    } else {
        let Value::Map(entries) = &mut first else { unreachable!() };
        entries.retain(|(k, _)| k.as_text() != Some("nextToken"));
        executions.push(first);
    }
    Case { name, state, pipeline, executions, stage_statuses, action_statuses }
}

/// A label value as the exposition escapes it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A series: its metric name and its label pairs, unescaped.
type Series = (String, Vec<(String, String)>);

/// Parses a text-format exposition: every sample's series (name and label pairs, unescaped) and
/// value. Fails on a duplicate series, a bad escape, or a malformed line.
fn parse(text: &str) -> Result<BTreeMap<Series, f64>, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, rest) = match line.find('{') {
            Some(brace) => (&line[..brace], &line[brace + 1..]),
            None => {
                let (name, value) = line.split_once(' ').ok_or(format!("no value: {line}"))?;
                let value = value.parse::<f64>().map_err(|_| format!("bad value: {line}"))?;
                if out.insert((name.to_string(), Vec::new()), value).is_some() {
                    return Err(format!("duplicate series: {line}"));
                }
                continue;
            }
        };
        let mut labels = Vec::new();
        let mut chars = rest.chars().peekable();
        loop {
            let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if chars.next() != Some('"') {
                return Err(format!("label {label} not quoted: {line}"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or(format!("unterminated label value: {line}"))? {
                    '\\' => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape \\{other:?}: {line}")),
                    },
                    '"' => break,
                    '\n' => return Err(format!("raw line feed: {line}")),
                    c => value.push(c),
                }
            }
            labels.push((label, value));
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => return Err(format!("expected , or }} not {other:?}: {line}")),
            }
        }
        let value: String = chars.collect();
        let value =
            value.trim().split(' ').next().unwrap_or_default().parse::<f64>().map_err(|_| format!("bad value: {line}"))?;
        if out.insert((name.to_string(), labels), value).is_some() {
            return Err(format!("duplicate series: {line}"));
        }
    }
    Ok(out)
}

/// The resident set of this process, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split(' ').nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Runs a batch of cases against one simulator and exporter; the problems found, by case.
async fn batch(cases: &[Case]) -> (Vec<String>, String) {
    let mut world = World::default();
    for case in cases {
        world.pipelines.insert(case.name.clone(), SimPipeline::new(&case.name, &[("Source", &["Source"])]));
    }
    let simulator = Simulator::start(world).await.unwrap();
    for case in cases {
        simulator.script("GetPipelineState", Some(&case.name), [case.state.clone()]);
        simulator.script("GetPipeline", Some(&case.name), [case.pipeline.clone()]);
        simulator.script("ListPipelineExecutions", Some(&case.name), case.executions.clone());
    }
    let yaml = "interval: 1h\nactive_interval: 1h\ndiscovery_interval: 1h\nrequest_timeout: 5s\naccounts:\n  - name: test\n    regions: [us-east-1]\n";
    // Polled once: a pipeline in progress would be polled again after `active_interval`, and then
    // answered from the world instead of its case.
    let exporter = common::start_exporter_unthrottled(&simulator, yaml).await;
    // Every case polled once and its details read: then the exposition settles.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut problems = Vec::new();
    let mut last = String::new();
    let mut stable = 0;
    loop {
        let text = common::scrape(&exporter).await;
        // Which cases report target_up, read once per scrape rather than searched for per case.
        let reporting: BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("codepipeline_exporter_target_up{") && l.contains("kind=\"pipeline\""))
            .filter_map(|l| l.split("name=\"").nth(1)?.split('"').next())
            .collect();
        let up = cases.iter().filter(|c| reporting.contains(c.name.as_str())).count();
        let aws = |text: &str| {
            use std::hash::{Hash as _, Hasher as _};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            text.lines().filter(|l| l.starts_with("aws_")).for_each(|l| l.hash(&mut hasher));
            hasher.finish()
        };
        // The assembler publishes a new body at most every ten times its last assembly took, so
        // the exposition counts as settled once it stayed the same for a second.
        if aws(&text) == aws(&last) {
            stable += 1;
        } else {
            stable = 0;
        }
        let settled = up == cases.len() && simulator.calls("GetPipeline") >= cases.len() as u64 && stable >= 5;
        last = text;
        if settled {
            break;
        }
        if Instant::now() > deadline {
            for case in cases.iter().filter(|c| !last.contains(&format!("kind=\"pipeline\",name=\"{}\"}}", c.name))) {
                problems.push(format!("{}: no target_up within 60 s: a stuck poll", case.name));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = last;
    exporter.shutdown().await;
    let series = match parse(&text) {
        Ok(series) => series,
        Err(e) => {
            problems.push(format!("exposition: {e}"));
            return (problems, text);
        }
    };
    // Each state set: one 1 at most among a stage's or action's statuses, and exactly one, at the
    // status AWS gave, where it gave one.
    let mut sets: BTreeMap<Series, Vec<(String, f64)>> = BTreeMap::new();
    for ((name, labels), value) in &series {
        if name == "aws_codepipeline_stage_status" || name == "aws_codepipeline_action_status" {
            let status = labels.iter().find(|(l, _)| l == "status").map(|(_, v)| v.clone()).unwrap_or_default();
            let key: Vec<(String, String)> = labels.iter().filter(|(l, _)| l != "status").cloned().collect();
            sets.entry((name.clone(), key)).or_default().push((status, *value));
        }
    }
    for case in cases {
        let of = |labels: &[(String, String)]| labels.iter().any(|(l, v)| l == "pipeline" && *v == case.name);
        for ((family, labels), statuses) in sets.iter().filter(|((_, labels), _)| of(labels)) {
            let ones: Vec<&str> = statuses.iter().filter(|(_, v)| *v == 1.0).map(|(s, _)| s.as_str()).collect();
            let label = |name: &str| labels.iter().find(|(l, _)| l == name).map(|(_, v)| v.clone()).unwrap_or_default();
            let given = if family == "aws_codepipeline_stage_status" {
                case.stage_statuses.get(&label("stage")).cloned().flatten()
            } else {
                case.action_statuses.get(&(label("stage"), label("action"))).cloned().flatten()
            };
            match given {
                Some(ref given) if ones != [given.as_str()] => {
                    problems.push(format!("{}: {family}{labels:?}: AWS gave {given:?}, the ones are {ones:?}", case.name))
                }
                None if ones.len() > 1 => problems.push(format!("{}: {family}{labels:?}: several ones {ones:?}", case.name)),
                _ => {}
            }
        }
        for (stage, _) in case.stage_statuses.iter().filter(|(_, status)| status.is_some()) {
            let key = (
                "aws_codepipeline_stage_status".to_string(),
                vec![
                    ("account".to_string(), "test".to_string()),
                    ("region".to_string(), "us-east-1".to_string()),
                    ("pipeline".to_string(), case.name.clone()),
                    ("stage".to_string(), stage.clone()),
                ],
            );
            if !sets.contains_key(&key) {
                problems.push(format!("{}: no aws_codepipeline_stage_status for stage {stage}", case.name));
            }
        }
    }
    // The escaping as exposed, for a status with every character to escape.
    for value in UNKNOWN_ENUM_VALUES {
        let given = cases.iter().any(|c| c.stage_statuses.values().any(|s| s.as_deref() == Some(value)));
        if given && !text.contains(&format!("status=\"{}\"", escape(value))) {
            problems.push(format!("the status {value:?} is not exposed escaped"));
        }
    }
    (problems, text)
}

/// Checks an exposition with promtool, which fails on anything Prometheus would reject.
fn promtool(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e}; scripts/test.sh installs Debian's prometheus package"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Lint findings (naming advice) are not errors; promtool exits 3 for them alone.
    if out.status.success() || (out.status.code() == Some(3) && !report.contains("error")) { Ok(()) } else { Err(report) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_the_model_allows() {
    let cases: usize = std::env::var("PROPERTY_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let seed: u64 = std::env::var("PROPERTY_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_SEED);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let model = common::botocore_model("codepipeline");
    let mut generator = Generator::new(&model, seed);
    let started = Instant::now();
    let mut first_resident = None;
    let mut problems = Vec::new();
    for start in (0..cases).step_by(BATCH) {
        let batch_cases: Vec<Case> = (start..(start + BATCH).min(cases)).map(|n| case(&mut generator, seed, n)).collect();
        let (mut found, text) = batch(&batch_cases).await;
        if let Err(report) = promtool(&text) {
            found.push(format!("promtool check metrics, cases {start}..: {report}"));
        }
        if PANICS.load(Ordering::SeqCst) > 0 {
            found.push(format!("a panic in cases {start}..{}", start + batch_cases.len()));
        }
        if !found.is_empty() {
            let path = std::env::temp_dir().join(format!("properties-{seed}-{start}.prom"));
            std::fs::write(&path, &text).unwrap();
            found.push(format!("exposition kept in {}", path.display()));
        }
        problems.extend(found);
        let now = resident();
        let first = *first_resident.get_or_insert(now);
        assert!(now < first + (256 << 20), "resident memory grew from {first} to {now} bytes by case {start}");
        if problems.len() > 50 {
            break;
        }
    }
    eprintln!(
        "properties: {cases} cases, seed {seed}, {:.1} s, resident {} MiB at the end",
        started.elapsed().as_secs_f64(),
        resident() >> 20
    );
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// Found by the property test (seed 1592639710, case 11): two stages of one name, or two actions
/// of one name in a stage, which AWS's model allows, made two series of one name and labels, and
/// Prometheus rejects such a scrape whole. The first of each name is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_and_actions_of_one_name_make_one_series_each() {
    let text = |s: &str| Value::Text(s.into());
    let map = |entries: Vec<(&str, Value)>| Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect());
    let execution =
        |status: &str| map(vec![("pipelineExecutionId", text("0f9a8b7c-1d2e-4f30-8a4b-5c6d7e8f9a0b")), ("status", text(status))]);
    let action = |name: &str, status: &str| {
        map(vec![("actionName", text(name)), ("latestExecution", map(vec![("status", text(status))]))])
    };
    let state = map(vec![
        ("pipelineName", text("dup")),
        (
            "stageStates",
            Value::Array(vec![
                map(vec![
                    ("stageName", text("Build")),
                    ("latestExecution", execution("InProgress")),
                    ("actionStates", Value::Array(vec![action("Compile", "Succeeded"), action("Compile", "Failed")])),
                ]),
                map(vec![
                    ("stageName", text("Build")),
                    ("latestExecution", execution("Failed")),
                    ("actionStates", Value::Array(vec![action("Compile", "Abandoned")])),
                ]),
            ]),
        ),
    ]);
    let mut world = World::default();
    world.pipelines.insert("dup".into(), SimPipeline::new("dup", &[("Build", &["Compile"])]));
    let simulator = Simulator::start(world).await.unwrap();
    simulator.script("GetPipelineState", Some("dup"), [state]);
    let yaml = "interval: 1h\nactive_interval: 1h\ndiscovery_interval: 1h\nrequest_timeout: 5s\naccounts:\n  - name: test\n    regions: [us-east-1]\n";
    let exporter = common::start_exporter_unthrottled(&simulator, yaml).await;
    let samples = common::wait_for(&exporter, "the stage's status", |s| {
        common::family_len(s, "aws_codepipeline_stage_status") > 0 && common::family_len(s, "aws_codepipeline_action_status") > 0
    })
    .await;
    let labels = "account=\"test\",region=\"us-east-1\",pipeline=\"dup\",stage=\"Build\"";
    let stages: Vec<(String, f64)> =
        samples.iter().filter(|(k, _)| k.starts_with("aws_codepipeline_stage_status{")).map(|(k, v)| (k.clone(), *v)).collect();
    let expected: Vec<(String, f64)> = ["Cancelled", "Failed", "InProgress", "Skipped", "Stopped", "Stopping", "Succeeded"]
        .iter()
        .map(|s| {
            (format!("aws_codepipeline_stage_status{{{labels},status=\"{s}\"}}"), if *s == "InProgress" { 1.0 } else { 0.0 })
        })
        .collect();
    assert_eq!(stages, expected);
    let actions: Vec<(String, f64)> =
        samples.iter().filter(|(k, _)| k.starts_with("aws_codepipeline_action_status{")).map(|(k, v)| (k.clone(), *v)).collect();
    let expected: Vec<(String, f64)> = ["Abandoned", "Failed", "InProgress", "Succeeded"]
        .iter()
        .map(|s| {
            (
                format!("aws_codepipeline_action_status{{{labels},action=\"Compile\",status=\"{s}\"}}"),
                if *s == "Succeeded" { 1.0 } else { 0.0 },
            )
        })
        .collect();
    assert_eq!(actions, expected);
    let text = common::scrape(&exporter).await;
    parse(&text).unwrap();
}
