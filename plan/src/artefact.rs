//! The plan artefact's byte form: versioned, deterministic, hashed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::graph::Pipeline;

/// The plan format this build reads and writes. Bump it on any incompatible change of the plan types.
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: &str = "fsql-plan";

/// Errors loading a plan artefact.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("not an fsql plan artefact: {0}")]
    NotAPlan(String),
    #[error(
        "plan format version {found} is not supported by this runtime (it reads version {supported}); \
         recompile the pipeline with a matching `fsql compile` (plan was written by fsql {compiler})"
    )]
    UnsupportedVersion {
        found: u32,
        supported: u32,
        compiler: String,
    },
    #[error("plan artefact is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "plan artefact is corrupt: content hash {found} does not match the recorded {recorded}"
    )]
    HashMismatch { found: String, recorded: String },
}

/// Identifies a plan: what wrote it, from which source, and the hash of its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanHeader {
    /// Always `"fsql-plan"`.
    pub format: String,
    pub format_version: u32,
    pub compiler_version: String,
    /// `sha256:<hex>` of the `.fsql` source text.
    pub source_hash: String,
    /// `sha256:<hex>` of the serialised pipeline; filled in by [`Plan::new`].
    pub content_hash: String,
}

impl PlanHeader {
    /// A header for the current format version.
    pub fn new(compiler_version: &str, source_hash: &str) -> Self {
        PlanHeader {
            format: MAGIC.to_string(),
            format_version: FORMAT_VERSION,
            compiler_version: compiler_version.to_string(),
            source_hash: source_hash.to_string(),
            content_hash: String::new(),
        }
    }
}

/// A compiled pipeline with its header: what `fsql compile` writes and `fsql run` loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub header: PlanHeader,
    pub pipeline: Pipeline,
}

#[derive(Deserialize)]
struct Probe {
    header: ProbeHeader,
}

#[derive(Deserialize)]
struct ProbeHeader {
    format: String,
    format_version: u32,
    #[serde(default)]
    compiler_version: String,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Plan {
    /// Wraps a pipeline, computing the header's content hash.
    pub fn new(mut header: PlanHeader, pipeline: Pipeline) -> Self {
        header.content_hash = sha256_hex(&pipeline_bytes(&pipeline));
        Plan { header, pipeline }
    }

    /// The artefact's bytes: JSON with the header first, fields in a fixed order, maps sorted.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Loads an artefact, refusing other format versions and corrupt content.
    pub fn from_bytes(bytes: &[u8]) -> Result<Plan, PlanError> {
        let probe: Probe = serde_json::from_slice(bytes)
            .map_err(|e| PlanError::NotAPlan(format!("no plan header ({e})")))?;
        if probe.header.format != MAGIC {
            return Err(PlanError::NotAPlan(format!(
                "format is `{}`, expected `{MAGIC}`",
                probe.header.format
            )));
        }
        if probe.header.format_version != FORMAT_VERSION {
            return Err(PlanError::UnsupportedVersion {
                found: probe.header.format_version,
                supported: FORMAT_VERSION,
                compiler: probe.header.compiler_version,
            });
        }
        // serde_json stops at 128 levels; compiled expressions nest deeper (the compiler allows 256
        // levels of expression, about 3 JSON levels each). Check our own bound first, then parse
        // without serde_json's.
        let depth = json_depth(bytes);
        if depth > MAX_JSON_DEPTH {
            return Err(PlanError::Corrupt(format!(
                "nests {depth} levels deep; plans nest at most {MAX_JSON_DEPTH}"
            )));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        de.disable_recursion_limit();
        let plan = Plan::deserialize(&mut de).map_err(|e| PlanError::Corrupt(e.to_string()))?;
        de.end().map_err(|e| PlanError::Corrupt(e.to_string()))?;
        let found = sha256_hex(&pipeline_bytes(&plan.pipeline));
        if found != plan.header.content_hash {
            return Err(PlanError::HashMismatch {
                found,
                recorded: plan.header.content_hash,
            });
        }
        Ok(plan)
    }
}

/// The deepest JSON nesting a plan may have (well above what the compiler's expression depth
/// limit produces, well below what exhausts a thread's stack while parsing).
const MAX_JSON_DEPTH: usize = 1024;

/// The maximum nesting of `[`/`{` in JSON text (brackets inside strings do not count).
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn pipeline_bytes(pipeline: &Pipeline) -> Vec<u8> {
    // Serialising plain data (no maps with non-string keys) cannot fail.
    serde_json::to_vec(pipeline).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let pipeline = Pipeline {
            name: "p".into(),
            ..Pipeline::default()
        };
        Plan::new(PlanHeader::new("0.1.0", "sha256:abc"), pipeline)
    }

    #[test]
    fn bytes_are_deterministic_and_round_trip() {
        let a = plan().to_bytes();
        assert_eq!(a, plan().to_bytes());
        assert_eq!(Plan::from_bytes(&a).unwrap(), plan());
    }

    #[test]
    fn other_format_version_is_refused_with_both_versions_named() {
        let text = String::from_utf8(plan().to_bytes()).unwrap();
        let bumped = text.replace("\"format_version\": 1", "\"format_version\": 2");
        let err = Plan::from_bytes(bumped.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                PlanError::UnsupportedVersion {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains("version 2") && msg.contains("version 1"),
            "{msg}"
        );
    }

    #[test]
    fn tampered_content_is_refused() {
        let text = String::from_utf8(plan().to_bytes()).unwrap();
        let tampered = text.replace("\"name\": \"p\"", "\"name\": \"q\"");
        assert!(matches!(
            Plan::from_bytes(tampered.as_bytes()),
            Err(PlanError::HashMismatch { .. })
        ));
    }

    #[test]
    fn nesting_beyond_the_bound_is_refused_not_a_stack_overflow() {
        let deep = format!(
            "{{\"header\":{{\"format\":\"fsql-plan\",\"format_version\":1}},\"pipeline\":{}1{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let err = Plan::from_bytes(deep.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("plans nest at most"), "{err}");
        assert_eq!(json_depth(br#"{"a":"[[[{{","b":[1,[2]]}"#), 3);
    }

    #[test]
    fn garbage_is_not_a_plan() {
        assert!(matches!(
            Plan::from_bytes(b"\x00\x01"),
            Err(PlanError::NotAPlan(_))
        ));
    }
}
