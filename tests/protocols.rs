//! The simulated endpoint answers both protocols for both services, since AWS lists both and a
//! later SDK release may switch: CodePipeline in RPC v2 CBOR through the real SDK's own CBOR codec,
//! and CodeConnections in awsJson 1.0 on the wire.

mod common;

use aws_credential_types::Credentials;
use aws_sdk_codepipeline::config::{BehaviorVersion, Region};
use codepipeline_exporter::simulator::{SimPipeline, SimRepositoryLink, Simulator, World, execution_id};

#[tokio::test]
async fn codepipeline_answers_rpc_v2_cbor() {
    let mut world = World::default();
    let mut pipeline = SimPipeline::new("app", &[("Source", &["Source"])]);
    pipeline.stages[0].latest = Some((execution_id("e1"), "Succeeded".into()));
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

/// One raw awsJson 1.0 call of CodeConnections with the target `target`: the status line and body.
async fn codeconnections_aws_json(addr: &str, target: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = "{}";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// CodeConnections also speaks awsJson 1.0, routed by the target prefix of its model
/// (`metadata.targetPrefix` of botocore's codeconnections 2023-12-01), namespace included; the
/// bare shape name is no target of it.
#[tokio::test]
async fn codeconnections_answers_aws_json_1_0_at_the_models_target_prefix() {
    let mut world = World::default();
    let link = SimRepositoryLink::new("11111111-aaaa-bbbb-cccc-000000000001", "GitHub", "acme", "infra");
    world.repository_links.insert(link.id.clone(), link);
    let simulator = Simulator::start(world).await.unwrap();
    let addr = simulator.endpoint_url().trim_start_matches("http://").to_string();
    let response =
        codeconnections_aws_json(&addr, "com.amazonaws.codeconnections.CodeConnections_20231201.ListRepositoryLinks").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("content-type: application/x-amz-json-1.0\r\n"), "{response}");
    assert!(response.ends_with(r#"{"RepositoryLinks":[{"ConnectionArn":"arn:aws:codeconnections:us-east-1:111122223333:connection/11111111-aaaa-bbbb-cccc-000000000001","OwnerId":"acme","ProviderType":"GitHub","RepositoryLinkArn":"arn:aws:codeconnections:us-east-1:111122223333:repository-link/11111111-aaaa-bbbb-cccc-000000000001","RepositoryLinkId":"11111111-aaaa-bbbb-cccc-000000000001","RepositoryName":"infra"}]}"#), "{response}");
    let bare = codeconnections_aws_json(&addr, "CodeConnections_20231201.ListRepositoryLinks").await;
    assert!(bare.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bare}");
    assert!(
        bare.contains("UnknownOperationException") && bare.contains("no service has the target prefix CodeConnections_20231201"),
        "{bare}"
    );
}

/// SQS as the pinned `aws-sdk-sqs` speaks it: long polls that return when a message arrives,
/// visibility timeouts, batch deletes by receipt handle, and errors the SDK recognises by the
/// `x-amzn-query-error` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_long_polls_hides_received_messages_and_names_its_errors() {
    use std::time::{Duration, Instant};

    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

    let simulator = Simulator::start(World::default()).await.unwrap();
    let queue = simulator.create_queue("q", false);
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(simulator.endpoint_url())
        .build();
    let client = aws_sdk_sqs::Client::from_conf(config);

    // A long poll returns as soon as a message arrives, not after its 20 s.
    let receive = {
        let (client, queue) = (client.clone(), queue.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let out = client.receive_message().queue_url(queue).wait_time_seconds(20).visibility_timeout(1).send().await.unwrap();
            (started.elapsed(), out)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    simulator.send_messages(&queue, &["first"]);
    let (waited, out) = receive.await.unwrap();
    assert!(waited < Duration::from_secs(2), "returned after {waited:?}");
    assert_eq!(out.messages().iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), ["first"]);
    let first_receipt = out.messages()[0].receipt_handle().unwrap().to_string();

    // Hidden while its visibility timeout runs; back after it, with a new receipt handle.
    let hidden = client.receive_message().queue_url(&queue).send().await.unwrap();
    assert!(hidden.messages().is_empty());
    assert_eq!(simulator.queue_depth(&queue), (0, 1));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = client.receive_message().queue_url(&queue).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(again.messages().len(), 1);
    let receipt = again.messages()[0].receipt_handle().unwrap().to_string();
    assert_ne!(receipt, first_receipt);

    // The stale receipt fails; the current one deletes.
    let entry =
        |id: &str, receipt: &str| DeleteMessageBatchRequestEntry::builder().id(id).receipt_handle(receipt).build().unwrap();
    let deleted = client
        .delete_message_batch()
        .queue_url(&queue)
        .entries(entry("stale", &first_receipt))
        .entries(entry("current", &receipt))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.successful().iter().map(|s| s.id()).collect::<Vec<_>>(), ["current"]);
    assert_eq!(deleted.failed().iter().map(|f| (f.id(), f.code())).collect::<Vec<_>>(), [("stale", "ReceiptHandleIsInvalid")]);
    assert_eq!(simulator.queue_depth(&queue), (0, 0));

    // A missing queue is the SDK's QueueDoesNotExist, by the query error code in the header.
    let missing = "https://sqs.us-east-1.amazonaws.com/111122223333/missing";
    let err = client.receive_message().queue_url(missing).send().await.unwrap_err();
    let err = err.into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");
    assert_eq!(aws_sdk_sqs::error::ProvideErrorMetadata::code(&err), Some("AWS.SimpleQueueService.NonExistentQueue"));
}

/// One raw request: the status line, headers and body of the answer.
async fn raw(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (String::from_utf8_lossy(&response[..split]).to_lowercase(), response[split + 4..].to_vec())
}

/// Every awsJson service is routed by its model's own `targetPrefix` and answers in its model's
/// `jsonVersion`; CodeConnections, whose SDK speaks RPC v2 CBOR, by the path its model's service
/// shape names (the prefix without its namespace); and SQS, query-compatible in its model
/// (`awsQueryCompatible`), names its awsQuery error code in `x-amzn-query-error`.
#[tokio::test]
async fn every_protocol_is_routed_by_the_models_own_prefixes_and_paths() {
    let mut world = World::default();
    let link = SimRepositoryLink::new("11111111-aaaa-bbbb-cccc-000000000001", "GitHub", "acme", "infra");
    world.repository_links.insert(link.id.clone(), link);
    let simulator = Simulator::start(world).await.unwrap();
    let addr = simulator.endpoint_url().trim_start_matches("http://").to_string();
    for (service, operation, body) in [
        ("codepipeline", "ListPipelines", "{}"),
        ("codebuild", "BatchGetBuilds", r#"{"ids":["p:00000000-0000-4000-8000-000000000000"]}"#),
        ("organizations", "ListAccounts", "{}"),
        ("codeconnections", "ListRepositoryLinks", "{}"),
        ("sqs", "GetQueueAttributes", r#"{"QueueUrl":"https://sqs.us-east-1.amazonaws.com/111122223333/missing"}"#),
    ] {
        let metadata = common::botocore_model(service)["metadata"].clone();
        let prefix = metadata["targetPrefix"].as_str().unwrap();
        let version = metadata["jsonVersion"].as_str().unwrap();
        let content_type = format!("application/x-amz-json-{version}");
        let target = format!("{prefix}.{operation}");
        let (head, answer) =
            raw(&addr, "/", &[("X-Amz-Target", &target), ("Content-Type", &content_type)], body.as_bytes()).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(head.contains(&format!("content-type: {content_type}\r\n")), "{target}: {head}");
        if service == "sqs" {
            // The queue is missing: an error that names its awsQuery code.
            assert!(metadata.get("awsQueryCompatible").is_some(), "{metadata}");
            assert!(head.starts_with("http/1.1 400 "), "{target}: {head}");
            assert!(head.contains("x-amzn-query-error: aws.simplequeueservice.nonexistentqueue;sender\r\n"), "{head}");
        } else {
            assert!(head.starts_with("http/1.1 200 "), "{target}: {head} {answer}");
        }
        if service == "codeconnections" {
            let shape = prefix.rsplit('.').next().unwrap();
            assert_eq!(shape, "CodeConnections_20231201");
            let path = format!("/service/{shape}/operation/{operation}");
            let (head, answer) =
                raw(&addr, &path, &[("smithy-protocol", "rpc-v2-cbor"), ("Content-Type", "application/cbor")], &[0xa0]).await;
            assert!(head.starts_with("http/1.1 200 "), "{path}: {head}");
            assert!(head.contains("smithy-protocol: rpc-v2-cbor\r\n"), "{head}");
            let answer: ciborium::Value = ciborium::from_reader(answer.as_slice()).unwrap();
            assert_eq!(answer.as_map().unwrap()[0].0.as_text(), Some("RepositoryLinks"));
        }
    }
}
