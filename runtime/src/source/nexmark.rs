//! `nexmark`: the Nexmark benchmark's event generator (the one of Apache Beam's Nexmark suite and
//! of the `nexmark` connector of github.com/nexmark/nexmark for Flink), so the Nexmark queries run on
//! fsql over the same kind of data as on Flink.
//!
//! The generator produces one sequence of events, numbered 0, 1, 2, ...: in each group of
//! `person.proportion + auction.proportion + bid.proportion` (1 + 3 + 46 = 50) consecutive events
//! the first are new persons, the next new auctions and the rest bids. Event `n` happens at
//! `start-time + n × 1,000,000 / first-event.rate` microseconds (truncated to milliseconds), so
//! event time advances by the inter-event delay whatever the wall clock does. As in Nexmark:
//!
//! * person and auction ids count from 1000 in event order; a new auction's seller and a bid's
//!   bidder are "hot" persons (the first or second person of the latest block of 100) with
//!   probability `1 − 1/hot-ratio`, otherwise one of the last 1000 persons or up to 10 ahead;
//! * a bid's auction is the first auction of the latest block of 100 with probability
//!   `1 − 1/bid.hot-ratio.auctions`, otherwise one of the last 100 auctions or up to 10 ahead;
//! * prices are `round(10^(6u) × 100)` for a uniform `u` (1 ... 100,000,000 cents);
//! * categories are 10 ... 14, states six US states, cities ten US cities;
//! * an auction expires 1 ms to about twice the time until the 100th auction after it;
//! * a bid's channel is one of four hot channels (`Google`, `Facebook`, `Baidu`, `Apple`) with
//!   probability 1/2, otherwise `channel-N` for N < 10,000, with a URL of its own that ends in
//!   `&channel_id=<N bit-reversed>` for 9 channels in 10;
//! * `extra` pads each event to an average size (`person.avg-size` 200, `auction.avg-size` 500,
//!   `bid.avg-size` 100 bytes).
//!
//! fsql has no `ROW` columns in connectors, so instead of Flink's single `datagen` table (an
//! `event_type` and one `ROW` per kind, read through the views `person`, `auction` and `bid`), a
//! table reads one kind of event, picked by `'nexmark.table'`, with the flat columns of Flink's
//! view of that name (any subset, any order, matched case-insensitively; a declared type the
//! natural one can be cast to is accepted):
//!
//! | `nexmark.table` | columns |
//! |---|---|
//! | `person` | `id`, `name`, `emailAddress`, `creditCard`, `city`, `state`, `dateTime`, `extra` |
//! | `auction` | `id`, `itemName`, `description`, `initialBid`, `reserve`, `dateTime`, `expires` (TIMESTAMP(3)), `seller`, `category`, `extra` |
//! | `bid` | `auction`, `bidder`, `price`, `channel`, `url`, `dateTime`, `extra` |
//!
//! Ids, `seller`, `bidder`, prices and `category` are BIGINT, `dateTime` and `expires` TIMESTAMP(3),
//! the others STRING. Each event's values come from a random generator
//! seeded by `seed` and the event's number alone, so the three tables of one `seed` (and the same
//! other options) are views of one event sequence — bids name auctions and persons the other
//! tables hold, and joins match — whatever the batch size and whichever columns are declared.
//! Unlike Flink's connector the stream is deterministic (Flink's uses an unseeded random generator
//! and the wall clock as its start time), and the random numbers are fsql's (wyrand), not Java's, so
//! the values differ from Flink's while following the same distributions.
//!
//! Options: `nexmark.table` (required), `events.num` (events of all three kinds to generate; `0`,
//! the default, is unbounded), `first-event.rate` (10000 events per second of event time),
//! `next-event.rate` (accepted when equal to `first-event.rate`: one rate only),
//! `rows-per-second` (wall-clock throttle of this table's rows; none by default, and
//! `fsql run --unthrottled` ignores it), `seed` (0), `start-time` (`'2024-01-01 00:00:00'`),
//! `person.proportion` (1), `auction.proportion` (3), `bid.proportion` (46),
//! `auction.hot-ratio.sellers` (4), `bid.hot-ratio.auctions` (2), `bid.hot-ratio.bidders` (4),
//! `person.avg-size` (`200b`), `auction.avg-size` (`500b`), `bid.avg-size` (`100b`).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, StringBuilder};
use arrow::datatypes::{DataType as ArrowType, SchemaRef, TimeUnit};
use fsql_plan::SourceSpec;

use super::rng::{Rng, mix};
use super::{
    OpenOptions, Source, SourceContext, SourcePoll, Throttle, option_number, runtime_schema,
};
use crate::checkpoint::SourcePosition;
use crate::error::RuntimeError;
use crate::text;

/// Person and auction ids start here (Nexmark's `FIRST_PERSON_ID`, `FIRST_AUCTION_ID`), so that
/// queries on small data still find matches.
const FIRST_ID: i64 = 1000;
/// The first category id (`FIRST_CATEGORY_ID`); there are [`CATEGORIES`] of them.
const FIRST_CATEGORY: i64 = 10;
const CATEGORIES: u64 = 5;
/// Ids a random person or auction may be ahead of the latest one (`PERSON_ID_LEAD`,
/// `AUCTION_ID_LEAD`).
const ID_LEAD: u64 = 10;
/// Hot sellers, bidders and auctions are the first of each block of this many (`HOT_*_RATIO`).
const HOT_BLOCK: i64 = 100;
/// Persons a non-hot seller or bidder is drawn from (`numActivePeople`).
const ACTIVE_PEOPLE: i64 = 1000;
/// Auctions a non-hot bid is drawn from (`numInFlightAuctions`).
const IN_FLIGHT_AUCTIONS: i64 = 100;
/// Bid channels besides the hot ones (`CHANNELS_NUMBER`).
const CHANNELS: u64 = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// Which kind of event a table reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Person,
    Auction,
    Bid,
}

/// A column's value class: BIGINT, STRING, or TIMESTAMP(3) (held as epoch milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Int,
    Str,
    Ts,
}

impl Class {
    fn natural_type(self) -> ArrowType {
        match self {
            Class::Int => ArrowType::Int64,
            Class::Str => ArrowType::Utf8,
            Class::Ts => ArrowType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}

const PERSON_COLUMNS: [(&str, Class); 8] = [
    ("id", Class::Int),
    ("name", Class::Str),
    ("emailAddress", Class::Str),
    ("creditCard", Class::Str),
    ("city", Class::Str),
    ("state", Class::Str),
    ("dateTime", Class::Ts),
    ("extra", Class::Str),
];
const AUCTION_COLUMNS: [(&str, Class); 10] = [
    ("id", Class::Int),
    ("itemName", Class::Str),
    ("description", Class::Str),
    ("initialBid", Class::Int),
    ("reserve", Class::Int),
    ("dateTime", Class::Ts),
    ("expires", Class::Ts),
    ("seller", Class::Int),
    ("category", Class::Int),
    ("extra", Class::Str),
];
const BID_COLUMNS: [(&str, Class); 7] = [
    ("auction", Class::Int),
    ("bidder", Class::Int),
    ("price", Class::Int),
    ("channel", Class::Str),
    ("url", Class::Str),
    ("dateTime", Class::Ts),
    ("extra", Class::Str),
];

impl Kind {
    fn columns(self) -> &'static [(&'static str, Class)] {
        match self {
            Kind::Person => &PERSON_COLUMNS,
            Kind::Auction => &AUCTION_COLUMNS,
            Kind::Bid => &BID_COLUMNS,
        }
    }
}

/// The generator's parameters (Nexmark's `NexmarkConfiguration`, the parts fsql implements).
#[derive(Clone, Debug)]
struct Config {
    seed: u64,
    /// Events per group of each kind, and the group size.
    persons: u64,
    auctions: u64,
    total: u64,
    /// Microseconds of event time between consecutive events.
    delay_us: f64,
    start_ms: i64,
    hot_sellers: u64,
    hot_auctions: u64,
    hot_bidders: u64,
    person_size: usize,
    auction_size: usize,
    bid_size: usize,
}

impl Config {
    /// The event time of event `n`, in epoch milliseconds (`timestampForEvent`).
    fn timestamp(&self, n: u64) -> i64 {
        self.start_ms
            .saturating_add((n as f64 * self.delay_us) as i64 / 1000)
    }

    /// The latest person id (base 0) at event `n`: the new one's for a person event.
    fn last_person(&self, n: u64) -> i64 {
        let (epoch, offset) = (n / self.total, n % self.total);
        (epoch * self.persons + offset.min(self.persons - 1)) as i64
    }

    /// The latest auction id (base 0) at event `n`: the new one's for an auction event, and -1
    /// before the first auction.
    fn last_auction(&self, n: u64) -> i64 {
        let (epoch, offset) = ((n / self.total) as i64, n % self.total);
        let auctions = self.auctions as i64;
        if offset < self.persons {
            epoch * auctions - 1
        } else if offset >= self.persons + self.auctions {
            epoch * auctions + auctions - 1
        } else {
            epoch * auctions + (offset - self.persons) as i64
        }
    }

    /// A random seller or bidder (base 0): one of the last [`ACTIVE_PEOPLE`] persons, or up to
    /// [`ID_LEAD`] ids ahead of the latest.
    fn random_person(&self, n: u64, rng: &mut Rng) -> i64 {
        let people = self.last_person(n) + 1;
        let active = people.min(ACTIVE_PEOPLE);
        people - active + rng.below(active as u64 + ID_LEAD) as i64
    }

    /// A random auction (base 0): one of the last [`IN_FLIGHT_AUCTIONS`] auctions, or up to
    /// [`ID_LEAD`] ahead.
    fn random_auction(&self, n: u64, rng: &mut Rng) -> i64 {
        let max = self.last_auction(n);
        let min = (max - IN_FLIGHT_AUCTIONS).max(0);
        min + rng.below((max - min + 1).max(0) as u64 + ID_LEAD) as i64
    }

    /// `kind`'s first offset in a group and its events per group.
    fn slot(&self, kind: Kind) -> (u64, u64) {
        match kind {
            Kind::Person => (0, self.persons),
            Kind::Auction => (self.persons, self.auctions),
            Kind::Bid => (
                self.persons + self.auctions,
                self.total - self.persons - self.auctions,
            ),
        }
    }

    /// The event number of `kind`'s `k`-th event (from 0), or `None` past `u64`.
    fn event_of(&self, kind: Kind, k: u64) -> Option<u64> {
        let (first, per) = self.slot(kind);
        (k / per)
            .checked_mul(self.total)?
            .checked_add(first + k % per)
    }

    /// How many of the first `events` events are of `kind`.
    fn count_of(&self, kind: Kind, events: u64) -> u64 {
        let (first, per) = self.slot(kind);
        (events / self.total) * per + (events % self.total).saturating_sub(first).min(per)
    }
}

/// The `nexmark` source: one kind of event, generated from the event sequence.
pub struct NexmarkSource {
    table: String,
    schema: SchemaRef,
    kind: Kind,
    config: Config,
    /// The declared columns: the index of each in `kind`'s columns, and its declared type.
    columns: Vec<(usize, ArrowType)>,
    throttle: Throttle,
    /// The next row of this kind (from 0; the checkpoint position) and how many there are.
    next: u64,
    rows: u64,
}

impl NexmarkSource {
    /// Validates the declared columns and the options.
    pub fn open(spec: &SourceSpec, options: &OpenOptions) -> Result<NexmarkSource, RuntimeError> {
        let table = &spec.table;
        let opts = &spec.connector.options;
        let kind = match opts.get("nexmark.table").map(|v| v.trim()) {
            Some("person") => Kind::Person,
            Some("auction") => Kind::Auction,
            Some("bid") => Kind::Bid,
            Some(other) => {
                return Err(RuntimeError::option(
                    table,
                    "nexmark.table",
                    format!("'{other}' is not 'person', 'auction' or 'bid'"),
                ));
            }
            None => {
                return Err(RuntimeError::option(
                    table,
                    "nexmark.table",
                    "required: the kind of event the table reads, 'person', 'auction' or 'bid'",
                ));
            }
        };
        let known = kind.columns();
        let mut columns = Vec::new();
        for f in &spec.physical.fields {
            let Some(i) = known
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(&f.name))
            else {
                let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                return Err(RuntimeError::connector(
                    table,
                    format!(
                        "nexmark table '{}' has no column `{}` (known: {})",
                        kind_name(kind),
                        f.name,
                        names.join(", ")
                    ),
                ));
            };
            let natural = known[i].1.natural_type();
            let target = f.data_type.to_arrow();
            if target != natural && !arrow::compute::can_cast_types(&natural, &target) {
                return Err(RuntimeError::connector(
                    table,
                    format!(
                        "nexmark column `{}` cannot be produced as {}",
                        f.name, f.data_type
                    ),
                ));
            }
            columns.push((i, target));
        }
        let at_least_one = |key: &str, default: u64| -> Result<u64, RuntimeError> {
            match option_number::<u64>(spec, key)?.unwrap_or(default) {
                0 => Err(RuntimeError::option(table, key, "must be at least 1")),
                v if v > 1_000_000 => {
                    Err(RuntimeError::option(table, key, "must be at most 1000000"))
                }
                v => Ok(v),
            }
        };
        let persons = at_least_one("person.proportion", 1)?;
        let auctions = at_least_one("auction.proportion", 3)?;
        let bids = at_least_one("bid.proportion", 46)?;
        let rate = option_number::<f64>(spec, "first-event.rate")?.unwrap_or(10_000.0);
        if !(rate.is_finite() && rate > 0.0) {
            return Err(RuntimeError::option(
                table,
                "first-event.rate",
                "must be a positive number of events per second",
            ));
        }
        if let Some(next) = option_number::<f64>(spec, "next-event.rate")?
            && next != rate
        {
            return Err(RuntimeError::option(
                table,
                "next-event.rate",
                "must equal 'first-event.rate': fsql's generator has one rate (no rate shape)",
            ));
        }
        let start_ms = match opts.get("start-time") {
            None => 1_704_067_200_000,
            Some(t) => text::parse_timestamp_in(t, TimeUnit::Millisecond).ok_or_else(|| {
                RuntimeError::option(table, "start-time", format!("'{t}' is not a timestamp"))
            })?,
        };
        let size = |key: &str, default: usize| -> Result<usize, RuntimeError> {
            opts.get(key)
                .map_or(Ok(default), |v| parse_bytes(v))
                .map_err(|e| RuntimeError::option(table, key, e))
        };
        let config = Config {
            seed: option_number(spec, "seed")?.unwrap_or(0),
            persons,
            auctions,
            total: persons + auctions + bids,
            delay_us: 1_000_000.0 / rate,
            start_ms,
            hot_sellers: at_least_one("auction.hot-ratio.sellers", 4)?,
            hot_auctions: at_least_one("bid.hot-ratio.auctions", 2)?,
            hot_bidders: at_least_one("bid.hot-ratio.bidders", 4)?,
            person_size: size("person.avg-size", 200)?,
            auction_size: size("auction.avg-size", 500)?,
            bid_size: size("bid.avg-size", 100)?,
        };
        let rows = match option_number::<u64>(spec, "events.num")?.unwrap_or(0) {
            0 => u64::MAX,
            events => config.count_of(kind, events),
        };
        let throttle_rate = option_number::<f64>(spec, "rows-per-second")?
            .filter(|r| *r > 0.0 && !options.unthrottled);
        Ok(NexmarkSource {
            table: table.clone(),
            schema: runtime_schema(&spec.physical),
            kind,
            config,
            columns,
            throttle: Throttle::new(throttle_rate, options.batch),
            next: 0,
            rows,
        })
    }

    /// The next `n` rows as a batch of the declared columns.
    fn generate(&mut self, n: usize) -> Result<RecordBatch, RuntimeError> {
        let known = self.kind.columns();
        let mut out = Columns::new(known, &self.columns, n);
        for k in self.next..self.next + n as u64 {
            let Some(event) = self.config.event_of(self.kind, k) else {
                return Err(RuntimeError::connector(
                    &self.table,
                    "the event number overflowed 64 bits",
                ));
            };
            let mut rng = Rng::new(mix(self.config.seed ^ mix(event)));
            match self.kind {
                Kind::Person => person(&self.config, event, &mut rng, &mut out),
                Kind::Auction => auction(&self.config, event, &mut rng, &mut out),
                Kind::Bid => bid(&self.config, event, &mut rng, &mut out),
            }
        }
        self.next += n as u64;
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (i, target) in &self.columns {
            let a = out
                .finish(*i, known[*i].1)
                .map_err(|e| RuntimeError::arrow(&self.table, e))?;
            arrays.push(if a.data_type() == target {
                a
            } else {
                arrow::compute::cast(&a, target).map_err(|e| RuntimeError::arrow(&self.table, e))?
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| RuntimeError::arrow(&self.table, e))
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Person => "person",
        Kind::Auction => "auction",
        Kind::Bid => "bid",
    }
}

/// Parses a byte size as Flink's `MemorySize` writes small ones: `200`, `200b`, `200 bytes`,
/// `1kb`, `1k`.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let scale = match unit.trim() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kibibytes" => 1024,
        _ => {
            return Err(format!(
                "'{text}' is not a size in bytes (e.g. '100b', '1kb')"
            ));
        }
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n <= 1 << 20)
        .ok_or_else(|| format!("'{text}' is not a size in bytes of at most 1 MiB"))
}

/// The values of one batch, column by column; only declared columns are kept.
struct Columns {
    ints: Vec<Option<Vec<i64>>>,
    strs: Vec<Option<StringBuilder>>,
    /// The column being written next (values are pushed in the kind's column order).
    at: usize,
}

impl Columns {
    fn new(known: &[(&str, Class)], declared: &[(usize, ArrowType)], rows: usize) -> Columns {
        let wanted = |i: usize| declared.iter().any(|(j, _)| *j == i);
        Columns {
            ints: (0..known.len())
                .map(|i| (wanted(i) && known[i].1 != Class::Str).then(|| Vec::with_capacity(rows)))
                .collect(),
            strs: (0..known.len())
                .map(|i| {
                    (wanted(i) && known[i].1 == Class::Str)
                        .then(|| StringBuilder::with_capacity(rows, rows * 16))
                })
                .collect(),
            at: 0,
        }
    }

    fn int(&mut self, v: i64) {
        if let Some(c) = &mut self.ints[self.at] {
            c.push(v);
        }
        self.at += 1;
    }

    fn str(&mut self, v: &str) {
        if let Some(c) = &mut self.strs[self.at] {
            c.append_value(v);
        }
        self.at += 1;
    }

    /// Ends a row.
    fn end(&mut self) {
        self.at = 0;
    }

    fn finish(&mut self, i: usize, class: Class) -> Result<ArrayRef, arrow::error::ArrowError> {
        Ok(match class {
            Class::Str => Arc::new(self.strs[i].take().unwrap_or_default().finish()),
            Class::Int => Arc::new(Int64Array::from(self.ints[i].take().unwrap_or_default())),
            Class::Ts => {
                let ms: ArrayRef =
                    Arc::new(Int64Array::from(self.ints[i].take().unwrap_or_default()));
                arrow::compute::cast(&ms, &class.natural_type())?
            }
        })
    }
}

/// A price in cents: `round(10^(6u) × 100)`, 100 ... 100,000,000.
fn price(rng: &mut Rng) -> i64 {
    (10f64.powf(rng.next_f64() * 6.0) * 100.0).round() as i64
}

/// A random string of 3 to `max_len − 1` characters, lowercase letters with `special` (1 in 13),
/// leading and trailing spaces trimmed (`nextString`).
fn random_string(rng: &mut Rng, max_len: u64, special: char, out: &mut String) {
    out.clear();
    let len = 3 + rng.below(max_len - 3);
    for _ in 0..len {
        if rng.below(13) == 0 {
            out.push(special);
        } else {
            out.push(char::from(b'a' + rng.below(26) as u8));
        }
    }
    let trimmed = out.trim_matches(' ').len();
    if trimmed != out.len() {
        *out = out.trim_matches(' ').to_string();
    }
}

/// Padding so that `current` + its length is `average` on average (±20 %), lowercase letters
/// (`nextExtra`).
fn extra(rng: &mut Rng, current: usize, average: usize, out: &mut String) {
    out.clear();
    if current > average {
        return;
    }
    let rest = average - current;
    let delta = (rest as f64 * 0.2).round() as u64;
    let len = (rest as u64 - delta) + if delta == 0 { 0 } else { rng.below(2 * delta) };
    let mut bits = 0u64;
    let mut left = 0;
    for _ in 0..len {
        // 13 letters per 64 random bits (26^13 < 2^64).
        if left == 0 {
            bits = rng.next_u64();
            left = 13;
        }
        out.push(char::from(b'a' + (bits % 26) as u8));
        bits /= 26;
        left -= 1;
    }
}

/// A new person (`nextPerson`).
fn person(config: &Config, n: u64, rng: &mut Rng, out: &mut Columns) {
    let mut scratch = String::new();
    out.int(config.last_person(n) + FIRST_ID);
    let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
    let name = format!("{first} {last}");
    out.str(&name);
    random_string(rng, 7, ' ', &mut scratch);
    let mut email = std::mem::take(&mut scratch);
    email.push('@');
    random_string(rng, 5, ' ', &mut scratch);
    email.push_str(&scratch);
    email.push_str(".com");
    out.str(&email);
    let card = (0..4)
        .map(|_| format!("{:04}", rng.below(10_000)))
        .collect::<Vec<_>>()
        .join(" ");
    out.str(&card);
    let city = US_CITIES[rng.below(US_CITIES.len() as u64) as usize];
    out.str(city);
    let state = US_STATES[rng.below(US_STATES.len() as u64) as usize];
    out.str(state);
    out.int(config.timestamp(n));
    let size = 8 + name.len() + email.len() + card.len() + city.len() + state.len();
    extra(rng, size, config.person_size, &mut scratch);
    out.str(&scratch);
    out.end();
}

/// A new auction (`nextAuction`).
fn auction(config: &Config, n: u64, rng: &mut Rng, out: &mut Columns) {
    let mut name = String::new();
    let mut description = String::new();
    let mut pad = String::new();
    let timestamp = config.timestamp(n);
    let seller = if rng.below(config.hot_sellers) > 0 {
        config.last_person(n) / HOT_BLOCK * HOT_BLOCK
    } else {
        config.random_person(n, rng)
    };
    let category = FIRST_CATEGORY + rng.below(CATEGORIES) as i64;
    let initial = price(rng);
    // On average twice the time until the auction IN_FLIGHT_AUCTIONS auctions later.
    let ahead = IN_FLIGHT_AUCTIONS as u64 * config.total / config.auctions;
    let horizon = config.timestamp(n.saturating_add(ahead)) - timestamp;
    let expires = timestamp + 1 + rng.below((horizon * 2).max(1) as u64) as i64;
    random_string(rng, 20, ' ', &mut name);
    random_string(rng, 100, ' ', &mut description);
    let reserve = initial + price(rng);
    extra(
        rng,
        8 + name.len() + description.len() + 40,
        config.auction_size,
        &mut pad,
    );
    out.int(config.last_auction(n) + FIRST_ID);
    out.str(&name);
    out.str(&description);
    out.int(initial);
    out.int(reserve);
    out.int(timestamp);
    out.int(expires);
    out.int(seller + FIRST_ID);
    out.int(category);
    out.str(&pad);
    out.end();
}

/// A bid (`nextBid`).
fn bid(config: &Config, n: u64, rng: &mut Rng, out: &mut Columns) {
    let auction = if rng.below(config.hot_auctions) > 0 {
        config.last_auction(n) / HOT_BLOCK * HOT_BLOCK
    } else {
        config.random_auction(n, rng)
    };
    let bidder = if rng.below(config.hot_bidders) > 0 {
        config.last_person(n) / HOT_BLOCK * HOT_BLOCK + 1
    } else {
        config.random_person(n, rng)
    };
    out.int(auction + FIRST_ID);
    out.int(bidder + FIRST_ID);
    out.int(price(rng));
    let mut url = String::new();
    if rng.below(2) > 0 {
        let hot = rng.below(HOT_CHANNELS.len() as u64);
        out.str(HOT_CHANNELS[hot as usize]);
        channel_url(config.seed, CHANNELS + hot, false, &mut url);
    } else {
        let channel = rng.below(CHANNELS);
        out.str(&format!("channel-{channel}"));
        channel_url(config.seed, channel, true, &mut url);
    }
    out.str(&url);
    out.int(config.timestamp(n));
    let mut pad = String::new();
    extra(rng, 32, config.bid_size, &mut pad);
    out.str(&pad);
    out.end();
}

/// Channel `channel`'s URL: `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1`, a function of
/// the seed and the channel (Nexmark keeps one per channel in a cache), with
/// `&channel_id=<the channel's bits reversed>` for 9 in 10 numbered channels.
fn channel_url(seed: u64, channel: u64, numbered: bool, out: &mut String) {
    let mut rng = Rng::new(mix(
        seed.rotate_left(17) ^ mix(channel ^ 0x6e65_786d_6172_6b00)
    ));
    let mut part = String::new();
    out.clear();
    out.push_str("https://www.nexmark.com/");
    for _ in 0..3 {
        random_string(&mut rng, 5, '_', &mut part);
        out.push_str(&part);
        out.push('/');
    }
    out.push_str("item.htm?query=1");
    if numbered && rng.below(10) > 0 {
        out.push_str("&channel_id=");
        out.push_str(&(channel as i32).reverse_bits().unsigned_abs().to_string());
    }
}

impl Source for NexmarkSource {
    fn poll(&mut self, ctx: &mut SourceContext<'_>) -> Result<SourcePoll, RuntimeError> {
        let remaining = self.rows - self.next;
        if remaining == 0 {
            return Ok(SourcePoll::End);
        }
        match self.throttle.next(ctx.now, remaining) {
            Ok(n) => Ok(SourcePoll::Batch(self.generate(n)?)),
            Err(wake) => Ok(SourcePoll::Pending(wake)),
        }
    }

    fn position(&mut self) -> Result<SourcePosition, RuntimeError> {
        Ok(SourcePosition::Rows(self.next))
    }

    /// Every row is a function of its number: resuming just starts at the next one.
    fn seek(&mut self, position: &SourcePosition) -> Result<(), RuntimeError> {
        let SourcePosition::Rows(n) = *position else {
            return Err(RuntimeError::connector(
                &self.table,
                "a checkpoint gives this generator a Kafka position",
            ));
        };
        self.next = n.min(self.rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::time::Instant;

    use fsql_plan::DataType;
    use serde_json::Value;

    use super::*;
    use crate::testkit::*;

    fn fields(kind: Kind) -> Vec<(&'static str, DataType)> {
        kind.columns()
            .iter()
            .map(|(n, c)| {
                let t = match c {
                    Class::Int => DataType::BigInt,
                    Class::Str => DataType::String,
                    Class::Ts => DataType::Timestamp { precision: 3 },
                };
                (*n, t)
            })
            .collect()
    }

    fn open_with(
        options: &[(&str, &str)],
        fields: &[(&str, DataType)],
        max_rows: usize,
    ) -> Result<NexmarkSource, RuntimeError> {
        let spec = source_spec("t", connector("nexmark", options, ""), schema(fields));
        NexmarkSource::open(&spec, &open_options(max_rows, false))
    }

    fn drain(source: &mut NexmarkSource) -> Vec<RecordBatch> {
        drain_source(source, usize::MAX)
    }

    /// Every row of `table` among the first `events` events (seed 7), as JSON objects.
    fn table(kind: &str, events: &str) -> Vec<serde_json::Map<String, Value>> {
        let k = match kind {
            "person" => Kind::Person,
            "auction" => Kind::Auction,
            _ => Kind::Bid,
        };
        let opts = [
            ("nexmark.table", kind),
            ("events.num", events),
            ("seed", "7"),
        ];
        rows(&drain(&mut open_with(&opts, &fields(k), 1024).unwrap()))
            .iter()
            .map(|r| match serde_json::from_str(r).unwrap() {
                Value::Object(m) => m,
                other => panic!("not an object: {other}"),
            })
            .collect()
    }

    fn int(row: &serde_json::Map<String, Value>, col: &str) -> i64 {
        row[col].as_i64().unwrap()
    }

    fn string<'a>(row: &'a serde_json::Map<String, Value>, col: &str) -> &'a str {
        row[col].as_str().unwrap()
    }

    #[test]
    fn events_interleave_one_person_three_auctions_forty_six_bids() {
        let persons = table("person", "1000");
        let auctions = table("auction", "1000");
        let bids = table("bid", "1000");
        assert_eq!((persons.len(), auctions.len(), bids.len()), (20, 60, 920));
        // Ids count from 1000 in event order.
        let ids: Vec<i64> = persons.iter().map(|r| int(r, "id")).collect();
        assert_eq!(ids, (1000..1020).collect::<Vec<_>>());
        let ids: Vec<i64> = auctions.iter().map(|r| int(r, "id")).collect();
        assert_eq!(ids, (1000..1060).collect::<Vec<_>>());
        // At 10,000 events per second of event time, 10 events per millisecond: the k-th person is
        // event 50k, at 5k ms; auction 3k + j is event 50k + 1 + j.
        assert_eq!(string(&persons[3], "dateTime"), "2024-01-01 00:00:00.015");
        assert_eq!(string(&auctions[5], "dateTime"), "2024-01-01 00:00:00.005");
        // A group's bids are its events 4 ... 49; a partial group counts its bids up to the end.
        assert_eq!(table("bid", "57").len(), 46 + 3);
        assert_eq!(table("auction", "51").len(), 3);
        assert_eq!(table("auction", "52").len(), 4);
        // The rate sets the event time.
        let opts = [
            ("nexmark.table", "person"),
            ("events.num", "200"),
            ("first-event.rate", "100"),
            ("start-time", "2024-05-01 12:00:00"),
        ];
        let slow = rows(&drain(
            &mut open_with(
                &opts,
                &[("dateTime", DataType::Timestamp { precision: 3 })],
                8,
            )
            .unwrap(),
        ));
        assert_eq!(
            slow,
            [
                r#"{"dateTime":"2024-05-01 12:00:00.000"}"#,
                r#"{"dateTime":"2024-05-01 12:00:00.500"}"#,
                r#"{"dateTime":"2024-05-01 12:00:01.000"}"#,
                r#"{"dateTime":"2024-05-01 12:00:01.500"}"#,
            ]
        );
    }

    #[test]
    fn values_follow_the_nexmark_distributions() {
        let events = "50000";
        let persons = table("person", events);
        let auctions = table("auction", events);
        let bids = table("bid", events);
        for p in &persons {
            assert!(US_STATES.contains(&string(p, "state")), "{p:?}");
            assert!(US_CITIES.contains(&string(p, "city")), "{p:?}");
            let card = string(p, "creditCard");
            assert!(
                card.len() == 19 && card.split(' ').all(|g| g.len() == 4),
                "{card}"
            );
            assert!(string(p, "emailAddress").ends_with(".com"));
            let size = string(p, "name").len()
                + string(p, "emailAddress").len()
                + 19
                + 8
                + string(p, "city").len()
                + string(p, "state").len();
            let extra = string(p, "extra").len();
            assert!(
                size + extra >= 160 && size + extra <= 240,
                "{size} + {extra}"
            );
        }
        let mut categories = BTreeSet::new();
        for a in &auctions {
            categories.insert(int(a, "category"));
            assert!(string(a, "expires") > string(a, "dateTime"), "{a:?}");
            assert!(int(a, "reserve") > int(a, "initialBid"));
            assert!((100..=100_000_000).contains(&int(a, "initialBid")));
            let name = string(a, "itemName");
            assert!(
                !name.is_empty() && name.len() <= 19 && name == name.trim(),
                "{name:?}"
            );
        }
        assert_eq!(categories, (10..=14).collect());
        let (mut hot, mut numbered, mut with_id) = (0, 0, 0);
        let mut urls: HashMap<String, String> = HashMap::new();
        let mut last_time = String::new();
        for b in &bids {
            assert!((100..=100_000_000).contains(&int(b, "price")));
            assert!((54..82).contains(&string(b, "extra").len()), "{b:?}");
            let time = string(b, "dateTime").to_string();
            assert!(time >= last_time);
            last_time = time;
            let (channel, url) = (string(b, "channel"), string(b, "url"));
            assert!(
                url.starts_with("https://www.nexmark.com/") && url.contains("/item.htm?query=1")
            );
            // One URL per channel.
            let seen = urls
                .entry(channel.to_string())
                .or_insert_with(|| url.to_string());
            assert_eq!(seen, url);
            if HOT_CHANNELS.contains(&channel) {
                hot += 1;
                assert!(!url.contains("channel_id"));
            } else {
                numbered += 1;
                let n: i32 = channel.strip_prefix("channel-").unwrap().parse().unwrap();
                if let Some(id) = url.split("&channel_id=").nth(1) {
                    with_id += 1;
                    assert_eq!(id, n.reverse_bits().unsigned_abs().to_string());
                }
            }
        }
        // Half the bids on hot channels; 9 in 10 channels carry their id.
        let n = bids.len() as f64;
        assert!((hot as f64 / n - 0.5).abs() < 0.02, "{hot} of {n}");
        assert!(
            (with_id as f64 / numbered as f64 - 0.9).abs() < 0.03,
            "{with_id} of {numbered}"
        );
        // Hot auctions (ratio 2) and hot bidders (ratio 4): the first auction of the latest block
        // of 100 takes about half the bids.
        let auction_ids: BTreeSet<i64> = auctions.iter().map(|a| int(a, "id")).collect();
        let hot_auction = bids
            .iter()
            .filter(|b| (int(b, "auction") - FIRST_ID) % 100 == 0)
            .count();
        assert!((hot_auction as f64 / n - 0.5).abs() < 0.03, "{hot_auction}");
        let hot_bidder = bids
            .iter()
            .filter(|b| (int(b, "bidder") - FIRST_ID) % 100 == 1)
            .count();
        assert!((hot_bidder as f64 / n - 0.75).abs() < 0.03, "{hot_bidder}");
        // Bids are for auctions of the same sequence: all of them exist by the end (up to the
        // 10 ids of lead past the last), and sellers are persons of the sequence.
        let max_auction = *auction_ids.last().unwrap();
        let missing = bids
            .iter()
            .filter(|b| !auction_ids.contains(&int(b, "auction")))
            .inspect(|b| assert!(int(b, "auction") <= max_auction + 10, "{b:?}"))
            .count();
        assert!(missing < 10, "{missing}");
        let person_ids: BTreeSet<i64> = persons.iter().map(|p| int(p, "id")).collect();
        assert!(
            auctions
                .iter()
                .all(|a| int(a, "seller") <= person_ids.last().unwrap() + 10)
        );
        let sellers_known = auctions
            .iter()
            .filter(|a| person_ids.contains(&int(a, "seller")))
            .count();
        assert!(sellers_known as f64 / auctions.len() as f64 > 0.99);
    }

    #[test]
    fn same_seed_same_events_whatever_the_batch_and_the_columns() {
        let all = fields(Kind::Bid);
        let opts = [
            ("nexmark.table", "bid"),
            ("events.num", "3000"),
            ("seed", "3"),
        ];
        let a = rows(&drain(&mut open_with(&opts, &all, 1024).unwrap()));
        let b = rows(&drain(&mut open_with(&opts, &all, 7).unwrap()));
        assert_eq!(a.len(), 2760);
        assert_eq!(a, b);
        // A subset in another order (and another case) gives the same values.
        let some = [("PRICE", DataType::BigInt), ("auction", DataType::BigInt)];
        let c = rows(&drain(&mut open_with(&opts, &some, 100).unwrap()));
        let first: Value = serde_json::from_str(&a[0]).unwrap();
        let sub: Value = serde_json::from_str(&c[0]).unwrap();
        assert_eq!(first["price"], sub["PRICE"]);
        assert_eq!(first["auction"], sub["auction"]);
        let other = [
            ("nexmark.table", "bid"),
            ("events.num", "3000"),
            ("seed", "4"),
        ];
        assert_ne!(a, rows(&drain(&mut open_with(&other, &all, 1024).unwrap())));
        // A declared type the natural one casts to.
        let cast = [("price", DataType::Double)];
        let d = rows(&drain(&mut open_with(&opts, &cast, 1024).unwrap()));
        assert_eq!(d[0], format!("{{\"price\":{}.0}}", first["price"]));
    }

    #[test]
    fn resumes_after_a_checkpoint_position() {
        let all = fields(Kind::Auction);
        let opts = [("nexmark.table", "auction"), ("events.num", "10000")];
        let whole = rows(&drain(&mut open_with(&opts, &all, 64).unwrap()));
        let mut source = open_with(&opts, &all, 64).unwrap();
        let mut noop = |_: &crate::source::MalformedRecord| {};
        let mut ctx = SourceContext::new(Instant::now(), &mut noop);
        assert!(matches!(
            source.poll(&mut ctx).unwrap(),
            SourcePoll::Batch(_)
        ));
        let position = source.position().unwrap();
        assert_eq!(position, SourcePosition::Rows(64));
        let mut resumed = open_with(&opts, &all, 64).unwrap();
        resumed.seek(&position).unwrap();
        assert_eq!(rows(&drain(&mut resumed)), whole[64..]);
    }

    #[test]
    fn bad_options_and_columns_name_the_table_and_option() {
        let err =
            |opts: &[(&str, &str)], fields: &[(&str, DataType)]| match open_with(opts, fields, 8) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted {opts:?}"),
            };
        let id = [("id", DataType::BigInt)];
        let e = err(&[], &id);
        assert!(
            e.contains("`t`") && e.contains("'nexmark.table'") && e.contains("required"),
            "{e}"
        );
        let e = err(&[("nexmark.table", "bids")], &id);
        assert!(
            e.contains("'bids' is not 'person', 'auction' or 'bid'"),
            "{e}"
        );
        let e = err(&[("nexmark.table", "bid")], &id);
        assert!(
            e.contains("has no column `id`") && e.contains("auction, bidder"),
            "{e}"
        );
        let e = err(
            &[("nexmark.table", "person")],
            &[("dateTime", DataType::Boolean)],
        );
        assert!(e.contains("cannot be produced as BOOLEAN"), "{e}");
        let e = err(
            &[("nexmark.table", "person"), ("next-event.rate", "5")],
            &id,
        );
        assert!(
            e.contains("'next-event.rate'") && e.contains("one rate"),
            "{e}"
        );
        let e = err(
            &[("nexmark.table", "person"), ("first-event.rate", "0")],
            &id,
        );
        assert!(e.contains("'first-event.rate'"), "{e}");
        let e = err(&[("nexmark.table", "person"), ("bid.proportion", "0")], &id);
        assert!(
            e.contains("'bid.proportion'") && e.contains("at least 1"),
            "{e}"
        );
        let e = err(
            &[("nexmark.table", "person"), ("person.avg-size", "lots")],
            &id,
        );
        assert!(e.contains("'person.avg-size'"), "{e}");
        let e = err(&[("nexmark.table", "person"), ("events.num", "-1")], &id);
        assert!(e.contains("'events.num'"), "{e}");
        assert_eq!(parse_bytes("200b"), Ok(200));
        assert_eq!(parse_bytes("1 kb"), Ok(1024));
        assert_eq!(parse_bytes("64"), Ok(64));
        // Equal rates, and a size without padding, are accepted.
        let opts = [
            ("nexmark.table", "bid"),
            ("events.num", "100"),
            ("first-event.rate", "5"),
            ("next-event.rate", "5"),
            ("bid.avg-size", "10b"),
        ];
        let extra = rows(&drain(
            &mut open_with(&opts, &[("extra", DataType::String)], 8).unwrap(),
        ));
        assert!(extra.iter().all(|r| r == r#"{"extra":""}"#), "{extra:?}");
    }
}
