//! Every account of an AWS Organization from one configuration, through the real
//! `aws-sdk-organizations` and `aws-sdk-sts` against the simulated organization: listing across
//! pages and down the OU tree, selection, accounts that come and go without a restart, a member
//! whose role cannot be assumed, a failing listing, the `account` label, explicit accounts beside
//! listed ones, pipeline tags, and one events queue for the whole organization.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use codepipeline_exporter::exporter::Running;
use codepipeline_exporter::simulator::{Fault, SimActionExecution, SimPipeline, Simulator, World, execution_id};
use common::{error_count, family, scrape, start_exporter_unthrottled, target_up_in, value, wait_for, wait_for_calls};

/// A pipeline whose one stage succeeded.
fn pipeline(name: &str, status: &str) -> SimPipeline {
    let mut pipeline = SimPipeline::new(name, &[("Build", &["Build"])]);
    pipeline.stages[0].latest = Some((execution_id("e1"), status.into()));
    pipeline.stages[0].actions[0].latest =
        Some(SimActionExecution { id: "a1".into(), status: status.into(), ..SimActionExecution::default() });
    pipeline
}

fn stage_status(account: &str, pipeline: &str, status: &str) -> String {
    format!(
        "aws_codepipeline_stage_status{{account=\"{account}\",region=\"us-east-1\",pipeline=\"{pipeline}\",stage=\"Build\",status=\"{status}\"}}"
    )
}

/// The accounts whose pipelines a scrape shows, with each account's pipelines.
fn polled(samples: &BTreeMap<String, f64>) -> BTreeMap<String, Vec<String>> {
    let mut accounts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for series in samples.keys().filter(|s| s.starts_with("aws_codepipeline_pipeline_info{")) {
        let label = |name: &str| {
            let start = series.find(&format!("{name}=\"")).map(|i| i + name.len() + 2)?;
            Some(series[start..].split('"').next()?.to_string())
        };
        if let (Some(account), Some(pipeline)) = (label("account"), label("pipeline")) {
            accounts.entry(account).or_default().push(pipeline);
        }
    }
    accounts
}

/// Waits until the exporter polls exactly `expected` accounts' pipelines.
async fn wait_for_accounts(exporter: &Running, expected: &[(&str, &str)]) -> BTreeMap<String, f64> {
    let expected: BTreeMap<String, Vec<String>> =
        expected.iter().map(|(account, pipeline)| (account.to_string(), vec![pipeline.to_string()])).collect();
    wait_for(exporter, &format!("the pipelines of {expected:?}"), |s| polled(s) == expected).await
}

/// An organization of `accounts` (ID, name, parent), each holding one pipeline named after it, in
/// a simulator whose lists page after `page` items.
async fn organization(accounts: &[(&str, &str, &str)], page: usize) -> Simulator {
    let simulator = Simulator::start(World::default()).await.unwrap();
    {
        let mut organization = simulator.organization();
        organization.page_size = page;
        // The simulated account is the management account: it holds no pipeline here.
        organization.accounts.clear();
        for (id, name, parent) in accounts {
            organization.add_account(id, name, parent);
        }
    }
    for (id, name, _) in accounts {
        simulator.member(id).pipelines.insert(format!("{name}-deploy"), pipeline(&format!("{name}-deploy"), "Succeeded"));
    }
    simulator
}

const ROOT: &str = "r-examplerootid";

fn config(organization: &str) -> String {
    format!(
        "interval: 500ms\ndiscovery_interval: 500ms\norganization:\n  role_name: codepipeline-exporter\n  regions: [us-east-1]\n  refresh_interval: 500ms\n  codeconnections:\n    discover: false\n    connections: false\n{organization}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_listed_across_pages_and_selected_by_name_each_polled_with_its_own_data() {
    let simulator = organization(
        &[
            ("100000000001", "prod-payments", ROOT),
            ("100000000002", "prod-search", ROOT),
            ("100000000003", "dev-payments", ROOT),
            ("100000000004", "prod-sandbox", ROOT),
            ("100000000005", "prod-closed", ROOT),
        ],
        2,
    )
    .await;
    simulator.organization().accounts.get_mut("100000000005").unwrap().status = "SUSPENDED".into();
    let yaml = config("  include: { names: [\"^prod-\"] }\n  exclude: { names: [\"-sandbox$\"] }\n");
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    let samples =
        wait_for_accounts(&exporter, &[("prod-payments", "prod-payments-deploy"), ("prod-search", "prod-search-deploy")]).await;
    // Three pages of two accounts at most; each member's pipeline was read with its own role.
    assert!(simulator.calls("ListAccounts") >= 3);
    assert_eq!(simulator.member_calls("100000000003", "ListPipelines"), 0);
    assert_eq!(simulator.member_calls("100000000004", "ListPipelines"), 0);
    assert_eq!(simulator.member_calls("100000000005", "ListPipelines"), 0);
    assert!(simulator.member_calls("100000000001", "GetPipelineState") >= 1);
    assert_eq!(value(&samples, &target_up_in("organization", "us-east-1", "organization", "organization")), Some(1.0));
    assert_eq!(value(&samples, &target_up_in("prod-payments", "us-east-1", "credentials", "codepipeline-exporter")), Some(1.0));
    assert_eq!(value(&samples, &stage_status("prod-search", "prod-search-deploy", "Succeeded")), Some(1.0));
    // Without an allowlist no tag is read.
    assert_eq!(simulator.calls("ListTagsForResource"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_are_walked_down_the_tree_and_the_account_label_can_be_the_id() {
    let simulator = organization(
        &[
            ("200000000001", "top", "ou-aaaa-11111111"),
            ("200000000002", "nested", "ou-aaaa-22222222"),
            ("200000000003", "elsewhere", "ou-aaaa-33333333"),
            ("200000000004", "in-root", ROOT),
        ],
        1,
    )
    .await;
    {
        let mut organization = simulator.organization();
        organization.add_unit("ou-aaaa-11111111", "workloads", ROOT);
        organization.add_unit("ou-aaaa-22222222", "prod", "ou-aaaa-11111111");
        organization.add_unit("ou-aaaa-33333333", "sandbox", ROOT);
    }
    let yaml = config("  include: { ous: [ou-aaaa-11111111] }\n  account_label: id\n");
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for_accounts(&exporter, &[("200000000001", "top-deploy"), ("200000000002", "nested-deploy")]).await;
    assert_eq!(simulator.calls("ListAccounts"), 0, "units are listed with ListAccountsForParent");
    assert!(simulator.calls("ListChildren") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_added_is_polled_and_one_removed_goes_without_a_restart() {
    let simulator = organization(&[("300000000001", "alpha", ROOT), ("300000000002", "beta", ROOT)], 20).await;
    let exporter = start_exporter_unthrottled(&simulator, &config("")).await;
    wait_for_accounts(&exporter, &[("alpha", "alpha-deploy"), ("beta", "beta-deploy")]).await;
    simulator.member("300000000003").pipelines.insert("gamma-deploy".into(), pipeline("gamma-deploy", "Failed"));
    simulator.organization().add_account("300000000003", "gamma", ROOT);
    let samples =
        wait_for_accounts(&exporter, &[("alpha", "alpha-deploy"), ("beta", "beta-deploy"), ("gamma", "gamma-deploy")]).await;
    assert_eq!(value(&samples, &stage_status("gamma", "gamma-deploy", "Failed")), Some(1.0));
    simulator.organization().accounts.remove("300000000002");
    let samples = wait_for_accounts(&exporter, &[("alpha", "alpha-deploy"), ("gamma", "gamma-deploy")]).await;
    // Every series of the removed account went, its credentials' too.
    assert!(samples.keys().all(|s| !s.contains("account=\"beta\"")), "{samples:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_refusing_its_role_is_one_down_target_and_the_others_go_on() {
    let simulator = organization(&[("400000000001", "good", ROOT), ("400000000002", "denied", ROOT)], 20).await;
    simulator.organization().deny_assume.insert("400000000002".into());
    let exporter = start_exporter_unthrottled(&simulator, &config("")).await;
    let credentials = target_up_in("denied", "us-east-1", "credentials", "codepipeline-exporter");
    let samples = wait_for(&exporter, "the denied member's credentials down", |s| {
        value(s, &credentials) == Some(0.0) && polled(s).contains_key("good")
    })
    .await;
    assert_eq!(polled(&samples).keys().collect::<Vec<_>>(), ["good"]);
    // STS's own code, counted once per attempt; no other target of the account fails on its own.
    assert!(error_count(&samples, "sts", "AssumeRole", "AccessDenied").is_some_and(|n| n >= 1.0));
    let failing: Vec<&String> = samples
        .iter()
        .filter(|(s, v)| s.starts_with("codepipeline_exporter_target_up{account=\"denied\"") && **v == 0.0)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(failing, [&credentials]);
    assert_eq!(simulator.member_calls("400000000002", "ListPipelines"), 0);
    // The status page shows the code too.
    let page = common::request(exporter.addr, "GET", "/status", &[]).await;
    assert!(page.body.contains("AccessDenied"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_listing_keeps_the_last_list_and_marks_the_listing_down() {
    let simulator = organization(&[("500000000001", "kept", ROOT)], 20).await;
    let exporter = start_exporter_unthrottled(&simulator, &config("")).await;
    wait_for_accounts(&exporter, &[("kept", "kept-deploy")]).await;
    simulator.inject("ListAccounts", Fault::error(400, "AccessDeniedException"), 1_000);
    let listing = target_up_in("organization", "us-east-1", "organization", "organization");
    let samples = wait_for(&exporter, "the listing down", |s| value(s, &listing) == Some(0.0)).await;
    assert_eq!(polled(&samples).keys().collect::<Vec<_>>(), ["kept"]);
    // Polling goes on meanwhile.
    wait_for_calls(&simulator, "GetPipelineState", 2).await;
    assert_eq!(polled(&common::samples(&scrape(&exporter).await)).keys().collect::<Vec<_>>(), ["kept"]);
    simulator.clear_faults();
    wait_for(&exporter, "the listing up again", |s| value(s, &listing) == Some(1.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_account_wins_over_the_same_account_listed() {
    let simulator = organization(&[("600000000001", "listed", ROOT), ("600000000002", "other", ROOT)], 20).await;
    let yaml = format!(
        "{}accounts:\n  - name: explicit\n    role_arn: arn:aws:iam::600000000001:role/codepipeline-exporter\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n      connections: false\n",
        config("")
    );
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for_accounts(&exporter, &[("explicit", "listed-deploy"), ("other", "other-deploy")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowlisted_tags_become_labels_and_a_changed_tag_shows_at_the_next_discovery() {
    let simulator = organization(&[("700000000001", "tagged", ROOT)], 20).await;
    simulator.member("700000000001").pipelines.get_mut("tagged-deploy").unwrap().tags =
        vec![("team".into(), "payments".into()), ("cost-center".into(), "42".into()), ("secret".into(), "x".into())];
    let exporter = start_exporter_unthrottled(&simulator, &config("  tags: [team, cost-center]\n")).await;
    let series = |team: &str| {
        format!(
            "aws_codepipeline_pipeline_tags{{account=\"tagged\",region=\"us-east-1\",pipeline=\"tagged-deploy\",tag_team=\"{team}\",tag_cost_center=\"42\"}}"
        )
    };
    let samples = wait_for(&exporter, "the tags", |s| value(s, &series("payments")) == Some(1.0)).await;
    assert_eq!(family(&common::scrape(&exporter).await, "aws_codepipeline_pipeline_tags").len(), 1, "{samples:?}");
    simulator.member("700000000001").pipelines.get_mut("tagged-deploy").unwrap().tags[0].1 = "search".into();
    wait_for(&exporter, "the changed tag", |s| {
        value(s, &series("search")) == Some(1.0) && value(s, &series("payments")).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_queue_routes_the_events_of_three_accounts_and_deletes_those_of_unselected_ones() {
    let accounts = [
        ("800000000001", "one", ROOT),
        ("800000000002", "two", ROOT),
        ("800000000003", "three", ROOT),
        ("800000000004", "sandbox", ROOT),
    ];
    let simulator = organization(&accounts, 20).await;
    let queue = simulator.create_queue("codepipeline-exporter", true);
    // Polled every minute: what shows sooner came through the queue.
    let yaml = format!(
        "interval: 1m\nactive_interval: 1m\ndiscovery_interval: 1h\norganization:\n  role_name: codepipeline-exporter\n  regions: [us-east-1]\n  exclude: {{ names: [sandbox] }}\n  codeconnections:\n    discover: false\n    connections: false\n  events:\n    queue_url: {queue}\n"
    );
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for_accounts(&exporter, &[("one", "one-deploy"), ("three", "three-deploy"), ("two", "two-deploy")]).await;
    let active = "codepipeline_exporter_events_active{account=\"organization\"}";
    wait_for(&exporter, "events mode", |s| value(s, active) == Some(1.0)).await;
    for (id, name, _) in &accounts {
        let mut member = simulator.member(id);
        let pipeline = member.pipelines.get_mut(&format!("{name}-deploy")).unwrap();
        pipeline.stages[0].latest = Some((execution_id("e2"), "Failed".into()));
    }
    let started = Instant::now();
    let samples = wait_for(&exporter, "the three accounts' failures", |s| {
        ["one", "two", "three"].iter().all(|name| value(s, &stage_status(name, &format!("{name}-deploy"), "Failed")) == Some(1.0))
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let not_selected = "codepipeline_exporter_events_ignored_total{account=\"organization\",reason=\"not_selected\"}";
    let samples = if value(&samples, not_selected).is_some() {
        samples
    } else {
        wait_for(&exporter, "the unselected account's event counted", |s| value(s, not_selected).is_some()).await
    };
    assert!(value(&samples, not_selected).is_some_and(|n| n >= 1.0));
    assert_eq!(simulator.member_calls("800000000004", "GetPipelineState"), 0);
    // Every message was deleted, the unselected account's too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while simulator.queue_depth(&queue) != (0, 0) {
        assert!(Instant::now() < deadline, "messages left: {:?}", simulator.queue_depth(&queue));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_renewed_before_they_expire_with_no_gap_in_polling() {
    let simulator = organization(&[("900000000001", "renewed", ROOT)], 20).await;
    // STS's shortest session is 15 minutes; a few seconds here, so that the test sees renewals.
    simulator.set_credentials_lifetime(Duration::from_secs(4));
    let exporter = start_exporter_unthrottled(&simulator, &config("")).await;
    wait_for_accounts(&exporter, &[("renewed", "renewed-deploy")]).await;
    let assumed = simulator.calls("AssumeRole");
    // Over three lifetimes, polled every half second.
    let polls = simulator.member_calls("900000000001", "GetPipelineState");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(simulator.calls("AssumeRole") >= assumed + 4, "{} renewals", simulator.calls("AssumeRole") - assumed);
    assert!(simulator.member_calls("900000000001", "GetPipelineState") >= polls + 15);
    let samples = common::samples(&scrape(&exporter).await);
    let expired: Vec<&String> = samples.keys().filter(|s| s.contains("code=\"ExpiredToken")).collect();
    assert!(expired.is_empty(), "{expired:?}");
    assert_eq!(value(&samples, &target_up_in("renewed", "us-east-1", "pipeline", "renewed-deploy")), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organization_s_queue_is_read_with_its_own_role() {
    let simulator = organization(&[("820000000001", "one", ROOT)], 20).await;
    let queue = simulator.create_queue("codepipeline-exporter", true);
    // The queue's account, outside the organization: the simulated STS lets its role be assumed.
    drop(simulator.member("829900000001"));
    let yaml = format!(
        "interval: 1m\nactive_interval: 1m\ndiscovery_interval: 1h\norganization:\n  role_name: codepipeline-exporter\n  regions: [us-east-1]\n  codeconnections:\n    enabled: false\n  events:\n    queue_url: {queue}\n    role_arn: arn:aws:iam::829900000001:role/queue-reader\n"
    );
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for_accounts(&exporter, &[("one", "one-deploy")]).await;
    let active = "codepipeline_exporter_events_active{account=\"organization\"}";
    wait_for(&exporter, "events mode", |s| value(s, active) == Some(1.0)).await;
    let role = target_up_in("organization", "us-east-1", "credentials", "queue-reader");
    let samples = wait_for(&exporter, "the queue's role assumed", |s| value(s, &role) == Some(1.0)).await;
    assert_eq!(value(&samples, &role), Some(1.0));
    // Every receive was signed with the keys STS issued for the queue's role, none with the
    // exporter's own.
    assert!(simulator.member_calls("829900000001", "ReceiveMessage") >= 1);
    assert_eq!(simulator.member_calls(codepipeline_exporter::simulator::ACCOUNT_ID, "ReceiveMessage"), 0);
    assert_eq!(simulator.member_calls("829900000001", "AssumeRole"), 0, "assumed with the exporter's own keys");
    assert_eq!(simulator.member_calls(codepipeline_exporter::simulator::ACCOUNT_ID, "AssumeRole"), 2);
    // An event still arrives through it.
    simulator.member("820000000001").pipelines.get_mut("one-deploy").unwrap().stages[0].latest =
        Some((execution_id("e2"), "Failed".into()));
    wait_for(&exporter, "the failure through the queue", |s| value(s, &stage_status("one", "one-deploy", "Failed")) == Some(1.0))
        .await;
}
