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
//! | `scenario` | STRING | NULL or the scenario's name (below), or `auth_without_capture` |
//! | `kind` | STRING | `AUTH` (an authorisation: every payment), `CAPTURE` (with `auth-capture`) or `REFUND` (with `refund_abuse`) |
//! | `auth_id` | BIGINT | for a `CAPTURE` or `REFUND`, the `payment_id` of its authorisation; else NULL |
//!
//! Scenarios (`is_fraud` true, `scenario` their name; `scenarios` picks them, each scenario start
//! choosing one uniformly):
//!
//! | scenario | default | shape |
//! |---|---|---|
//! | `card_testing` | yes | 3–6 amounts below 2 on one card from a new device and IP, 1–7 s apart, then one of 200–2000 |
//! | `account_takeover` | yes | an existing card suddenly used from a new device and a new IP (another country) for 1–3 amounts of 500–5000, 5–60 s apart |
//! | `velocity_spike` | yes | 8–20 payments on one card, 0.5–6 s apart |
//! | `refund_abuse` | no | 3–5 approved purchases of 50–500 on one card, 10–60 s apart, each refunded (a `REFUND` row) 30 s–3 min later |
//! | `merchant_burst` | no | a merchant of the less popular half takes 20–40 payments from as many cards, 0.5–2.5 s apart |
//! | `geo_jump` | no | a card-present (`pos`) payment in the card's home country, then 2–3 in other countries, each in another, 1–5 min apart |
//! | `device_switching` | no | a payment from the card's home device, then 3–5 from as many new devices (home IP), 10–60 s apart |
//! | `decline_retry` | no | 3–5 declined attempts of 100–1000 (±10%) at one merchant, 5–30 s apart, then the amount approved there 5–60 s later |
//!
//! With `refund_abuse` picked, a fraction `refund-rate` (0.005) of normal approved authorisations is
//! refunded too, 1 minute to 1 hour later (genuine refunds, `scenario` NULL), so refunds alone are no
//! signal. Without it the stream has no refunds. With `scenarios` spelled as the default three (in
//! any order) the stream is the same as without the option.
//!
//! With `'auth-capture' = 'true'`, every approved authorisation is followed 1 to 5 minutes (of event
//! time) later by its `CAPTURE` row on the same card, except a fraction `uncaptured-rate` (0.001) of
//! normal ones, labelled `auth_without_capture` (an operational anomaly, not fraud: `is_fraud` is
//! false): the cases an absence pattern (`WITHIN ... EMIT TIMEOUTS`) should report. Off by default,
//! and then the stream is the same as without the option.
//!
//! With `'drain-at-end' = 'true'`, a bounded stream ends with every row it scheduled: once what is
//! left of `number-of-rows` is only what the scheduled rows (scenario steps, captures, refunds) need,
//! no new payment starts and they follow, the event time jumping ahead to each (the last row or two
//! may be declined normal payments). So at the end of the input no authorisation is left
//! uncaptured that would have been captured, and no scenario is cut short. Off by default.
//!
//! Options: `seed` (42), `number-of-rows` (unbounded), `rows-per-second` (0 = as fast as possible),
//! `cards` (100000), `devices` (= cards), `ips` (= cards), `merchants` (5000), `fraud-rate` (0.002: the
//! fraction of events that start a scenario), `out-of-orderness` (max delay of late events, `'0 s'`),
//! `out-of-order-fraction` (0.0), `start-time` (`'2024-01-01 00:00:00'`),
//! `events-per-second-of-event-time` (1000), `auth-capture` (false), `uncaptured-rate` (0.001),
//! `scenarios` (`card_testing,account_takeover,velocity_spike`; or `all`, `none`), `refund-rate`
//! (0.005), `drain-at-end` (false).
//!
//! Every row's values are drawn in row order whatever columns are selected, so the same seed gives
//! the same payments for any column subset and any batch size. Options that add rows draw their
//! random numbers only when set, so the default stream stays what it has always been.

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
use crate::checkpoint::SourcePosition;
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
/// `scenario` values by number (0: genuine traffic, NULL).
const SCENARIOS: [&str; 10] = [
    "",
    "card_testing",
    "account_takeover",
    "velocity_spike",
    "auth_without_capture",
    "refund_abuse",
    "merchant_burst",
    "geo_jump",
    "device_switching",
    "decline_retry",
];
const CARD_TESTING: u8 = 1;
const ACCOUNT_TAKEOVER: u8 = 2;
const VELOCITY_SPIKE: u8 = 3;
/// The scenario of an authorisation never captured (not fraud, and not one `scenarios` picks).
const UNCAPTURED: u8 = 4;
const REFUND_ABUSE: u8 = 5;
const MERCHANT_BURST: u8 = 6;
const GEO_JUMP: u8 = 7;
const DEVICE_SWITCHING: u8 = 8;
const DECLINE_RETRY: u8 = 9;
/// The scenarios injected by default, in the order the stream has always drawn them.
const DEFAULT_SCENARIOS: [u8; 3] = [CARD_TESTING, ACCOUNT_TAKEOVER, VELOCITY_SPIKE];
/// Every scenario `'scenarios' = 'all'` injects.
const ALL_SCENARIOS: [u8; 8] = [
    CARD_TESTING,
    ACCOUNT_TAKEOVER,
    VELOCITY_SPIKE,
    REFUND_ABUSE,
    MERCHANT_BURST,
    GEO_JUMP,
    DEVICE_SWITCHING,
    DECLINE_RETRY,
];
const KINDS: [&str; 3] = ["AUTH", "CAPTURE", "REFUND"];
/// `kind` of an authorisation.
const AUTH: u8 = 0;
/// `kind` of a capture.
const CAPTURE: u8 = 1;
/// `kind` of a refund.
const REFUND: u8 = 2;
/// At most this many rows (with their captures and refunds) one scenario schedules: with
/// `drain-at-end`, no scenario starts once fewer rows than that are left.
const MAX_SCENARIO_ROWS: u64 = 3 * 40 + 8;

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
    /// [`AUTH`], [`CAPTURE`] or [`REFUND`].
    kind: u8,
    /// For a capture or a refund, the `payment_id` of its authorisation.
    auth: u64,
    /// For an authorisation: refunded this many milliseconds (of event time) later (0: never).
    refund_after_ms: u32,
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
    /// The scenarios `start_scenario` picks from (uniformly), in ascending order.
    scenarios: Vec<u8>,
    /// With `refund_abuse` among `scenarios`: the fraction of normal approved authorisations
    /// refunded (1 minute to 1 hour later), so refunds alone are no signal.
    refund_rate: f64,
    /// `drain-at-end`: a bounded stream of `limit` rows ends with every row scheduled so far.
    drain: bool,
    /// `number-of-rows` (`u64::MAX`: unbounded).
    limit: u64,
}

impl Config {
    fn refunds(&self) -> bool {
        self.scenarios.contains(&REFUND_ABUSE)
    }
}

/// The row model: normal traffic plus scheduled scenario events.
struct Model {
    config: Config,
    rng: Rng,
    /// The stream position: the event time of the next row is `start-time` + `index` events.
    index: u64,
    /// Rows generated so far (the last one's `payment_id`). Equal to `index` except after
    /// `drain-at-end` jumped ahead to a scheduled row.
    row: u64,
    seq: u64,
    pending: BinaryHeap<Scheduled>,
    /// Rows the pending ones will still schedule when they are emitted (captures, refunds).
    pending_followups: u64,
}

impl Model {
    fn new(config: Config) -> Model {
        Model {
            rng: Rng::new(config.seed),
            config,
            index: 0,
            row: 0,
            seq: 0,
            pending: BinaryHeap::new(),
            pending_followups: 0,
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

    /// How many rows emitting `p` will schedule (its capture, its refund).
    fn followups(&self, p: &Payment) -> u64 {
        let capture = self.config.captures && p.kind == AUTH && p.status == 0 && p.scenario != 0;
        u64::from(capture) + u64::from(p.kind == AUTH && p.refund_after_ms > 0)
    }

    fn schedule(&mut self, position: u64, payment: Payment) {
        self.pending_followups += self.followups(&payment);
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
            kind: AUTH,
            auth: 0,
            refund_after_ms: 0,
        }
    }

    /// Schedules the events of a new scenario starting at the current position.
    fn start_scenario(&mut self) {
        let Some(&kind) = self
            .config
            .scenarios
            .get(self.rng.below(self.config.scenarios.len() as u64) as usize)
        else {
            return;
        };
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
            kind: AUTH,
            auth: 0,
            refund_after_ms: 0,
        };
        let mut pos = self.index + 1;
        match kind {
            CARD_TESTING => {
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
            ACCOUNT_TAKEOVER => {
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
            VELOCITY_SPIKE => {
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
            REFUND_ABUSE => {
                // Refund abuse: 3–5 purchases 10 s to 1 min apart, each refunded 30 s to 3 min
                // after it (the refund is scheduled when the purchase is emitted: it needs its id).
                for _ in 0..3 + self.rng.below(3) {
                    let amount = (5_000.0 + self.rng.below(45_000) as f64) / 100.0;
                    let merchant = self.rng.below(self.config.merchants);
                    let refund_after_ms = 30_000 + self.rng.below(150_000) as u32;
                    self.schedule(
                        pos,
                        Payment {
                            merchant,
                            amount,
                            refund_after_ms,
                            ..base
                        },
                    );
                    pos += self.gap(10_000.0, 50_000);
                }
            }
            MERCHANT_BURST => {
                // Merchant burst: a small merchant (from the less popular half) suddenly takes
                // 20–40 payments from as many cards, 0.5 to 2.5 s apart.
                let m = self.config.merchants;
                let merchant = m / 2 + self.rng.below(m - m / 2);
                for _ in 0..20 + self.rng.below(21) {
                    let card = self.rng.below(self.config.cards);
                    let amount = (500.0 + self.rng.below(9_500) as f64) / 100.0;
                    let status = u8::from(self.rng.chance(0.1));
                    self.schedule(
                        pos,
                        Payment {
                            card,
                            device: self.home_device(card),
                            ip: self.home_ip(card),
                            country: self.home_country(card),
                            merchant,
                            amount,
                            status,
                            ..base
                        },
                    );
                    pos += self.gap(500.0, 2_000);
                }
            }
            GEO_JUMP => {
                // Geo jump: a card-present payment in the card's home country, then 2–3 more in
                // as many other countries, 1 to 5 minutes apart.
                let mut countries = vec![base.country];
                let jumps = 2 + self.rng.below(2) as usize;
                while countries.len() < 1 + jumps {
                    let c = self.rng.below(COUNTRIES.len() as u64) as u8;
                    if !countries.contains(&c) {
                        countries.push(c);
                    }
                }
                for country in countries {
                    let amount = self.amount();
                    self.schedule(
                        pos,
                        Payment {
                            country,
                            amount,
                            channel: 2,
                            ..base
                        },
                    );
                    pos += self.gap(60_000.0, 240_000);
                }
            }
            DEVICE_SWITCHING => {
                // Device switching: a payment from the card's home device, then 3–5 from as many
                // new devices (the home IP), 10 s to 1 min apart.
                let n = 3 + self.rng.below(3);
                for k in 0..=n {
                    let device = if k == 0 {
                        base.device
                    } else {
                        self.config.devices + self.rng.below(self.config.devices)
                    };
                    let amount = (2_000.0 + self.rng.below(28_000) as f64) / 100.0;
                    self.schedule(
                        pos,
                        Payment {
                            device,
                            amount,
                            channel: 1,
                            ..base
                        },
                    );
                    pos += self.gap(10_000.0, 50_000);
                }
            }
            _ => {
                // Decline then approve: 3–5 declined attempts of about the same amount at one
                // merchant 5 to 30 s apart, then an approved one 5 s to 1 min later.
                let amount = (10_000.0 + self.rng.below(90_000) as f64) / 100.0;
                let declines = 3 + self.rng.below(3);
                for _ in 0..declines {
                    let tried =
                        (amount * (0.9 + 0.2 * self.rng.next_f64()) * 100.0).round() / 100.0;
                    self.schedule(
                        pos,
                        Payment {
                            amount: tried,
                            status: 1,
                            ..base
                        },
                    );
                    pos += self.gap(5_000.0, 25_000);
                }
                pos += self.gap(0.0, 55_000);
                self.schedule(pos, Payment { amount, ..base });
            }
        }
    }

    /// Rows still to generate, this one included, when the stream is bounded.
    fn rows_left(&self) -> u64 {
        self.config.limit.saturating_sub(self.row)
    }

    /// Rows the pending ones need: themselves and what they will schedule.
    fn rows_reserved(&self) -> u64 {
        self.pending.len() as u64 + self.pending_followups
    }

    fn next(&mut self) -> Payment {
        // With `drain-at-end`, once only the scheduled rows (and a normal payment's capture
        // and refund) fit into what is left, no new payment starts: the scheduled ones
        // follow, the stream's time jumping ahead to each.
        let tail = self.config.drain && self.rows_left() < self.rows_reserved() + 3;
        let mut p = match self.pending.peek() {
            Some(s) if s.position <= self.index || tail => {
                let s = *s;
                self.pending.pop();
                self.pending_followups -= self.followups(&s.payment);
                self.index = self.index.max(s.position);
                s.payment
            }
            _ => {
                let mut p = self.normal();
                if tail {
                    // The last one or two rows: declined, so they need no capture.
                    p.status = 1;
                }
                p
            }
        };
        let i = self.index;
        let id = self.row + 1;
        let nominal = self.config.start_ms + (i as f64 * self.config.ms_per_event) as i64;
        p.ts = nominal;
        if self.config.max_delay_ms > 0 && self.rng.chance(self.config.late_fraction) {
            p.ts -= self.rng.range_i64(1, self.config.max_delay_ms);
        }
        if self.rng.chance(self.config.fraud_rate)
            && !(self.config.drain
                && self.rows_left() < self.rows_reserved() + 3 + MAX_SCENARIO_ROWS)
        {
            self.start_scenario();
        }
        if self.config.captures && p.kind == AUTH && p.status == 0 {
            if p.scenario == 0 && self.rng.chance(self.config.uncaptured_rate) {
                p.scenario = UNCAPTURED;
            } else {
                let at = i + self.gap(60_000.0, 240_000);
                self.schedule(
                    at,
                    Payment {
                        kind: CAPTURE,
                        auth: id,
                        refund_after_ms: 0,
                        ..p
                    },
                );
            }
        }
        if self.config.refunds() && p.kind == AUTH && p.status == 0 {
            let after = if p.refund_after_ms > 0 {
                Some(f64::from(p.refund_after_ms))
            } else if p.scenario == 0
                && self.rng.chance(self.config.refund_rate)
                && !(self.config.drain && self.rows_left() < self.rows_reserved() + 3)
            {
                Some(60_000.0 + self.rng.below(3_540_000) as f64)
            } else {
                None
            };
            if let Some(ms) = after {
                let at = i + self.positions(ms);
                self.schedule(
                    at,
                    Payment {
                        kind: REFUND,
                        auth: id,
                        refund_after_ms: 0,
                        ..p
                    },
                );
            }
        }
        self.index += 1;
        self.row += 1;
        p
    }
}

/// The `scenarios` option: `all`, `none`, or scenario names separated by commas (any order,
/// repeats ignored). Absent: the default three, so the stream is what it always was.
fn parse_scenarios(table: &str, value: Option<&String>) -> Result<Vec<u8>, RuntimeError> {
    let Some(value) = value else {
        return Ok(DEFAULT_SCENARIOS.to_vec());
    };
    let value = value.trim();
    if value.eq_ignore_ascii_case("all") {
        return Ok(ALL_SCENARIOS.to_vec());
    }
    let mut picked = Vec::new();
    if value.eq_ignore_ascii_case("none") {
        return Ok(picked);
    }
    for name in value.split(',').map(str::trim) {
        let id = ALL_SCENARIOS
            .iter()
            .copied()
            .find(|&id| SCENARIOS[usize::from(id)].eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let known: Vec<&str> = ALL_SCENARIOS
                    .iter()
                    .map(|&id| SCENARIOS[usize::from(id)])
                    .collect();
                let hint = if name.eq_ignore_ascii_case(SCENARIOS[usize::from(UNCAPTURED)]) {
                    " (authorisations without capture come with 'auth-capture' = 'true')"
                } else {
                    ""
                };
                RuntimeError::option(
                    table,
                    "scenarios",
                    format!(
                        "unknown scenario '{name}'{hint}; known: {}, or 'all' or 'none'",
                        known.join(", ")
                    ),
                )
            })?;
        if !picked.contains(&id) {
            picked.push(id);
        }
    }
    picked.sort_unstable();
    Ok(picked)
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
    /// Rows handed out so far (the checkpoint position).
    produced: u64,
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
        let limit = option_number(spec, "number-of-rows")?.unwrap_or(u64::MAX);
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
            scenarios: parse_scenarios(table, opts.get("scenarios"))?,
            refund_rate: fraction("refund-rate", 0.005)?,
            drain: option_bool(opts, table, "drain-at-end")?,
            limit,
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
            remaining: limit,
            produced: 0,
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
                let first = self.model.row - n as u64 + 1;
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
                let s = fixed(&SCENARIOS, &|p| {
                    usize::from(p.scenario).min(SCENARIOS.len() - 1)
                });
                s.finish((nulls.null_count() > 0).then_some(nulls))?
            }
            Col::Kind => fixed(&KINDS, &|p| usize::from(p.kind.min(REFUND))).finish(None)?,
            Col::AuthId => Arc::new(Int64Array::from_iter(
                rows.iter()
                    .map(|p| (p.kind != AUTH).then_some(p.auth as i64)),
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
                self.produced += n as u64;
                Ok(SourcePoll::Batch(self.generate(n)?))
            }
            Err(wake) => Ok(SourcePoll::Pending(wake)),
        }
    }

    fn position(&mut self) -> Result<SourcePosition, RuntimeError> {
        Ok(SourcePosition::Rows(self.produced))
    }

    /// The stream is a function of the options alone: resuming regenerates the rows already
    /// handed out and drops them.
    fn seek(&mut self, position: &SourcePosition) -> Result<(), RuntimeError> {
        let SourcePosition::Rows(n) = *position else {
            return Err(RuntimeError::connector(
                &self.table,
                "a checkpoint gives this generator a Kafka position",
            ));
        };
        let skip = n.min(self.remaining);
        for _ in 0..skip {
            self.model.next();
        }
        self.remaining -= skip;
        self.produced += skip;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
    use fsql_plan::DataType;

    use super::*;
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
        PaymentsSource::open(&spec, &open_options(max_rows, false))
    }

    fn drain(source: &mut PaymentsSource) -> Vec<RecordBatch> {
        drain_source(source, usize::MAX)
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

    /// One generated row, for the scenario tests.
    #[derive(Clone, Debug)]
    struct Row {
        id: i64,
        card: String,
        device: String,
        ip: String,
        merchant: String,
        country: String,
        amount: f64,
        status: String,
        channel: String,
        ts: i64,
        is_fraud: bool,
        scenario: Option<String>,
        kind: String,
        auth: Option<i64>,
    }

    fn generated(options: &[(&str, &str)]) -> Vec<Row> {
        let mut out = Vec::new();
        for b in drain(&mut open(options, &all_columns(), 4096).unwrap()) {
            let s = |i: usize| b.column(i).as_string::<i32>().clone();
            let (card, device, ip, merchant, country) = (s(1), s(2), s(3), s(4), s(6));
            let (status, channel, scenario, kind) = (s(9), s(10), s(13), s(14));
            let id = b.column(0).as_primitive::<Int64Type>();
            let amount = b.column(7).as_primitive::<Float64Type>();
            let ts = b.column(11).as_primitive::<TimestampMillisecondType>();
            let is_fraud = b.column(12).as_boolean();
            let auth = b.column(15).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                out.push(Row {
                    id: id.value(r),
                    card: card.value(r).to_string(),
                    device: device.value(r).to_string(),
                    ip: ip.value(r).to_string(),
                    merchant: merchant.value(r).to_string(),
                    country: country.value(r).to_string(),
                    amount: amount.value(r),
                    status: status.value(r).to_string(),
                    channel: channel.value(r).to_string(),
                    ts: ts.value(r),
                    is_fraud: is_fraud.value(r),
                    scenario: scenario.is_valid(r).then(|| scenario.value(r).to_string()),
                    kind: kind.value(r).to_string(),
                    auth: auth.is_valid(r).then(|| auth.value(r)),
                });
            }
        }
        out
    }

    /// The authorisations of `scenario`, grouped by `key` (card or merchant), in stream order.
    fn instances<'a>(
        rows: &'a [Row],
        scenario: &str,
        key: fn(&Row) -> &str,
    ) -> HashMap<String, Vec<&'a Row>> {
        let mut by_key: HashMap<String, Vec<&Row>> = HashMap::new();
        for r in rows {
            if r.kind == "AUTH" && r.scenario.as_deref() == Some(scenario) {
                by_key.entry(key(r).to_string()).or_default().push(r);
            }
        }
        by_key
    }

    #[test]
    fn the_default_scenarios_spelled_out_give_the_default_stream() {
        let base = [
            ("number-of-rows", "20000"),
            ("fraud-rate", "0.02"),
            ("cards", "2000"),
        ];
        let default = rows(&drain(&mut open(&base, &all_columns(), 1024).unwrap()));
        let spelled = [
            base[0],
            base[1],
            base[2],
            (
                "scenarios",
                " velocity_spike,CARD_TESTING , account_takeover,card_testing",
            ),
        ];
        let spelled = rows(&drain(&mut open(&spelled, &all_columns(), 1024).unwrap()));
        assert_eq!(default, spelled);
        assert!(default.iter().all(|r| r.contains(r#""kind":"AUTH""#)));
        // refund-rate and drain-at-end change nothing unless refunds or a bound need them.
        let more = [base[0], base[1], base[2], ("refund-rate", "0.5")];
        assert_eq!(
            default,
            rows(&drain(&mut open(&more, &all_columns(), 1024).unwrap()))
        );
    }

    #[test]
    fn unknown_scenarios_are_refused_naming_the_known_ones() {
        let err = open(
            &[("scenarios", "card_testing,phishing")],
            &all_columns(),
            1024,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("unknown scenario 'phishing'") && err.contains("decline_retry, or 'all'"),
            "{err}"
        );
        let err = open(
            &[("scenarios", "auth_without_capture")],
            &all_columns(),
            1024,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("'auth-capture' = 'true'"), "{err}");
        let none = generated(&[("scenarios", "none"), ("number-of-rows", "20000")]);
        assert!(none.iter().all(|r| r.scenario.is_none()));
    }

    #[test]
    fn the_new_scenarios_are_labelled_and_shaped() {
        let rows = generated(&[
            ("number-of-rows", "300000"),
            ("fraud-rate", "0.01"),
            ("scenarios", "all"),
            ("auth-capture", "true"),
            ("drain-at-end", "true"),
        ]);
        assert_eq!(rows.len(), 300_000);
        let by_id: HashMap<i64, &Row> = rows.iter().map(|r| (r.id, r)).collect();
        for r in &rows {
            let fraud =
                r.scenario.is_some() && r.scenario.as_deref() != Some("auth_without_capture");
            assert_eq!(r.is_fraud, fraud, "{r:?}");
        }
        fn card(r: &Row) -> &str {
            &r.card
        }
        fn merchant(r: &Row) -> &str {
            &r.merchant
        }
        let span = |rs: &[&Row]| rs.last().map_or(0, |l| l.ts) - rs[0].ts;

        // Refund abuse: 3–5 approved purchases, each refunded 30 s to 3 min later on the card.
        let abuse = instances(&rows, "refund_abuse", card);
        assert!(abuse.len() > 100, "{}", abuse.len());
        let (mut genuine_refunds, mut abusive_refunds) = (0, 0);
        for r in rows.iter().filter(|r| r.kind == "REFUND") {
            let purchase = by_id[&r.auth.unwrap()];
            assert_eq!(
                (
                    purchase.kind.as_str(),
                    purchase.status.as_str(),
                    &purchase.card
                ),
                ("AUTH", "APPROVED", &r.card)
            );
            assert_eq!(
                (&purchase.scenario, purchase.amount),
                (&r.scenario, r.amount)
            );
            let delay = r.ts - purchase.ts;
            if r.scenario.is_some() {
                abusive_refunds += 1;
                assert!((30_000..=181_000).contains(&delay), "{delay}");
            } else {
                genuine_refunds += 1;
                assert!((60_000..=3_601_000).contains(&delay), "{delay}");
            }
        }
        let purchases: usize = abuse.values().map(Vec::len).sum();
        assert_eq!(abusive_refunds, purchases);
        assert!(genuine_refunds > 200, "{genuine_refunds}");
        for p in abuse.values() {
            assert!(p.iter().all(|r| (50.0..=500.0).contains(&r.amount)));
            assert!(p.len() >= 3, "{p:?}");
        }

        // Merchant burst: 20–40 payments from as many cards within 100 s.
        let bursts = instances(&rows, "merchant_burst", merchant);
        assert!(bursts.len() > 100, "{}", bursts.len());
        for b in bursts.values().filter(|b| b.len() <= 40) {
            assert!(b.len() >= 20, "{}", b.len());
            assert!(span(b) <= 100_000, "{}", span(b));
            let cards: std::collections::HashSet<&str> =
                b.iter().map(|r| r.card.as_str()).collect();
            assert!(cards.len() + 2 >= b.len());
        }

        // Geo jump: 3–4 card-present payments, each in another country, the first at home,
        // 1 to 5 minutes apart.
        let jumps = instances(&rows, "geo_jump", card);
        assert!(jumps.len() > 100, "{}", jumps.len());
        for j in jumps.values().filter(|j| j.len() <= 4) {
            assert!(j.len() >= 3);
            let countries: std::collections::HashSet<&str> =
                j.iter().map(|r| r.country.as_str()).collect();
            assert_eq!(countries.len(), j.len(), "{j:?}");
            assert!(j.iter().all(|r| r.channel == "pos"));
            for w in j.windows(2) {
                assert!((60_000..=301_000).contains(&(w[1].ts - w[0].ts)), "{w:?}");
            }
        }

        // Device switching: the home device, then 3–5 new ones, same IP, within 5 minutes.
        let switching = instances(&rows, "device_switching", card);
        assert!(switching.len() > 100, "{}", switching.len());
        for d in switching.values().filter(|d| d.len() <= 6) {
            let devices: std::collections::HashSet<&str> =
                d.iter().map(|r| r.device.as_str()).collect();
            assert!(devices.len() >= 4 && devices.len() == d.len(), "{d:?}");
            assert!(d.iter().all(|r| r.ip == d[0].ip));
            assert!(span(d) <= 5 * 61_000, "{}", span(d));
        }

        // Decline then approve: 3–5 declines, then an approval, at one merchant within 3.5 minutes.
        let retries = instances(&rows, "decline_retry", card);
        assert!(retries.len() > 100, "{}", retries.len());
        for d in retries.values().filter(|d| d.len() <= 6) {
            let (last, declines) = d.split_last().unwrap();
            assert!(declines.len() >= 3 && declines.iter().all(|r| r.status == "DECLINED"));
            assert_eq!(last.status, "APPROVED");
            assert!(d.iter().all(|r| r.merchant == last.merchant));
            assert!(span(d) <= 211_000, "{}", span(d));
        }

        // drain-at-end: every approved authorisation is captured except the injected ones.
        let captured: std::collections::HashSet<i64> = rows
            .iter()
            .filter(|r| r.kind == "CAPTURE")
            .map(|r| r.auth.unwrap())
            .collect();
        for r in rows
            .iter()
            .filter(|r| r.kind == "AUTH" && r.status == "APPROVED")
        {
            let uncaptured = r.scenario.as_deref() == Some("auth_without_capture");
            assert_eq!(captured.contains(&r.id), !uncaptured, "{r:?}");
        }
        assert!(rows.iter().enumerate().all(|(i, r)| r.id == i as i64 + 1));
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
