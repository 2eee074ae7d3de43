//! The row pattern matcher of one partition: a Pike VM over the compiled [`Inst`] program.
//!
//! Rows arrive in order, numbered by the partition (`seq`). Every row may start a match attempt;
//! each attempt is a set of *threads* (program position + the rows it classified so far). Threads
//! are kept in preference order — earlier start first, then the pattern's preference (greedy or
//! reluctant quantifiers, leftmost alternative) — so the first thread of an attempt that reaches
//! [`Inst::Match`] is that attempt's preferred match so far, and the attempt's less preferred
//! threads are dropped. A match is final once no more preferred thread of its attempt is alive;
//! matches are emitted in start order, and `AFTER MATCH SKIP` then ends the attempts it skips.
//!
//! A step is two calls, so that conditions can be evaluated for all partitions' threads in one
//! vectorised batch: [`Matcher::pending`] lists the (thread, variable) pairs the row must be
//! tested against, [`Matcher::advance`] takes the results.

use std::sync::Arc;

use fsql_plan::AfterMatch;

use super::program::Inst;
use crate::state::codec::{StateError, StateReader, StateWriter};

/// One classified row of a thread, newest first.
#[derive(Debug)]
pub(crate) struct Step {
    pub row: u64,
    pub var: u32,
    /// Matched inside an exclusion `{- ... -}`: not output by `ALL ROWS PER MATCH`.
    pub excluded: bool,
    pub prev: Option<Arc<Step>>,
}

/// The steps of a thread (or a match), oldest first.
pub(crate) fn steps_of(last: &Option<Arc<Step>>) -> Vec<&Step> {
    let mut out = Vec::new();
    let mut at = last.as_deref();
    while let Some(step) = at {
        out.push(step);
        at = step.prev.as_deref();
    }
    out.reverse();
    out
}

/// The rows a thread (or a match) classified, oldest first, with their variables.
pub(crate) fn rows_of(last: &Option<Arc<Step>>) -> Vec<(u64, usize)> {
    steps_of(last)
        .into_iter()
        .map(|s| (s.row, s.var as usize))
        .collect()
}

#[derive(Clone, Debug)]
pub(crate) struct Thread {
    pc: usize,
    /// The row the attempt started at.
    pub start: u64,
    pub last: Option<Arc<Step>>,
}

/// A match, or a partial match `WITHIN` ended: its start row and its classified rows (newest
/// first; `None`: an empty match).
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub start: u64,
    pub last: Option<Arc<Step>>,
    /// For a partial match that timed out: the variable its preferred thread waited for
    /// (`Some(None)` when it waited for the partition's end, `$`).
    pub timed_out: Option<Option<usize>>,
}

impl Found {
    /// The row after which an `AFTER MATCH SKIP PAST LAST ROW` resumes: the last row, or for an
    /// empty match the row it was found at (matching resumes at the next row either way).
    pub fn end(&self) -> u64 {
        self.last.as_ref().map_or(self.start, |l| l.row)
    }
}

/// `AFTER MATCH SKIP`, with the variables `TO FIRST/LAST v` means: `v`, or a subset's members.
#[derive(Clone, Debug)]
pub(crate) struct Skip {
    pub after: AfterMatch,
    pub to: Vec<usize>,
}

impl From<AfterMatch> for Skip {
    fn from(after: AfterMatch) -> Skip {
        let to = match after {
            AfterMatch::ToFirst(v) | AfterMatch::ToLast(v) => vec![v],
            _ => vec![],
        };
        Skip { after, to }
    }
}

/// What a skip could not do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SkipError {
    /// `SKIP TO FIRST/LAST v` would restart at the match's first row (the standard's error).
    ToFirstRowOfMatch(usize),
    /// `SKIP TO FIRST/LAST v` where no row of the match is `v`.
    NoSuchRow(usize),
    /// More live threads than [`MAX_THREADS`]: an ambiguous pattern (`(A | A)+`) doubling its
    /// threads every row, or a partition with no `WITHIN` bound.
    TooManyThreads,
}

/// The most threads one partition may have alive.
pub(crate) const MAX_THREADS: usize = 100_000;

/// The most instructions one closure may follow (a pattern of deeply nested optional parts).
const MAX_CLOSURE_STEPS: usize = 1_000_000;

/// A set of program positions, inline for programs of up to 128 instructions (closures are
/// computed for every row, and most patterns are short).
#[derive(Clone)]
enum PcSet {
    Small(u128),
    Large(Vec<u64>),
}

impl PcSet {
    fn new(len: usize) -> PcSet {
        if len <= 128 {
            PcSet::Small(0)
        } else {
            PcSet::Large(vec![0; len.div_ceil(64)])
        }
    }

    fn contains(&self, pc: usize) -> bool {
        match self {
            PcSet::Small(bits) => pc < 128 && bits & (1 << pc) != 0,
            PcSet::Large(words) => words
                .get(pc / 64)
                .is_some_and(|w| w & (1 << (pc % 64)) != 0),
        }
    }

    /// Adds `pc`; whether it was not there yet.
    fn insert(&mut self, pc: usize) -> bool {
        let fresh = !self.contains(pc);
        match self {
            PcSet::Small(bits) if pc < 128 => *bits |= 1 << pc,
            PcSet::Large(words) => {
                if let Some(w) = words.get_mut(pc / 64) {
                    *w |= 1 << (pc % 64);
                }
            }
            PcSet::Small(_) => {}
        }
        fresh
    }
}

/// The matcher of one partition.
#[derive(Debug, Default)]
pub(crate) struct Matcher {
    threads: Vec<Thread>,
    /// Per attempt (start row), its preferred match so far (a *candidate*), or with `EMIT
    /// TIMEOUTS`, the attempt `WITHIN` ended without a match (`Found::timed_out`): not final
    /// yet, reported in start order by `settle`. One vector for both, as most partitions have
    /// neither (an attempt has one or the other, never both).
    found: Vec<Found>,
    /// Rows before this one start no attempt (set by skips).
    resume_at: u64,
    /// The number of rows seen.
    rows: u64,
    /// Matches emitted so far (for `MATCH_NUMBER()`).
    pub matches: u64,
    /// Set when a closure exceeded [`MAX_CLOSURE_STEPS`].
    overflow: bool,
}

impl Matcher {
    /// The number of rows the partition fed so far (the next row's number).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The threads waiting for the next row, in preference order.
    pub fn threads(&self) -> &[Thread] {
        &self.threads
    }

    /// Whether no attempt is in progress (no threads alive, no match or timed-out attempt waiting
    /// to be final).
    pub fn is_idle(&self) -> bool {
        self.threads.is_empty() && self.found.is_empty()
    }

    /// The earliest row any live attempt or pending match refers to (rows before it are no
    /// longer needed, except for `PREV` look-back).
    pub fn oldest_needed(&self) -> u64 {
        self.threads
            .iter()
            .map(|t| t.start)
            .chain(self.found.iter().map(|f| f.start))
            .min()
            .unwrap_or(self.rows)
    }

    /// Opens the attempt starting at the next row and lists the (thread, variable) pairs that
    /// row must be tested against.
    /// `open: false` says no attempt can start at this row (none of the pattern's first
    /// variables accepts it), which saves opening one only to end it.
    pub fn pending(&mut self, program: &[Inst], open: bool) -> Vec<(usize, usize)> {
        let row = self.rows;
        if open && row >= self.resume_at {
            let fresh = Thread {
                pc: 0,
                start: row,
                last: None,
            };
            let mut added = Vec::new();
            self.closure(program, fresh, row == 0, false, &mut added);
            self.threads.extend(added);
        }
        self.threads
            .iter()
            .enumerate()
            .filter_map(|(i, t)| program[t.pc].var().map(|(v, _)| (i, v)))
            .collect()
    }

    /// The variables an attempt can classify its first row as, or `None` when that is not
    /// simply a set of variables (a `$` could come first, or the pattern can match no row).
    pub fn first_variables(program: &[Inst]) -> Option<Vec<usize>> {
        let mut seen = vec![false; program.len()];
        let mut stack = vec![0usize];
        let mut vars = Vec::new();
        while let Some(pc) = stack.pop() {
            if std::mem::replace(seen.get_mut(pc)?, true) {
                continue;
            }
            match program[pc] {
                Inst::Var(v) | Inst::ExcludedVar(v) => vars.push(v),
                Inst::Split(a, b) => stack.extend([a, b]),
                Inst::Jump(to) => stack.push(to),
                Inst::Check(_) | Inst::Start => stack.push(pc + 1),
                Inst::End | Inst::Match => return None,
            }
        }
        Some(vars)
    }

    /// Moves the threads past the row given the results for [`Matcher::pending`]'s pairs
    /// (`accepted[k]` for pair `k`); `alive(start)` says whether an attempt may still grow (its
    /// `WITHIN` bound not passed). Returns the matches that became final, in start order, and
    /// with `timeouts`, the attempts `WITHIN` ended without a match.
    pub fn advance(
        &mut self,
        program: &[Inst],
        accepted: &[bool],
        alive: impl Fn(u64) -> bool,
        skip: &Skip,
        timeouts: bool,
    ) -> Result<Vec<Found>, SkipError> {
        let row = self.rows;
        self.rows += 1;
        // Room for as many threads as there were: a partition usually keeps one or two, and a
        // vector grown from empty would hold four (a partition's threads live as long as it
        // has an attempt open: hundreds of thousands of partitions).
        let mut next = Vec::with_capacity(self.threads.len());
        let mut matched = Vec::new();
        let mut k = 0;
        for t in std::mem::take(&mut self.threads) {
            let Some((v, excluded)) = program[t.pc].var() else {
                continue;
            };
            let ok = accepted.get(k).copied().unwrap_or(false);
            k += 1;
            if !alive(t.start) {
                if timeouts {
                    self.time_out(program, &t);
                }
                continue;
            }
            if !ok || matched.contains(&t.start) {
                continue;
            }
            let stepped = Thread {
                pc: t.pc + 1,
                start: t.start,
                last: Some(Arc::new(Step {
                    row,
                    var: v as u32,
                    excluded,
                    prev: t.last,
                })),
            };
            if self.closure(program, stepped, false, false, &mut next) {
                matched.push(t.start);
            }
        }
        if next.len() > MAX_THREADS || self.overflow {
            return Err(SkipError::TooManyThreads);
        }
        if next.capacity() > 2 * next.len() {
            next.shrink_to_fit();
        }
        self.threads = next;
        self.settle(skip)
    }

    /// Ends the partition (`$` holds): every attempt finishes with what it has; with
    /// `timeouts`, those that cannot match are reported as timed out (the end of the input is
    /// the final watermark, which passes every `WITHIN` bound).
    pub fn finish(
        &mut self,
        program: &[Inst],
        skip: &Skip,
        timeouts: bool,
    ) -> Result<Vec<Found>, SkipError> {
        let mut matched = Vec::new();
        let mut ignored = Vec::new();
        let mut unmatched = Vec::new();
        for t in std::mem::take(&mut self.threads) {
            if matched.contains(&t.start) {
                continue;
            }
            let start = t.start;
            if self.closure(program, t.clone(), false, true, &mut ignored) {
                matched.push(start);
            } else if timeouts {
                unmatched.push(t);
            }
        }
        // After every thread had its chance: a less preferred thread's match still counts.
        for t in &unmatched {
            self.time_out(program, t);
        }
        self.settle(skip)
    }

    /// Ends the attempts that may no longer grow (their `WITHIN` bound passed), so that their
    /// pending matches become final; with `timeouts`, those without a match are reported.
    pub fn expire(
        &mut self,
        program: &[Inst],
        alive: impl Fn(u64) -> bool,
        skip: &Skip,
        timeouts: bool,
    ) -> Result<Vec<Found>, SkipError> {
        for t in std::mem::take(&mut self.threads) {
            if alive(t.start) {
                self.threads.push(t);
            } else if timeouts {
                self.time_out(program, &t);
            }
        }
        self.settle(skip)
    }

    /// Records `t`'s attempt as timed out with `t`'s rows, unless the attempt has a match or is
    /// already recorded (its more preferred thread came first), or `t` has no row.
    fn time_out(&mut self, program: &[Inst], t: &Thread) {
        if t.last.is_none() || self.found.iter().any(|f| f.start == t.start) {
            return;
        }
        self.found.push(Found {
            start: t.start,
            last: t.last.clone(),
            timed_out: Some(program[t.pc].var().map(|(v, _)| v)),
        });
    }

    /// Follows jumps and splits from `t` in preference order, appending the threads that wait for
    /// a row to `out` and recording a match. Returns whether the attempt matched: the rest of
    /// this closure (less preferred) is then dropped. `at_start`/`at_end`: `^`/`$` hold here.
    fn closure(
        &mut self,
        program: &[Inst],
        t: Thread,
        at_start: bool,
        at_end: bool,
        out: &mut Vec<Thread>,
    ) -> bool {
        // Paths are followed in preference order, each with the quantifier splits it took since
        // the last row: reaching such a split's `Check` means an iteration that read no row, and
        // the path ends (every cycle of the program passes a `Check`, so this terminates). Two
        // paths waiting at the same instruction carry the same rows: the first is kept.
        let mut waiting = PcSet::new(program.len());
        let mut stack: Vec<(Thread, PcSet)> = vec![(t, PcSet::new(program.len()))];
        let mut steps = 0usize;
        while let Some((t, taken)) = stack.pop() {
            steps += 1;
            if steps > MAX_CLOSURE_STEPS {
                self.overflow = true;
                return false;
            }
            match program[t.pc] {
                Inst::Var(_) | Inst::ExcludedVar(_) => {
                    if !at_end && waiting.insert(t.pc) {
                        out.push(t);
                    }
                }
                Inst::End if at_end => stack.push((Thread { pc: t.pc + 1, ..t }, taken)),
                // Waits: the partition may end here (another row ends the thread).
                Inst::End => {
                    if waiting.insert(t.pc) {
                        out.push(t);
                    }
                }
                Inst::Jump(to) => stack.push((Thread { pc: to, ..t }, taken)),
                Inst::Check(split) => {
                    if !taken.contains(split) {
                        stack.push((Thread { pc: t.pc + 1, ..t }, taken));
                    }
                }
                Inst::Split(first, second) => {
                    let mut taken = taken;
                    taken.insert(t.pc);
                    stack.push((
                        Thread {
                            pc: second,
                            ..t.clone()
                        },
                        taken.clone(),
                    ));
                    stack.push((Thread { pc: first, ..t }, taken));
                }
                Inst::Start => {
                    if at_start && t.last.is_none() {
                        stack.push((Thread { pc: t.pc + 1, ..t }, taken));
                    }
                }
                Inst::Match => {
                    // The most preferred thread of the attempt to match so far (an empty match
                    // too): it replaces an earlier candidate, which came from a less preferred
                    // thread.
                    self.found
                        .retain(|c| c.timed_out.is_some() || c.start != t.start);
                    self.found.push(Found {
                        start: t.start,
                        last: t.last,
                        timed_out: None,
                    });
                    return true;
                }
            }
        }
        false
    }

    /// Emits, in start order, the matches no more preferred thread can still replace, applying
    /// `AFTER MATCH SKIP` after each.
    fn settle(&mut self, skip: &Skip) -> Result<Vec<Found>, SkipError> {
        let mut out = Vec::new();
        loop {
            let earliest_thread = self.threads.iter().map(|t| t.start).min();
            let earliest = |timed_out: bool| {
                self.found
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.timed_out.is_some() == timed_out)
                    .min_by_key(|(_, f)| f.start)
                    .map(|(i, f)| (i, f.start))
            };
            // The earliest match or timed-out attempt, once no earlier (or, for a match, equal)
            // attempt is still alive: its rows and skip are then final.
            let (candidate, timed_out) = (earliest(false), earliest(true));
            if let Some((pos, start)) = timed_out
                && candidate.is_none_or(|(_, c)| start < c)
            {
                if earliest_thread.is_some_and(|t| t < start) {
                    break;
                }
                out.push(self.found.swap_remove(pos));
                continue;
            }
            let Some((pos, start)) = candidate else {
                break;
            };
            if earliest_thread.is_some_and(|t| t <= start) {
                break;
            }
            let found = self.found.swap_remove(pos);
            self.matches += 1;
            let resume = match skip.after {
                // After an empty match, matching resumes at the next row whatever the skip.
                _ if found.last.is_none() => found.start + 1,
                AfterMatch::PastLastRow => found.end() + 1,
                AfterMatch::ToNextRow => found.start + 1,
                AfterMatch::ToFirst(v) | AfterMatch::ToLast(v) => {
                    let rows = rows_of(&found.last);
                    let mut of_v = rows
                        .iter()
                        .filter(|(_, var)| skip.to.contains(var))
                        .map(|(r, _)| *r);
                    let target = if matches!(skip.after, AfterMatch::ToFirst(_)) {
                        of_v.next()
                    } else {
                        of_v.next_back()
                    }
                    .ok_or(SkipError::NoSuchRow(v))?;
                    if target == found.start {
                        return Err(SkipError::ToFirstRowOfMatch(v));
                    }
                    target
                }
            };
            // Attempts the skip passes over were never attempts, timed out or not.
            self.threads.retain(|t| t.start >= resume);
            self.found.retain(|f| f.start >= resume);
            self.resume_at = self.resume_at.max(resume);
            out.push(found);
        }
        Ok(out)
    }
}

/// The checkpoint encoding of a matcher.
///
/// Threads of one attempt share the older part of their step lists (`Arc<Step>`): the steps are
/// written once each, as a table in which a step names its predecessor by its position in the
/// table (always an earlier one), and threads, pending matches and timed-out attempts name their
/// newest step the same way. A restored matcher so shares its steps as the checkpointed one did,
/// and a corrupt reference can only point backwards or be refused.
impl Matcher {
    /// Writes the matcher for a checkpoint (see [`Matcher::restore`]).
    pub fn snapshot(&self, w: &mut StateWriter) {
        let mut table = StepTable::default();
        // Matches first, then timed-out attempts (as two lists).
        let candidates = || self.found.iter().filter(|f| f.timed_out.is_none());
        let timed_out = || self.found.iter().filter(|f| f.timed_out.is_some());
        let lists = self
            .threads
            .iter()
            .map(|t| &t.last)
            .chain(candidates().chain(timed_out()).map(|f| &f.last));
        for last in lists {
            table.add(last);
        }
        w.u64(self.rows);
        w.u64(self.resume_at);
        w.u64(self.matches);
        w.bool(self.overflow);
        w.count(table.steps.len());
        for step in &table.steps {
            w.u64(step.row);
            w.u32(step.var);
            w.bool(step.excluded);
            w.u64(table.position(step.prev.as_deref()));
        }
        w.count(self.threads.len());
        for t in &self.threads {
            w.u32(u32::try_from(t.pc).unwrap_or(u32::MAX));
            w.u64(t.start);
            w.u64(table.position(t.last.as_deref()));
        }
        for found in [candidates().collect::<Vec<_>>(), timed_out().collect()] {
            w.count(found.len());
            for f in found {
                w.u64(f.start);
                w.u64(table.position(f.last.as_deref()));
                match f.timed_out {
                    None => w.u8(0),
                    Some(None) => w.u8(1),
                    Some(Some(v)) => {
                        w.u8(2);
                        w.u32(u32::try_from(v).unwrap_or(u32::MAX));
                    }
                }
            }
        }
    }

    /// Reads what [`Matcher::snapshot`] wrote, for `program` over `variables` variables: every
    /// program position, variable and step reference is checked, so corrupt bytes are an error
    /// and never a matcher that could index out of bounds.
    pub fn restore(
        r: &mut StateReader<'_>,
        program: &[Inst],
        variables: usize,
    ) -> Result<Matcher, StateError> {
        let rows = r.u64()?;
        let resume_at = r.u64()?;
        let matches = r.u64()?;
        let overflow = r.bool()?;
        // Each match starts at its own row, so there are no more matches than rows; a count
        // near `u64::MAX` could only overflow later.
        if rows > i64::MAX as u64 || matches > rows {
            return Err(StateError(format!(
                "a partition of {rows} rows with {matches} matches"
            )));
        }
        let n = r.count()?;
        let mut steps: Vec<Arc<Step>> = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            let row = r.u64()?;
            let var = r.u32()?;
            let excluded = r.bool()?;
            // The table holds only the steps before this one: a reference cannot form a cycle.
            let prev = step_at(r, &steps)?;
            if var as usize >= variables {
                return Err(StateError(format!(
                    "a row classified as variable {var} of {variables}"
                )));
            }
            steps.push(Arc::new(Step {
                row,
                var,
                excluded,
                prev,
            }));
        }
        let mut threads = Vec::new();
        for _ in 0..r.count()? {
            let pc = r.u32()? as usize;
            // A thread waits for a row (or the partition's end) at a variable or at `$`.
            if !matches!(
                program.get(pc),
                Some(Inst::Var(_) | Inst::ExcludedVar(_) | Inst::End)
            ) {
                return Err(StateError(format!(
                    "a thread at position {pc} of a pattern of {} steps, where no thread waits",
                    program.len()
                )));
            }
            threads.push(Thread {
                pc,
                start: r.u64()?,
                last: step_at(r, &steps)?,
            });
        }
        // Matches, then timed-out attempts (each list holding only its kind).
        let mut found = Vec::new();
        for list in [false, true] {
            for _ in 0..r.count()? {
                let start = r.u64()?;
                let last = step_at(r, &steps)?;
                let timed_out = match r.u8()? {
                    0 => None,
                    1 => Some(None),
                    2 => {
                        let v = r.u32()? as usize;
                        if v >= variables {
                            return Err(StateError(format!(
                                "an attempt timed out waiting for variable {v} of {variables}"
                            )));
                        }
                        Some(Some(v))
                    }
                    b => return Err(StateError(format!("match kind {b}"))),
                };
                if timed_out.is_some() != list {
                    return Err(StateError(format!(
                        "an attempt of kind {timed_out:?} in the list of {}",
                        if list {
                            "timed-out attempts"
                        } else {
                            "matches"
                        }
                    )));
                }
                found.push(Found {
                    start,
                    last,
                    timed_out,
                });
            }
        }
        Ok(Matcher {
            threads,
            found,
            resume_at,
            rows,
            matches,
            overflow,
        })
    }
}

/// The step a reference read from `r` names in `steps` (0: none, `k`: `steps[k - 1]`).
fn step_at(r: &mut StateReader<'_>, steps: &[Arc<Step>]) -> Result<Option<Arc<Step>>, StateError> {
    let k = r.u64()?;
    if k == 0 {
        return Ok(None);
    }
    usize::try_from(k - 1)
        .ok()
        .and_then(|i| steps.get(i))
        .cloned()
        .map(Some)
        .ok_or_else(|| StateError(format!("step {k} of a table of {}", steps.len())))
}

/// The steps of a matcher's lists, each once, oldest first within each list (so a step's
/// predecessor is always before it), found by address.
#[derive(Default)]
struct StepTable<'a> {
    steps: Vec<&'a Step>,
    index: std::collections::HashMap<*const Step, u64>,
}

impl<'a> StepTable<'a> {
    /// Adds the steps of the list ending at `last` that are not in the table yet.
    fn add(&mut self, last: &'a Option<Arc<Step>>) {
        let mut fresh = Vec::new();
        let mut at = last.as_deref();
        while let Some(step) = at {
            if self.index.contains_key(&std::ptr::from_ref(step)) {
                break;
            }
            fresh.push(step);
            at = step.prev.as_deref();
        }
        for step in fresh.into_iter().rev() {
            self.index
                .insert(std::ptr::from_ref(step), self.steps.len() as u64 + 1);
            self.steps.push(step);
        }
    }

    /// How a reference to `step` is written: its position in the table plus one (0: no step).
    fn position(&self, step: Option<&Step>) -> u64 {
        step.and_then(|s| self.index.get(&std::ptr::from_ref(s)))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use fsql_plan::Pattern;

    use super::*;
    use crate::operators::match_recognize::program::compile;

    fn var(v: usize) -> Pattern {
        Pattern::Var(v)
    }

    fn repeat(p: Pattern, min: u32, max: Option<u32>, greedy: bool) -> Pattern {
        Pattern::Repeat {
            pattern: Box::new(p),
            min,
            max,
            greedy,
        }
    }

    /// Runs `rows` (one char each) through `pattern`; variable `v` accepts a row when
    /// `accepts(v, row char)`. Returns each match's rows as `row:var` strings.
    fn run(
        pattern: &Pattern,
        rows: &str,
        accepts: impl Fn(usize, char) -> bool,
        skip: AfterMatch,
    ) -> Vec<String> {
        let program = compile(pattern).unwrap();
        let mut m = Matcher::default();
        let chars: Vec<char> = rows.chars().collect();
        let mut out = Vec::new();
        let show = |f: &Found| {
            rows_of(&f.last)
                .iter()
                .map(|(r, v)| format!("{r}:{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for c in &chars {
            let pending = m.pending(&program, true);
            let accepted: Vec<bool> = pending.iter().map(|(_, v)| accepts(*v, *c)).collect();
            let found = m
                .advance(&program, &accepted, |_| true, &skip.into(), false)
                .unwrap();
            out.extend(found.iter().map(show));
        }
        out.extend(
            m.finish(&program, &skip.into(), false)
                .unwrap()
                .iter()
                .map(show),
        );
        out
    }

    #[test]
    fn card_testing_three_or_more_small_then_a_large_one() {
        // S{3,} L: S = 's', L = 'L'.
        let p = Pattern::Concat(vec![repeat(var(0), 3, None, true), var(1)]);
        let acc = |v: usize, c: char| (v == 0 && c == 's') || (v == 1 && c == 'L');
        assert_eq!(
            run(&p, "ssLsssLssssL", acc, AfterMatch::PastLastRow),
            vec!["3:0 4:0 5:0 6:1", "7:0 8:0 9:0 10:0 11:1"]
        );
        // Skipping to the next row finds the overlapping suffixes too.
        assert_eq!(
            run(&p, "ssssL", acc, AfterMatch::ToNextRow),
            vec!["0:0 1:0 2:0 3:0 4:1", "1:0 2:0 3:0 4:1"]
        );
    }

    #[test]
    fn greedy_and_reluctant_quantifiers_choose_the_longest_and_shortest_match() {
        // A B+ vs A B+? with B accepting 'b'.
        let acc = |v: usize, c: char| (v == 0 && c == 'a') || (v == 1 && c == 'b');
        let greedy = Pattern::Concat(vec![var(0), repeat(var(1), 1, None, true)]);
        assert_eq!(
            run(&greedy, "abbbx", acc, AfterMatch::PastLastRow),
            vec!["0:0 1:1 2:1 3:1"]
        );
        let reluctant = Pattern::Concat(vec![var(0), repeat(var(1), 1, None, false)]);
        assert_eq!(
            run(&reluctant, "abbbx", acc, AfterMatch::PastLastRow),
            vec!["0:0 1:1"]
        );
        // A greedy match still growing at the end of the input ends there.
        assert_eq!(
            run(&greedy, "abb", acc, AfterMatch::PastLastRow),
            vec!["0:0 1:1 2:1"]
        );
    }

    #[test]
    fn alternation_prefers_the_leftmost_and_anchors_hold_at_the_ends() {
        // (A | B) C, where both A and B accept 'x': A is preferred.
        let acc = |v: usize, c: char| match v {
            0 | 1 => c == 'x',
            _ => c == 'c',
        };
        let p = Pattern::Concat(vec![Pattern::Alt(vec![var(0), var(1)]), var(2)]);
        assert_eq!(run(&p, "xc", acc, AfterMatch::PastLastRow), vec!["0:0 1:2"]);
        // ^ A: only the partition's first row may start it; A $: only its last row may end it.
        let acc_a = |v: usize, c: char| v == 0 && c == 'a';
        let first = Pattern::Concat(vec![Pattern::Start, var(0)]);
        assert_eq!(
            run(&first, "aaa", acc_a, AfterMatch::ToNextRow),
            vec!["0:0"]
        );
        let last = Pattern::Concat(vec![var(0), Pattern::End]);
        assert_eq!(run(&last, "aaa", acc_a, AfterMatch::ToNextRow), vec!["2:0"]);
    }

    #[test]
    fn skip_to_a_variable_restarts_there_and_refuses_the_match_start() {
        // A B C with SKIP TO LAST B on "abcbc..." style input: every row satisfies its own var.
        let acc = |v: usize, c: char| {
            (v == 0 && c == 'a') || (v == 1 && c == 'b') || (v == 2 && c == 'c')
        };
        let p = Pattern::Concat(vec![var(0), repeat(var(1), 1, None, true), var(2)]);
        assert_eq!(
            run(&p, "abbcabc", acc, AfterMatch::ToLast(1)),
            vec!["0:0 1:1 2:1 3:2", "4:0 5:1 6:2"]
        );
        let program = compile(&p).unwrap();
        let mut m = Matcher::default();
        let mut result = Ok(vec![]);
        for c in "abc".chars() {
            let pending = m.pending(&program, true);
            let accepted: Vec<bool> = pending.iter().map(|(_, v)| acc(*v, c)).collect();
            result = m.advance(
                &program,
                &accepted,
                |_| true,
                &AfterMatch::ToFirst(0).into(),
                false,
            );
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result.unwrap_err(), SkipError::ToFirstRowOfMatch(0));
    }

    #[test]
    fn the_first_variables_are_those_a_match_can_start_with() {
        let first = |p: &Pattern| {
            let mut vars = Matcher::first_variables(&compile(p).unwrap());
            if let Some(v) = vars.as_mut() {
                v.sort_unstable();
            }
            vars
        };
        let alt = Pattern::Concat(vec![Pattern::Alt(vec![var(0), var(1)]), var(2)]);
        assert_eq!(first(&alt), Some(vec![0, 1]));
        let optional = Pattern::Concat(vec![repeat(var(0), 0, Some(1), true), var(1)]);
        assert_eq!(first(&optional), Some(vec![0, 1]));
        assert_eq!(
            first(&Pattern::Concat(vec![Pattern::Start, var(2)])),
            Some(vec![2])
        );
        assert_eq!(
            first(&Pattern::Concat(vec![
                repeat(var(0), 0, None, true),
                Pattern::End
            ])),
            None
        );
    }

    #[test]
    fn timed_out_attempts_are_reported_in_start_order_unless_a_match_skips_them() {
        // A X*? C, rows: a(0) a(1) c-of-1(2) then both attempts expire. Attempt 1 matches at row
        // 2; attempt 0 is still open and times out waiting for C, reported before the match.
        let p = Pattern::Concat(vec![var(0), repeat(var(1), 0, None, false), var(2)]);
        let program = compile(&p).unwrap();
        let mut m = Matcher::default();
        // (is A, is the capture of attempt 1)
        let rows = [(true, false), (true, false), (false, true)];
        let mut found = Vec::new();
        for (row, (is_a, capture_of_1)) in rows.iter().enumerate() {
            let pending = m.pending(&program, true);
            let accepted: Vec<bool> = pending
                .iter()
                .map(|&(t, v)| match v {
                    0 => *is_a,
                    1 => true,
                    _ => *capture_of_1 && m.threads()[t].start == 1,
                })
                .collect();
            found.extend(
                m.advance(
                    &program,
                    &accepted,
                    |_| true,
                    &AfterMatch::ToNextRow.into(),
                    true,
                )
                .unwrap(),
            );
            assert!(found.is_empty(), "row {row}: attempt 0 is still open");
        }
        found.extend(
            m.expire(&program, |_| false, &AfterMatch::ToNextRow.into(), true)
                .unwrap(),
        );
        type Summary = (u64, Vec<(u64, usize)>, Option<Option<usize>>);
        let summary: Vec<Summary> = found
            .iter()
            .map(|f| (f.start, rows_of(&f.last), f.timed_out))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, vec![(0, 0), (1, 1), (2, 1)], Some(Some(2))),
                (1, vec![(1, 0), (2, 2)], None),
            ]
        );
        assert!(m.is_idle());
        // With SKIP PAST LAST ROW a match at 0 passes over attempt 1, which is then not reported.
        let p = Pattern::Concat(vec![var(0), var(1)]);
        let program = compile(&p).unwrap();
        let mut m = Matcher::default();
        let mut found = Vec::new();
        for (a, b) in [(true, false), (true, true)] {
            let pending = m.pending(&program, true);
            let accepted: Vec<bool> = pending
                .iter()
                .map(|&(_, v)| if v == 0 { a } else { b })
                .collect();
            found.extend(
                m.advance(
                    &program,
                    &accepted,
                    |_| true,
                    &AfterMatch::PastLastRow.into(),
                    true,
                )
                .unwrap(),
            );
        }
        found.extend(
            m.finish(&program, &AfterMatch::PastLastRow.into(), true)
                .unwrap(),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].timed_out, None);
    }

    #[test]
    fn an_empty_match_is_found_where_the_pattern_can_take_no_row() {
        // B* over "xbbx": empty at 0, then 1-2, then empty at 3 (PAST LAST ROW).
        let p = repeat(var(0), 0, None, true);
        let acc = |_: usize, c: char| c == 'b';
        assert_eq!(
            run(&p, "xbbx", acc, AfterMatch::PastLastRow),
            vec!["", "1:0 2:0", ""]
        );
        // Reluctant B*? prefers the empty match everywhere.
        let p = repeat(var(0), 0, None, false);
        assert_eq!(run(&p, "bb", acc, AfterMatch::PastLastRow), vec!["", ""]);
    }

    /// `(A | B)+ C` over rows both `A` and `B` accept: threads fan out and share their older
    /// steps. A restored matcher keeps that sharing (its snapshot is the same bytes), and goes
    /// on to find exactly what the checkpointed one finds.
    #[test]
    fn a_restored_matcher_shares_its_steps_and_continues_alike() {
        let p = Pattern::Concat(vec![
            repeat(Pattern::Alt(vec![var(0), var(1)]), 1, None, true),
            var(2),
        ]);
        let program = compile(&p).unwrap();
        let skip: Skip = AfterMatch::ToNextRow.into();
        let acc = |v: usize, c: char| match v {
            0 => c == 'x',
            1 => c == 'x' || c == 'y',
            _ => c == 'y',
        };
        type Summary = Vec<(u64, Vec<(u64, usize)>, Option<Option<usize>>)>;
        let feed = |m: &mut Matcher, rows: &str| -> Summary {
            let mut found = Vec::new();
            for c in rows.chars() {
                let pending = m.pending(&program, true);
                let accepted: Vec<bool> = pending.iter().map(|&(_, v)| acc(v, c)).collect();
                found.extend(
                    m.advance(&program, &accepted, |_| true, &skip, true)
                        .unwrap(),
                );
            }
            found.extend(m.finish(&program, &skip, true).unwrap());
            found
                .iter()
                .map(|f| (f.start, rows_of(&f.last), f.timed_out))
                .collect()
        };
        let mut m = Matcher::default();
        for c in "xyx".chars() {
            let pending = m.pending(&program, true);
            let accepted: Vec<bool> = pending.iter().map(|&(_, v)| acc(v, c)).collect();
            m.advance(&program, &accepted, |_| true, &skip, true)
                .unwrap();
        }
        let mut w = StateWriter::default();
        m.snapshot(&mut w);
        let bytes = w.into_bytes();
        let mut r = StateReader::new(&bytes);
        let mut back = Matcher::restore(&mut r, &program, 3).unwrap();
        r.finish().unwrap();
        let mut again = StateWriter::default();
        back.snapshot(&mut again);
        assert_eq!(again.into_bytes(), bytes);
        // Each step is written once, however many threads share it.
        let mut r = StateReader::new(&bytes);
        for _ in 0..3 {
            r.u64().unwrap();
        }
        r.bool().unwrap();
        let written = r.count().unwrap();
        let held: usize = m.threads().iter().map(|t| steps_of(&t.last).len()).sum();
        assert!(written < held, "{written} steps written for {held} held");
        let rest = "yxxyy";
        let expected = feed(&mut m, rest);
        assert!(!expected.is_empty());
        assert_eq!(feed(&mut back, rest), expected);
        // A thread at a position where no thread waits, and a variable out of range, are refused.
        assert!(Matcher::restore(&mut StateReader::new(&bytes), &program, 2).is_err());
        assert!(Matcher::restore(&mut StateReader::new(&bytes), &program[..1], 3).is_err());
        for cut in 0..bytes.len() {
            let mut r = StateReader::new(&bytes[..cut]);
            assert!(
                Matcher::restore(&mut r, &program, 3).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_attempt_past_its_time_bound_ends_with_what_it_matched() {
        let acc = |v: usize, c: char| (v == 0 && c == 'a') || (v == 1 && c == 'b');
        let p = Pattern::Concat(vec![var(0), repeat(var(1), 1, None, true)]);
        let program = compile(&p).unwrap();
        let mut m = Matcher::default();
        for c in "ab".chars() {
            let pending = m.pending(&program, true);
            let accepted: Vec<bool> = pending.iter().map(|(_, v)| acc(*v, c)).collect();
            assert!(
                m.advance(
                    &program,
                    &accepted,
                    |_| true,
                    &AfterMatch::PastLastRow.into(),
                    false
                )
                .unwrap()
                .is_empty()
            );
        }
        // The greedy B+ could still grow; once the attempt expires, its match is final.
        let found = m
            .expire(&program, |_| false, &AfterMatch::PastLastRow.into(), false)
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(rows_of(&found[0].last), vec![(0, 0), (1, 1)]);
        assert!(m.is_idle());
    }
}

/// A randomised differential test: the Pike VM against a backtracking matcher written for
/// clarity (try alternatives in preference order, first success wins), on generated patterns and
/// inputs.
#[cfg(test)]
pub(super) mod differential {
    use fsql_plan::{AfterMatch, Pattern};

    use super::*;
    use crate::operators::match_recognize::program::compile;

    /// The generator's choices (`crate::compiled::generated::Rng`), as `u64`s.
    pub(crate) struct Rng(pub(crate) crate::compiled::generated::Rng);

    impl Rng {
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.0.below(n as usize) as u64
        }
    }

    pub(crate) const VARS: usize = 4;

    /// What matching continues with: given the position after a part and the rows so far, whether
    /// the rest matches.
    type Cont<'a> = &'a mut dyn FnMut(usize, &mut Vec<(u64, usize)>) -> bool;

    /// Variables 0..3 accept the letters in their set; variable 3 also accepts at most two rows
    /// per match (a condition that depends on what the match holds so far).
    fn accepts(sets: &[Vec<char>], v: usize, c: char, history: &[(u64, usize)]) -> bool {
        sets[v].contains(&c) && (v != 3 || history.iter().filter(|(_, x)| *x == 3).count() < 2)
    }

    /// The letters inputs are made of.
    pub(crate) const LETTERS: [char; 3] = ['a', 'b', 'c'];

    /// A generated case: a pattern, the letters each variable accepts, and a skip.
    pub(crate) fn gen_case(r: &mut Rng) -> (Pattern, Vec<Vec<char>>, AfterMatch) {
        let p = gen_pattern(r, 3);
        let sets = (0..VARS)
            .map(|_| {
                LETTERS
                    .iter()
                    .copied()
                    .filter(|_| r.below(2) == 0)
                    .collect()
            })
            .collect();
        let var = r.below(VARS as u64) as usize;
        let skip = match r.below(4) {
            0 => AfterMatch::PastLastRow,
            1 => AfterMatch::ToNextRow,
            2 => AfterMatch::ToFirst(var),
            _ => AfterMatch::ToLast(var),
        };
        (p, sets, skip)
    }

    fn gen_pattern(r: &mut Rng, depth: u32) -> Pattern {
        let leaf = depth == 0 || r.below(3) == 0;
        if leaf {
            return match r.below(12) {
                0 => Pattern::Start,
                1 => Pattern::End,
                _ => Pattern::Var(r.below(VARS as u64) as usize),
            };
        }
        match r.below(4) {
            0 => Pattern::Concat(
                (0..1 + r.below(3))
                    .map(|_| gen_pattern(r, depth - 1))
                    .collect(),
            ),
            1 => Pattern::Alt(
                (0..2 + r.below(2))
                    .map(|_| gen_pattern(r, depth - 1))
                    .collect(),
            ),
            2 => Pattern::Permute((0..2 + r.below(2)).map(|_| gen_pattern(r, 0)).collect()),
            _ => {
                let min = r.below(3) as u32;
                let max = match r.below(3) {
                    0 => None,
                    _ => Some(min + r.below(3) as u32),
                };
                Pattern::Repeat {
                    pattern: Box::new(gen_pattern(r, depth - 1)),
                    min,
                    max,
                    greedy: r.below(2) == 0,
                }
            }
        }
    }

    /// Backtracking: calls `k` with each way `p` can match from `pos` (in preference order) until
    /// `k` accepts one.
    fn m(
        p: &Pattern,
        input: &[char],
        sets: &[Vec<char>],
        pos: usize,
        hist: &mut Vec<(u64, usize)>,
        k: Cont<'_>,
    ) -> bool {
        match p {
            Pattern::Var(v) => {
                if pos < input.len() && accepts(sets, *v, input[pos], hist) {
                    hist.push((pos as u64, *v));
                    if k(pos + 1, hist) {
                        return true;
                    }
                    hist.pop();
                }
                false
            }
            Pattern::Empty => k(pos, hist),
            Pattern::Start => pos == 0 && hist.is_empty() && k(pos, hist),
            Pattern::End => pos == input.len() && k(pos, hist),
            Pattern::Exclude(inner) => m(inner, input, sets, pos, hist, k),
            Pattern::Concat(parts) => seq(parts, input, sets, pos, hist, k),
            Pattern::Alt(alts) => alts.iter().any(|a| m(a, input, sets, pos, hist, k)),
            Pattern::Permute(parts) => {
                let n = parts.len();
                let mut orders: Vec<Vec<usize>> = vec![vec![]];
                for _ in 0..n {
                    orders = orders
                        .into_iter()
                        .flat_map(|o| {
                            (0..n)
                                .filter(|i| !o.contains(i))
                                .map(|i| {
                                    let mut o = o.clone();
                                    o.push(i);
                                    o
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect();
                }
                orders.iter().any(|o| {
                    let ps: Vec<Pattern> = o.iter().map(|&i| parts[i].clone()).collect();
                    seq(&ps, input, sets, pos, hist, k)
                })
            }
            Pattern::Repeat {
                pattern,
                min,
                max,
                greedy,
            } => rep(pattern, *min, *max, *greedy, 0, input, sets, pos, hist, k),
        }
    }

    fn seq(
        parts: &[Pattern],
        input: &[char],
        sets: &[Vec<char>],
        pos: usize,
        hist: &mut Vec<(u64, usize)>,
        k: Cont<'_>,
    ) -> bool {
        match parts.split_first() {
            None => k(pos, hist),
            Some((first, rest)) => m(first, input, sets, pos, hist, &mut |p, h| {
                seq(rest, input, sets, p, h, k)
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rep(
        p: &Pattern,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        done: u32,
        input: &[char],
        sets: &[Vec<char>],
        pos: usize,
        hist: &mut Vec<(u64, usize)>,
        k: Cont<'_>,
    ) -> bool {
        let can_stop = done >= min;
        let can_go = max.is_none_or(|m| done < m);
        let again = |h: &mut Vec<(u64, usize)>, k: Cont<'_>| {
            can_go
                && m(p, input, sets, pos, h, &mut |p2, h2| {
                    // An iteration past the minimum that matched nothing ends the loop (as the
                    // VM, which never revisits a loop's entry without reading a row).
                    (p2 > pos || done < min)
                        && rep(p, min, max, greedy, done + 1, input, sets, p2, h2, k)
                })
        };
        if greedy {
            if again(hist, k) {
                return true;
            }
            can_stop && k(pos, hist)
        } else {
            if can_stop && k(pos, hist) {
                return true;
            }
            again(hist, k)
        }
    }

    /// The preferred match starting at `start` (possibly empty).
    fn preferred(
        p: &Pattern,
        input: &[char],
        sets: &[Vec<char>],
        start: usize,
    ) -> Option<Vec<(u64, usize)>> {
        let mut found = None;
        let mut hist = Vec::new();
        m(p, input, sets, start, &mut hist, &mut |_, h| {
            found = Some(h.clone());
            true
        });
        found
    }

    /// Each match's start row and its rows with their variables.
    pub(crate) type Matches = Vec<(u64, Vec<(u64, usize)>)>;

    pub(crate) fn reference(
        p: &Pattern,
        input: &[char],
        sets: &[Vec<char>],
        skip: AfterMatch,
    ) -> Result<Matches, SkipError> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            match preferred(p, input, sets, pos) {
                Some(found) => {
                    let end = found.last().map_or(pos as u64, |r| r.0) as usize;
                    let of = |v: usize| {
                        found
                            .iter()
                            .filter(move |r| r.1 == v)
                            .map(|r| r.0 as usize)
                            .collect::<Vec<_>>()
                    };
                    let next = match skip {
                        // After an empty match, matching resumes at the next row.
                        _ if found.is_empty() => pos + 1,
                        AfterMatch::PastLastRow => end + 1,
                        AfterMatch::ToNextRow => pos + 1,
                        AfterMatch::ToFirst(v) => *of(v).first().ok_or(SkipError::NoSuchRow(v))?,
                        AfterMatch::ToLast(v) => *of(v).last().ok_or(SkipError::NoSuchRow(v))?,
                    };
                    if let (true, AfterMatch::ToFirst(v) | AfterMatch::ToLast(v)) =
                        (next == pos, skip)
                    {
                        return Err(SkipError::ToFirstRowOfMatch(v));
                    }
                    out.push((pos as u64, found));
                    pos = next;
                }
                None => pos += 1,
            }
        }
        Ok(out)
    }

    fn vm(
        p: &Pattern,
        input: &[char],
        sets: &[Vec<char>],
        skip: AfterMatch,
    ) -> Result<Matches, SkipError> {
        let program = compile(p).expect("compiles");
        let mut matcher = Matcher::default();
        let mut out = Vec::new();
        let mut show = |f: Vec<Found>| {
            for f in f {
                out.push((f.start, rows_of(&f.last)));
            }
        };
        for c in input {
            let pending = matcher.pending(&program, true);
            let accepted: Vec<bool> = pending
                .iter()
                .map(|&(t, v)| accepts(sets, v, *c, &rows_of(&matcher.threads()[t].last)))
                .collect();
            show(matcher.advance(&program, &accepted, |_| true, &skip.into(), false)?);
        }
        show(matcher.finish(&program, &skip.into(), false)?);
        Ok(out)
    }

    #[test]
    fn the_vm_finds_the_matches_a_backtracking_matcher_prefers() {
        let cases: u64 = std::env::var("FSQL_MR_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3_000);
        let mut compared = 0;
        for seed in 0..cases {
            let mut r = Rng(crate::compiled::generated::Rng::seeded(seed));
            let (p, sets, skip) = gen_case(&mut r);
            let input: Vec<char> = (0..r.below(9))
                .map(|_| LETTERS[r.below(3) as usize])
                .collect();
            let expected = reference(&p, &input, &sets, skip);
            let got = vm(&p, &input, &sets, skip);
            assert_eq!(
                got, expected,
                "seed {seed}: pattern {p:?}, sets {sets:?}, input {input:?}, {skip:?}"
            );
            compared += usize::from(matches!(&expected, Ok(m) if !m.is_empty()));
        }
        assert!(
            compared as u64 * 5 >= cases,
            "only {compared} cases had a match"
        );
    }
}
