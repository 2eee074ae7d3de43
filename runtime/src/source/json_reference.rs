//! The reference the `json` decoder is checked against, shared by its unit tests and the
//! `decoders` fuzz target: a JSON value as `serde_json` reads it, turned into the text a STRING
//! column takes by Flink's rules (docs/language.md, 5.1).

/// The text a STRING column takes from `v`: a scalar as text (a fractional number as Java writes
/// a double), a nested value as its JSON text, `null` as NULL (`None`).
///
/// ```
/// # use fsql_runtime::source::json_reference::string_column_value;
/// let v: serde_json::Value = serde_json::from_str(r#"[1.0, true, {"a": null}]"#).unwrap();
/// assert_eq!(string_column_value(&v[0]).as_deref(), Some("1.0"));
/// assert_eq!(string_column_value(&v[2]).as_deref(), Some(r#"{"a":null}"#));
/// ```
pub fn string_column_value(v: &serde_json::Value) -> Option<String> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) if n.is_f64() => {
            let mut s = String::new();
            crate::text::format_java_double(n.as_f64()?, &mut s);
            s
        }
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        nested => nested.to_string(),
    })
}
