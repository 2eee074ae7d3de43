//! `fsql control keygen | sign | push`: making keys, signing updates, and publishing them after
//! checking them against the plan.
//!
//! `push` replays the records already in the control stream through the same checks the runtime
//! makes, so an update is checked against what will be in force when it arrives (a rule added
//! earlier can be replaced), then checks the new update, and only then signs and appends it.

use std::io::Write;
use std::path::Path;

use fsql_plan::Plan;
use fsql_runtime::control::{AckHeader, ControlSource};

use super::envelope;
use super::update::ControlState;

/// Writes a new private key to `key_file` (refusing to overwrite one) and prints the
/// `control.trusted-keys` entry of its public key.
pub fn keygen(name: &str, key_file: &Path) -> Result<bool, String> {
    if key_file.exists() {
        return Err(format!(
            "`{}` exists; not overwriting a key",
            key_file.display()
        ));
    }
    let (private, public) = envelope::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(key_file)
        .and_then(|mut f| f.write_all(format!("{private}\n").as_bytes()))
        .map_err(|e| format!("cannot write `{}`: {e}", key_file.display()))?;
    println!("SET 'control.trusted-keys' = '{name}:{public}';");
    Ok(true)
}

/// The signed record of `update` (a file of JSON), with the ruleset filled in from `--ruleset`.
fn sealed(
    update_file: &Path,
    ruleset: Option<&str>,
    key_name: &str,
    key_file: &Path,
) -> Result<String, String> {
    let text = std::fs::read_to_string(update_file)
        .map_err(|e| format!("cannot read `{}`: {e}", update_file.display()))?;
    let mut update: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not JSON: {e}", update_file.display()))?;
    let ruleset_op = update
        .get("op")
        .and_then(|o| o.as_str())
        .is_some_and(|o| o.ends_with("_rule") || o == "set_parameter");
    if let (Some(r), Some(object), true) = (ruleset, update.as_object_mut(), ruleset_op) {
        match object.get("ruleset").and_then(|v| v.as_str()) {
            Some(named) if named != r => {
                return Err(format!(
                    "the update names ruleset `{named}`, --ruleset says `{r}`"
                ));
            }
            Some(_) => {}
            None => {
                object.insert("ruleset".into(), r.into());
            }
        }
    }
    let key_text = std::fs::read_to_string(key_file)
        .map_err(|e| format!("cannot read `{}`: {e}", key_file.display()))?;
    let key = envelope::signing_key(&key_text)?;
    Ok(envelope::seal(key_name, &key, &update.to_string()))
}

/// Prints the signed record of an update (for publishing by other means).
pub fn sign(update_file: &Path, key_name: &str, key_file: &Path) -> Result<bool, String> {
    println!("{}", sealed(update_file, None, key_name, key_file)?);
    Ok(true)
}

/// Checks an update against `plan` and what the control file already holds, then appends it,
/// signed, to the pipeline's control file.
pub fn push(
    plan: &Plan,
    update_file: &Path,
    ruleset: Option<&str>,
    key_name: &str,
    key_file: &Path,
    compile_models: bool,
) -> Result<bool, String> {
    let pipeline = &plan.pipeline;
    let config = super::ControlConfig::from_settings(&pipeline.settings)?
        .ok_or("the pipeline has no control stream: SET 'control.path' (or 'control.topic')")?;
    let record = sealed(update_file, ruleset, key_name, key_file)?;
    let mut state = ControlState::new(pipeline, config.base_dir(), compile_models);
    // What is in force once the records already published are applied.
    let mut source =
        ControlSource::open(&config.address, &config.settings).map_err(|e| e.to_string())?;
    for (position, line) in source.read_all().map_err(|e| e.to_string())? {
        let _ = super::check(&config.keys, &mut state, &line, position);
    }
    // The new record passes the runtime's checks, its signature included (the key must be one the
    // pipeline trusts).
    let message = super::check(&config.keys, &mut state, &record, "new".into());
    if let Err(reason) = message.outcome {
        return Err(format!("update refused: {reason}"));
    }
    let AckHeader {
        op,
        target,
        version,
        ..
    } = message.header;
    let target = target.unwrap_or_default();
    fsql_runtime::control::publish(&config.address, &config.settings, &target, &record)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "published {} of `{}` version {} to {}",
        op.unwrap_or_default(),
        target,
        version.unwrap_or_default(),
        config.address.describe()
    );
    Ok(true)
}
