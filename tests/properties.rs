//! Every answer AWS's model allows, through the real SDK into the exporter: property tests.
//!
//! A seeded generator builds answers from botocore's models of CodePipeline, CodeConnections and
//! CodeBuild (the ones `scripts/test.sh` installs into `target/tools`) for every call the
//! collectors make: ListPipelines, GetPipelineState, GetPipeline, ListTagsForResource,
//! ListPipelineExecutions, GetPipelineExecution, ListActionExecutions and ListRuleExecutions;
//! CodeBuild's BatchGetBuilds; and CodeConnections' ListRepositoryLinks, ListSyncConfigurations,
//! GetRepositorySyncStatus, GetResourceSyncStatus, GetSyncBlockerSummary, ListConnections and
//! ListHosts. It picks every enum value and values the SDK does not know (with quotes,
//! backslashes, line feeds and non-ASCII), leaves optional members out or puts them in, makes
//! lists empty, short or long (and lists an entry twice now and then, as a listing paged while it
//! changes does), strings at their length limits (with the same characters where the model's
//! pattern allows them), timestamps at the epoch and in year 9999, and pages that name a next page
//! that ends early. The simulator serves each answer in the SDK's protocol, awsJson 1.1 or RPC v2
//! CBOR (its scripted-answer hook, which tells calls apart by pipeline, branch, stack, repository
//! link or build, and serves what stays the same to every later poll), and the real exporter
//! polls it.
//!
//! A case is one pipeline, `case-NNNNNN`, with up to two repository links of up to two sync
//! configurations each (a branch and a stack of its own), and connections and hosts; it is seeded
//! by its number. Cases run 200 at a time, each batch with a fresh simulator and exporter polling
//! every 8 s: a pipeline's first poll primes its history, the second counts the runs that ended
//! since, and reads their revisions, action and rule executions and builds (or the third, when
//! counting gave birth to a series). For every case it must hold that the exporter does not
//! panic, every target reports `target_up` at 1 (no poll is stuck, every answer is taken), every
//! series is unique and its label values escaped, each state set has one 1 at most, and each
//! stage's, action's, branch's, stack's, connection's and host's status AWS gave is the one 1 of
//! its state set, unknown values included, and each stack's active blockers are those AWS gave.
//! Each batch's exposition is parsed here, and checked by `promtool check metrics` too (one
//! promtool run per batch, which covers all its cases). The resident memory after the last batch
//! must stay within 256 MiB of that after the first.
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
            "arn:aws:codeconnections:us-east-1:111122223333:host/h".to_string(),
            "arn:aws:codeconnections:us-east-1:111122223333:repository-link/l".to_string(),
            "arn:aws:kms:us-east-1:111122223333:key/k".to_string(),
            "arn:aws:codebuild:us-east-1:111122223333:build/b:1".to_string(),
            "sg-0123abcd".to_string(),
            "subnet-0123abcd".to_string(),
            "vpc-0123abcd".to_string(),
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

/// Sets the members of `value`, a structure of shape `shape`, that the exporter needs to take an
/// entry at all (it skips one without them), each with probability `p` when the model left it
/// out: most entries of a list are then read, and some are skipped.
fn fill(generator: &mut Generator, value: &mut Value, shape: &str, members: &[&str], p: f64) {
    for name in members {
        if member(value, name).is_none() && generator.rng.random_bool(p) {
            let target = generator.shapes[shape]["members"][*name]["shape"].as_str().unwrap().to_string();
            let generated = generator.value(&target, 5);
            set(value, name, generated);
        }
    }
}

fn remove(value: &mut Value, name: &str) {
    let Value::Map(entries) = value else { panic!("not a map") };
    entries.retain(|(k, _)| k.as_text() != Some(name));
}

/// The entries of a generated answer's list member, at most `max` of them.
fn entries(value: &Value, list: &str, max: usize) -> Vec<Value> {
    member(value, list).and_then(Value::as_array).into_iter().flatten().take(max).cloned().collect()
}

/// Splits `items` into pages of the answer `output`, each a generated answer with its list
/// replaced: a page ends after an entry with probability `breaks`, and the last page that names a
/// next one may be followed by an empty page, as a listing that ends early.
fn paginate(generator: &mut Generator, output: &str, list: &str, token: &str, items: Vec<Value>, breaks: f64) -> Vec<Value> {
    let mut chunks = vec![Vec::new()];
    for item in items {
        chunks.last_mut().unwrap().push(item);
        if generator.rng.random_bool(breaks) {
            chunks.push(Vec::new());
        }
    }
    if generator.rng.random_bool(0.2) {
        chunks.push(Vec::new());
    }
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, items)| {
            let mut page = generator.value(output, 1);
            set(&mut page, list, Value::Array(items));
            if index + 1 < count {
                set(&mut page, token, Value::Text(format!("page-{}", index + 2)));
            } else {
                remove(&mut page, token);
            }
            page
        })
        .collect()
}

/// A name unique to `number` and `index` that fills `limit` characters half the time, ending
/// in `tail` (the characters the shape's pattern allows beyond letters and digits).
fn unique(rng: &mut StdRng, prefix: &str, number: usize, index: usize, tail: &str, pad: char, limit: usize) -> String {
    let mut name = format!("{prefix}{number:06}x{index}{tail}");
    if rng.random_bool(0.5) {
        while name.chars().count() < limit {
            name.push(pad);
        }
    }
    name
}

/// The generators of the three services' models.
struct Models<'a> {
    pipeline: Generator<'a>,
    connections: Generator<'a>,
    build: Generator<'a>,
}

/// One case: the answers for its pipeline and its Git sync resources, and what AWS gave in them
/// that the exposition must show.
struct Case {
    name: String,
    /// ListPipelines: the case's entries, its own name among them.
    summaries: Vec<Value>,
    /// GetPipelineState: the first poll's, then the one every later poll gets.
    states: [Value; 2],
    pipeline: Value,
    /// The pipeline's ARN as GetPipeline's metadata gives it, and the pages of its tags.
    arn: Option<String>,
    tags: Vec<Value>,
    /// ListPipelineExecutions: the first read's page, then the pages of the second, of which the
    /// last answers every later read.
    executions_first: Value,
    executions_later: Vec<Value>,
    /// GetPipelineExecution, and the pages of ListActionExecutions and ListRuleExecutions of each
    /// run that ends (the last page answering for ever).
    execution: Value,
    action_executions: Vec<Value>,
    rule_executions: Vec<Value>,
    /// The IDs of the builds its CodeBuild actions ran, and BatchGetBuilds' answer for them.
    builds: Vec<String>,
    builds_answer: Value,
    stage_statuses: BTreeMap<String, Option<String>>,
    action_statuses: BTreeMap<(String, String), Option<String>>,
    /// CodeConnections: repository links, and the pages of each link's sync configurations.
    links: Vec<Value>,
    sync_configurations: Vec<(String, Vec<Value>)>,
    /// GetRepositorySyncStatus by branch, and the status it gives.
    repository_syncs: Vec<(String, Value, String)>,
    /// GetResourceSyncStatus and GetSyncBlockerSummary by resource, the status and the number of
    /// ACTIVE blockers they give.
    resource_syncs: Vec<(String, Value, String, Value, usize)>,
    connections: Vec<Value>,
    hosts: Vec<Value>,
}

fn case(models: &mut Models, seed: u64, number: usize) -> Case {
    let case_seed = seed ^ (number as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    models.pipeline.reseed(case_seed);
    models.connections.reseed(case_seed.rotate_left(17));
    models.build.reseed(case_seed.rotate_left(34));
    let generator = &mut models.pipeline;
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
    // The first poll's state differs from the later ones', so that the second poll reads the
    // history again, and counts the runs that ended since.
    let first_state = Value::Map(vec![
        (Value::Text("pipelineName".into()), Value::Text(name.clone())),
        (Value::Text("created".into()), Value::Tag(1, Box::new(Value::Float(12_345.5)))),
    ]);
    // ListPipelines: this pipeline, now and then listed twice (a listing shifts while it is
    // paged), and entries without a name.
    let mut summaries = Vec::new();
    for _ in 0..generator.rng.random_range(0..3) {
        let mut summary = generator.value("PipelineSummary", 2);
        remove(&mut summary, "name");
        summaries.push(summary);
    }
    for _ in 0..(1 + usize::from(generator.rng.random_bool(0.05))) {
        let mut summary = generator.value("PipelineSummary", 2);
        set(&mut summary, "name", Value::Text(name.clone()));
        summaries.push(summary);
    }
    // The declaration names the stages and actions the state has, as AWS's does.
    let mut pipeline = generator.value("GetPipelineOutput", 0);
    let mut declaration = generator.value("PipelineDeclaration", 1);
    set(&mut declaration, "name", Value::Text(name.clone()));
    // Of the version the state names, as AWS's is: otherwise every poll reads it again.
    match member(&state, "pipelineVersion") {
        Some(version) => set(&mut declaration, "version", version.clone()),
        None => remove(&mut declaration, "version"),
    }
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
    // Its ARN, which its tags are read by; the allowlisted key `team` now and then among them.
    let arn = generator.rng.random_bool(0.9).then(|| format!("arn:aws:codepipeline:us-east-1:111122223333:{name}"));
    let mut metadata = member(&pipeline, "metadata").cloned().unwrap_or_else(|| generator.value("PipelineMetadata", 1));
    match &arn {
        Some(arn) => set(&mut metadata, "pipelineArn", Value::Text(arn.clone())),
        None => remove(&mut metadata, "pipelineArn"),
    }
    set(&mut pipeline, "metadata", metadata);
    let mut tags = entries(&generator.value("ListTagsForResourceOutput", 0), "tags", 40);
    if generator.rng.random_bool(0.5) {
        let value = generator.value("TagValue", 1);
        let at = generator.rng.random_range(0..=tags.len());
        tags.insert(
            at,
            Value::Map(vec![(Value::Text("key".into()), Value::Text("team".into())), (Value::Text("value".into()), value)]),
        );
    }
    let tags = paginate(generator, "ListTagsForResourceOutput", "tags", "nextToken", tags, 0.1);
    // The history: the first read takes one page (the exporter reads no further at start-up),
    // the second its own pages, whose runs are new to it: up to 8 a page, since each run that
    // ended costs three calls more, one after the other.
    let summaries_of = |generator: &mut Generator, max: usize| {
        let mut page = generator.value("ListPipelineExecutionsOutput", 0);
        let mut executions = entries(&page, "pipelineExecutionSummaries", max);
        for execution in &mut executions {
            fill(generator, execution, "PipelineExecutionSummary", &["pipelineExecutionId", "status", "startTime"], 0.8);
        }
        set(&mut page, "pipelineExecutionSummaries", Value::Array(executions));
        page
    };
    let mut executions_first = summaries_of(generator, 40);
    if generator.rng.random_bool(0.3) {
        set(&mut executions_first, "nextToken", Value::Text("page-2".into()));
    } else {
        remove(&mut executions_first, "nextToken");
    }
    let mut executions_later = Vec::new();
    if generator.rng.random_bool(0.3) {
        let mut first = summaries_of(generator, 8);
        set(&mut first, "nextToken", Value::Text("page-2".into()));
        executions_later.push(first);
    }
    let mut last = summaries_of(generator, 8);
    if generator.rng.random_bool(0.3) {
        set(&mut last, "pipelineExecutionSummaries", Value::Array(Vec::new()));
    }
    remove(&mut last, "nextToken");
    executions_later.push(last);
    let execution = generator.value("GetPipelineExecutionOutput", 0);
    // The action executions of each run: mostly of the declared actions, some of them CodeBuild or
    // Commands actions that ran builds.
    let declared: Vec<(String, String)> =
        stages.iter().flat_map(|(stage, actions)| actions.iter().map(move |a| (stage.clone(), a.clone()))).collect();
    let mut builds = Vec::new();
    let mut details = entries(&generator.value("ListActionExecutionsOutput", 0), "actionExecutionDetails", 40);
    for detail in &mut details {
        if !declared.is_empty() && generator.rng.random_bool(0.8) {
            let (stage, action) = declared[generator.rng.random_range(0..declared.len())].clone();
            set(detail, "stageName", Value::Text(stage));
            set(detail, "actionName", Value::Text(action));
        }
        fill(
            generator,
            detail,
            "ActionExecutionDetail",
            &["stageName", "actionName", "actionExecutionId", "status", "startTime"],
            0.8,
        );
        if generator.rng.random_bool(0.4) {
            let provider = if generator.rng.random_bool(0.8) { "CodeBuild" } else { "Commands" };
            let type_id = Value::Map(
                [("category", "Build"), ("owner", "AWS"), ("provider", provider), ("version", "1")]
                    .iter()
                    .map(|(k, v)| (Value::Text((*k).into()), Value::Text((*v).into())))
                    .collect(),
            );
            let mut input = member(detail, "input").cloned().unwrap_or_else(|| Value::Map(Vec::new()));
            set(&mut input, "actionTypeId", type_id);
            set(detail, "input", input);
            let id = format!("{name}-build:{}", generator.string("PipelineExecutionId"));
            let mut output = member(detail, "output").cloned().unwrap_or_else(|| Value::Map(Vec::new()));
            let mut result = member(&output, "executionResult").cloned().unwrap_or_else(|| Value::Map(Vec::new()));
            set(&mut result, "externalExecutionId", Value::Text(id.clone()));
            set(&mut output, "executionResult", result);
            set(detail, "output", output);
            builds.push(id);
        }
    }
    let action_executions =
        paginate(generator, "ListActionExecutionsOutput", "actionExecutionDetails", "nextToken", details, 0.1);
    let mut rules = entries(&generator.value("ListRuleExecutionsOutput", 0), "ruleExecutionDetails", 40);
    for rule in &mut rules {
        if !stages.is_empty() && generator.rng.random_bool(0.8) {
            set(rule, "stageName", Value::Text(stages[generator.rng.random_range(0..stages.len())].0.clone()));
        }
        fill(generator, rule, "RuleExecutionDetail", &["stageName", "ruleName", "ruleExecutionId", "status", "startTime"], 0.8);
    }
    let rule_executions = paginate(generator, "ListRuleExecutionsOutput", "ruleExecutionDetails", "nextToken", rules, 0.1);
    // BatchGetBuilds: some of the builds asked for, with their phases, the others not found.
    let build_generator = &mut models.build;
    let mut builds_answer = build_generator.value("BatchGetBuildsOutput", 0);
    let mut found = Vec::new();
    let mut not_found = Vec::new();
    for id in &builds {
        if build_generator.rng.random_bool(0.8) {
            let mut build = build_generator.value("Build", 1);
            set(&mut build, "id", Value::Text(id.clone()));
            let mut phases = entries(&build_generator.value("Build", 1), "phases", 40);
            for phase in &mut phases {
                fill(build_generator, phase, "BuildPhase", &["phaseType", "startTime", "endTime"], 0.8);
            }
            set(&mut build, "phases", Value::Array(phases));
            found.push(build);
        } else {
            not_found.push(Value::Text(id.clone()));
        }
    }
    set(&mut builds_answer, "builds", Value::Array(found));
    set(&mut builds_answer, "buildsNotFound", Value::Array(not_found));
    // CodeConnections: up to two repository links (one now and then listed twice), up to two sync
    // configurations each, of branches and stacks unique to the case and at their length limits,
    // with the characters their patterns allow.
    let generator = &mut models.connections;
    let mut links: Vec<Value> = Vec::new();
    let count = generator.rng.random_range(0..3);
    for mut link in entries(&generator.value("ListRepositoryLinksOutput", 0), "RepositoryLinks", count) {
        let again = links.last().cloned().filter(|_| generator.rng.random_bool(0.1));
        links.push(again.unwrap_or_else(|| {
            set(&mut link, "RepositoryLinkId", Value::Text(generator.string("RepositoryLinkId")));
            link
        }));
    }
    let link_ids: BTreeSet<String> =
        links.iter().filter_map(|l| member(l, "RepositoryLinkId").and_then(Value::as_text)).map(str::to_string).collect();
    let mut sync_configurations = Vec::new();
    let mut repository_syncs = Vec::new();
    let mut resource_syncs = Vec::new();
    let mut index = 0;
    for link in link_ids {
        let mut configurations = Vec::new();
        let count = generator.rng.random_range(0..3);
        for configuration in entries(&generator.value("ListSyncConfigurationsOutput", 0), "SyncConfigurations", count) {
            index += 1;
            let mut configuration = configuration;
            set(&mut configuration, "RepositoryLinkId", Value::Text(link.clone()));
            let branch = unique(&mut generator.rng, "case-", number, index, " q\"b\\s ñ€😀", 'é', 255);
            let resource = unique(&mut generator.rng, "case", number, index, "_-z", 'a', 100);
            set(&mut configuration, "Branch", Value::Text(branch.clone()));
            set(&mut configuration, "ResourceName", Value::Text(resource.clone()));
            configurations.push(configuration);
            let status = generator.value("GetRepositorySyncStatusOutput", 0);
            let given =
                member(&status, "LatestSync").and_then(|s| member(s, "Status")).and_then(Value::as_text).unwrap().to_string();
            repository_syncs.push((branch, status, given));
            let sync = generator.value("GetResourceSyncStatusOutput", 0);
            let given =
                member(&sync, "LatestSync").and_then(|s| member(s, "Status")).and_then(Value::as_text).unwrap().to_string();
            let mut blockers = generator.value("GetSyncBlockerSummaryOutput", 0);
            let mut summary = member(&blockers, "SyncBlockerSummary").unwrap().clone();
            set(&mut summary, "ResourceName", Value::Text(resource.clone()));
            set(&mut blockers, "SyncBlockerSummary", summary.clone());
            let active = member(&summary, "LatestBlockers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|b| member(b, "Status").and_then(Value::as_text) == Some("ACTIVE"))
                .count();
            resource_syncs.push((resource, sync, given, blockers, active));
        }
        // Now and then one configuration listed twice.
        if let Some(first) = configurations.first().cloned()
            && generator.rng.random_bool(0.1)
        {
            configurations.push(first);
        }
        let pages = paginate(generator, "ListSyncConfigurationsOutput", "SyncConfigurations", "NextToken", configurations, 0.3);
        sync_configurations.push((link, pages));
    }
    // Connections and hosts, most with an ARN unique to the case, the others with the model's
    // (shared with other cases') or none.
    let mut connections = entries(&generator.value("ListConnectionsOutput", 0), "Connections", 40);
    for (i, connection) in connections.iter_mut().enumerate() {
        if generator.rng.random_bool(0.8) {
            let arn = format!("arn:aws:codeconnections:us-east-1:111122223333:connection/{name}-{i}");
            set(connection, "ConnectionArn", Value::Text(arn));
        }
    }
    let mut hosts = entries(&generator.value("ListHostsOutput", 0), "Hosts", 40);
    for (i, host) in hosts.iter_mut().enumerate() {
        if generator.rng.random_bool(0.8) {
            set(host, "HostArn", Value::Text(format!("arn:aws:codeconnections:us-east-1:111122223333:host/{name}-{i}")));
        }
    }
    Case {
        name,
        summaries,
        states: [first_state, state],
        pipeline,
        arn,
        tags,
        executions_first,
        executions_later,
        execution,
        action_executions,
        rule_executions,
        builds,
        builds_answer,
        stage_statuses,
        action_statuses,
        links,
        sync_configurations,
        repository_syncs,
        resource_syncs,
        connections,
        hosts,
    }
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

/// The listings of one batch, every case's entries in turn, split into pages, and the status of
/// each connection and host they list: the first of each ARN's (a missing ARN is the empty one),
/// as the exporter keeps the first.
struct Listings {
    pipelines: Vec<Value>,
    links: Vec<Value>,
    connections: Vec<Value>,
    hosts: Vec<Value>,
    connection_statuses: BTreeMap<String, Option<String>>,
    host_statuses: BTreeMap<String, Option<String>>,
}

fn listings(models: &mut Models, seed: u64, start: usize, cases: &[Case]) -> Listings {
    models.pipeline.reseed(seed ^ (start as u64).wrapping_mul(0xd6e8_feb8_6659_fd93) ^ 1);
    models.connections.reseed(seed ^ (start as u64).wrapping_mul(0xd6e8_feb8_6659_fd93) ^ 2);
    let all = |of: &dyn Fn(&Case) -> &Vec<Value>| cases.iter().flat_map(|c| of(c).iter().cloned()).collect::<Vec<Value>>();
    let pipelines = paginate(&mut models.pipeline, "ListPipelinesOutput", "pipelines", "nextToken", all(&|c| &c.summaries), 0.1);
    let generator = &mut models.connections;
    let links = paginate(generator, "ListRepositoryLinksOutput", "RepositoryLinks", "NextToken", all(&|c| &c.links), 0.2);
    let statuses = |entries: &[Value], arn: &str, status: &str| {
        let mut statuses = BTreeMap::new();
        for entry in entries {
            let arn = member(entry, arn).and_then(Value::as_text).unwrap_or_default().to_string();
            let status = member(entry, status).and_then(Value::as_text).map(str::to_string);
            statuses.entry(arn).or_insert(status);
        }
        statuses
    };
    let (connections, hosts) = (all(&|c| &c.connections), all(&|c| &c.hosts));
    let connection_statuses = statuses(&connections, "ConnectionArn", "ConnectionStatus");
    let host_statuses = statuses(&hosts, "HostArn", "Status");
    let connections = paginate(generator, "ListConnectionsOutput", "Connections", "NextToken", connections, 0.05);
    let hosts = paginate(generator, "ListHostsOutput", "Hosts", "NextToken", hosts, 0.05);
    Listings { pipelines, links, connections, hosts, connection_statuses, host_statuses }
}

/// The creation time of every pipeline's first state, as exposed: no later state has it.
const FIRST_CREATED: &str = "} 12345.5\n";

/// The families whose series are state sets: at most one 1 among the statuses of each.
const STATE_SETS: &[&str] = &[
    "aws_codepipeline_stage_status",
    "aws_codepipeline_stage_inbound_status",
    "aws_codepipeline_stage_condition_status",
    "aws_codepipeline_stage_rule_status",
    "aws_codepipeline_action_status",
    "aws_codepipeline_execution_status",
    "aws_codeconnections_repository_sync_status",
    "aws_codeconnections_resource_sync_status",
    "aws_codeconnections_connection_status",
    "aws_codeconnections_host_status",
];

/// Runs a batch of cases against one simulator and exporter; the problems found, by case.
async fn batch(cases: &[Case], listings: &Listings) -> (Vec<String>, String) {
    let mut world = World::default();
    for case in cases {
        world.pipelines.insert(case.name.clone(), SimPipeline::new(&case.name, &[("Source", &["Source"])]));
    }
    let simulator = Simulator::start(world).await.unwrap();
    // Every target is polled again and again: what is to stay the same answers for ever.
    simulator.script("ListPipelines", None, listings.pipelines.clone());
    simulator.script("ListRepositoryLinks", None, listings.links.clone());
    simulator.script_cycle("ListConnections", None, listings.connections.clone());
    simulator.script_cycle("ListHosts", None, listings.hosts.clone());
    let cycle = |operation: &str, subject: &str, pages: &[Value]| {
        let (last, once) = pages.split_last().unwrap();
        simulator.script(operation, Some(subject), once.iter().cloned());
        simulator.script_cycle(operation, Some(subject), [last.clone()]);
    };
    let mut repository_targets = BTreeSet::new();
    let mut resource_targets = BTreeSet::new();
    for case in cases {
        simulator.script("GetPipelineState", Some(&case.name), [case.states[0].clone()]);
        simulator.script_cycle("GetPipelineState", Some(&case.name), [case.states[1].clone()]);
        simulator.script_cycle("GetPipeline", Some(&case.name), [case.pipeline.clone()]);
        if let Some(arn) = &case.arn {
            cycle("ListTagsForResource", arn, &case.tags);
        }
        simulator.script("ListPipelineExecutions", Some(&case.name), [case.executions_first.clone()]);
        cycle("ListPipelineExecutions", &case.name, &case.executions_later);
        simulator.script_cycle("GetPipelineExecution", Some(&case.name), [case.execution.clone()]);
        cycle("ListActionExecutions", &case.name, &case.action_executions);
        cycle("ListRuleExecutions", &case.name, &case.rule_executions);
        for id in &case.builds {
            simulator.script_cycle("BatchGetBuilds", Some(id), [case.builds_answer.clone()]);
        }
        for (link, pages) in &case.sync_configurations {
            cycle("ListSyncConfigurations", link, pages);
            for configuration in pages.iter().filter_map(|p| member(p, "SyncConfigurations")?.as_array()).flatten() {
                let text = |name: &str| member(configuration, name).and_then(Value::as_text).unwrap_or_default().to_string();
                repository_targets.insert((text("RepositoryLinkId"), text("Branch"), text("SyncType")));
                resource_targets.insert((text("ResourceName"), text("SyncType")));
            }
        }
        for (branch, status, _) in &case.repository_syncs {
            simulator.script_cycle("GetRepositorySyncStatus", Some(branch), [status.clone()]);
        }
        for (resource, sync, _, blockers, _) in &case.resource_syncs {
            simulator.script_cycle("GetResourceSyncStatus", Some(resource), [sync.clone()]);
            simulator.script_cycle("GetSyncBlockerSummary", Some(resource), [blockers.clone()]);
        }
    }
    // Every target polled every 8 s: a pipeline's first poll primes its history, its second
    // counts the runs that ended, and its third their action executions, rules and builds when
    // counting them gave birth to a series (see `History::settle`). The pipelines are one
    // account's and the Git sync another's (both the simulated one), so that neither's calls wait
    // behind the other's in one request budget; and 64 calls run at once, so that a run's
    // details, read one call after the other, do not wait behind 200 pipelines' polls each time.
    let yaml = "interval: 8s\nactive_interval: 8s\ndiscovery_interval: 1h\nrequest_timeout: 5s\nmax_concurrent_requests: 64\naccounts:\n  - name: test\n    regions: [us-east-1]\n    tags: [team]\n    codepipeline:\n      build_phases: true\n    codeconnections:\n      enabled: false\n  - name: git\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n";
    let exporter = common::start_exporter_unthrottled(&simulator, yaml).await;
    let deadline = Instant::now() + Duration::from_secs(150);
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
        // the exposition counts as settled once it stayed the same for a second, after the
        // pipelines were polled three times each (about: with the jitter some were polled less)
        // and no first state is shown any more, and every branch, stack, blocker summary and list
        // has its target.
        if aws(&text) == aws(&last) {
            stable += 1;
        } else {
            stable = 0;
        }
        let n = cases.len() as u64;
        let targets = |kind: &str| {
            let kind = format!("kind=\"{kind}\"");
            text.lines().filter(|l| l.starts_with("codepipeline_exporter_target_up{") && l.contains(&kind)).count()
        };
        let settled = up == cases.len()
            && simulator.calls("GetPipelineState") >= 3 * n
            && !text.contains(FIRST_CREATED)
            && targets("repository_sync") >= repository_targets.len()
            && targets("resource_sync") >= resource_targets.len()
            && targets("sync_blocker") >= resource_targets.len()
            && targets("connections") == 1
            && targets("hosts") == 1
            && stable >= 5;
        last = text;
        if settled {
            break;
        }
        if Instant::now() > deadline {
            for case in cases.iter().filter(|c| !last.contains(&format!("kind=\"pipeline\",name=\"{}\"}}", c.name))) {
                problems.push(format!("{}: no target_up within 150 s: a stuck poll", case.name));
            }
            if problems.is_empty() {
                problems.push(format!(
                    "not settled within 150 s: {} GetPipelineState calls for {n} pipelines, {} GetRepositorySyncStatus for {} branches, {} GetResourceSyncStatus for {} stacks, the exposition stable for {stable} scrapes",
                    simulator.calls("GetPipelineState"),
                    simulator.calls("GetRepositorySyncStatus"),
                    repository_targets.len(),
                    simulator.calls("GetResourceSyncStatus"),
                    resource_targets.len(),
                ));
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
    let label = |labels: &[(String, String)], name: &str| labels.iter().find(|(l, _)| l == name).map(|(_, v)| v.clone());
    // Every target polled fine: each answer is one the model allows.
    for ((name, labels), value) in &series {
        if name == "codepipeline_exporter_target_up" && *value != 1.0 {
            problems.push(format!("target down: {labels:?}"));
        }
    }
    // Each state set: one 1 at most among a series' statuses.
    let mut sets: BTreeMap<Series, Vec<(String, f64)>> = BTreeMap::new();
    for ((name, labels), value) in &series {
        if STATE_SETS.contains(&name.as_str()) {
            let status = label(labels, "status").unwrap_or_default();
            let key: Vec<(String, String)> = labels.iter().filter(|(l, _)| l != "status").cloned().collect();
            sets.entry((name.clone(), key)).or_default().push((status, *value));
        }
    }
    let ones = |statuses: &[(String, f64)]| -> Vec<String> {
        statuses.iter().filter(|(_, v)| *v == 1.0).map(|(s, _)| s.clone()).collect()
    };
    for ((family, labels), statuses) in &sets {
        if ones(statuses).len() > 1 {
            problems.push(format!("{family}{labels:?}: several ones {:?}", ones(statuses)));
        }
    }
    // And exactly one, at the status AWS gave, where it gave one: each of `expected` names a label,
    // its value, and the status given for the sets of `family` with that label value, which must
    // exist where a status was given.
    let exactly = |what: &str, family: &str, expected: &mut dyn Iterator<Item = (&str, String, Option<String>)>| {
        let mut problems = Vec::new();
        for (label_name, value, given) in expected {
            let matching: Vec<&Vec<(String, f64)>> = sets
                .iter()
                .filter(|((f, labels), _)| f == family && label(labels, label_name).as_deref() == Some(value.as_str()))
                .map(|(_, statuses)| statuses)
                .collect();
            if matching.is_empty() && given.is_some() {
                problems.push(format!("{what}: no {family} for {label_name} {value:?}"));
            }
            for statuses in matching {
                let found = ones(statuses);
                let want: Vec<String> = given.iter().cloned().collect();
                if found != want {
                    problems
                        .push(format!("{what}: {family} of {label_name} {value:?}: AWS gave {given:?}, the ones are {found:?}"));
                }
            }
        }
        problems
    };
    for case in cases {
        let of = |labels: &[(String, String)]| label(labels, "pipeline").as_deref() == Some(case.name.as_str());
        let stage_or_action = |f: &str| f == "aws_codepipeline_stage_status" || f == "aws_codepipeline_action_status";
        for ((family, labels), statuses) in sets.iter().filter(|((f, labels), _)| stage_or_action(f) && of(labels)) {
            let found = ones(statuses);
            let stage = label(labels, "stage").unwrap_or_default();
            let given = if family == "aws_codepipeline_stage_status" {
                case.stage_statuses.get(&stage).cloned().flatten()
            } else {
                case.action_statuses.get(&(stage, label(labels, "action").unwrap_or_default())).cloned().flatten()
            };
            if let Some(given) = given
                && found != [given.clone()]
            {
                problems.push(format!("{}: {family}{labels:?}: AWS gave {given:?}, the ones are {found:?}", case.name));
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
        problems.extend(exactly(
            &case.name,
            "aws_codeconnections_repository_sync_status",
            &mut case.repository_syncs.iter().map(|(branch, _, given)| ("branch", branch.clone(), Some(given.clone()))),
        ));
        problems.extend(exactly(
            &case.name,
            "aws_codeconnections_resource_sync_status",
            &mut case
                .resource_syncs
                .iter()
                .map(|(resource, _, given, _, _)| ("resource_name", resource.clone(), Some(given.clone()))),
        ));
        for (resource, _, _, _, active) in &case.resource_syncs {
            let found: Vec<f64> = series
                .iter()
                .filter(|((name, labels), _)| {
                    name == "aws_codeconnections_sync_blockers_active"
                        && label(labels, "resource_name").as_deref() == Some(resource)
                })
                .map(|(_, value)| *value)
                .collect();
            if found.iter().any(|v| *v != *active as f64) || found.is_empty() {
                problems
                    .push(format!("{}: sync_blockers_active of {resource:?} are {found:?}, AWS gave {active} ACTIVE", case.name));
            }
        }
    }
    problems.extend(exactly(
        "connections",
        "aws_codeconnections_connection_status",
        &mut listings.connection_statuses.iter().map(|(arn, given)| ("connection_arn", arn.clone(), given.clone())),
    ));
    problems.extend(exactly(
        "hosts",
        "aws_codeconnections_host_status",
        &mut listings.host_statuses.iter().map(|(arn, given)| ("host_arn", arn.clone(), given.clone())),
    ));
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
    let (pipeline, connections, build) =
        (common::botocore_model("codepipeline"), common::botocore_model("codeconnections"), common::botocore_model("codebuild"));
    let mut models = Models {
        pipeline: Generator::new(&pipeline, seed),
        connections: Generator::new(&connections, seed),
        build: Generator::new(&build, seed),
    };
    let started = Instant::now();
    let mut first_resident = None;
    let mut problems = Vec::new();
    for start in (0..cases).step_by(BATCH) {
        let batch_cases: Vec<Case> = (start..(start + BATCH).min(cases)).map(|n| case(&mut models, seed, n)).collect();
        let listings = listings(&mut models, seed, start, &batch_cases);
        let (mut found, text) = batch(&batch_cases, &listings).await;
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

/// Found by the property test (seed 1592639710, cases 0 to 199): a connection or a host listed
/// twice, or two without an ARN (which the model allows, and which then share the empty one), and
/// a repository link listed twice (a listing paged while it changes repeats entries), made two
/// series of one name and labels, and Prometheus rejects such a scrape whole. The first of each is
/// kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_hosts_and_links_listed_twice_make_one_series_each() {
    let text = |s: &str| Value::Text(s.into());
    let map = |entries: Vec<(&str, Value)>| Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect());
    let arn = "arn:aws:codeconnections:us-east-1:111122223333:connection/c1";
    let connection = |arn: Option<&str>, name: &str, status: &str| {
        let mut entries =
            vec![("ConnectionName", text(name)), ("ProviderType", text("GitHub")), ("ConnectionStatus", text(status))];
        entries.extend(arn.map(|arn| ("ConnectionArn", text(arn))));
        map(entries)
    };
    let host_arn = "arn:aws:codeconnections:us-east-1:111122223333:host/h1";
    let host = |arn: Option<&str>, name: &str, status: &str| {
        let mut entries = vec![("Name", text(name)), ("ProviderType", text("GitLabSelfManaged")), ("Status", text(status))];
        entries.extend(arn.map(|arn| ("HostArn", text(arn))));
        map(entries)
    };
    let link_id = "0f9a8b7c-1d2e-4f30-8a4b-5c6d7e8f9a0b";
    let link = |owner: &str| {
        map(vec![
            ("ConnectionArn", text(arn)),
            ("OwnerId", text(owner)),
            ("ProviderType", text("GitHub")),
            ("RepositoryLinkArn", text(&format!("arn:aws:codeconnections:us-east-1:111122223333:repository-link/{link_id}"))),
            ("RepositoryLinkId", text(link_id)),
            ("RepositoryName", text("infra")),
        ])
    };
    let simulator = Simulator::start(World::default()).await.unwrap();
    let page = |list: &str, items: Vec<Value>, next: Option<&str>| {
        let mut entries = vec![(list, Value::Array(items))];
        entries.extend(next.map(|next| ("NextToken", text(next))));
        map(entries)
    };
    simulator.script_cycle(
        "ListConnections",
        None,
        [
            page(
                "Connections",
                vec![connection(Some(arn), "first", "AVAILABLE"), connection(None, "none-1", "PENDING")],
                Some("2"),
            ),
            page("Connections", vec![connection(Some(arn), "again", "ERROR"), connection(None, "none-2", "ERROR")], None),
        ],
    );
    simulator.script_cycle(
        "ListHosts",
        None,
        [page(
            "Hosts",
            vec![
                host(Some(host_arn), "first", "AVAILABLE"),
                host(Some(host_arn), "again", "PENDING"),
                host(None, "none", "PENDING"),
            ],
            None,
        )],
    );
    simulator.script(
        "ListRepositoryLinks",
        None,
        [page("RepositoryLinks", vec![link("acme")], Some("2")), page("RepositoryLinks", vec![link("again")], None)],
    );
    simulator.script_cycle("ListSyncConfigurations", Some(link_id), [page("SyncConfigurations", Vec::new(), None)]);
    let yaml = "interval: 1h\nactive_interval: 1h\ndiscovery_interval: 1h\nrequest_timeout: 5s\naccounts:\n  - name: test\n    regions: [us-east-1]\n";
    let exporter = common::start_exporter_unthrottled(&simulator, yaml).await;
    let families =
        ["aws_codeconnections_connection_status", "aws_codeconnections_host_status", "aws_codeconnections_repository_link_info"];
    let samples =
        common::wait_for(&exporter, "connections, hosts and links", |s| families.iter().all(|f| common::family_len(s, f) > 0))
            .await;
    let base = "account=\"test\",region=\"us-east-1\"";
    let found = |name: &str| -> Vec<(String, f64)> {
        samples.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(k, v)| (k.clone(), *v)).collect()
    };
    let state_set = |family: &str, label: &str, arn: &str, current: &str, statuses: &[&str]| -> Vec<(String, f64)> {
        statuses
            .iter()
            .map(|s| (format!("{family}{{{base},{label}=\"{arn}\",status=\"{s}\"}}"), if *s == current { 1.0 } else { 0.0 }))
            .collect()
    };
    let connections = ["AVAILABLE", "ERROR", "PENDING"];
    let mut expected = state_set("aws_codeconnections_connection_status", "connection_arn", "", "PENDING", &connections);
    expected.extend(state_set("aws_codeconnections_connection_status", "connection_arn", arn, "AVAILABLE", &connections));
    assert_eq!(found("aws_codeconnections_connection_status"), expected);
    assert_eq!(
        found("aws_codeconnections_connection_info"),
        [
            (
                format!(
                    "aws_codeconnections_connection_info{{{base},connection_arn=\"\",connection_name=\"none-1\",provider_type=\"GitHub\",host_arn=\"\"}}"
                ),
                1.0
            ),
            (
                format!(
                    "aws_codeconnections_connection_info{{{base},connection_arn=\"{arn}\",connection_name=\"first\",provider_type=\"GitHub\",host_arn=\"\"}}"
                ),
                1.0
            ),
        ]
    );
    let hosts = ["AVAILABLE", "PENDING", "VPC_CONFIG_DELETING", "VPC_CONFIG_FAILED_INITIALIZATION", "VPC_CONFIG_INITIALIZING"];
    let mut expected = state_set("aws_codeconnections_host_status", "host_arn", "", "PENDING", &hosts);
    expected.extend(state_set("aws_codeconnections_host_status", "host_arn", host_arn, "AVAILABLE", &hosts));
    assert_eq!(found("aws_codeconnections_host_status"), expected);
    assert_eq!(
        found("aws_codeconnections_repository_link_info"),
        [(
            format!(
                "aws_codeconnections_repository_link_info{{{base},repository_link_id=\"{link_id}\",repository=\"acme/infra\",provider_type=\"GitHub\",connection_arn=\"{arn}\"}}"
            ),
            1.0
        )]
    );
    let text = common::scrape(&exporter).await;
    parse(&text).unwrap();
}
