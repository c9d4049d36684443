//! The simulated organization through the real `aws-sdk-organizations`, `aws-sdk-sts` and
//! `aws-sdk-codepipeline`: accounts listed page by page and down the tree of organizational
//! units, AssumeRole into each member with the answers a trust policy gives, and each member's
//! own pipelines, tags, calls and events seen through the credentials STS issued for it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sdk_codepipeline::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::ProvideErrorMetadata as _;
use codepipeline_exporter::simulator::{
    ACCOUNT_ID, Fault, SimAccount, SimExecution, SimPipeline, SimUnit, Simulator, World, execution_id,
};

const MEMBER: &str = "222233334444";
const OTHER: &str = "333344445555";
const ROLE: &str = "codepipeline-exporter";

fn role_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/{ROLE}")
}

fn static_credentials() -> Credentials {
    Credentials::new("AKIDTEST", "secret", None, None, "test")
}

fn organizations(simulator: &Simulator) -> aws_sdk_organizations::Client {
    let config = aws_sdk_organizations::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(static_credentials())
        .endpoint_url(simulator.endpoint_url())
        .build();
    aws_sdk_organizations::Client::from_conf(config)
}

fn sts(simulator: &Simulator, credentials: Credentials) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(simulator.endpoint_url())
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

fn codepipeline(simulator: &Simulator, credentials: Credentials) -> aws_sdk_codepipeline::Client {
    let config = aws_sdk_codepipeline::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(simulator.endpoint_url())
        .build();
    aws_sdk_codepipeline::Client::from_conf(config)
}

/// The credentials AssumeRole issued, as a client would use them.
fn issued(credentials: &aws_sdk_sts::types::Credentials) -> Credentials {
    Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token().to_string()),
        None,
        "assumed",
    )
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn world(pipelines: &[&str]) -> World {
    let mut world = World::default();
    for name in pipelines {
        world.pipelines.insert(name.to_string(), SimPipeline::new(name, &[("Source", &["Source"])]));
    }
    world
}

async fn pipeline_names(client: &aws_sdk_codepipeline::Client) -> Vec<String> {
    let out = client.list_pipelines().send().await.unwrap();
    out.pipelines().iter().filter_map(|p| p.name().map(str::to_string)).collect()
}

/// 44 members and the management account are 45 accounts: pages of 20, 20 and 5, in account ID
/// order, each account as ListAccounts describes it. MaxResults shortens a page.
#[tokio::test]
async fn list_accounts_pages_through_the_organization() {
    let simulator = Simulator::start(World::default()).await.unwrap();
    let members: Vec<String> = (1..=44).map(|i| format!("1000000000{i:02}")).collect();
    {
        let mut organization = simulator.organization();
        let root = organization.root.clone();
        for (i, id) in members.iter().enumerate() {
            organization.add_account(id, &format!("member-{i}"), &root);
        }
        assert_eq!(organization.page_size, 20);
    }
    let client = organizations(&simulator);
    let (mut ids, mut pages, mut token) = (Vec::new(), Vec::new(), None);
    loop {
        let out = client.list_accounts().set_next_token(token).send().await.unwrap();
        pages.push(out.accounts().len());
        ids.extend(out.accounts().iter().filter_map(|a| a.id().map(str::to_string)));
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, [20, 20, 5]);
    let mut expected = members.clone();
    expected.push(ACCOUNT_ID.to_string());
    assert_eq!(ids, expected);
    assert_eq!(simulator.calls("ListAccounts"), 3);

    let first = client.list_accounts().max_results(7).send().await.unwrap();
    assert_eq!(first.accounts().len(), 7);
    assert_eq!(first.next_token(), Some("7"));
    let account = &first.accounts()[0];
    assert_eq!(account.id(), Some("100000000001"));
    assert_eq!(account.arn(), Some("arn:aws:organizations::111122223333:account/o-exampleorgid/100000000001"));
    assert_eq!(account.email(), Some("aws+100000000001@example.com"));
    assert_eq!(account.name(), Some("member-0"));
    assert_eq!(account.status().map(|s| s.as_str()), Some("ACTIVE"));
    assert_eq!(account.state().map(|s| s.as_str()), Some("ACTIVE"));
    assert_eq!(account.joined_method().map(|m| m.as_str()), Some("INVITED"));
    assert_eq!(account.joined_timestamp().map(|t| t.secs()), Some(1_600_000_000));

    let err = client.list_accounts().max_results(21).send().await.unwrap_err();
    assert!(err.into_service_error().is_invalid_input_exception());

    // Faults are injected by operation name, as for every other service.
    simulator.inject("ListAccounts", Fault::error(400, "AccessDeniedException"), 1);
    let err = client.list_accounts().send().await.unwrap_err();
    assert!(err.into_service_error().is_access_denied_exception());
    assert_eq!(client.list_accounts().send().await.unwrap().accounts().len(), 20);
}

/// ListChildren and ListAccountsForParent walk a root with two units, one of which holds a third.
#[tokio::test]
async fn list_children_walks_a_two_level_tree() {
    let simulator = Simulator::start(World::default()).await.unwrap();
    {
        let mut organization = simulator.organization();
        let root = organization.root.clone();
        organization
            .add_unit("ou-exam-apps0001", "Apps", &root)
            .add_unit("ou-exam-infra001", "Infra", &root)
            .add_unit("ou-exam-prod0001", "Prod", "ou-exam-apps0001")
            .add_account("200000000001", "apps-dev", "ou-exam-apps0001")
            .add_account("200000000002", "apps-prod-a", "ou-exam-prod0001")
            .add_account("200000000003", "apps-prod-b", "ou-exam-prod0001")
            .add_account("200000000004", "network", "ou-exam-infra001");
        organization.accounts.get_mut("200000000003").unwrap().status = "SUSPENDED".into();
        assert_eq!(organization.units["ou-exam-prod0001"], SimUnit { name: "Prod".into(), parent: "ou-exam-apps0001".into() });
        assert_eq!(
            organization.accounts["200000000004"],
            SimAccount {
                id: "200000000004".into(),
                name: "network".into(),
                status: "ACTIVE".into(),
                parent: "ou-exam-infra001".into()
            }
        );
    }
    let client = organizations(&simulator);

    let roots = client.list_roots().send().await.unwrap();
    assert_eq!(roots.roots().len(), 1);
    assert_eq!(roots.roots()[0].id(), Some("r-examplerootid"));
    assert_eq!(roots.roots()[0].arn(), Some("arn:aws:organizations::111122223333:root/o-exampleorgid/r-examplerootid"));
    let organization = client.describe_organization().send().await.unwrap();
    let organization = organization.organization().unwrap();
    assert_eq!(organization.id(), Some("o-exampleorgid"));
    assert_eq!(organization.master_account_id(), Some(ACCOUNT_ID));
    assert_eq!(organization.feature_set().map(|f| f.as_str()), Some("ALL"));

    // Breadth first from the root: each parent's units, then its accounts.
    use aws_sdk_organizations::types::ChildType;
    let mut walked = Vec::new();
    let mut parents = vec!["r-examplerootid".to_string()];
    while let Some(parent) = parents.first().cloned() {
        parents.remove(0);
        let units = client.list_children().parent_id(&parent).child_type(ChildType::OrganizationalUnit).send().await.unwrap();
        for child in units.children() {
            assert_eq!(child.r#type(), Some(&ChildType::OrganizationalUnit));
            parents.push(child.id().unwrap().to_string());
        }
        let accounts = client.list_accounts_for_parent().parent_id(&parent).send().await.unwrap();
        let children = client.list_children().parent_id(&parent).child_type(ChildType::Account).send().await.unwrap();
        let ids: Vec<&str> = accounts.accounts().iter().filter_map(|a| a.id()).collect();
        let child_ids: Vec<&str> = children.children().iter().filter_map(|c| c.id()).collect();
        assert_eq!(ids, child_ids, "{parent}");
        let statuses: Vec<String> =
            accounts.accounts().iter().map(|a| format!("{}={}", a.id().unwrap(), a.status().unwrap().as_str())).collect();
        walked.push((parent, statuses));
    }
    let expected: Vec<(String, Vec<String>)> = vec![
        ("r-examplerootid".into(), vec!["111122223333=ACTIVE".into()]),
        ("ou-exam-apps0001".into(), vec!["200000000001=ACTIVE".into()]),
        ("ou-exam-infra001".into(), vec!["200000000004=ACTIVE".into()]),
        ("ou-exam-prod0001".into(), vec!["200000000002=ACTIVE".into(), "200000000003=SUSPENDED".into()]),
    ];
    assert_eq!(walked, expected);

    let err = client.list_children().parent_id("ou-exam-gone0001").child_type(ChildType::Account).send().await.unwrap_err();
    assert!(err.into_service_error().is_parent_not_found_exception());
    let err = client.list_accounts_for_parent().parent_id("r-nothere").send().await.unwrap_err();
    assert!(err.into_service_error().is_parent_not_found_exception());

    // The organization's own page size pages ListChildren too, whatever MaxResults asks for.
    simulator.organization().page_size = 1;
    let page = client.list_children().parent_id("ou-exam-prod0001").child_type(ChildType::Account).max_results(20).send().await;
    let page = page.unwrap();
    assert_eq!(page.children().iter().filter_map(|c| c.id()).collect::<Vec<_>>(), ["200000000002"]);
    assert_eq!(page.next_token(), Some("1"));
}

/// The credentials AssumeRole issues for a member see that member's world, and only it; static
/// credentials see the simulated account's. Calls are counted per account.
#[tokio::test]
async fn assumed_credentials_see_only_their_member_world() {
    let simulator = Simulator::start(world(&["main-app"])).await.unwrap();
    simulator.organization().add_account(MEMBER, "payments", "r-examplerootid");
    {
        let mut member = simulator.member(MEMBER);
        assert_eq!(member.page_size, 100);
        member.pipelines.insert("member-app".into(), SimPipeline::new("member-app", &[("Source", &["Source"])]));
        member.pipelines.insert("member-batch".into(), SimPipeline::new("member-batch", &[("Source", &["Source"])]));
    }
    assert_eq!(simulator.member(ACCOUNT_ID).pipelines.keys().collect::<Vec<_>>(), ["main-app"]);

    let assumed = sts(&simulator, static_credentials())
        .assume_role()
        .role_arn(role_arn(MEMBER))
        .role_session_name("exporter")
        .send()
        .await
        .unwrap();
    let user = assumed.assumed_role_user().unwrap();
    assert_eq!(user.arn(), "arn:aws:sts::222233334444:assumed-role/codepipeline-exporter/exporter");
    assert_eq!(user.assumed_role_id(), "AROA222233334444EXAMPLE:exporter");
    let credentials = assumed.credentials().unwrap();
    assert_eq!(credentials.access_key_id(), "ASIA2222333344440001");
    let lifetime = credentials.expiration().secs() - now();
    assert!((3590..=3600).contains(&lifetime), "{lifetime}");

    let member = codepipeline(&simulator, issued(credentials));
    let main = codepipeline(&simulator, static_credentials());
    assert_eq!(pipeline_names(&member).await, ["member-app", "member-batch"]);
    assert_eq!(pipeline_names(&main).await, ["main-app"]);
    let metadata = member.get_pipeline().name("member-app").send().await.unwrap();
    assert_eq!(metadata.metadata().unwrap().pipeline_arn(), Some("arn:aws:codepipeline:us-east-1:222233334444:member-app"));
    let err = member.get_pipeline().name("main-app").send().await.unwrap_err();
    assert!(err.into_service_error().is_pipeline_not_found_exception());

    let identity = sts(&simulator, issued(credentials)).get_caller_identity().send().await.unwrap();
    assert_eq!(identity.account(), Some(MEMBER));
    assert_eq!(identity.arn(), Some("arn:aws:sts::222233334444:assumed-role/codepipeline-exporter/exporter"));
    let identity = sts(&simulator, static_credentials()).get_caller_identity().send().await.unwrap();
    assert_eq!(identity.account(), Some(ACCOUNT_ID));
    assert_eq!(identity.arn(), Some("arn:aws:sts::111122223333:assumed-role/codepipeline-exporter/session"));

    assert_eq!(simulator.calls("ListPipelines"), 2);
    assert_eq!(simulator.member_calls(MEMBER, "ListPipelines"), 1);
    assert_eq!(simulator.member_calls(ACCOUNT_ID, "ListPipelines"), 1);
    assert_eq!(simulator.calls("GetPipeline"), 2);
    assert_eq!(simulator.member_calls(MEMBER, "GetPipeline"), 2);
    assert_eq!(simulator.member_calls(ACCOUNT_ID, "GetPipeline"), 0);
    assert_eq!(simulator.member_calls(ACCOUNT_ID, "AssumeRole"), 1);
    assert_eq!(simulator.member_calls(MEMBER, "AssumeRole"), 0);
    assert_eq!(simulator.member_calls(MEMBER, "GetCallerIdentity"), 1);
    assert_eq!(simulator.member_calls(ACCOUNT_ID, "GetCallerIdentity"), 1);
    assert_eq!(simulator.member_calls(OTHER, "ListPipelines"), 0);

    // An account with a member world may be assumed though the organization does not list it,
    // and a second session gets keys of its own.
    simulator.member(OTHER).pipelines.insert("other-app".into(), SimPipeline::new("other-app", &[("Source", &["Source"])]));
    let other = sts(&simulator, static_credentials())
        .assume_role()
        .role_arn(format!("arn:aws:iam::{OTHER}:role/teams/{ROLE}"))
        .role_session_name("exporter")
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    let credentials = other.credentials().unwrap();
    assert_eq!(credentials.access_key_id(), "ASIA3333444455550002");
    let lifetime = credentials.expiration().secs() - now();
    assert!((890..=900).contains(&lifetime), "{lifetime}");
    assert_eq!(other.assumed_role_user().unwrap().arn(), "arn:aws:sts::333344445555:assumed-role/codepipeline-exporter/exporter");
    assert_eq!(pipeline_names(&codepipeline(&simulator, issued(credentials))).await, ["other-app"]);
}

/// A role that refuses the caller, or an account outside the organization, answers AccessDenied
/// with HTTP 403 and the message AWS gives.
#[tokio::test]
async fn assume_role_denied_is_access_denied() {
    let simulator = Simulator::start(World::default()).await.unwrap();
    {
        let mut organization = simulator.organization();
        organization.add_account(MEMBER, "payments", "r-examplerootid");
        organization.deny_assume.insert(MEMBER.into());
    }
    let client = sts(&simulator, static_credentials());
    for account in [MEMBER, OTHER] {
        let err = client.assume_role().role_arn(role_arn(account)).role_session_name("exporter").send().await.unwrap_err();
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
        assert_eq!(err.code(), Some("AccessDenied"));
        assert_eq!(
            err.message(),
            Some(
                format!(
                    "User: arn:aws:sts::111122223333:assumed-role/codepipeline-exporter/session is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::{account}:role/codepipeline-exporter"
                )
                .as_str()
            )
        );
    }
    assert_eq!(simulator.calls("AssumeRole"), 2);

    // Faults are injected by operation name, and the next call is answered as before.
    simulator.inject("AssumeRole", Fault::error(400, "RegionDisabledException"), 1);
    let err = client.assume_role().role_arn(role_arn(ACCOUNT_ID)).role_session_name("exporter").send().await.unwrap_err();
    assert!(err.into_service_error().is_region_disabled_exception());
    let own = client.assume_role().role_arn(role_arn(ACCOUNT_ID)).role_session_name("exporter").send().await.unwrap();
    assert_eq!(own.assumed_role_user().unwrap().arn(), "arn:aws:sts::111122223333:assumed-role/codepipeline-exporter/exporter");
}

/// With an external ID required, AssumeRole succeeds only with exactly it.
#[tokio::test]
async fn external_id_must_match() {
    let simulator = Simulator::start(World::default()).await.unwrap();
    {
        let mut organization = simulator.organization();
        organization.add_account(MEMBER, "payments", "r-examplerootid");
        organization.external_id = Some("s3cret/with+signs".into());
    }
    let client = sts(&simulator, static_credentials());
    for external_id in [None, Some("wrong"), Some("s3cret/with")] {
        let err = client
            .assume_role()
            .role_arn(role_arn(MEMBER))
            .role_session_name("exporter")
            .set_external_id(external_id.map(str::to_string))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("AccessDenied"), "{external_id:?}");
    }
    let assumed = client
        .assume_role()
        .role_arn(role_arn(MEMBER))
        .role_session_name("exporter")
        .external_id("s3cret/with+signs")
        .send()
        .await
        .unwrap();
    assert_eq!(
        assumed.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::222233334444:assumed-role/codepipeline-exporter/exporter"
    );
}

/// ListTagsForResource answers a pipeline's tags exactly, page by page, for the pipeline ARN of the
/// caller's own account.
#[tokio::test]
async fn list_tags_for_resource_returns_the_tags() {
    let mut main = world(&["main-app"]);
    let tags = [("team", "payments"), ("env", "prod"), ("cost-center", "42")];
    main.pipelines.get_mut("main-app").unwrap().tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let simulator = Simulator::start(main).await.unwrap();
    let client = codepipeline(&simulator, static_credentials());
    let arn = "arn:aws:codepipeline:us-east-1:111122223333:main-app";

    let out = client.list_tags_for_resource().resource_arn(arn).send().await.unwrap();
    let got: Vec<(&str, &str)> = out.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(got, tags);
    assert_eq!(out.next_token(), None);

    let first = client.list_tags_for_resource().resource_arn(arn).max_results(2).send().await.unwrap();
    assert_eq!(first.tags().iter().map(|t| t.key()).collect::<Vec<_>>(), ["team", "env"]);
    assert_eq!(first.next_token(), Some("2"));
    let rest = client.list_tags_for_resource().resource_arn(arn).max_results(2).next_token("2").send().await.unwrap();
    assert_eq!(rest.tags().iter().map(|t| (t.key(), t.value())).collect::<Vec<_>>(), [("cost-center", "42")]);
    assert_eq!(rest.next_token(), None);

    for missing in ["arn:aws:codepipeline:us-east-1:111122223333:gone", "arn:aws:codepipeline:us-east-1:222233334444:main-app"] {
        let err = client.list_tags_for_resource().resource_arn(missing).send().await.unwrap_err();
        assert!(err.into_service_error().is_resource_not_found_exception(), "{missing}");
    }
    let err = client.list_tags_for_resource().resource_arn("main-app").send().await.unwrap_err();
    assert!(err.into_service_error().is_invalid_arn_exception());

    // A member's pipelines are tagged in its own world, under its own ARNs.
    simulator.organization().add_account(MEMBER, "payments", "r-examplerootid");
    let mut tagged = SimPipeline::new("member-app", &[("Source", &["Source"])]);
    tagged.tags = vec![("team".into(), "ledger".into())];
    simulator.member(MEMBER).pipelines.insert("member-app".into(), tagged);
    let assumed = sts(&simulator, static_credentials())
        .assume_role()
        .role_arn(role_arn(MEMBER))
        .role_session_name("x")
        .send()
        .await
        .unwrap();
    let member = codepipeline(&simulator, issued(assumed.credentials().unwrap()));
    let out = member
        .list_tags_for_resource()
        .resource_arn("arn:aws:codepipeline:us-east-1:222233334444:member-app")
        .send()
        .await
        .unwrap();
    assert_eq!(out.tags().iter().map(|t| (t.key(), t.value())).collect::<Vec<_>>(), [("team", "ledger")]);
    assert_eq!(simulator.member_calls(MEMBER, "ListTagsForResource"), 1);
    assert_eq!(simulator.member_calls(ACCOUNT_ID, "ListTagsForResource"), 6);
}

/// Credentials past their expiration are refused, as AWS refuses an expired session token.
#[tokio::test]
async fn expired_credentials_are_refused() {
    let simulator = Simulator::start(World::default()).await.unwrap();
    simulator.organization().add_account(MEMBER, "payments", "r-examplerootid");
    simulator.set_credentials_lifetime(Duration::ZERO);
    let assumed = sts(&simulator, static_credentials())
        .assume_role()
        .role_arn(role_arn(MEMBER))
        .role_session_name("x")
        .send()
        .await
        .unwrap();
    let credentials = assumed.credentials().unwrap();
    assert!(credentials.expiration().secs() <= now());
    let err = codepipeline(&simulator, issued(credentials)).list_pipelines().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredTokenException"));
    let err = sts(&simulator, issued(credentials)).get_caller_identity().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredToken"));
    assert_eq!(simulator.member_calls(MEMBER, "ListPipelines"), 1);
}

/// A member's world emits its events onto the events queues with the member's account ID, and the
/// simulated account's events keep its own.
#[tokio::test]
async fn member_events_name_the_member_account() {
    let simulator = Simulator::start(world(&["main-app"])).await.unwrap();
    let queue = simulator.create_queue("events", true);
    let mut pipeline = SimPipeline::new("member-app", &[("Source", &["Source"])]);
    pipeline.executions = vec![SimExecution::new(&execution_id("e1"), "InProgress", 1.0, 2.0)];
    simulator.member(MEMBER).pipelines.insert("member-app".into(), pipeline);
    simulator.world().pipelines.get_mut("main-app").unwrap().executions =
        vec![SimExecution::new(&execution_id("e2"), "Succeeded", 1.0, 2.0)];
    assert_eq!(simulator.queue_depth(&queue), (2, 0));

    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(static_credentials())
        .endpoint_url(simulator.endpoint_url())
        .build();
    let out = aws_sdk_sqs::Client::from_conf(config).receive_message().queue_url(&queue).max_number_of_messages(10).send().await;
    let events: Vec<serde_json::Value> =
        out.unwrap().messages().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e["account"].as_str().unwrap(), e["resources"][0].as_str().unwrap(), e["detail"]["state"].as_str().unwrap()))
        .collect();
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["00000001-0000-4000-8000-222233334444", "00000000-0000-4000-8000-000000000001"]);
    assert_eq!(
        seen,
        [
            (MEMBER, "arn:aws:codepipeline:us-east-1:222233334444:member-app", "STARTED"),
            (ACCOUNT_ID, "arn:aws:codepipeline:us-east-1:111122223333:main-app", "SUCCEEDED"),
        ]
    );
}
