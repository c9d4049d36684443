//! The simulated endpoint answers both protocols for both services, since AWS lists both and a
//! later SDK release may switch: CodePipeline in RPC v2 CBOR through the real SDK's own CBOR codec,
//! and CodeConnections in awsJson 1.0 on the wire.

use aws_credential_types::Credentials;
use aws_sdk_codepipeline::config::{BehaviorVersion, Region};
use codepipeline_exporter::simulator::{SimPipeline, SimRepositoryLink, Simulator, World};

#[tokio::test]
async fn codepipeline_answers_rpc_v2_cbor() {
    let mut world = World::default();
    let mut pipeline = SimPipeline::new("app", &[("Source", &["Source"])]);
    pipeline.stages[0].latest = Some(("e1".into(), "Succeeded".into()));
    pipeline.created = 1_700_000_000.25;
    world.pipelines.insert("app".into(), pipeline);
    let simulator = Simulator::start(world).await.unwrap();
    let config = aws_sdk_codepipeline::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(simulator.endpoint_url())
        .protocol(aws_smithy_cbor::protocol::RpcV2CborProtocol::new())
        .build();
    let client = aws_sdk_codepipeline::Client::from_conf(config);
    let state = client.get_pipeline_state().name("app").send().await.unwrap();
    assert_eq!(state.stage_states()[0].latest_execution().unwrap().status().as_str(), "Succeeded");
    assert_eq!(state.created().unwrap().as_secs_f64(), 1_700_000_000.25);
    let err = client.get_pipeline_state().name("nope").send().await.unwrap_err();
    assert!(err.into_service_error().is_pipeline_not_found_exception());
}

#[tokio::test]
async fn codeconnections_answers_aws_json_1_0() {
    let mut world = World::default();
    let link = SimRepositoryLink::new("l1", "GitHub", "acme", "infra");
    world.repository_links.insert(link.id.clone(), link);
    let simulator = Simulator::start(world).await.unwrap();
    let addr = simulator.endpoint_url().trim_start_matches("http://").to_string();
    let body = "{}";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: CodeConnections_20231201.ListRepositoryLinks\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("content-type: application/x-amz-json-1.0\r\n"), "{response}");
    assert!(response.ends_with(r#"{"RepositoryLinks":[{"ConnectionArn":"arn:aws:codeconnections:us-east-1:111122223333:connection/l1","OwnerId":"acme","ProviderType":"GitHub","RepositoryLinkArn":"arn:aws:codeconnections:us-east-1:111122223333:repository-link/l1","RepositoryLinkId":"l1","RepositoryName":"infra"}]}"#), "{response}");
}
