//! What every section of the configuration file is read with: values with the line and column
//! they stand at ([`Located`]), errors that point there ([`Invalid`]), durations, the validators
//! that more than one section needs (names, regions, roles, external IDs, tags, regexes), and
//! [`Keys`] for a section that takes keys another module declares.
//!
//! It imports no other module of the crate, so that the configuration, every collector's settings
//! and every feature's read the file alike without importing each other: `config` composes the
//! sections, each section's module imports this one, and no collector imports `config`.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use regex::Regex;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_saphyr::Spanned;

/// A value of the file with where it stands, for errors that point at it.
pub type Located<T> = Spanned<T>;
/// A value that parses as YAML but makes no sense, where it stands and why.
pub type Invalid = (serde_saphyr::Location, String);

/// Where a YAML file is wrong and why, as `file:line:column: message` needs them: the first line
/// of serde-saphyr's message, without the location it may repeat, since the caller prints its own.
pub fn yaml_error(err: &serde_saphyr::Error) -> (u64, u64, String) {
    let location = err.location();
    let message = err.without_snippet().to_string();
    let line = message.lines().next().unwrap_or(&message).trim();
    let message = match line.find(" at line ") {
        Some(at) => line[..at].to_string(),
        None => line.to_string(),
    };
    (location.map(|l| l.line()).unwrap_or(1), location.map(|l| l.column()).unwrap_or(1), message)
}

/// A section read key by key, whose keys include a group that another module declares and reads
/// (the collectors' sections of an account, the OTLP connection of `traces` and `metrics_push`).
/// serde's `flatten` would do as much, but it buffers the values and loses their locations.
///
/// A type implements it, derives `Default`, and deserializes with [`deserialize`]; unknown and
/// repeated keys are refused as `#[serde(deny_unknown_fields)]` refuses them.
pub trait Keys: Default {
    /// The struct's name in errors (`expected struct …`).
    const NAME: &'static str;
    /// Every key it takes, in the order an unknown key's error lists them.
    fn keys() -> &'static [&'static str];
    /// Reads the value of `key`, one of [`Keys::keys`], from `map`.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error>;
    /// Checks, after the last key, that every required key was given.
    fn finish<E: de::Error>(self) -> Result<Self, E> {
        Ok(self)
    }
}

/// Reads a [`Keys`] type from a mapping.
pub fn deserialize<'de, T: Keys, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_struct(T::NAME, T::keys(), KeysVisitor(PhantomData::<T>))
}

/// A required key's value, or the error serde gives when it is missing.
pub fn required<T, E: de::Error>(value: Option<T>, key: &'static str) -> Result<T, E> {
    value.ok_or_else(|| E::missing_field(key))
}

struct KeysVisitor<T>(PhantomData<T>);

impl<'de, T: Keys> Visitor<'de> for KeysVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "struct {}", T::NAME)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut value = T::default();
        let mut seen: Vec<&'static str> = Vec::new();
        while let Some(key) = map.next_key_seed(Key(T::keys()))? {
            if seen.contains(&key) {
                return Err(de::Error::duplicate_field(key));
            }
            seen.push(key);
            value.read(key, &mut map)?;
        }
        value.finish()
    }
}

/// A key that must be one of a list: unknown, it fails where it stands.
struct Key(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<&'static str, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for Key {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<&'static str, E> {
        self.0.iter().find(|known| **known == key).copied().ok_or_else(|| E::unknown_field(key, self.0))
    }
}

/// What the account (or organization) a collector's section belongs to says that the section
/// needs to be validated or to run.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The account's regions; empty is the environment's.
    pub regions: &'a [String],
    /// The allowlist of resource tags exported as labels.
    pub tags: &'a [String],
}

pub fn non_empty(value: Located<String>, what: &str) -> Result<String, Invalid> {
    if value.value.trim().is_empty() { Err((value.referenced, format!("{what} must not be empty"))) } else { Ok(value.value) }
}

/// A duration of the file, pointing at itself when invalid.
pub fn duration(value: Located<String>) -> Result<Duration, Invalid> {
    parse_duration(&value.value).map_err(|message| (value.referenced, message))
}

/// Parses a duration in Prometheus's notation: one or more of `<number><unit>` with the units
/// ms, s, m, h and d, such as `90s`, `5m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: use a number and a unit (ms, s, m, h, d) such as 30s, 5m or 1h30m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let millis = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_millis(number.checked_mul(millis).ok_or_else(invalid)?);
    }
    if total.is_zero() {
        return Err(format!("invalid duration {text:?}: must be greater than zero"));
    }
    Ok(total)
}

/// Prints a duration the way [`parse_duration`] reads it.
pub struct PrettyDuration(pub Duration);

impl fmt::Display for PrettyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if millis >= size {
                write!(f, "{}{unit}", millis / size)?;
                millis %= size;
            }
        }
        Ok(())
    }
}

pub fn serialize_duration<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&PrettyDuration(*duration))
}

pub fn serialize_optional_duration<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serialize_duration(duration, serializer),
        None => serializer.serialize_none(),
    }
}

/// A secret, such as an external ID, the shared secret of a role's trust policy: never printed.
pub fn serialize_redacted<S: Serializer>(_: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("<secret>")
}

/// A compiled regular expression that prints as its source.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

/// Regexes, each pointing at its own line when invalid.
pub fn patterns(raw: Vec<Located<String>>) -> Result<Vec<Pattern>, Invalid> {
    raw.into_iter()
        .map(|p| {
            Regex::new(&p.value)
                .map(Pattern)
                .map_err(|err| (p.referenced, format!("invalid regex {:?}: {}", p.value, regex_reason(&err))))
        })
        .collect()
}

/// The regex crate explains an error over several lines with a caret; its last line says why.
pub fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines().last().unwrap_or(&text).trim().trim_start_matches("error: ").to_string()
}

pub fn regions(raw: Vec<Located<String>>) -> Result<Vec<String>, Invalid> {
    let mut regions = Vec::with_capacity(raw.len());
    for region in raw {
        let at = region.referenced;
        let region = non_empty(region, "region")?;
        if !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err((at, format!("region {region:?} is not an AWS region name such as us-east-1")));
        }
        if regions.contains(&region) {
            return Err((at, format!("region {region:?} is listed twice")));
        }
        regions.push(region);
    }
    Ok(regions)
}

/// The account ID of an IAM role ARN (`arn:aws:iam::111122223333:role/name`).
pub fn account_of_role(role_arn: &str) -> Option<String> {
    let id = role_arn.split(':').nth(4)?;
    is_account_id(id).then(|| id.to_string())
}

pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

pub fn role_arn(arn: Located<String>, what: &str) -> Result<String, Invalid> {
    if !arn.value.starts_with("arn:") {
        return Err((arn.referenced, format!("{what} {:?} is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)", arn.value)));
    }
    // The role's name is the part after the last slash; an example's placeholder there would
    // otherwise fail only at the first AssumeRole, as an AccessDenied.
    let name = arn.value.rsplit('/').next().unwrap_or_default();
    if is_placeholder(name) {
        return Err((arn.referenced, format!("{what} {:?} names a placeholder role {name:?}, not a role", arn.value)));
    }
    Ok(arn.value)
}

/// A value copied from an example and never filled in: `optional`, `<role>`, `REPLACE_ME`,
/// `your-role`. Caught here, it names its line; sent to AWS, it is an AccessDenied for every
/// account, or an external ID that a role without one ignores.
pub fn is_placeholder(value: &str) -> bool {
    const WORDS: [&str; 12] = [
        "optional",
        "required",
        "changeme",
        "change-me",
        "change_me",
        "replaceme",
        "replace-me",
        "replace_me",
        "todo",
        "tbd",
        "xxx",
        "example",
    ];
    let lower = value.trim().to_ascii_lowercase();
    WORDS.contains(&lower.as_str())
        || lower.contains('<')
        || lower.contains('>')
        || lower.starts_with("your-")
        || lower.starts_with("your_")
        || lower.chars().all(|c| c == 'x' || c == '.')
}

/// An STS external ID: 2 to 1,224 characters of `[\w+=,.@:/-]`, and not a placeholder.
pub fn external_id(id: Located<String>) -> Result<String, Invalid> {
    let valid_chars = id.value.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c));
    if !(2..=1224).contains(&id.value.len()) || !valid_chars {
        return Err((
            id.referenced,
            format!("external_id {:?} is not an external ID: 2 to 1224 letters, digits and _+=,.@:/-", id.value),
        ));
    }
    if is_placeholder(&id.value) {
        return Err((
            id.referenced,
            format!("external_id {:?} is a placeholder: give the role's external ID, or leave the key out", id.value),
        ));
    }
    Ok(id.value)
}

/// The label name a tag key is exported as: `tag_` and the key with every character that a label
/// name cannot hold replaced by `_`, as YACE does.
pub fn tag_label(key: &str) -> String {
    let sanitized: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    format!("tag_{sanitized}")
}

/// The tag keys of an allowlist, each once and each a distinct label name.
pub fn tags(raw: Vec<Located<String>>) -> Result<Vec<String>, Invalid> {
    let mut tags: Vec<String> = Vec::with_capacity(raw.len());
    for tag in raw {
        let at = tag.referenced;
        let key = non_empty(tag, "tag key")?;
        if let Some(other) = tags.iter().find(|other| tag_label(other) == tag_label(&key)) {
            return Err((at, format!("tags {key:?} and {other:?} are both exported as the label {}", tag_label(&key))));
        }
        tags.push(key);
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section as serde derives it, and the same read through [`Keys`], its `group` standing
    /// for keys another module declares.
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Derived {
        name: Located<String>,
        size: Option<Located<u32>>,
        group: Option<Vec<String>>,
        tail: Option<bool>,
    }

    #[derive(Default, Debug)]
    #[allow(dead_code)]
    struct Read {
        name: Option<Located<String>>,
        size: Option<Located<u32>>,
        group: Group,
        tail: Option<bool>,
    }

    #[derive(Default, Debug)]
    #[allow(dead_code)]
    struct Group(Option<Vec<String>>);

    impl Keys for Group {
        const NAME: &'static str = "Group";
        fn keys() -> &'static [&'static str] {
            &["group"]
        }
        fn read<'de, A: MapAccess<'de>>(&mut self, _: &'static str, map: &mut A) -> Result<(), A::Error> {
            self.0 = map.next_value()?;
            Ok(())
        }
    }

    impl Keys for Read {
        const NAME: &'static str = "Derived";
        fn keys() -> &'static [&'static str] {
            &["name", "size", "group", "tail"]
        }
        fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error> {
            match key {
                "name" => self.name = map.next_value()?,
                "size" => self.size = map.next_value()?,
                "tail" => self.tail = map.next_value()?,
                _ => self.group.read(key, map)?,
            }
            Ok(())
        }
        fn finish<E: de::Error>(self) -> Result<Self, E> {
            required(self.name.as_ref(), "name")?;
            Ok(self)
        }
    }

    impl<'de> serde::Deserialize<'de> for Read {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer)
        }
    }

    #[test]
    fn a_section_read_by_keys_fails_and_locates_as_a_derived_one() {
        let outcome = |yaml: &str| {
            let derived = serde_saphyr::from_str::<Vec<Derived>>(yaml).map(|d| format!("{:?}", d[0].size));
            let read = serde_saphyr::from_str::<Vec<Read>>(yaml).map(|r| format!("{:?}", r[0].size));
            let show = |r: Result<String, serde_saphyr::Error>| match r {
                Ok(size) => size,
                Err(err) => format!("{:?}", yaml_error(&err)),
            };
            (show(derived), show(read))
        };
        for yaml in [
            "- name: a\n  size: 3\n  group: [x]\n  tail: true\n",
            "- name: a\n  sizes: 3\n",
            "- size: 3\n",
            "- name: a\n  size: 3\n  size: 4\n",
            "- name: a\n  size: ~\n  group: ~\n",
            "- name: a\n  size: big\n",
            "- just a string\n",
            "- name: a\n  group: 1\n",
        ] {
            let (derived, read) = outcome(yaml);
            assert_eq!(read, derived, "{yaml}");
        }
    }

    #[test]
    fn the_account_id_comes_from_a_role_arn() {
        assert_eq!(account_of_role("arn:aws:iam::111122223333:role/reader").as_deref(), Some("111122223333"));
        assert_eq!(account_of_role("arn:aws-cn:iam::444455556666:role/a/b").as_deref(), Some("444455556666"));
        assert_eq!(account_of_role("arn:aws:iam::12345:role/short"), None);
        assert_eq!(account_of_role("not-an-arn"), None);
    }

    #[test]
    fn tag_keys_become_label_names() {
        assert_eq!(tag_label("team"), "tag_team");
        assert_eq!(tag_label("aws:cloudformation:stack-name"), "tag_aws_cloudformation_stack_name");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(PrettyDuration(Duration::from_secs(5400)).to_string(), "1h30m");
    }
}
