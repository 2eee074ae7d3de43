//! `payments-generator`: fsql's built-in, seeded, deterministic stream of card payments with
//! injected fraud scenarios and ground-truth labels, for examples, tests and benchmarks.
//!
//! Columns are picked by name from the table's declared physical columns (any subset, any order;
//! a declared type the natural one can be cast to is accepted, e.g. `amount DECIMAL(12, 2)`):
//!
//! | column | natural type | content |
//! |---|---|---|
//! | `payment_id` | BIGINT | 1, 2, 3, ... |
//! | `card_id` | STRING | `card-000042` |
//! | `device_id` | STRING | `dev-000042` (each card has a home device) |
//! | `ip` | STRING | `10.0.0.42` (each card has a home IP) |
//! | `merchant_id` | STRING | `m-00042` (popular merchants are more frequent) |
//! | `email` | STRING | `user000042@example.com` |
//! | `country` | STRING | ISO code, each card has a home country |
//! | `amount` | DOUBLE | heavy-tailed: log-normal body (median ≈ 30) and a Pareto tail |
//! | `currency` | STRING | the country's currency |
//! | `status` | STRING | `APPROVED` (≈ 96%) or `DECLINED` |
//! | `channel` | STRING | `web`, `app` or `pos` |
//! | `ts` | TIMESTAMP(3) | event time: `start-time` + index / `events-per-second-of-event-time`, some events delayed |
//! | `is_fraud` | BOOLEAN | ground truth: the row belongs to an injected fraud scenario |
//! | `scenario` | STRING | NULL, `card_testing`, `account_takeover`, `velocity_spike` or `auth_without_capture` |
//! | `kind` | STRING | `AUTH` (an authorisation: every payment) or `CAPTURE` (with `auth-capture`) |
//! | `auth_id` | BIGINT | for a `CAPTURE`, the `payment_id` of the authorisation it captures; else NULL |
//!
//! Scenarios: **card testing** (3–6 amounts below 2 on one card from a new device within a minute,
//! then one above 200), **account takeover** (an existing card suddenly used from a new device and a
//! new IP for 1–3 high amounts), **velocity spike** (8–20 payments on one card within two minutes).
//!
//! With `'auth-capture' = 'true'`, every approved authorisation is followed 1 to 5 minutes (of event
//! time) later by its `CAPTURE` row on the same card, except a fraction `uncaptured-rate` (0.001) of
//! normal ones, labelled `auth_without_capture` (an operational anomaly, not fraud: `is_fraud` is
//! false): the cases an absence pattern (`WITHIN ... EMIT TIMEOUTS`) should report. Off by default,
//! and then the stream is the same as without the option.
//!
//! Options: `seed` (42), `number-of-rows` (unbounded), `rows-per-second` (0 = as fast as possible),
//! `cards` (100000), `devices` (= cards), `ips` (= cards), `merchants` (5000), `fraud-rate` (0.002: the
//! fraction of events that start a scenario), `out-of-orderness` (max delay of late events, `'0 s'`),
//! `out-of-order-fraction` (0.0), `start-time` (`'2024-01-01 00:00:00'`),
//! `events-per-second-of-event-time` (1000), `auth-capture` (false), `uncaptured-rate` (0.001).
//!
//! Every row's values are drawn in row order whatever columns are selected, so the same seed gives
//! the same payments for any column subset and any batch size.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType as ArrowType, SchemaRef, TimeUnit};
use fsql_plan::SourceSpec;

use super::rng::{Rng, mix};
use super::{
    OpenOptions, Source, SourceContext, SourcePoll, Throttle, option_bool, option_number,
    runtime_schema,
};
use crate::error::RuntimeError;
use crate::text;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    PaymentId,
    CardId,
    DeviceId,
    Ip,
    MerchantId,
    Email,
    Country,
    Amount,
    Currency,
    Status,
    Channel,
    Ts,
    IsFraud,
    Scenario,
    Kind,
    AuthId,
}

const COLUMNS: [(&str, Col); 16] = [
    ("payment_id", Col::PaymentId),
    ("card_id", Col::CardId),
    ("device_id", Col::DeviceId),
    ("ip", Col::Ip),
    ("merchant_id", Col::MerchantId),
    ("email", Col::Email),
    ("country", Col::Country),
    ("amount", Col::Amount),
    ("currency", Col::Currency),
    ("status", Col::Status),
    ("channel", Col::Channel),
    ("ts", Col::Ts),
    ("is_fraud", Col::IsFraud),
    ("scenario", Col::Scenario),
    ("kind", Col::Kind),
    ("auth_id", Col::AuthId),
];

impl Col {
    fn natural_type(self) -> ArrowType {
        match self {
            Col::PaymentId | Col::AuthId => ArrowType::Int64,
            Col::Amount => ArrowType::Float64,
            Col::Ts => ArrowType::Timestamp(TimeUnit::Millisecond, None),
            Col::IsFraud => ArrowType::Boolean,
            _ => ArrowType::Utf8,
        }
    }
}

const COUNTRIES: [(&str, &str); 12] = [
    ("US", "USD"),
    ("GB", "GBP"),
    ("DE", "EUR"),
    ("FR", "EUR"),
    ("ES", "EUR"),
    ("IT", "EUR"),
    ("NL", "EUR"),
    ("BR", "BRL"),
    ("IN", "INR"),
    ("CA", "CAD"),
    ("AU", "AUD"),
    ("JP", "JPY"),
];
const STATUSES: [&str; 2] = ["APPROVED", "DECLINED"];
const CHANNELS: [&str; 3] = ["web", "app", "pos"];
const SCENARIOS: [&str; 5] = [
    "",
    "card_testing",
    "account_takeover",
    "velocity_spike",
    "auth_without_capture",
];
/// The scenario of an authorisation never captured (not fraud).
const UNCAPTURED: u8 = 4;
const KINDS: [&str; 2] = ["AUTH", "CAPTURE"];
/// `kind` of a capture.
const CAPTURE: u8 = 1;

/// One generated payment, numbers only (strings are rendered per column).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Payment {
    card: u64,
    device: u64,
    ip: u64,
    merchant: u64,
    country: u8,
    amount: f64,
    status: u8,
    channel: u8,
    ts: i64,
    scenario: u8,
    /// 0: an authorisation, [`CAPTURE`]: a capture.
    kind: u8,
    /// For a capture, the `payment_id` of its authorisation.
    auth: u64,
}

impl Payment {
    fn is_fraud(&self) -> bool {
        self.scenario != 0 && self.scenario != UNCAPTURED
    }
}

/// A scenario event waiting for its position in the stream.
#[derive(Clone, Copy, Debug)]
struct Scheduled {
    position: u64,
    seq: u64,
    payment: Payment,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.position, self.seq) == (other.position, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and we want the earliest position first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.position, other.seq).cmp(&(self.position, self.seq))
    }
}

/// The generator's configuration (see the module documentation for defaults).
#[derive(Clone, Debug)]
struct Config {
    seed: u64,
    cards: u64,
    devices: u64,
    ips: u64,
    merchants: u64,
    fraud_rate: f64,
    max_delay_ms: i64,
    late_fraction: f64,
    start_ms: i64,
    ms_per_event: f64,
    /// Approved authorisations are followed by captures.
    captures: bool,
    /// With `captures`, the fraction of normal approved authorisations never captured.
    uncaptured_rate: f64,
}

/// The row model: normal traffic plus scheduled scenario events.
struct Model {
    config: Config,
    rng: Rng,
    index: u64,
    seq: u64,
    pending: BinaryHeap<Scheduled>,
}

impl Model {
    fn new(config: Config) -> Model {
        Model {
            rng: Rng::new(config.seed),
            config,
            index: 0,
            seq: 0,
            pending: BinaryHeap::new(),
        }
    }

    fn home_device(&self, card: u64) -> u64 {
        mix(self.config.seed ^ card.wrapping_mul(0x9e37_79b9)) % self.config.devices
    }

    fn home_ip(&self, card: u64) -> u64 {
        mix(self.config.seed ^ card.wrapping_mul(0x85eb_ca6b) ^ 0x5bd1) % self.config.ips
    }

    fn home_country(&self, card: u64) -> u8 {
        // Mostly US/GB/DE, the rest spread.
        let h = mix(card ^ 0xc2b2_ae35) % 100;
        (if h < 40 {
            0
        } else if h < 55 {
            1
        } else if h < 65 {
            2
        } else {
            3 + h % 9
        }) as u8
    }

    fn amount(&mut self) -> f64 {
        let v = if self.rng.chance(0.03) {
            // Pareto tail, alpha 1.5, from 200.
            200.0 * (1.0 - self.rng.next_f64()).powf(-1.0 / 1.5)
        } else {
            (3.4 + self.rng.normal()).exp()
        };
        (v.clamp(0.5, 50_000.0) * 100.0).round() / 100.0
    }

    fn positions(&self, ms: f64) -> u64 {
        if self.config.ms_per_event > 0.0 {
            (ms / self.config.ms_per_event).max(1.0) as u64
        } else {
            1
        }
    }

    /// A random gap of `base_ms` plus up to `jitter_ms`, in stream positions.
    fn gap(&mut self, base_ms: f64, jitter_ms: u64) -> u64 {
        let ms = base_ms + self.rng.below(jitter_ms) as f64;
        self.positions(ms)
    }

    fn schedule(&mut self, position: u64, payment: Payment) {
        self.seq += 1;
        self.pending.push(Scheduled {
            position,
            seq: self.seq,
            payment,
        });
    }

    fn normal(&mut self) -> Payment {
        let c = &self.config;
        let (cards, devices, ips, merchants) = (c.cards, c.devices, c.ips, c.merchants);
        let card = self.rng.below(cards);
        let device = if self.rng.chance(0.05) {
            self.rng.below(devices)
        } else {
            self.home_device(card)
        };
        let ip = if self.rng.chance(0.10) {
            self.rng.below(ips)
        } else {
            self.home_ip(card)
        };
        let u = self.rng.next_f64();
        let merchant = ((u * u) * merchants as f64) as u64;
        let country = if self.rng.chance(0.02) {
            self.rng.below(COUNTRIES.len() as u64) as u8
        } else {
            self.home_country(card)
        };
        let amount = self.amount();
        let status = u8::from(self.rng.chance(0.04));
        let r = self.rng.below(100);
        let channel = if r < 45 {
            0
        } else if r < 85 {
            1
        } else {
            2
        };
        Payment {
            card,
            device,
            ip,
            merchant,
            country,
            amount,
            status,
            channel,
            ts: 0,
            scenario: 0,
            kind: 0,
            auth: 0,
        }
    }

    /// Schedules the events of a new scenario starting at the current position.
    fn start_scenario(&mut self) {
        let kind = 1 + self.rng.below(3) as u8;
        let card = self.rng.below(self.config.cards);
        let base = Payment {
            card,
            device: self.home_device(card),
            ip: self.home_ip(card),
            merchant: self.rng.below(self.config.merchants),
            country: self.home_country(card),
            amount: 0.0,
            status: 0,
            channel: 0,
            ts: 0,
            scenario: kind,
            kind: 0,
            auth: 0,
        };
        let mut pos = self.index + 1;
        match kind {
            1 => {
                // Card testing: tiny amounts from a fresh device and IP, then a big one, within a minute.
                let device = self.config.devices + self.rng.below(self.config.devices);
                let ip = self.config.ips + self.rng.below(self.config.ips);
                let tests = 3 + self.rng.below(4);
                for _ in 0..tests {
                    let amount = (50.0 + self.rng.below(150) as f64) / 100.0;
                    let status = u8::from(self.rng.chance(0.4));
                    self.schedule(
                        pos,
                        Payment {
                            device,
                            ip,
                            amount,
                            status,
                            channel: 0,
                            ..base
                        },
                    );
                    pos += self.gap(1000.0, 6000);
                }
                pos += self.gap(0.0, 9000);
                let amount = (20_000.0 + self.rng.below(180_000) as f64) / 100.0;
                self.schedule(
                    pos,
                    Payment {
                        device,
                        ip,
                        amount,
                        channel: 0,
                        ..base
                    },
                );
            }
            2 => {
                // Account takeover: an existing card from a new device and IP, high amounts.
                let device = self.config.devices + self.rng.below(self.config.devices);
                let ip = self.config.ips + self.rng.below(self.config.ips);
                let country = self.rng.below(COUNTRIES.len() as u64) as u8;
                for _ in 0..1 + self.rng.below(3) {
                    let amount = (50_000.0 + self.rng.below(450_000) as f64) / 100.0;
                    self.schedule(
                        pos,
                        Payment {
                            device,
                            ip,
                            country,
                            amount,
                            channel: 1,
                            ..base
                        },
                    );
                    pos += self.gap(5000.0, 55_000);
                }
            }
            _ => {
                // Velocity spike: many payments on one card within two minutes.
                for _ in 0..8 + self.rng.below(13) {
                    let amount = (2_000.0 + self.rng.below(28_000) as f64) / 100.0;
                    let merchant = self.rng.below(self.config.merchants);
                    self.schedule(
                        pos,
                        Payment {
                            merchant,
                            amount,
                            channel: 2,
                            ..base
                        },
                    );
                    pos += self.gap(500.0, 5500);
                }
            }
        }
    }

    fn next(&mut self) -> Payment {
        let i = self.index;
        let mut p = match self.pending.peek() {
            Some(s) if s.position <= i => {
                let s = *s;
                self.pending.pop();
                s.payment
            }
            _ => self.normal(),
        };
        let nominal = self.config.start_ms + (i as f64 * self.config.ms_per_event) as i64;
        p.ts = nominal;
        if self.config.max_delay_ms > 0 && self.rng.chance(self.config.late_fraction) {
            p.ts -= self.rng.range_i64(1, self.config.max_delay_ms);
        }
        if self.rng.chance(self.config.fraud_rate) {
            self.start_scenario();
        }
        if self.config.captures && p.kind != CAPTURE && p.status == 0 {
            if p.scenario == 0 && self.rng.chance(self.config.uncaptured_rate) {
                p.scenario = UNCAPTURED;
            } else {
                let at = i + self.gap(60_000.0, 240_000);
                self.schedule(
                    at,
                    Payment {
                        kind: CAPTURE,
                        auth: i + 1,
                        ..p
                    },
                );
            }
        }
        self.index += 1;
        p
    }
}

/// Appends decimal digits of `n`, zero-padded to `width`.
#[inline]
fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = 20;
    while n > 0 && i > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = 20usize.saturating_sub(width.max(20 - i));
    out.extend_from_slice(&buf[start..]);
}

#[inline]
fn push_u8(out: &mut Vec<u8>, v: u8) {
    if v >= 100 {
        out.push(b'0' + v / 100);
    }
    if v >= 10 {
        out.push(b'0' + v / 10 % 10);
    }
    out.push(b'0' + v % 10);
}

fn digits(n: u64) -> usize {
    n.max(1).ilog10() as usize + 1
}

/// A string column assembled from raw bytes and offsets.
struct StrCol {
    values: Vec<u8>,
    offsets: Vec<i32>,
}

impl StrCol {
    fn with_capacity(rows: usize, bytes: usize) -> StrCol {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        StrCol {
            values: Vec::with_capacity(rows * bytes),
            offsets,
        }
    }

    #[inline]
    fn end_value(&mut self) {
        self.offsets
            .push(i32::try_from(self.values.len()).unwrap_or(i32::MAX));
    }

    fn finish(self, nulls: Option<NullBuffer>) -> Result<ArrayRef, arrow::error::ArrowError> {
        let offsets = OffsetBuffer::new(self.offsets.into());
        Ok(Arc::new(StringArray::try_new(
            offsets,
            self.values.into(),
            nulls,
        )?))
    }
}

/// The `payments-generator` source.
pub struct PaymentsSource {
    table: String,
    schema: SchemaRef,
    columns: Vec<(Col, ArrowType)>,
    model: Model,
    throttle: Throttle,
    remaining: u64,
    rows: Vec<Payment>,
    widths: (usize, usize, usize, usize),
}

impl PaymentsSource {
    /// Validates the declared columns and options.
    pub fn open(spec: &SourceSpec, options: &OpenOptions) -> Result<PaymentsSource, RuntimeError> {
        let table = &spec.table;
        let mut columns = Vec::new();
        for f in &spec.physical.fields {
            let col = COLUMNS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&f.name))
                .map(|(_, c)| *c)
                .ok_or_else(|| {
                    let known: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
                    RuntimeError::connector(
                        table,
                        format!(
                            "payments-generator has no column `{}` (known: {})",
                            f.name,
                            known.join(", ")
                        ),
                    )
                })?;
            let target = f.data_type.to_arrow();
            if target != col.natural_type()
                && !arrow::compute::can_cast_types(&col.natural_type(), &target)
            {
                return Err(RuntimeError::connector(
                    table,
                    format!(
                        "payments-generator column `{}` cannot be produced as {}",
                        f.name, f.data_type
                    ),
                ));
            }
            columns.push((col, target));
        }
        let num = |key: &str| option_number::<f64>(spec, key);
        let count = |key: &str, default: u64| -> Result<u64, RuntimeError> {
            let v = num(key)?.unwrap_or(default as f64);
            if !(1.0..=1e12).contains(&v) {
                return Err(RuntimeError::option(
                    table,
                    key,
                    "must be between 1 and 10^12",
                ));
            }
            Ok(v as u64)
        };
        let cards = count("cards", 100_000)?;
        let fraction = |key: &str, default: f64| -> Result<f64, RuntimeError> {
            let v = num(key)?.unwrap_or(default);
            if !(0.0..=1.0).contains(&v) {
                return Err(RuntimeError::option(table, key, "must be between 0 and 1"));
            }
            Ok(v)
        };
        let opts = &spec.connector.options;
        let max_delay_ms = match opts.get("out-of-orderness") {
            None => 0,
            Some(v) => crate::parse_duration(v)
                .map_err(|e| RuntimeError::option(table, "out-of-orderness", e))?
                .as_millis() as i64,
        };
        let start_ms = match opts.get("start-time") {
            None => 1_704_067_200_000,
            Some(t) => text::parse_timestamp_in(t, TimeUnit::Millisecond).ok_or_else(|| {
                RuntimeError::option(table, "start-time", format!("'{t}' is not a timestamp"))
            })?,
        };
        let eps = num("events-per-second-of-event-time")?.unwrap_or(1000.0);
        if eps <= 0.0 {
            return Err(RuntimeError::option(
                table,
                "events-per-second-of-event-time",
                "must be positive",
            ));
        }
        let config = Config {
            seed: option_number(spec, "seed")?.unwrap_or(42),
            cards,
            devices: count("devices", cards)?,
            ips: count("ips", cards)?,
            merchants: count("merchants", 5000)?,
            fraud_rate: fraction("fraud-rate", 0.002)?,
            max_delay_ms,
            late_fraction: fraction("out-of-order-fraction", 0.0)?,
            start_ms,
            ms_per_event: 1000.0 / eps,
            captures: option_bool(opts, table, "auth-capture")?,
            uncaptured_rate: fraction("uncaptured-rate", 0.001)?,
        };
        let rate: Option<f64> =
            num("rows-per-second")?.filter(|r| *r > 0.0 && !options.unthrottled);
        let widths = (
            digits(config.cards),
            digits(config.devices * 2),
            digits(config.merchants),
            digits(config.cards),
        );
        Ok(PaymentsSource {
            table: table.clone(),
            schema: runtime_schema(&spec.physical),
            columns,
            model: Model::new(config),
            throttle: Throttle::new(rate, options.batch),
            remaining: option_number(spec, "number-of-rows")?.unwrap_or(u64::MAX),
            rows: Vec::new(),
            widths,
        })
    }

    fn build(&self, col: Col) -> Result<ArrayRef, arrow::error::ArrowError> {
        let rows = &self.rows;
        let n = rows.len();
        let (card_w, device_w, merchant_w, email_w) = self.widths;
        let strings = |bytes: usize, f: &dyn Fn(&Payment, &mut Vec<u8>)| {
            let mut s = StrCol::with_capacity(n, bytes);
            for p in rows {
                f(p, &mut s.values);
                s.end_value();
            }
            s.finish(None)
        };
        let fixed = |values: &[&'static str], pick: &dyn Fn(&Payment) -> usize| {
            let mut s = StrCol::with_capacity(n, 8);
            for p in rows {
                s.values.extend_from_slice(values[pick(p)].as_bytes());
                s.end_value();
            }
            s
        };
        Ok(match col {
            Col::PaymentId => {
                let first = self.model.index - n as u64 + 1;
                Arc::new(Int64Array::from_iter_values(
                    (0..n as u64).map(|i| (first + i) as i64),
                ))
            }
            Col::CardId => strings(5 + card_w, &|p, v| {
                v.extend_from_slice(b"card-");
                push_padded(v, p.card, card_w);
            })?,
            Col::DeviceId => strings(4 + device_w, &|p, v| {
                v.extend_from_slice(b"dev-");
                push_padded(v, p.device, device_w);
            })?,
            Col::Ip => strings(14, &|p, v| {
                let x = 0x0A00_0000u64 + p.ip;
                v.extend_from_slice(b"10.");
                push_u8(v, (x >> 16) as u8);
                v.push(b'.');
                push_u8(v, (x >> 8) as u8);
                v.push(b'.');
                push_u8(v, x as u8);
            })?,
            Col::MerchantId => strings(2 + merchant_w, &|p, v| {
                v.extend_from_slice(b"m-");
                push_padded(v, p.merchant, merchant_w);
            })?,
            Col::Email => strings(16 + email_w, &|p, v| {
                v.extend_from_slice(b"user");
                push_padded(v, p.card, email_w);
                v.extend_from_slice(b"@example.com");
            })?,
            Col::Country => fixed(&COUNTRIES.map(|c| c.0), &|p| {
                usize::from(p.country) % COUNTRIES.len()
            })
            .finish(None)?,
            Col::Currency => fixed(&COUNTRIES.map(|c| c.1), &|p| {
                usize::from(p.country) % COUNTRIES.len()
            })
            .finish(None)?,
            Col::Status => fixed(&STATUSES, &|p| usize::from(p.status.min(1))).finish(None)?,
            Col::Channel => fixed(&CHANNELS, &|p| usize::from(p.channel.min(2))).finish(None)?,
            Col::Scenario => {
                let nulls =
                    NullBuffer::from(rows.iter().map(|p| p.scenario != 0).collect::<Vec<bool>>());
                let s = fixed(&SCENARIOS, &|p| usize::from(p.scenario.min(UNCAPTURED)));
                s.finish((nulls.null_count() > 0).then_some(nulls))?
            }
            Col::Kind => fixed(&KINDS, &|p| usize::from(p.kind.min(CAPTURE))).finish(None)?,
            Col::AuthId => Arc::new(Int64Array::from_iter(
                rows.iter()
                    .map(|p| (p.kind == CAPTURE).then_some(p.auth as i64)),
            )),
            Col::Amount => Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|p| p.amount),
            )),
            Col::Ts => {
                let ints: ArrayRef =
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|p| p.ts)));
                arrow::compute::cast(&ints, &col.natural_type())?
            }
            Col::IsFraud => Arc::new(BooleanArray::from_iter(
                rows.iter().map(|p| Some(p.is_fraud())),
            )),
        })
    }

    fn generate(&mut self, n: usize) -> Result<RecordBatch, RuntimeError> {
        self.rows.clear();
        for _ in 0..n {
            let p = self.model.next();
            self.rows.push(p);
        }
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (col, target) in &self.columns {
            let mut a = self
                .build(*col)
                .map_err(|e| RuntimeError::arrow(&self.table, e))?;
            if a.data_type() != target {
                a = arrow::compute::cast(&a, target)
                    .map_err(|e| RuntimeError::arrow(&self.table, e))?;
            }
            arrays.push(a);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| RuntimeError::arrow(&self.table, e))
    }
}

impl Source for PaymentsSource {
    fn poll(&mut self, ctx: &mut SourceContext<'_>) -> Result<SourcePoll, RuntimeError> {
        if self.remaining == 0 {
            return Ok(SourcePoll::End);
        }
        match self.throttle.next(ctx.now, self.remaining) {
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(SourcePoll::Batch(self.generate(n)?))
            }
            Err(wake) => Ok(SourcePoll::Pending(wake)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
    use fsql_plan::DataType;

    use super::*;
    use crate::batcher::BatchConfig;
    use crate::testkit::*;

    fn all_columns() -> Vec<(&'static str, DataType)> {
        COLUMNS
            .iter()
            .map(|(n, c)| {
                let t = match c {
                    Col::PaymentId | Col::AuthId => DataType::BigInt,
                    Col::Amount => DataType::Double,
                    Col::Ts => DataType::Timestamp { precision: 3 },
                    Col::IsFraud => DataType::Boolean,
                    _ => DataType::String,
                };
                (*n, t)
            })
            .collect()
    }

    fn open(
        options: &[(&str, &str)],
        fields: &[(&str, DataType)],
        max_rows: usize,
    ) -> Result<PaymentsSource, RuntimeError> {
        let spec = source_spec(
            "payments",
            connector("payments-generator", options, ""),
            schema(fields),
        );
        let batch = BatchConfig {
            max_rows,
            ..BatchConfig::default()
        };
        PaymentsSource::open(
            &spec,
            &OpenOptions {
                batch,
                unthrottled: false,
                capture_sinks: false,
            },
        )
    }

    fn drain(source: &mut PaymentsSource) -> Vec<RecordBatch> {
        let mut noop = |_: &crate::source::MalformedRecord| {};
        let mut out = Vec::new();
        loop {
            let mut ctx = SourceContext::new(Instant::now(), &mut noop);
            match source.poll(&mut ctx).unwrap() {
                SourcePoll::Batch(b) => out.push(b),
                SourcePoll::End => return out,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn same_seed_same_payments_whatever_the_batch_size() {
        let opts = [("number-of-rows", "3000"), ("seed", "7")];
        let a = rows(&drain(&mut open(&opts, &all_columns(), 1024).unwrap()));
        let b = rows(&drain(&mut open(&opts, &all_columns(), 100).unwrap()));
        assert_eq!(a.len(), 3000);
        assert_eq!(a, b);
        let c = rows(&drain(
            &mut open(
                &[("number-of-rows", "3000"), ("seed", "8")],
                &all_columns(),
                1024,
            )
            .unwrap(),
        ));
        assert_ne!(a, c);
        assert!(
            a[0].starts_with(r#"{"payment_id":1,"card_id":"card-"#),
            "{}",
            a[0]
        );
    }

    #[test]
    fn any_subset_of_columns_in_any_order_and_castable_types() {
        let fields = [
            (
                "amount",
                DataType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            ("CARD_ID", DataType::String),
            ("payment_id", DataType::BigInt),
        ];
        let batches = drain(&mut open(&[("number-of-rows", "10")], &fields, 1024).unwrap());
        let b = &batches[0];
        assert_eq!(b.num_columns(), 3);
        assert_eq!(
            b.column(0).data_type(),
            &arrow::datatypes::DataType::Decimal128(12, 2)
        );
        // The subset sees the same payments as the full schema.
        let full = drain(&mut open(&[("number-of-rows", "10")], &all_columns(), 1024).unwrap());
        assert_eq!(
            b.column(1).as_string::<i32>().value(3),
            full[0].column(1).as_string::<i32>().value(3)
        );
    }

    #[test]
    fn unknown_columns_fail_naming_the_known_ones() {
        let err = open(&[], &[("colour", DataType::String)], 1024)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("no column `colour`") && err.contains("payment_id, card_id"),
            "{err}"
        );
        let err = open(&[], &[("ts", DataType::Boolean)], 1024)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot be produced as BOOLEAN"), "{err}");
    }

    #[test]
    fn fraud_scenarios_are_labelled_and_shaped() {
        let opts = [
            ("number-of-rows", "200000"),
            ("fraud-rate", "0.01"),
            ("cards", "1000"),
        ];
        let batches = drain(&mut open(&opts, &all_columns(), 4096).unwrap());
        let (mut fraud, mut by_scenario) = (0, HashMap::new());
        // card testing: per card, small amounts followed by a large one.
        let mut testing: HashMap<String, Vec<f64>> = HashMap::new();
        for b in &batches {
            let card = b.column(1).as_string::<i32>();
            let amount = b.column(7).as_primitive::<Float64Type>();
            let is_fraud = b.column(12).as_boolean();
            let scenario = b.column(13).as_string::<i32>();
            for r in 0..b.num_rows() {
                assert_eq!(
                    is_fraud.value(r),
                    scenario.is_valid(r),
                    "label and scenario agree"
                );
                if is_fraud.value(r) {
                    fraud += 1;
                    *by_scenario
                        .entry(scenario.value(r).to_string())
                        .or_insert(0) += 1;
                    if scenario.value(r) == "card_testing" {
                        testing
                            .entry(card.value(r).to_string())
                            .or_default()
                            .push(amount.value(r));
                    }
                }
            }
        }
        assert!(fraud > 2000 && fraud < 40_000, "{fraud}");
        assert_eq!(by_scenario.len(), 3, "{by_scenario:?}");
        let shaped = testing
            .values()
            .filter(|a| {
                a.len() >= 4 && a[..3].iter().all(|v| *v < 2.0) && a.iter().any(|v| *v > 200.0)
            })
            .count();
        assert!(shaped * 2 > testing.len(), "{shaped} of {}", testing.len());
    }

    #[test]
    fn out_of_orderness_stays_within_its_bound() {
        let opts = [
            ("number-of-rows", "50000"),
            ("out-of-orderness", "2 s"),
            ("out-of-order-fraction", "0.2"),
        ];
        let batches =
            drain(&mut open(&opts, &[("ts", DataType::Timestamp { precision: 3 })], 1024).unwrap());
        let (mut max_seen, mut late) = (i64::MIN, 0);
        for b in &batches {
            for &t in b
                .column(0)
                .as_primitive::<TimestampMillisecondType>()
                .values()
            {
                if t < max_seen {
                    late += 1;
                    assert!(max_seen - t <= 2000, "{} ms late", max_seen - t);
                }
                max_seen = max_seen.max(t);
            }
        }
        assert!(late > 5000, "{late}");
        // payment ids are a sequence.
        let ids = drain(
            &mut open(
                &[("number-of-rows", "5")],
                &[("payment_id", DataType::BigInt)],
                2,
            )
            .unwrap(),
        );
        let ids: Vec<i64> = ids
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    }
}
