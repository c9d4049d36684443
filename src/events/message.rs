//! An SQS message as EventBridge or SNS leaves it: the event, and who sent it when.
//!
//! An EventBridge rule puts the event itself on the queue; a rule that targets an SNS topic, which
//! fans out to several queues, wraps it in a notification whose `Message` holds the event as a
//! string. Both are read. `version` is not checked: it arrives as `0`, `1`, `1.0` or `"1"`, and
//! nothing here depends on it.

use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde_json::Value;

use crate::signal::Event;

/// An event and its envelope's fields that the consumer checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The 12-digit ID of the account the event is about.
    pub account: String,
    pub region: String,
    /// When the change happened, to the second.
    pub time: SystemTime,
    pub event: Event,
}

/// What makes a message unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the message is not a JSON object")]
    NotJson,
    #[error("the event has no {0:?}")]
    Missing(&'static str),
    #[error("the event's time {0:?} is not an RFC 3339 timestamp")]
    Time(String),
}

/// Reads a message body: a bare EventBridge event, or one in an SNS notification.
pub fn parse(body: &str) -> Result<Envelope, Malformed> {
    let value: Value = serde_json::from_str(body).map_err(|_| Malformed::NotJson)?;
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = value.get("Message").and_then(Value::as_str).ok_or(Malformed::Missing("Message"))?;
        let inner: Value = serde_json::from_str(message).map_err(|_| Malformed::NotJson)?;
        return event(inner);
    }
    event(value)
}

fn event(mut value: Value) -> Result<Envelope, Malformed> {
    if !value.is_object() {
        return Err(Malformed::NotJson);
    }
    let text = |value: &Value, name: &'static str| {
        value.get(name).and_then(Value::as_str).map(str::to_string).ok_or(Malformed::Missing(name))
    };
    let account = text(&value, "account")?;
    let region = text(&value, "region")?;
    let source = text(&value, "source")?;
    let detail_type = text(&value, "detail-type")?;
    let time = text(&value, "time")?;
    let time = DateTime::from_str(&time, Format::DateTime)
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or(Malformed::Time(time))?;
    let detail = value.get_mut("detail").filter(|d| d.is_object()).map(Value::take).ok_or(Malformed::Missing("detail"))?;
    Ok(Envelope { account, region, time, event: Event { source, detail_type, detail } })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const EVENT: &str = r#"{"version":"0","id":"6a7e8feb","detail-type":"CodePipeline Stage Execution State Change","source":"aws.codepipeline","account":"111122223333","time":"2026-11-23T10:00:01Z","region":"eu-west-1","resources":["arn:aws:codepipeline:eu-west-1:111122223333:web"],"detail":{"pipeline":"web","execution-id":"e1","stage":"Deploy","state":"FAILED","version":3}}"#;

    fn expected() -> Envelope {
        Envelope {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_001),
            event: Event {
                source: "aws.codepipeline".into(),
                detail_type: "CodePipeline Stage Execution State Change".into(),
                detail: serde_json::json!({"pipeline": "web", "execution-id": "e1", "stage": "Deploy", "state": "FAILED", "version": 3}),
            },
        }
    }

    #[test]
    fn a_bare_event_and_an_sns_notification_read_alike() {
        assert_eq!(parse(EVENT), Ok(expected()));
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-1:111122223333:t", "Message": EVENT, "Timestamp": "2026-11-23T10:00:02.000Z"});
        assert_eq!(parse(&sns.to_string()), Ok(expected()));
    }

    #[test]
    fn any_version_is_accepted() {
        for version in ["1", "1.0", "\"1\"", "0"] {
            let body = EVENT.replace(r#""version":"0""#, &format!(r#""version":{version}"#));
            assert_eq!(parse(&body), Ok(expected()), "{body}");
        }
    }

    #[test]
    fn unreadable_messages_say_why() {
        assert_eq!(parse("not json"), Err(Malformed::NotJson));
        assert_eq!(parse("[1]"), Err(Malformed::NotJson));
        assert_eq!(parse(r#"{"Type":"Notification"}"#), Err(Malformed::Missing("Message")));
        assert_eq!(parse(&EVENT.replace(r#""account":"111122223333","#, "")), Err(Malformed::Missing("account")));
        assert_eq!(parse(&EVENT.replace("2026-11-23T10:00:01Z", "yesterday")), Err(Malformed::Time("yesterday".into())));
        let no_detail = EVENT.split(r#","detail":"#).next().unwrap().to_string() + "}";
        assert_eq!(parse(&no_detail), Err(Malformed::Missing("detail")));
    }
}
