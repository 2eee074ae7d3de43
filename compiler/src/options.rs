//! Connector and pipeline option validation: every `WITH` key and `SET` key is checked against the
//! options the connector or the runtime understands, with a suggestion for a misspelt one.

use crate::ast::OptionDef;
use crate::diagnostic::{Diagnostic, closest};
use crate::source::Span;
use fsql_plan::state_backend::STATE_BACKEND_SETTINGS;

/// Whether a table is read, written, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Sink,
}

/// What a connector accepts.
pub struct ConnectorInfo {
    pub name: &'static str,
    pub source: bool,
    pub sink: bool,
    /// Options every use must give.
    pub required: &'static [&'static str],
    /// Exact option keys.
    pub keys: &'static [&'static str],
    /// Key prefixes (`fields.`, `properties.`): any key starting with one is accepted.
    pub prefixes: &'static [&'static str],
    /// Whether the runtime executes it today.
    pub runnable: bool,
    /// Keys of `METADATA` columns it provides.
    pub metadata: &'static [&'static str],
}

/// Every connector fsql knows.
pub const CONNECTORS: &[ConnectorInfo] = &[
    ConnectorInfo {
        name: "filesystem",
        source: true,
        sink: true,
        required: &["path", "format"],
        keys: &[
            "path",
            "format",
            "json.ignore-parse-errors",
            "csv.field-delimiter",
            "csv.ignore-parse-errors",
            "csv.null-literal",
            "csv.allow-comments",
            "csv.quote-character",
            "csv.disable-quote-character",
            "csv.escape-character",
            "dead-letter.path",
        ],
        prefixes: &[],
        runnable: true,
        metadata: &[],
    },
    ConnectorInfo {
        name: "datagen",
        source: true,
        sink: false,
        required: &[],
        keys: &["rows-per-second", "number-of-rows", "seed", "start-time"],
        prefixes: &["fields."],
        runnable: true,
        metadata: &[],
    },
    ConnectorInfo {
        name: "payments-generator",
        source: true,
        sink: false,
        required: &[],
        keys: &[
            "seed",
            "number-of-rows",
            "rows-per-second",
            "cards",
            "devices",
            "ips",
            "merchants",
            "fraud-rate",
            "out-of-orderness",
            "out-of-order-fraction",
            "start-time",
            "events-per-second-of-event-time",
            "auth-capture",
            "uncaptured-rate",
            "scenarios",
            "refund-rate",
            "drain-at-end",
        ],
        prefixes: &[],
        runnable: true,
        metadata: &[],
    },
    ConnectorInfo {
        name: "nexmark",
        source: true,
        sink: false,
        required: &["nexmark.table"],
        keys: &[
            "nexmark.table",
            "events.num",
            "first-event.rate",
            "next-event.rate",
            "rows-per-second",
            "seed",
            "start-time",
            "person.proportion",
            "auction.proportion",
            "bid.proportion",
            "auction.hot-ratio.sellers",
            "bid.hot-ratio.auctions",
            "bid.hot-ratio.bidders",
            "person.avg-size",
            "auction.avg-size",
            "bid.avg-size",
        ],
        prefixes: &[],
        runnable: true,
        metadata: &[],
    },
    ConnectorInfo {
        name: "print",
        source: false,
        sink: true,
        required: &[],
        keys: &["print-identifier", "standard-error"],
        prefixes: &[],
        runnable: true,
        metadata: &[],
    },
    ConnectorInfo {
        name: "blackhole",
        source: false,
        sink: true,
        required: &[],
        keys: &[],
        prefixes: &[],
        runnable: true,
        metadata: &[],
    },
    ConnectorInfo {
        name: "kafka",
        source: true,
        sink: true,
        required: &["topic"],
        keys: &[
            "topic",
            "topic-pattern",
            "format",
            "key.format",
            "key.fields",
            "value.format",
            "value.fields-include",
            "scan.startup.mode",
            "scan.startup.timestamp-millis",
            "scan.startup.specific-offsets",
            "scan.bounded.mode",
            "scan.bounded.timestamp-millis",
            "scan.bounded.specific-offsets",
            "scan.watermark.idle-timeout",
            "sink.partitioner",
            "sink.delivery-guarantee",
            "sink.transactional-id-prefix",
            "dead-letter.topic",
            "dead-letter.path",
        ],
        prefixes: &[
            "properties.",
            "json.",
            "csv.",
            "key.json.",
            "key.csv.",
            "value.json.",
            "value.csv.",
        ],
        runnable: true,
        metadata: &[
            "topic",
            "partition",
            "headers",
            "leader-epoch",
            "offset",
            "timestamp",
            "timestamp-type",
        ],
    },
    // Flink's upsert-kafka, as a sink: records keyed by the PRIMARY KEY (which the compiler passes
    // to the runtime as `key.fields`), `-U` dropped, `-D` a tombstone.
    ConnectorInfo {
        name: "upsert-kafka",
        source: false,
        sink: true,
        required: &["topic", "key.format", "value.format"],
        keys: &[
            "topic",
            "key.format",
            "value.format",
            "value.fields-include",
            "sink.delivery-guarantee",
            "sink.transactional-id-prefix",
        ],
        prefixes: &[
            "properties.",
            "key.json.",
            "key.csv.",
            "value.json.",
            "value.csv.",
        ],
        runnable: true,
        metadata: &[],
    },
];

/// The `upsert-kafka` connector's own message when a table has no primary key (Flink's words).
pub const UPSERT_KAFKA_NEEDS_KEY: &str = "'upsert-kafka' tables require to define a PRIMARY KEY constraint. The PRIMARY KEY specifies which columns should be read from or write to the Kafka message key. The PRIMARY KEY also defines records in the 'upsert-kafka' table should update or delete on which keys.";

/// The connector called `name`.
pub fn connector(name: &str) -> Option<&'static ConnectorInfo> {
    CONNECTORS.iter().find(|c| c.name == name)
}

/// Checks a table's `WITH` options (at `CREATE TABLE`); returns the connector if it is known.
pub fn check_connector(
    table: &str,
    options: &[OptionDef],
    table_span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'static ConnectorInfo> {
    let Some(conn_opt) = options.iter().find(|o| o.key.node == "connector") else {
        diags.push(
            Diagnostic::error(format!("table `{table}` has no 'connector' option"), table_span)
                .with_help("add WITH ('connector' = 'filesystem' | 'datagen' | 'payments-generator' | 'nexmark' | 'print' | 'blackhole' | 'kafka' | 'upsert-kafka', ...)"),
        );
        return None;
    };
    let Some(info) = connector(&conn_opt.value.node) else {
        let d = Diagnostic::error(
            format!("unknown connector '{}'", conn_opt.value.node),
            conn_opt.value.span,
        );
        let names = CONNECTORS.iter().map(|c| c.name);
        diags.push(match closest(&conn_opt.value.node, names) {
            Some(s) => d.with_help(format!("did you mean '{s}'?")),
            None => d.with_help(format!(
                "known connectors: {}",
                CONNECTORS
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        });
        return None;
    };
    if !info.runnable {
        diags.push(Diagnostic::warning(
            format!(
                "connector '{}' is checked but this fsql runtime cannot run it yet",
                info.name
            ),
            conn_opt.value.span,
        ));
    }
    for o in options.iter().filter(|o| o.key.node != "connector") {
        let key = o.key.node.as_str();
        let known = info.keys.contains(&key) || info.prefixes.iter().any(|p| key.starts_with(p));
        if !known {
            let d = Diagnostic::error(
                format!("unknown option '{key}' for connector '{}'", info.name),
                o.key.span,
            );
            diags.push(match closest(key, info.keys.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean '{s}'?")),
                None => d.with_help(format!(
                    "options of '{}': {}",
                    info.name,
                    info.keys.join(", ")
                )),
            });
        }
    }
    for req in info.required {
        if !options.iter().any(|o| o.key.node == *req) {
            diags.push(Diagnostic::error(
                format!(
                    "connector '{}' needs option '{req}' (table `{table}`)",
                    info.name
                ),
                table_span,
            ));
        }
    }
    let formats: &[&str] = if info.name == "kafka" || info.name == "upsert-kafka" {
        &["json", "csv", "raw"]
    } else {
        &["json", "csv"]
    };
    for f in options
        .iter()
        .filter(|o| ["format", "value.format", "key.format"].contains(&o.key.node.as_str()))
    {
        if !formats.contains(&f.value.node.as_str()) {
            diags.push(
                Diagnostic::error(format!("unknown format '{}'", f.value.node), f.value.span)
                    .with_help(format!("formats: '{}'", formats.join("', '"))),
            );
        }
    }
    if info.name == "kafka"
        && !options
            .iter()
            .any(|o| o.key.node == "format" || o.key.node == "value.format")
    {
        diags.push(Diagnostic::error(
            format!("connector 'kafka' needs option 'format' or 'value.format' (table `{table}`)"),
            table_span,
        ));
    }
    Some(info)
}

/// Checks that a table's connector can be used in `role` (read by a query or written by INSERT).
pub fn check_role(table: &str, info: &ConnectorInfo, role: Role, span: Span) -> Option<Diagnostic> {
    match role {
        Role::Source if !info.source => Some(Diagnostic::error(
            format!(
                "connector '{}' can only be written to, but table `{table}` is read here",
                info.name
            ),
            span,
        )),
        Role::Sink if !info.sink => Some(Diagnostic::error(
            format!(
                "connector '{}' can only be read, but table `{table}` is written here",
                info.name
            ),
            span,
        )),
        _ => None,
    }
}

/// A `SET` option fsql understands, with how to check its value. The state backend's options
/// are checked by `fsql_plan::state_backend`, which the runtime reads them with.
#[derive(Clone)]
struct SettingInfo {
    key: &'static str,
    check: fn(&str) -> Result<(), String>,
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn duration(v: &str) -> Result<(), String> {
    parse_duration_ms(v).map(|_| ())
}

fn boolean(v: &str) -> Result<(), String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err(format!("expected 'true' or 'false', got '{v}'")),
    }
}

fn positive(v: &str) -> Result<(), String> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(format!("expected a positive whole number, got '{v}'")),
    }
}

fn emit_mode(v: &str) -> Result<(), String> {
    match v {
        "watermark" | "arrival" => Ok(()),
        _ => Err(format!("expected 'watermark' or 'arrival', got '{v}'")),
    }
}

fn utc(v: &str) -> Result<(), String> {
    match v {
        "UTC" | "Z" | "+00:00" => Ok(()),
        _ => Err(format!("only 'UTC' is supported, got '{v}'")),
    }
}

const SETTINGS: &[SettingInfo] = &[
    SettingInfo {
        key: "pipeline.name",
        check: any,
    },
    SettingInfo {
        key: "pipeline.emit-mode",
        check: emit_mode,
    },
    SettingInfo {
        key: "pipeline.late-data.path",
        check: any,
    },
    SettingInfo {
        key: fsql_plan::LATE_DATA_SINK,
        check: any,
    },
    SettingInfo {
        key: "state.ttl",
        check: duration,
    },
    SettingInfo {
        key: "table.exec.state.ttl",
        check: duration,
    },
    SettingInfo {
        key: "execution.checkpointing.interval",
        check: duration,
    },
    SettingInfo {
        key: "execution.checkpointing.dir",
        check: any,
    },
    SettingInfo {
        key: "state.checkpoints.dir",
        check: any,
    },
    SettingInfo {
        key: "execution.checkpointing.num-retained",
        check: positive,
    },
    SettingInfo {
        key: "state.backend.async",
        check: boolean,
    },
    SettingInfo {
        key: "table.exec.mini-batch.size",
        check: positive,
    },
    SettingInfo {
        key: "table.exec.mini-batch.allow-latency",
        check: duration,
    },
    SettingInfo {
        key: "table.exec.source.idle-timeout",
        check: duration,
    },
    SettingInfo {
        key: "table.local-time-zone",
        check: utc,
    },
    SettingInfo {
        key: "parallelism.default",
        check: positive,
    },
    SettingInfo {
        key: "jit.enabled",
        check: boolean,
    },
    SettingInfo {
        key: "control.path",
        check: any,
    },
    SettingInfo {
        key: "control.ack.path",
        check: any,
    },
    SettingInfo {
        key: "control.trusted-keys",
        check: any,
    },
    SettingInfo {
        key: "control.topic",
        check: any,
    },
    SettingInfo {
        key: "control.ack.topic",
        check: any,
    },
    SettingInfo {
        key: "sql-client.execution.result-mode",
        check: any,
    },
    SettingInfo {
        key: "execution.runtime-mode",
        check: any,
    },
];

/// Checks a `SET` key and value; unknown keys are warnings (Flink ignores them), bad values errors.
pub fn check_setting(
    key: &str,
    value: &str,
    key_span: Span,
    value_span: Span,
) -> Option<Diagnostic> {
    // The control stream's Kafka clients take librdkafka properties, like a table's 'properties.*'.
    if key.starts_with("control.properties.") {
        return None;
    }
    let state_backend = STATE_BACKEND_SETTINGS
        .iter()
        .map(|&(key, check)| SettingInfo { key, check });
    let mut known = SETTINGS.iter().cloned().chain(state_backend);
    match known.find(|s| s.key == key) {
        Some(s) => (s.check)(value)
            .err()
            .map(|m| Diagnostic::error(format!("invalid value for '{key}': {m}"), value_span)),
        None => {
            let d = Diagnostic::warning(format!("unknown option '{key}' is ignored"), key_span);
            let keys = SETTINGS.iter().map(|s| s.key);
            let keys = keys.chain(STATE_BACKEND_SETTINGS.iter().map(|s| s.0));
            Some(match closest(key, keys) {
                Some(s) => d.with_help(format!("did you mean '{s}'?")),
                None => d,
            })
        }
    }
}

/// Parses a Flink-style duration (`'2 s'`, `'100 ms'`, `'5 min'`, `'25 h'`, `'1 d'`, `'500ms'`) to
/// milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("expected a duration like '5 s', got '{text}'"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "min" | "m" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' in '{text}' (use ms, s, min, h, d)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("duration '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_flink_style() {
        assert_eq!(parse_duration_ms("2 s"), Ok(2000));
        assert_eq!(parse_duration_ms("25 h"), Ok(90_000_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert!(parse_duration_ms("5 parsecs").is_err());
        assert!(parse_duration_ms("").is_err());
    }
}
