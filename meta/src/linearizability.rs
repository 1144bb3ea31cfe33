//! A linearizability checker for histories of the meta service's versioned config store.
//!
//! Tests record what concurrent clients did against the store (each operation's invocation
//! time, completion time and output), and [`check`] decides whether some total order of those
//! operations, consistent with real time, explains every output under the sequential model
//! below. Depends only on `std`.
//!
//! # The model
//!
//! Each key is independent. A key is absent (version 0) or holds a `(value, version)` pair,
//! where the version counts the successful puts on that key: 1, 2, 3, …
//!
//! - [`ConfigOp::Put`] with `expected: None` (unconditional), or with `expected: Some(v)` where
//!   `v` is the current version (0 = absent), succeeds: the value is set, the version becomes
//!   current + 1, and the output is [`ConfigOutput::PutOk`] with the new version. Otherwise the
//!   output is [`ConfigOutput::Conflict`] with the current version, and nothing changes.
//! - [`ConfigOp::Get`] outputs [`ConfigOutput::Value`]: `None` if absent, else the value and
//!   its version.
//!
//! An operation may have an unknown outcome ([`Outcome::Unknown`]: the client timed out or
//! its connection broke). It may take effect at any point after its invocation, or never, and
//! any output is accepted for it. Unknown gets constrain nothing, so they are dropped.
//!
//! # The algorithm
//!
//! Because the keys are independent objects, a history is linearizable exactly when each key's
//! sub-history is (linearizability is *local*, Herlihy & Wing; Porcupine calls this
//! P-compositionality). So [`check`] partitions by key and checks each partition alone, which
//! keeps each search small.
//!
//! Per key, the search is the Wing & Gong algorithm with Lowe's "just-in-time linearization"
//! and the memoisation Porcupine uses:
//!
//! 1. Build the list of call and return events sorted by time. At equal times, calls come
//!    before returns, so an operation invoked at the instant another completes counts as
//!    concurrent with it; equal timestamps can never produce a false violation.
//! 2. Walk the list as a doubly linked list. At a call event, try to linearize that operation
//!    now: apply it to the model state, and if the model's output matches the recorded output,
//!    remove ("lift") its call and return events from the list, push it on a stack and restart
//!    from the head. At a return event, the operation returning has not been linearized, yet
//!    everything after it in real time must come after it: backtrack by popping the last
//!    operation, undoing its state change, putting its events back, and trying the next
//!    candidate after it.
//! 3. Memoise every (set of linearized operations as a bitset, model state) pair reached. A
//!    pair seen before has the same future, so it is not explored twice. This turns the
//!    exponential search into one that is fast on realistic histories.
//!
//! Operations with unknown outcome have no return event (it is at +infinity), so they never
//! force a backtrack, and whatever output the model produces for them is accepted. The search
//! succeeds as soon as every operation with a known outcome is linearized: an unknown
//! operation left over is taken to happen after everything else (equivalently, never). An
//! unknown put that would be a no-op where it is tried (a conditional put that conflicts) is
//! not tried there, since placing it at the end instead is indistinguishable.
//!
//! Two further reductions keep unknown puts from multiplying the search, without changing its
//! answer: values that no read returns are all treated as one value (only reads tell values
//! apart), and identical unknown puts ("twins") are only linearized in the order of their calls
//! (swapping two twins changes nothing).
//!
//! The search stops after a configurable number of steps per key and then answers
//! [`Verdict::Unknown`]. A violation comes with an explanation: the longest linearizable prefix
//! found, the state after it, the operation that returned without any way to linearize it, and
//! the operations concurrent with it.
//!
//! References: J. M. Wing and C. Gong, "Testing and verifying concurrent objects" (1993);
//! G. Lowe, "Testing for linearizability" (2017); A. Athalye, Porcupine
//! (<https://github.com/anishathalye/porcupine>).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// A step budget per key: typical histories of a thousand operations need thousands to
/// hundreds of thousands of steps; ten million take about a second in an optimized build.
pub const DEFAULT_MAX_STEPS: u64 = 10_000_000;

/// An operation a client invokes on the config store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigOp {
    /// Read a key.
    Get {
        /// The key read.
        key: String,
    },
    /// Write a key, unconditionally or only if its version is `expected`.
    Put {
        /// The key written.
        key: String,
        /// The new value.
        value: String,
        /// `None` for an unconditional put; `Some(v)` to succeed only if the current version
        /// is `v` (0 = the key is absent).
        expected: Option<u64>,
    },
}

impl ConfigOp {
    /// The key this operation reads or writes.
    pub fn key(&self) -> &str {
        match self {
            ConfigOp::Get { key } | ConfigOp::Put { key, .. } => key,
        }
    }
}

impl fmt::Display for ConfigOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOp::Get { key } => write!(f, "get({key:?})"),
            ConfigOp::Put { key, value, expected: None } => write!(f, "put({key:?}, {value:?})"),
            ConfigOp::Put { key, value, expected: Some(v) } => write!(f, "put({key:?}, {value:?}, expected {v})"),
        }
    }
}

/// What the store answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigOutput {
    /// The answer to a get: `None` if the key is absent, else its value and version.
    Value(Option<(String, u64)>),
    /// The put succeeded; the key now has this version.
    PutOk {
        /// The key's version after the put.
        version: u64,
    },
    /// The conditional put failed: the key's version was not the expected one.
    Conflict {
        /// The key's version the store saw (0 = absent).
        current: u64,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client got an answer.
    Returned {
        /// When the answer arrived. A time before the call is read as the call time.
        ret: u64,
        /// The answer.
        output: ConfigOutput,
    },
    /// The client never learned the outcome (timeout, broken connection): the operation may
    /// take effect at any time after its call, or never.
    Unknown,
}

/// One operation in a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it (only used in explanations).
    pub client: usize,
    /// What was asked.
    pub op: ConfigOp,
    /// When it was invoked, on a clock shared by all clients and never going backwards.
    pub call: u64,
    /// How it ended.
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Returned { ret, output } => {
                write!(f, "client {} [{}, {}] {} -> {:?}", self.client, self.call, ret.max(&self.call), self.op, output)
            }
            Outcome::Unknown => write!(f, "client {} [{}, never] {} -> unknown outcome", self.client, self.call, self.op),
        }
    }
}

/// A recorded history: operations in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a finished (or abandoned) operation.
    pub fn record(&mut self, op: Operation) {
        self.ops.push(op);
    }

    /// The operations recorded so far, in recording order.
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// How many operations were recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Records a [`History`] from concurrent clients: clone it into each client (thread or task),
/// call [`Recorder::call`] just before sending a request and [`Pending::ok`] or
/// [`Pending::unknown`] once the outcome is known. Times are nanoseconds since the recorder was
/// created, from one monotonic clock.
#[derive(Debug, Clone)]
pub struct Recorder {
    ops: Arc<Mutex<Vec<Operation>>>,
    origin: Instant,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder with an empty history whose clock starts now.
    pub fn new() -> Self {
        Recorder { ops: Arc::new(Mutex::new(Vec::new())), origin: Instant::now() }
    }

    /// Note that `client` invokes `op` now; complete the returned [`Pending`] when it ends.
    pub fn call(&self, client: usize, op: ConfigOp) -> Pending {
        let call = self.now();
        Pending { recorder: self.clone(), client, op: Some(op), call }
    }

    /// A copy of everything recorded so far (operations still pending are not included).
    pub fn history(&self) -> History {
        History { ops: self.ops.lock().unwrap_or_else(PoisonError::into_inner).clone() }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn push(&self, op: Operation) {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).push(op);
    }
}

/// An invoked operation awaiting its outcome. Dropping it without calling [`Pending::ok`] (say,
/// a cancelled task or a panic) records it as [`Outcome::Unknown`], which is what it is.
#[must_use = "complete the operation with ok() or unknown()"]
#[derive(Debug)]
pub struct Pending {
    recorder: Recorder,
    client: usize,
    op: Option<ConfigOp>,
    call: u64,
}

impl Pending {
    /// The operation returned `output` now.
    pub fn ok(mut self, output: ConfigOutput) {
        let ret = self.recorder.now();
        self.finish(Outcome::Returned { ret, output });
    }

    /// The operation's outcome is unknown (timeout, broken connection, ambiguous error).
    pub fn unknown(mut self) {
        self.finish(Outcome::Unknown);
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(op) = self.op.take() {
            self.recorder.push(Operation { client: self.client, op, call: self.call, outcome });
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.finish(Outcome::Unknown);
    }
}

/// The answer of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, consistent with real time, explains every output.
    Linearizable,
    /// No such order exists for the operations on `key`.
    NotLinearizable {
        /// The first key (in sorted order) whose operations are not linearizable.
        key: String,
        /// For a person: the longest linearizable prefix found, the state after it, the
        /// operation that could not be placed, and the operations concurrent with it.
        explanation: String,
    },
    /// The step budget ran out on `key` before an answer; no other key was found violating.
    Unknown {
        /// The first key (in sorted order) whose search ran out of steps.
        key: String,
    },
}

/// Check `history` against the versioned config model, key by key, spending at most
/// `max_steps` search steps on each key (see [`DEFAULT_MAX_STEPS`]). A violation on any key
/// wins over a budget exhaustion on another.
pub fn check(history: &History, max_steps: u64) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &history.ops {
        let unknown_get = matches!((&op.op, &op.outcome), (ConfigOp::Get { .. }, Outcome::Unknown));
        if !unknown_get {
            by_key.entry(op.op.key()).or_default().push(op);
        }
    }
    let mut exhausted = None;
    for (key, ops) in by_key {
        match check_key(&Partition::new(key, &ops), max_steps) {
            KeyResult::Linearizable => {}
            KeyResult::Violation(explanation) => return Verdict::NotLinearizable { key: key.to_string(), explanation },
            KeyResult::Exhausted => {
                exhausted.get_or_insert(key);
            }
        }
    }
    match exhausted {
        Some(key) => Verdict::Unknown { key: key.to_string() },
        None => Verdict::Linearizable,
    }
}

/// The model state of one key, with the value interned: version 0 means absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    version: u64,
    value: u32,
}

const ABSENT: State = State { version: 0, value: 0 };

/// An operation on one key, with values interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyOp {
    Get,
    Put { value: u32, expected: Option<u64> },
}

/// An output on one key, with values interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyOutput {
    Value(Option<(u32, u64)>),
    PutOk(u64),
    Conflict(u64),
}

/// The sequential model: the state after `op` and what it answers.
fn apply(state: State, op: KeyOp) -> (State, KeyOutput) {
    match op {
        KeyOp::Get => {
            let value = (state.version > 0).then_some((state.value, state.version));
            (state, KeyOutput::Value(value))
        }
        KeyOp::Put { value, expected } => {
            if expected.is_none_or(|v| v == state.version) {
                let version = state.version.saturating_add(1);
                (State { version, value }, KeyOutput::PutOk(version))
            } else {
                (state, KeyOutput::Conflict(state.version))
            }
        }
    }
}

/// One key's operation, ready for the search.
struct Entry<'a> {
    orig: &'a Operation,
    op: KeyOp,
    /// `None` = unknown outcome.
    output: Option<KeyOutput>,
    call: u64,
    /// `None` = never returned.
    ret: Option<u64>,
}

/// The operations on one key.
struct Partition<'a> {
    key: &'a str,
    ops: Vec<Entry<'a>>,
    /// For an unknown put, the previous unknown put (by call time) with the same interned op.
    prev_twin: Vec<Option<usize>>,
}

/// The value id of every value no read returned: reads cannot tell them apart. Values some
/// read returned get ids from 2 on; 0 is the (ignored) value of an absent key.
const UNREAD: u32 = 1;

impl<'a> Partition<'a> {
    fn new(key: &'a str, ops: &[&'a Operation]) -> Self {
        let mut ids: HashMap<&'a str, u32> = HashMap::new();
        for o in ops {
            if let Outcome::Returned { output: ConfigOutput::Value(Some((value, _))), .. } = &o.outcome {
                let next = u32::try_from(ids.len() + 2).unwrap_or(u32::MAX);
                ids.entry(value).or_insert(next);
            }
        }
        let intern = |s: &str| -> u32 { ids.get(s).copied().unwrap_or(UNREAD) };
        let mut entries = Vec::with_capacity(ops.len());
        for &orig in ops {
            let op = match &orig.op {
                ConfigOp::Get { .. } => KeyOp::Get,
                ConfigOp::Put { value, expected, .. } => KeyOp::Put { value: intern(value), expected: *expected },
            };
            let (output, ret) = match &orig.outcome {
                Outcome::Unknown => (None, None),
                Outcome::Returned { ret, output } => {
                    let output = match output {
                        ConfigOutput::Value(None) => KeyOutput::Value(None),
                        ConfigOutput::Value(Some((value, version))) => KeyOutput::Value(Some((intern(value), *version))),
                        ConfigOutput::PutOk { version } => KeyOutput::PutOk(*version),
                        ConfigOutput::Conflict { current } => KeyOutput::Conflict(*current),
                    };
                    (Some(output), Some((*ret).max(orig.call)))
                }
            };
            entries.push(Entry { orig, op, output, call: orig.call, ret });
        }
        let mut prev_twin = vec![None; entries.len()];
        let mut unknown: Vec<usize> = (0..entries.len()).filter(|&id| entries[id].output.is_none()).collect();
        unknown.sort_by_key(|&id| (entries[id].call, id));
        let mut last: HashMap<KeyOp, usize> = HashMap::new();
        for id in unknown {
            prev_twin[id] = last.insert(entries[id].op, id);
        }
        Partition { key, ops: entries, prev_twin }
    }
}

/// The model state with the real value, for explanations (the search merges unread values).
#[derive(Clone, Copy)]
struct Shown<'a> {
    version: u64,
    value: &'a str,
}

impl<'a> Shown<'a> {
    /// Apply `op` as the search did (same state change), returning the model's output.
    fn apply(&mut self, op: &'a ConfigOp) -> ConfigOutput {
        match op {
            ConfigOp::Get { .. } => ConfigOutput::Value((self.version > 0).then(|| (self.value.to_string(), self.version))),
            ConfigOp::Put { value, expected, .. } => {
                if expected.is_none_or(|v| v == self.version) {
                    self.version = self.version.saturating_add(1);
                    self.value = value;
                    ConfigOutput::PutOk { version: self.version }
                } else {
                    ConfigOutput::Conflict { current: self.version }
                }
            }
        }
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version == 0 {
            f.write_str("absent")
        } else {
            write!(f, "{:?} (version {})", self.value, self.version)
        }
    }
}

enum KeyResult {
    Linearizable,
    Violation(String),
    Exhausted,
}

/// Wing & Gong / Lowe search with Porcupine's memoisation over one key's operations.
fn check_key(p: &Partition<'_>, max_steps: u64) -> KeyResult {
    let n = p.ops.len();
    // Events as (time, is_return, op): calls sort before returns at equal times (ties are
    // concurrent), then by op id for determinism.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (id, o) in p.ops.iter().enumerate() {
        events.push((o.call, false, id));
        if let Some(ret) = o.ret {
            events.push((ret, true, id));
        }
    }
    events.sort_unstable();

    // Doubly linked list over nodes 1..=m, with sentinels HEAD = 0 and tail = m + 1.
    const HEAD: usize = 0;
    let m = events.len();
    let tail = m + 1;
    let mut next: Vec<usize> = (1..=tail + 1).collect();
    let mut prev: Vec<usize> = (0..=tail).map(|i| i.saturating_sub(1)).collect();
    let mut node_op = vec![0usize; m + 2];
    let mut node_is_return = vec![false; m + 2];
    let mut return_node: Vec<Option<usize>> = vec![None; n];
    for (i, &(_, is_return, id)) in events.iter().enumerate() {
        node_op[i + 1] = id;
        node_is_return[i + 1] = is_return;
        if is_return {
            return_node[id] = Some(i + 1);
        }
    }
    let unlink = |next: &mut [usize], prev: &mut [usize], x: usize| {
        next[prev[x]] = next[x];
        prev[next[x]] = prev[x];
    };
    let relink = |next: &mut [usize], prev: &mut [usize], x: usize| {
        next[prev[x]] = x;
        prev[next[x]] = x;
    };

    let known_total = p.ops.iter().filter(|o| o.output.is_some()).count();
    let mut known_done = 0;
    let mut bits = vec![0u64; n.div_ceil(64)];
    let mut cache: HashSet<(Box<[u64]>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new(); // (call node, state before it)
    let mut state = ABSENT;
    let mut steps = 0u64;

    // For the explanation: the deepest stack seen, and the op whose return ended it.
    let mut best: Vec<usize> = Vec::new();
    let mut at_best = true;
    let mut blocker: Option<usize> = None;

    let mut node = next[HEAD];
    loop {
        if known_done == known_total {
            return KeyResult::Linearizable;
        }
        if steps >= max_steps {
            return KeyResult::Exhausted;
        }
        steps += 1;

        if node != tail && !node_is_return[node] {
            let id = node_op[node];
            let o = &p.ops[id];
            let (after, produced) = apply(state, o.op);
            let legal = o.output.is_none_or(|out| out == produced);
            // An unknown op that changes nothing here is as good placed at the very end; of
            // identical unknown ops, only the earliest called one not yet linearized is tried.
            let useful = o.output.is_some() || (after != state && p.prev_twin[id].is_none_or(|t| bits[t / 64] & (1 << (t % 64)) != 0));
            if legal && useful {
                bits[id / 64] |= 1 << (id % 64);
                if cache.insert((bits.clone().into_boxed_slice(), after)) {
                    stack.push((node, state));
                    state = after;
                    unlink(&mut next, &mut prev, node);
                    if let Some(r) = return_node[id] {
                        unlink(&mut next, &mut prev, r);
                    }
                    if o.output.is_some() {
                        known_done += 1;
                    }
                    if stack.len() > best.len() {
                        best = stack.iter().map(|&(c, _)| node_op[c]).collect();
                        at_best = true;
                        blocker = None;
                    } else {
                        at_best = false;
                    }
                    node = next[HEAD];
                    continue;
                }
                bits[id / 64] &= !(1 << (id % 64));
            }
            node = next[node];
        } else {
            // A return of an op not yet linearized (or, defensively, the end of the list):
            // the current prefix cannot be extended; backtrack.
            if at_best && blocker.is_none() && node != tail {
                blocker = Some(node_op[node]);
            }
            at_best = false;
            let Some((call_node, before)) = stack.pop() else {
                return KeyResult::Violation(explain(p, &best, blocker));
            };
            state = before;
            let id = node_op[call_node];
            bits[id / 64] &= !(1 << (id % 64));
            if p.ops[id].output.is_some() {
                known_done -= 1;
            }
            if let Some(r) = return_node[id] {
                relink(&mut next, &mut prev, r);
            }
            relink(&mut next, &mut prev, call_node);
            node = next[call_node];
        }
    }
}

/// How many prefix operations an explanation lists before eliding older ones.
const EXPLAIN_PREFIX: usize = 40;
/// How many concurrent operations an explanation lists.
const EXPLAIN_CONCURRENT: usize = 20;

fn explain(p: &Partition<'_>, best: &[usize], blocker: Option<usize>) -> String {
    use std::fmt::Write as _;
    let unknown = p.ops.iter().filter(|o| o.output.is_none()).count();
    let mut s = format!(
        "key {:?}: no linearization of its {} operations ({} with unknown outcome, which may take effect at any time after \
         their call or never).\n",
        p.key,
        p.ops.len(),
        unknown
    );
    let _ = writeln!(s, "The longest linearizable prefix found ({} operations), in order, with the state after each:", best.len());
    let mut state = Shown { version: 0, value: "" };
    let skip = best.len().saturating_sub(EXPLAIN_PREFIX);
    if skip > 0 {
        let _ = writeln!(s, "  ... {skip} earlier operations elided ...");
    }
    for (i, &id) in best.iter().enumerate() {
        let o = p.ops[id].orig;
        let produced = state.apply(&o.op);
        if i >= skip {
            let note = if p.ops[id].output.is_none() { format!(" (taken as {produced:?})") } else { String::new() };
            let _ = writeln!(s, "  {:>4}. {o}{note}  => {state}", i + 1);
        }
    }
    let _ = writeln!(s, "State after the prefix: {state}.");
    let Some(b) = blocker else {
        return s;
    };
    let expected = { state }.apply(&p.ops[b].orig.op);
    let _ = writeln!(
        s,
        "This operation returned, but neither it nor any operation concurrent with it can come next:\n  {}\n  \
         (from that state the model would answer {expected:?})",
        p.ops[b].orig,
    );
    let b_ret = p.ops[b].ret.unwrap_or(u64::MAX);
    let in_prefix: HashSet<usize> = best.iter().copied().collect();
    let concurrent: Vec<usize> = (0..p.ops.len()).filter(|&id| id != b && !in_prefix.contains(&id) && p.ops[id].call <= b_ret).collect();
    if !concurrent.is_empty() {
        let _ = writeln!(s, "Operations invoked before it returned and not in the prefix (model answer from that state in brackets):");
        for &id in concurrent.iter().take(EXPLAIN_CONCURRENT) {
            let produced = { state }.apply(&p.ops[id].orig.op);
            let _ = writeln!(s, "  {}  [{produced:?}]", p.ops[id].orig);
        }
        if concurrent.len() > EXPLAIN_CONCURRENT {
            let _ = writeln!(s, "  ... and {} more", concurrent.len() - EXPLAIN_CONCURRENT);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn get(key: &str) -> ConfigOp {
        ConfigOp::Get { key: key.to_string() }
    }
    fn put(key: &str, value: &str) -> ConfigOp {
        ConfigOp::Put { key: key.to_string(), value: value.to_string(), expected: None }
    }
    fn cas(key: &str, value: &str, expected: u64) -> ConfigOp {
        ConfigOp::Put { key: key.to_string(), value: value.to_string(), expected: Some(expected) }
    }
    fn val(value: &str, version: u64) -> ConfigOutput {
        ConfigOutput::Value(Some((value.to_string(), version)))
    }
    fn none() -> ConfigOutput {
        ConfigOutput::Value(None)
    }
    fn ok(version: u64) -> ConfigOutput {
        ConfigOutput::PutOk { version }
    }
    fn conflict(current: u64) -> ConfigOutput {
        ConfigOutput::Conflict { current }
    }

    /// A history from (client, op, call, ret, output) tuples plus unknown (client, op, call).
    fn history(done: Vec<(usize, ConfigOp, u64, u64, ConfigOutput)>, unknown: Vec<(usize, ConfigOp, u64)>) -> History {
        let mut h = History::new();
        for (client, op, call, ret, output) in done {
            h.record(Operation { client, op, call, outcome: Outcome::Returned { ret, output } });
        }
        for (client, op, call) in unknown {
            h.record(Operation { client, op, call, outcome: Outcome::Unknown });
        }
        h
    }

    fn verdict(done: Vec<(usize, ConfigOp, u64, u64, ConfigOutput)>, unknown: Vec<(usize, ConfigOp, u64)>) -> Verdict {
        check(&history(done, unknown), DEFAULT_MAX_STEPS)
    }

    #[track_caller]
    fn assert_lin(v: Verdict) {
        assert_eq!(v, Verdict::Linearizable);
    }

    #[track_caller]
    fn assert_violation(v: Verdict, want_key: &str) -> String {
        match v {
            Verdict::NotLinearizable { key, explanation } => {
                assert_eq!(key, want_key, "{explanation}");
                explanation
            }
            other => panic!("expected a violation on {want_key:?}, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_lin(check(&History::new(), 10));
    }

    #[test]
    fn sequential_legal() {
        assert_lin(verdict(
            vec![
                (0, get("k"), 0, 1, none()),
                (0, put("k", "a"), 2, 3, ok(1)),
                (1, get("k"), 4, 5, val("a", 1)),
                (1, cas("k", "b", 1), 6, 7, ok(2)),
                (0, cas("k", "c", 1), 8, 9, conflict(2)),
                (0, put("k", "a"), 10, 11, ok(3)),
                (1, get("k"), 12, 13, val("a", 3)),
                (1, cas("x", "z", 0), 14, 15, ok(1)),
                (1, get("x"), 16, 17, val("z", 1)),
            ],
            vec![],
        ));
    }

    #[test]
    fn sequential_illegal() {
        // A first put cannot produce version 2.
        assert_violation(verdict(vec![(0, put("k", "a"), 0, 1, ok(2))], vec![]), "k");
        // A read cannot see a value before it is written.
        assert_violation(verdict(vec![(0, get("k"), 0, 1, val("a", 1)), (0, put("k", "a"), 2, 3, ok(1))], vec![]), "k");
        // Right value, wrong version.
        assert_violation(verdict(vec![(0, put("k", "a"), 0, 1, ok(1)), (0, get("k"), 2, 3, val("a", 2))], vec![]), "k");
        // An output of the wrong kind.
        assert_violation(verdict(vec![(0, get("k"), 0, 1, ok(1))], vec![]), "k");
    }

    #[test]
    fn concurrent_put_get_linearizable_in_one_order_only() {
        // Two overlapping puts; a read in the middle pins "a" first, then "b".
        let ops = |last: ConfigOutput| {
            vec![
                (0, put("k", "a"), 0, 100, ok(1)),
                (1, put("k", "b"), 0, 100, ok(2)),
                (2, get("k"), 40, 60, val("a", 1)),
                (2, get("k"), 110, 120, last),
            ]
        };
        assert_lin(verdict(ops(val("b", 2)), vec![]));
        // "b" got version 2, so it was second: the last read cannot see "a".
        assert_violation(verdict(ops(val("a", 1)), vec![]), "k");
        // Both orders of the writes are possible when nothing pins them.
        assert_lin(verdict(
            vec![(0, put("k", "a"), 0, 100, ok(2)), (1, put("k", "b"), 0, 100, ok(1)), (2, get("k"), 110, 120, val("a", 2))],
            vec![],
        ));
    }

    #[test]
    fn stale_read_is_rejected() {
        let e = assert_violation(
            verdict(vec![(0, put("k", "a"), 0, 10, ok(1)), (0, put("k", "b"), 20, 30, ok(2)), (1, get("k"), 40, 50, val("a", 1))], vec![]),
            "k",
        );
        assert!(e.contains("get(\"k\")"), "{e}");
        assert!(e.contains("\"b\" (version 2)"), "{e}");
        // The same read overlapping the second put is fine.
        assert_lin(verdict(
            vec![(0, put("k", "a"), 0, 10, ok(1)), (0, put("k", "b"), 20, 30, ok(2)), (1, get("k"), 25, 50, val("a", 1))],
            vec![],
        ));
    }

    #[test]
    fn lost_acknowledged_write_is_rejected() {
        assert_violation(verdict(vec![(0, put("k", "a"), 0, 10, ok(1)), (1, get("k"), 20, 30, none())], vec![]), "k");
        assert_violation(
            verdict(vec![(0, put("k", "a"), 0, 10, ok(1)), (1, put("k", "b"), 20, 30, ok(2)), (1, put("k", "c"), 40, 50, ok(2))], vec![]),
            "k",
        );
    }

    #[test]
    fn unknown_puts_may_or_may_not_happen() {
        // Observed later: it happened.
        assert_lin(verdict(vec![(1, get("k"), 20, 30, val("a", 1))], vec![(0, put("k", "a"), 0)]));
        // Never observed: it did not happen (or happened after everything).
        assert_lin(verdict(vec![(1, get("k"), 20, 30, none()), (1, get("k"), 40, 50, none())], vec![(0, put("k", "a"), 0)]));
        // It took effect while later puts happened: versions count it.
        assert_lin(verdict(vec![(1, put("k", "b"), 20, 30, ok(2)), (1, get("k"), 40, 50, val("b", 2))], vec![(0, put("k", "a"), 0)]));
        // Unknown CAS: possibly applied, or possibly conflicted.
        assert_lin(verdict(vec![(1, put("k", "a"), 0, 5, ok(1)), (1, get("k"), 20, 30, val("x", 2))], vec![(0, cas("k", "x", 1), 10)]));
        assert_lin(verdict(vec![(1, put("k", "a"), 0, 5, ok(1)), (1, get("k"), 20, 30, val("a", 1))], vec![(0, cas("k", "x", 1), 10)]));
        // Seen, then unseen: a write cannot be undone.
        assert_violation(
            verdict(vec![(1, get("k"), 20, 30, val("a", 1)), (1, get("k"), 40, 50, none())], vec![(0, put("k", "a"), 0)]),
            "k",
        );
        // It cannot take effect before it was invoked.
        assert_violation(verdict(vec![(1, get("k"), 0, 10, val("a", 1))], vec![(0, put("k", "a"), 20)]), "k");
        // Unknown gets are ignored, whatever they are.
        assert_lin(verdict(vec![(1, put("k", "a"), 0, 10, ok(1))], vec![(0, get("k"), 20), (0, get("nowhere"), 20)]));
    }

    #[test]
    fn cas_semantics() {
        // Two concurrent CAS from version 0 cannot both succeed.
        assert_violation(verdict(vec![(0, cas("k", "a", 0), 0, 10, ok(1)), (1, cas("k", "b", 0), 0, 10, ok(1))], vec![]), "k");
        // One succeeds, the other conflicts on the version the first created.
        assert_lin(verdict(vec![(0, cas("k", "a", 0), 0, 10, ok(1)), (1, cas("k", "b", 0), 0, 10, conflict(1))], vec![]));
        // A conflict must report the right current version.
        assert_violation(verdict(vec![(0, cas("k", "a", 0), 0, 10, ok(1)), (1, cas("k", "b", 0), 0, 10, conflict(5))], vec![]), "k");
        // A conflict that claims the expected version is impossible.
        assert_violation(verdict(vec![(0, cas("k", "a", 0), 0, 10, conflict(0))], vec![]), "k");
        // Conflict against an absent key reports 0.
        assert_lin(verdict(vec![(0, cas("k", "a", 3), 0, 10, conflict(0))], vec![]));
    }

    #[test]
    fn equal_timestamps_are_concurrent() {
        // The get is invoked at the instant the put returns: it may precede the put.
        assert_lin(verdict(vec![(0, put("k", "a"), 0, 10, ok(1)), (1, get("k"), 10, 20, none())], vec![]));
        // Zero-length operations at one instant, in any order.
        assert_lin(verdict(vec![(1, get("k"), 5, 5, val("a", 1)), (0, put("k", "a"), 5, 5, ok(1)), (2, get("k"), 5, 5, none())], vec![]));
        // One nanosecond later it is strictly after.
        assert_violation(verdict(vec![(0, put("k", "a"), 0, 10, ok(1)), (1, get("k"), 11, 20, none())], vec![]), "k");
    }

    #[test]
    fn keys_are_checked_independently() {
        let h = history(
            vec![
                (0, put("a", "1"), 0, 10, ok(1)),
                (0, get("a"), 20, 30, val("1", 1)),
                (1, put("b", "1"), 0, 10, ok(1)),
                (1, get("b"), 20, 30, none()),
            ],
            vec![],
        );
        let e = assert_violation(check(&h, DEFAULT_MAX_STEPS), "b");
        assert!(e.starts_with("key \"b\""), "{e}");
        // A violation on one key wins over an exhausted budget on another.
        assert!(matches!(check(&h, 1), Verdict::Unknown { .. }));
    }

    #[test]
    fn budget_exhaustion_is_unknown() {
        let h =
            history(vec![(0, put("k", "a"), 0, 10, ok(1)), (1, put("k", "b"), 0, 10, ok(2)), (2, get("k"), 20, 30, val("b", 2))], vec![]);
        assert_eq!(check(&h, 2), Verdict::Unknown { key: "k".to_string() });
        assert_lin(check(&h, 100));
    }

    #[test]
    fn explanation_names_the_prefix_and_the_culprit() {
        let e = assert_violation(
            verdict(
                vec![
                    (0, put("k", "a"), 0, 10, ok(1)),
                    (1, get("k"), 20, 30, val("a", 1)),
                    (2, put("k", "b"), 40, 50, ok(2)),
                    (3, get("k"), 45, 70, val("zzz", 2)),
                ],
                vec![],
            ),
            "k",
        );
        assert!(e.contains("prefix found (3 operations)"), "{e}");
        assert!(e.contains("=> \"b\" (version 2)\nState after the prefix: \"b\" (version 2)."), "{e}");
        assert!(e.contains("client 3 [45, 70] get(\"k\") -> Value(Some((\"zzz\", 2)))"), "{e}");
        assert!(e.contains("model would answer Value(Some((\"b\", 2)))"), "{e}");
    }

    #[test]
    fn explanation_of_a_blocking_put() {
        let e = assert_violation(
            verdict(vec![(0, put("k", "a"), 0, 10, ok(1)), (1, put("k", "b"), 20, 40, ok(5)), (2, get("k"), 25, 50, val("b", 2))], vec![]),
            "k",
        );
        assert!(e.contains("client 1 [20, 40] put(\"k\", \"b\") -> PutOk { version: 5 }"), "{e}");
        assert!(e.contains("model would answer PutOk { version: 2 }"), "{e}");
        // The concurrent get is judged from the state after the prefix, not after the put.
        assert!(e.contains("get(\"k\") -> Value(Some((\"b\", 2)))  [Value(Some((\"a\", 1)))]"), "{e}");
    }

    /// xorshift64: enough randomness for generating histories, no crate needed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    struct GenParams {
        clients: usize,
        ops: usize,
        keys: usize,
        /// Max distance of call and return from the linearization point.
        spread: u64,
        /// Percent of operations whose outcome is recorded as unknown.
        unknown_pct: u64,
        /// Number of distinct values written (small = repeated values).
        values: u64,
    }

    /// Execute random ops sequentially on a real store, then give each op an interval around
    /// its linearization point (op i happens at time 10 * i). With spread < 5 * clients, each
    /// client's own ops do not overlap.
    fn generate(rng: &mut Rng, g: &GenParams) -> History {
        let mut store: HashMap<String, (String, u64)> = HashMap::new();
        let mut h = History::new();
        let base = g.spread + 10;
        for i in 0..g.ops {
            let key = format!("key{}", rng.below(g.keys as u64));
            let version = store.get(&key).map_or(0, |(_, v)| *v);
            let value = format!("v{}", rng.below(g.values));
            let op = match rng.below(10) {
                0..=3 => get(&key),
                4..=6 => put(&key, &value),
                _ if rng.chance(60) => cas(&key, &value, version),
                _ => cas(&key, &value, rng.below(version + 2)),
            };
            let unknown = rng.chance(g.unknown_pct);
            // An unknown put may not have happened at all.
            let happened = !unknown || rng.chance(50);
            let output = match &op {
                ConfigOp::Get { .. } => ConfigOutput::Value(store.get(&key).cloned()),
                ConfigOp::Put { expected, value, .. } => {
                    if expected.is_none_or(|e| e == version) {
                        if happened {
                            store.insert(key.clone(), (value.clone(), version + 1));
                        }
                        ok(version + 1)
                    } else {
                        conflict(version)
                    }
                }
            };
            let at = base + 10 * i as u64;
            let call = at - rng.below(g.spread + 1);
            let ret = at + rng.below(g.spread + 1);
            let outcome = if unknown { Outcome::Unknown } else { Outcome::Returned { ret, output } };
            h.record(Operation { client: i % g.clients, op, call, outcome });
        }
        h
    }

    /// Replace one known read's output with a value never written; false if there is none.
    fn corrupt_a_read(rng: &mut Rng, h: &mut History) -> bool {
        let reads: Vec<usize> = (0..h.ops.len())
            .filter(|&i| matches!((&h.ops[i].op, &h.ops[i].outcome), (ConfigOp::Get { .. }, Outcome::Returned { .. })))
            .collect();
        if reads.is_empty() {
            return false;
        }
        let i = reads[rng.below(reads.len() as u64) as usize];
        if let Outcome::Returned { output, .. } = &mut h.ops[i].outcome {
            *output = val("never-written", 1 + rng.below(3));
        }
        true
    }

    #[test]
    fn randomized_histories() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut corrupted = 0;
        for round in 0..400 {
            let g = GenParams {
                clients: 1 + rng.below(6) as usize,
                ops: 5 + rng.below(40) as usize,
                keys: 1 + rng.below(2) as usize,
                spread: rng.below(60),
                unknown_pct: [0, 10, 25][round % 3],
                values: 2 + rng.below(6),
            };
            let mut h = generate(&mut rng, &g);
            assert_eq!(check(&h, DEFAULT_MAX_STEPS), Verdict::Linearizable, "round {round}: {h:#?}");
            if corrupt_a_read(&mut rng, &mut h) {
                corrupted += 1;
                assert!(matches!(check(&h, DEFAULT_MAX_STEPS), Verdict::NotLinearizable { .. }), "round {round}: {h:#?}");
            }
        }
        assert!(corrupted > 300, "{corrupted}");
    }

    fn perf_history(rng: &mut Rng) -> History {
        generate(rng, &GenParams { clients: 5, ops: 5 * 200, keys: 3, spread: 24, unknown_pct: 3, values: 4 })
    }

    #[test]
    fn performance_5_clients_200_ops_3_keys() {
        let mut rng = Rng(42);
        for _ in 0..3 {
            let mut h = perf_history(&mut rng);
            assert_eq!(check(&h, DEFAULT_MAX_STEPS), Verdict::Linearizable);
            assert!(corrupt_a_read(&mut rng, &mut h));
            assert!(matches!(check(&h, DEFAULT_MAX_STEPS), Verdict::NotLinearizable { .. }));
        }
    }

    #[test]
    fn recorder_with_real_threads() {
        let store: Arc<Mutex<HashMap<String, (String, u64)>>> = Arc::default();
        let rec = Recorder::new();
        let threads: Vec<_> = (0..4)
            .map(|client| {
                let (rec, store) = (rec.clone(), store.clone());
                std::thread::spawn(move || {
                    let mut rng = Rng(client as u64 * 7919 + 1);
                    for i in 0..50 {
                        let key = format!("k{}", rng.below(2));
                        let value = format!("c{client}-{i}");
                        let op = match rng.below(3) {
                            0 => get(&key),
                            1 => put(&key, &value),
                            _ => cas(&key, &value, rng.below(4)),
                        };
                        let pending = rec.call(client, op.clone());
                        let output = {
                            let mut s = store.lock().unwrap();
                            let version = s.get(&key).map_or(0, |(_, v)| *v);
                            match op {
                                ConfigOp::Get { .. } => ConfigOutput::Value(s.get(&key).cloned()),
                                ConfigOp::Put { expected, value, .. } if expected.is_none_or(|e| e == version) => {
                                    s.insert(key, (value, version + 1));
                                    ok(version + 1)
                                }
                                ConfigOp::Put { .. } => conflict(version),
                            }
                        };
                        match rng.below(10) {
                            0 => pending.unknown(),
                            1 => drop(pending),
                            _ => pending.ok(output),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let h = rec.history();
        assert_eq!(h.len(), 200);
        assert!(h.operations().iter().all(|o| match o.outcome {
            Outcome::Returned { ret, .. } => ret >= o.call,
            Outcome::Unknown => true,
        }));
        assert_lin(check(&h, DEFAULT_MAX_STEPS));
    }

    /// The definition, by brute force: try every order of the operations (on one key) that
    /// respects real time, letting unknown operations happen anywhere after their call or never.
    fn brute_force(ops: &[Operation]) -> bool {
        fn go(ops: &[Operation], used: &mut Vec<bool>, state: Option<(String, u64)>) -> bool {
            let pending_known = |used: &[bool], i: usize| !used[i] && matches!(ops[i].outcome, Outcome::Returned { .. });
            if !(0..ops.len()).any(|i| pending_known(used, i)) {
                return true;
            }
            for i in 0..ops.len() {
                // Every op that returned strictly before this one's call must already be placed.
                let blocked = (0..ops.len()).any(|j| {
                    pending_known(used, j) && matches!(ops[j].outcome, Outcome::Returned { ret, .. } if ret.max(ops[j].call) < ops[i].call)
                });
                if used[i] || blocked {
                    continue;
                }
                let version = state.as_ref().map_or(0, |(_, v)| *v);
                let (next, output) = match &ops[i].op {
                    ConfigOp::Get { .. } => (state.clone(), ConfigOutput::Value(state.clone())),
                    ConfigOp::Put { value, expected, .. } if expected.is_none_or(|e| e == version) => {
                        (Some((value.clone(), version + 1)), ok(version + 1))
                    }
                    ConfigOp::Put { .. } => (state.clone(), conflict(version)),
                };
                let matches = match &ops[i].outcome {
                    Outcome::Returned { output: recorded, .. } => *recorded == output,
                    Outcome::Unknown => true,
                };
                if matches {
                    used[i] = true;
                    let found = go(ops, used, next);
                    used[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        go(ops, &mut vec![false; ops.len()], None)
    }

    #[test]
    fn agrees_with_brute_force() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let (mut yes, mut no) = (0, 0);
        for round in 0..3000 {
            let g =
                GenParams { clients: 3, ops: 2 + rng.below(6) as usize, keys: 1, spread: rng.below(4) * 10, unknown_pct: 30, values: 3 };
            let mut h = generate(&mut rng, &g);
            // Squeeze times onto a coarse grid so that many of them tie.
            for o in &mut h.ops {
                o.call /= 10;
                if let Outcome::Returned { ret, .. } = &mut o.outcome {
                    *ret /= 10;
                }
            }
            // Corrupt one output half of the time, within a small space of plausible outputs.
            if rng.chance(50) {
                let i = rng.below(h.ops.len() as u64) as usize;
                let wrong = match rng.below(3) {
                    0 => ConfigOutput::Value((rng.chance(70)).then(|| (format!("v{}", rng.below(3)), 1 + rng.below(3)))),
                    1 => ok(1 + rng.below(3)),
                    _ => conflict(rng.below(3)),
                };
                if let Outcome::Returned { output, .. } = &mut h.ops[i].outcome {
                    *output = wrong;
                }
            }
            let expected = brute_force(&h.ops);
            let got = check(&h, DEFAULT_MAX_STEPS);
            assert_eq!(got == Verdict::Linearizable, expected, "round {round}: {got:?} for {h:#?}");
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 1000 && no > 500, "{yes} linearizable, {no} not");
    }
}
