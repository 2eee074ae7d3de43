//! The `kafka` connector, with Flink's option names, over librdkafka (the `rdkafka` crate).
//!
//! * [`source`]: topics → Arrow batches (json, csv or raw keys and values, `METADATA` columns,
//!   startup and bounded modes, consumer groups, per-partition watermarks, dead letters).
//! * [`sink`]: rows → records (json, csv or raw values, keys from columns, idempotent producer).
//! * [`transaction`]: exactly-once sinks: one producer transaction committed with checkpoints.
//! * [`control`]: the control stream's topic and its acknowledgements.
//!
//! `properties.*` options go to librdkafka unchanged (`properties.bootstrap.servers`,
//! `properties.group.id`, `properties.security.protocol`, `properties.sasl.*`, `properties.ssl.*`),
//! so TLS and SASL against a production cluster are configured exactly as for any librdkafka
//! client.

pub mod control;
mod producer;
pub mod sink;
pub mod source;
pub mod transaction;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;

use crate::error::RuntimeError;

/// librdkafka configuration from a table's `properties.*` options.
fn client_config(
    table: &str,
    options: &BTreeMap<String, String>,
) -> Result<ClientConfig, RuntimeError> {
    let mut config = ClientConfig::new();
    for (key, value) in options {
        if let Some(property) = key.strip_prefix("properties.") {
            config.set(property, value);
        }
    }
    if config.get("bootstrap.servers").is_none() {
        return Err(RuntimeError::option(
            table,
            "properties.bootstrap.servers",
            "is required for the kafka connector (e.g. 'localhost:9092')",
        ));
    }
    config.set_log_level(RDKafkaLogLevel::Warning);
    Ok(config)
}

/// Sets `key` unless the user gave `properties.<key>`.
fn default_property(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

/// The topics of `'topic'` (Flink accepts a `;`-separated list for sources).
fn topics(table: &str, options: &BTreeMap<String, String>) -> Result<Vec<String>, RuntimeError> {
    if options.contains_key("topic-pattern") {
        return Err(RuntimeError::option(
            table,
            "topic-pattern",
            "is not supported yet: list the topics in 'topic' ('a;b')",
        ));
    }
    let topics = list_option(options, "topic");
    if topics.is_empty() {
        return Err(RuntimeError::option(
            table,
            "topic",
            "is required for the kafka connector",
        ));
    }
    Ok(topics)
}

/// A `;`-separated list option (`'topic'`, `'key.fields'`); empty entries are dropped.
fn list_option(options: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    options
        .get(key)
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Which columns a record's key holds, and whether the value holds them too.
struct KeyFields {
    /// `'key.fields'`; empty when the records have no key columns (no `'key.format'`).
    names: Vec<String>,
    /// `'value.fields-include'` = `EXCEPT_KEY`: the key columns are not in the value.
    except_key: bool,
}

/// Reads `'key.fields'` (which goes together with `'key.format'`) and `'value.fields-include'`.
fn key_fields(table: &str, options: &BTreeMap<String, String>) -> Result<KeyFields, RuntimeError> {
    let names = list_option(options, "key.fields");
    let has_format = options.contains_key("key.format");
    if names.is_empty() == has_format {
        return Err(RuntimeError::option(
            table,
            if has_format {
                "key.fields"
            } else {
                "key.format"
            },
            "'key.format' and 'key.fields' go together",
        ));
    }
    let except_key = match options
        .get("value.fields-include")
        .map(|v| v.trim().to_ascii_uppercase())
        .as_deref()
    {
        None | Some("ALL") => false,
        Some("EXCEPT_KEY") => true,
        Some(other) => {
            return Err(RuntimeError::option(
                table,
                "value.fields-include",
                format!("'{other}' is not ALL or EXCEPT_KEY"),
            ));
        }
    };
    Ok(KeyFields { names, except_key })
}

/// The option naming the value's format and the prefix of its format options: `'value.format'`
/// with `value.json.*`, else `'format'` with `json.*`.
fn value_format_option(options: &BTreeMap<String, String>) -> (&'static str, &'static str) {
    if options.contains_key("value.format") {
        ("value.format", "value.")
    } else {
        ("format", "")
    }
}

/// `'partition:0,offset:42;partition:1,offset:300'` (Flink's specific-offsets syntax).
fn parse_specific_offsets(
    table: &str,
    key: &str,
    text: &str,
) -> Result<BTreeMap<i32, i64>, RuntimeError> {
    let bad = || {
        RuntimeError::option(
            table,
            key,
            format!("'{text}': expected 'partition:0,offset:42;partition:1,offset:300'"),
        )
    };
    let mut offsets = BTreeMap::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let mut partition = None;
        let mut offset = None;
        for part in entry.split(',') {
            let (k, v) = part.split_once(':').ok_or_else(bad)?;
            match k.trim() {
                "partition" => partition = Some(v.trim().parse::<i32>().map_err(|_| bad())?),
                "offset" => offset = Some(v.trim().parse::<i64>().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        match (partition, offset) {
            (Some(p), Some(o)) if p >= 0 && o >= 0 => {
                offsets.insert(p, o);
            }
            _ => return Err(bad()),
        }
    }
    if offsets.is_empty() {
        return Err(bad());
    }
    Ok(offsets)
}

/// A `'...-millis'` option: epoch milliseconds.
fn millis_option(
    table: &str,
    options: &BTreeMap<String, String>,
    key: &str,
) -> Result<i64, RuntimeError> {
    let text = options.get(key).ok_or_else(|| {
        RuntimeError::option(table, key, "is required by the chosen mode (epoch ms)")
    })?;
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| RuntimeError::option(table, key, format!("'{text}' is not epoch ms")))
}

/// A Kafka client error of `table`.
fn kafka_error(table: &str, what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::connector(table, format!("kafka: {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_offsets_parse_flink_syntax_and_reject_the_rest() {
        let parsed =
            parse_specific_offsets("t", "k", "partition:0,offset:42; partition:3,offset:7");
        assert_eq!(parsed.unwrap(), BTreeMap::from([(0, 42), (3, 7)]));
        for bad in [
            "",
            "partition:0",
            "partition:x,offset:1",
            "p:0,offset:1",
            "partition:-1,offset:0",
        ] {
            let e = parse_specific_offsets("t", "k", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("expected 'partition:0,offset:42"), "{bad}: {e}");
        }
    }

    #[test]
    fn topics_are_a_semicolon_list_and_required() {
        let opts = BTreeMap::from([("topic".to_string(), "a; b;".to_string())]);
        assert_eq!(topics("t", &opts).unwrap(), vec!["a", "b"]);
        assert!(topics("t", &BTreeMap::new()).is_err());
    }

    #[test]
    fn bootstrap_servers_are_required() {
        let e = client_config("t", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("properties.bootstrap.servers"), "{e}");
    }
}
