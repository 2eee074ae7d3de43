//! The control stream's reading side: signed records (from a file in local mode, or a Kafka
//! topic), verified against the pipeline's trusted keys, checked against what is in force
//! ([`update::ControlState`]), and handed to the executor, which applies them between batches and
//! acknowledges each (`fsql_runtime::control`, which also carries the records and acks).
//!
//! Every run reads the stream from its beginning, so what is in force is rebuilt from the records
//! in order, whatever happened before the run started.

pub mod envelope;
pub mod publish;
pub mod update;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use fsql_plan::Pipeline;
use fsql_runtime::control::{
    AckHeader, AckLog, ControlAddress, ControlChannel, ControlMessage, ControlSource,
};

use envelope::TrustedKeys;
use update::ControlState;

/// How long the reader waits for new records before checking whether the run stopped.
const POLL: Duration = Duration::from_millis(2);

/// A pipeline's control stream: where it is, and whom it trusts.
pub struct ControlConfig {
    pub address: ControlAddress,
    pub keys: TrustedKeys,
    pub settings: BTreeMap<String, String>,
}

impl ControlConfig {
    /// `None` when the pipeline has no control stream (neither `'control.path'` nor
    /// `'control.topic'` is set). The compiler resolved relative paths against the pipeline file.
    pub fn from_settings(
        settings: &BTreeMap<String, String>,
    ) -> Result<Option<ControlConfig>, String> {
        let Some(address) = ControlAddress::from_settings(settings)? else {
            return Ok(None);
        };
        let keys = TrustedKeys::parse(
            settings
                .get("control.trusted-keys")
                .map_or("", String::as_str),
        )
        .map_err(|e| format!("'control.trusted-keys': {e}"))?;
        Ok(Some(ControlConfig {
            address,
            keys,
            settings: settings.clone(),
        }))
    }

    /// Relative `set_model` paths resolve here: the control file's directory (the working
    /// directory for a topic).
    fn base_dir(&self) -> &Path {
        match &self.address {
            ControlAddress::File { path, .. } => path.parent().unwrap_or(Path::new(".")),
            ControlAddress::Kafka { .. } => Path::new("."),
        }
    }
}

/// Opens the stream and starts reading it on a thread; the executor's end of the stream. The
/// thread ends when `stop` is set or the executor is gone.
pub fn start(
    config: ControlConfig,
    pipeline: &Pipeline,
    compile_models: bool,
    stop: Arc<AtomicBool>,
) -> Result<ControlChannel, String> {
    let (tx, rx) = channel();
    let state = ControlState::new(pipeline, config.base_dir(), compile_models);
    let source =
        ControlSource::open(&config.address, &config.settings).map_err(|e| e.to_string())?;
    let acks = AckLog::open(&config.address, &config.settings).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("fsql-control".into())
        .spawn(move || read(config.keys, source, state, tx, stop))
        .map_err(|e| format!("cannot start the control reader: {e}"))?;
    Ok(ControlChannel { messages: rx, acks })
}

fn read(
    keys: TrustedKeys,
    mut source: ControlSource,
    mut state: ControlState,
    tx: Sender<ControlMessage>,
    stop: Arc<AtomicBool>,
) {
    let mut at_end = false;
    while !stop.load(Ordering::Relaxed) {
        let records = match source.poll(POLL, &mut at_end) {
            Ok(r) => r,
            Err(e) => {
                // The stream is unreadable (broker gone): reported as a rejection so it is seen in
                // the acks, and retried.
                let header = AckHeader {
                    position: "control stream".into(),
                    ..AckHeader::default()
                };
                let message = ControlMessage {
                    header,
                    outcome: Err(format!("cannot read the control stream: {e}")),
                    read_at: Instant::now(),
                };
                if tx.send(message).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        for (position, record) in records {
            if tx
                .send(check(&keys, &mut state, &record, position))
                .is_err()
            {
                return;
            }
        }
    }
}

/// One record: verified, checked, ready for the executor (or rejected with the reason).
pub fn check(
    keys: &TrustedKeys,
    state: &mut ControlState,
    record: &str,
    position: String,
) -> ControlMessage {
    let read_at = Instant::now();
    let mut header = AckHeader {
        position,
        ..AckHeader::default()
    };
    let outcome = match keys.open(record) {
        Err(rejection) => {
            header.key = rejection.key;
            Err(rejection.reason)
        }
        Ok((key, payload)) => {
            header.key = Some(key);
            state.accept(&payload, &mut header)
        }
    };
    ControlMessage {
        header,
        outcome,
        read_at,
    }
}
