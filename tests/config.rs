//! Configuration errors name the file, line and column; valid files mean what they say.

use std::path::Path;
use std::time::Duration;

use codepipeline_exporter::config::Config;

fn error(yaml: &str) -> String {
    Config::parse(yaml, Path::new("exporter.yaml")).expect_err("the configuration is invalid").to_string()
}

#[test]
fn unknown_keys_name_their_line_and_column() {
    assert_eq!(
        error("interval: 60s\naccounts:\n  - name: prod\n    regionz: [us-east-1]\n"),
        "exporter.yaml:4:5: unknown field `regionz`, expected one of name, role_arn, external_id, regions, codepipeline, codeconnections, events, tags"
    );
    assert!(error("intervall: 60s\n").starts_with("exporter.yaml:1:1: unknown field `intervall`"));
}

#[test]
fn bad_values_point_at_the_value() {
    assert_eq!(
        error("interval: 60x\n"),
        "exporter.yaml:1:11: invalid duration \"60x\": use a number and a unit (ms, s, m, h, d) such as 30s, 5m or 1h30m"
    );
    assert_eq!(error("discovery_interval: 0s\n"), "exporter.yaml:1:21: invalid duration \"0s\": must be greater than zero");
    assert_eq!(
        error("accounts:\n  - name: prod\n    codepipeline:\n      include: [\"^ok\", \"(unclosed\"]\n"),
        "exporter.yaml:4:24: invalid regex \"(unclosed\": unclosed group"
    );
    assert_eq!(error("max_concurrent_requests: 0\n"), "exporter.yaml:1:26: max_concurrent_requests must be at least 1");
    assert_eq!(
        error("accounts:\n  - name: prod\n    regions: [us-east-1, 'US East']\n"),
        "exporter.yaml:3:26: region \"US East\" is not an AWS region name such as us-east-1"
    );
    assert_eq!(
        error("accounts:\n  - name: prod\n    role_arn: codepipeline-exporter\n"),
        "exporter.yaml:3:15: role_arn \"codepipeline-exporter\" is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)"
    );
}

#[test]
fn empty_and_duplicate_names_are_rejected() {
    assert_eq!(error("accounts:\n  - name: \"\"\n"), "exporter.yaml:2:11: account name must not be empty");
    assert_eq!(error("accounts:\n  - name: prod\n  - name: prod\n"), "exporter.yaml:3:11: duplicate account name \"prod\"");
    assert_eq!(
        error("accounts:\n  - name: prod\n    codepipeline:\n      pipelines: [' ']\n"),
        "exporter.yaml:4:19: pipeline name must not be empty"
    );
}

#[test]
fn yaml_syntax_errors_have_a_location() {
    assert_eq!(error("accounts: [\n"), "exporter.yaml:1:11: unclosed bracket '['");
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let config = Config::parse("accounts:\n  - name: prod\n    regions: [eu-west-1]\n", Path::new("x.yaml")).unwrap();
    assert_eq!(config.interval, Duration::from_secs(60));
    assert_eq!(config.discovery_interval, Duration::from_secs(300));
    assert_eq!(config.request_timeout, Duration::from_secs(10));
    assert_eq!(config.max_concurrent_requests, 4);
    assert_eq!(config.accounts[0].regions, ["eu-west-1"]);
    assert!(config.accounts[0].codepipeline.discover);
    assert!(config.accounts[0].codepipeline.selects("anything"));

    let empty = Config::parse("", Path::new("x.yaml")).unwrap();
    assert_eq!(empty.accounts.len(), 1);
    assert_eq!(empty.accounts[0].name, "default");
    assert!(empty.accounts[0].regions.is_empty(), "the environment's region");
}

#[test]
fn include_and_exclude_select_pipelines() {
    let config = Config::parse(
        "accounts:\n  - name: prod\n    codepipeline:\n      include: ['^prod-']\n      exclude: ['-legacy$']\n",
        Path::new("x.yaml"),
    )
    .unwrap();
    let selection = &config.accounts[0].codepipeline;
    assert!(selection.selects("prod-api"));
    assert!(!selection.selects("prod-legacy"));
    assert!(!selection.selects("dev-api"));
}

#[test]
fn the_example_configuration_is_valid_and_printable() {
    let config = Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))).unwrap();
    let printed = config.to_yaml();
    assert!(!printed.contains("example-external-id"), "the external ID is never printed");
    let again = Config::parse(&printed.replace("<secret>", "redacted-id"), Path::new("printed.yaml")).unwrap();
    assert_eq!(again.to_yaml(), printed, "the printed configuration reads back to itself");
}

#[test]
fn a_yaml_bomb_is_refused() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        yaml.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let message = error(&yaml);
    assert!(message.starts_with("exporter.yaml:"), "{message}");
}

#[test]
fn an_empty_account_list_is_an_error() {
    assert_eq!(
        error("accounts: []\n"),
        "exporter.yaml:1:11: accounts must list at least one account; leave it out to poll the environment's"
    );
}

#[test]
fn codeconnections_targets_are_validated() {
    let yaml = |entry: &str| format!("accounts:\n  - name: prod\n    codeconnections:\n      repository_syncs:\n{entry}");
    assert_eq!(
        error(&yaml("        - repository_link_id: l1\n          branch: main\n          sync_type: GIT_SYNC\n")),
        "exporter.yaml:7:22: unknown sync_type \"GIT_SYNC\": one of CFN_STACK_SYNC"
    );
    assert_eq!(
        error(&yaml(
            "        - repository_link_id: l1\n          branch: main\n        - repository_link_id: l1\n          branch: main\n"
        )),
        "exporter.yaml:7:31: repository sync l1/main is listed twice"
    );
    assert_eq!(
        error(&yaml("        - repository_link_id: l1\n          branch: ''\n")),
        "exporter.yaml:6:19: branch must not be empty"
    );
    assert!(
        error(&yaml("        - repository_link_id: l1\n")).starts_with("exporter.yaml:5:11: missing field `branch`"),
        "{}",
        error(&yaml("        - repository_link_id: l1\n"))
    );
    let config = Config::parse(&yaml("        - repository_link_id: l1\n          branch: main\n"), Path::new("x.yaml")).unwrap();
    let connections = &config.accounts[0].codeconnections;
    assert!(connections.discover && connections.resource_syncs);
    assert_eq!(connections.repository_syncs[0].sync_type, "CFN_STACK_SYNC");
    assert_eq!(connections.repository_syncs[0].resource_name, None);
}

#[test]
fn the_metrics_section_is_validated_with_its_location() {
    assert_eq!(
        error("metrics:\n  exclude: [\"aws_.*_status\", \"(\"]\n"),
        "exporter.yaml:2:30: invalid regex \"(\": unclosed group"
    );
    assert_eq!(error("metrics:\n  state_sets: compact\n"), "exporter.yaml:2:15: unknown state_sets \"compact\": full or sparse");
    assert_eq!(
        error("metrics:\n  excludes: []\n"),
        "exporter.yaml:2:3: unknown field `excludes`, expected one of include, exclude, state_sets"
    );
    let config = Config::parse("metrics:\n  include: [\"aws_.*\"]\n  state_sets: sparse\n", Path::new("exporter.yaml")).unwrap();
    assert_eq!(config.metrics.state_sets, codepipeline_exporter::config::StateSets::Sparse);
    // Patterns match whole family names.
    assert!(config.metrics.include[0].regex.is_match("aws_codepipeline_stage_status"));
    assert!(!config.metrics.include[0].regex.is_match("codepipeline_exporter_aws_requests_total"));
}

#[test]
fn an_events_queue_takes_its_region_from_its_url_or_else_the_first_region() {
    let parse = |yaml: &str| Config::parse(yaml, Path::new("exporter.yaml")).unwrap().accounts[0].events.clone().unwrap();
    let events = parse(
        "accounts:\n  - name: prod\n    regions: [eu-west-1, us-east-1]\n    events:\n      queue_url: https://sqs.us-east-1.amazonaws.com/111122223333/codepipeline-exporter\n",
    );
    assert_eq!(events.queue_region, "us-east-1");
    assert_eq!(events.queue_name(), "codepipeline-exporter");
    assert_eq!(events.reconcile_interval, Duration::from_secs(600));
    let events = parse(
        "accounts:\n  - name: prod\n    regions: [eu-west-1]\n    events:\n      queue_url: https://vpce-1.sqs.example.internal/111122223333/q\n      reconcile_interval: 30m\n",
    );
    assert_eq!((events.queue_region.as_str(), events.reconcile_interval), ("eu-west-1", Duration::from_secs(1800)));
    let events = parse(
        "accounts:\n  - name: prod\n    events:\n      queue_url: https://sqs.us-east-1.amazonaws.com/111122223333/q\n      queue_region: us-west-2\n",
    );
    assert_eq!(events.queue_region, "us-west-2");
}

#[test]
fn events_errors_point_at_the_value() {
    assert_eq!(
        error("accounts:\n  - name: prod\n    events:\n      queue_url: codepipeline-exporter\n"),
        "exporter.yaml:4:18: queue_url \"codepipeline-exporter\" is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
    );
    assert_eq!(
        error("accounts:\n  - name: prod\n    events:\n      queue_url: https://vpce-1.sqs.example.internal/111122223333/q\n"),
        "exporter.yaml:4:18: the queue's region is neither in queue_url nor given as queue_region, and the account lists no regions"
    );
    assert_eq!(
        error(
            "accounts:\n  - name: prod\n    events:\n      queue_url: https://sqs.us-east-1.amazonaws.com/1/q\n      reconcile_interval: soon\n"
        ),
        "exporter.yaml:5:27: invalid duration \"soon\": use a number and a unit (ms, s, m, h, d) such as 30s, 5m or 1h30m"
    );
    assert!(
        error("accounts:\n  - name: prod\n    events:\n      queue: x\n").starts_with("exporter.yaml:4:7: unknown field `queue`")
    );
}

#[test]
fn the_traces_section_is_checked_and_its_header_values_never_printed() {
    assert_eq!(
        error("traces:\n  endpoint: grpc://collector:4317\n"),
        "exporter.yaml:2:13: endpoint \"grpc://collector:4317\" is not an http:// or https:// URL (OTLP over HTTP, as http://collector:4318/v1/traces or /v1/metrics)"
    );
    assert_eq!(error("traces:\n  queue_size: 0\n"), "exporter.yaml:2:15: queue_size must be at least 1");
    assert_eq!(
        error("traces:\n  timeout: soon\n"),
        "exporter.yaml:2:12: invalid duration \"soon\": use a number and a unit (ms, s, m, h, d) such as 30s, 5m or 1h30m"
    );
    assert!(error("traces:\n  endpont: http://a\n").starts_with("exporter.yaml:2:3: unknown field `endpont`"));
    let config = Config::parse(
        "traces:\n  endpoint: https://otel.example/v1/traces\n  headers:\n    authorization: Bearer s3cr3t\n",
        Path::new("exporter.yaml"),
    )
    .unwrap();
    let traces = config.traces.as_ref().unwrap();
    assert_eq!(traces.connection.headers.as_deref(), Some(&[("authorization".to_string(), "Bearer s3cr3t".to_string())][..]));
    let printed = config.to_yaml();
    assert!(printed.contains("authorization: <secret>") && !printed.contains("s3cr3t"), "{printed}");
}

#[test]
fn placeholders_copied_from_an_example_are_refused_where_they_stand() {
    assert_eq!(
        error("accounts:\n  - name: prod\n    external_id: optional\n"),
        "exporter.yaml:3:18: external_id \"optional\" is a placeholder: give the role's external ID, or leave the key out"
    );
    assert_eq!(
        error("accounts:\n  - name: prod\n    external_id: \"<external id>\"\n"),
        "exporter.yaml:3:18: external_id \"<external id>\" is not an external ID: 2 to 1224 letters, digits and _+=,.@:/-"
    );
    assert_eq!(
        error("accounts:\n  - name: prod\n    role_arn: arn:aws:iam::111111111111:role/REPLACE_ME\n"),
        "exporter.yaml:3:15: role_arn \"arn:aws:iam::111111111111:role/REPLACE_ME\" names a placeholder role \"REPLACE_ME\", not a role"
    );
    assert_eq!(
        error("organization:\n  role_name: your-role\naccounts: []\n"),
        "exporter.yaml:2:14: role_name \"your-role\" is a placeholder, not a role name"
    );
    assert_eq!(
        error("organization:\n  role_name: codepipeline-exporter\n  list_role_arn: optional\naccounts: []\n"),
        "exporter.yaml:3:18: list_role_arn \"optional\" is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)"
    );
    let config = Config::parse(
        "accounts:\n  - name: prod\n    role_arn: arn:aws:iam::111111111111:role/codepipeline-exporter\n    external_id: codepipeline-exporter-1f3a\n",
        Path::new("exporter.yaml"),
    )
    .expect("real values pass");
    assert_eq!(config.accounts[0].external_id.as_deref(), Some("codepipeline-exporter-1f3a"));
}

#[test]
fn codeconnections_can_be_off_or_limited_to_some_regions() {
    let parse = |yaml: &str| Config::parse(yaml, Path::new("exporter.yaml")).expect("valid");
    let off =
        parse("accounts:\n  - name: prod\n    regions: [us-east-1, cn-north-1]\n    codeconnections:\n      enabled: false\n");
    let cc = &off.accounts[0].codeconnections;
    assert_eq!((cc.runs_in("us-east-1"), cc.runs_in("cn-north-1")), (false, false));
    let some = parse(
        "accounts:\n  - name: prod\n    regions: [us-east-1, eu-west-1]\n    codeconnections:\n      regions: [eu-west-1]\n",
    );
    let cc = &some.accounts[0].codeconnections;
    assert_eq!((cc.runs_in("us-east-1"), cc.runs_in("eu-west-1")), (false, true));
    let all = parse("accounts:\n  - name: prod\n    regions: [us-east-1, eu-west-1]\n");
    let cc = &all.accounts[0].codeconnections;
    assert_eq!((cc.runs_in("us-east-1"), cc.runs_in("eu-west-1")), (true, true));
    assert_eq!(
        error("accounts:\n  - name: prod\n    regions: [us-east-1]\n    codeconnections:\n      regions: [eu-west-1]\n"),
        "exporter.yaml:5:17: codeconnections.regions: \"eu-west-1\" is not one of the account's regions (us-east-1)"
    );
    assert_eq!(
        error(
            "organization:\n  role_name: codepipeline-exporter\n  regions: [us-east-1]\n  codeconnections:\n    regions: [ap-south-1]\naccounts: []\n"
        ),
        "exporter.yaml:5:15: codeconnections.regions: \"ap-south-1\" is not one of the account's regions (us-east-1)"
    );
}

#[test]
fn the_metrics_push_section_is_checked_and_its_header_values_never_printed() {
    assert_eq!(
        error("metrics_push:\n  temporality: lowmemory\n"),
        "exporter.yaml:2:16: unsupported temporality \"lowmemory\": cumulative or delta"
    );
    assert_eq!(
        error("metrics_push:\n  interval: 0s\n"),
        "exporter.yaml:2:13: invalid duration \"0s\": must be greater than zero"
    );
    assert_eq!(
        error("metrics_push:\n  interval: often\n"),
        "exporter.yaml:2:13: invalid duration \"often\": use a number and a unit (ms, s, m, h, d) such as 30s, 5m or 1h30m"
    );
    assert_eq!(error("metrics_push:\n  queue_size: 0\n"), "exporter.yaml:2:15: queue_size must be at least 1");
    assert!(error("metrics_push:\n  endpoint: grpc://collector:4317\n").starts_with("exporter.yaml:2:13: endpoint \"grpc://"));
    assert!(error("metrics_push:\n  temporalty: delta\n").starts_with("exporter.yaml:2:3: unknown field `temporalty`"));
    let config = Config::parse(
        "metrics_push:\n  endpoint: https://otel.example/v1/metrics\n  headers:\n    authorization: Bearer s3cr3t\n  interval: 15s\n  temporality: Delta\n",
        Path::new("exporter.yaml"),
    )
    .unwrap();
    let push = config.metrics_push.as_ref().unwrap();
    assert_eq!(
        (push.interval, push.temporality, push.queue_size),
        (
            Some(std::time::Duration::from_secs(15)),
            Some(codepipeline_exporter::metrics_push::settings::Temporality::Delta),
            65_536
        )
    );
    let printed = config.to_yaml();
    assert!(printed.contains("authorization: <secret>") && !printed.contains("s3cr3t"), "{printed}");
    assert!(printed.contains("temporality: delta") && printed.contains("interval: 15s"), "{printed}");
}
