//! What a step of the initiator leaves to do once the device's lock is
//! dropped: the frames its engine queued, unicast query configs (new paths'
//! verifications), and the finished requests whose callbacks run last. A
//! leaf: it knows the engine's and the wire's types, nothing of the
//! initiator.

use crate::engine::{Completions, IoDone, IoResult, Outbox};
use crate::wire::Mac;

/// A unicast query config to send on one link once the device's lock is
/// dropped (a new path's verification).
#[derive(Debug, Clone, Copy)]
pub(super) struct ConfigQuery {
    pub(super) link: usize,
    pub(super) shelf: u16,
    pub(super) slot: u8,
    pub(super) dst: Mac,
}

/// The effects of one step (or, on a capture thread, of a burst of
/// frames), carried out in this order once no lock is held: the frames
/// (the target works while we answer), the queries, then the completions.
#[derive(Default)]
pub(super) struct Effects {
    pub(super) out: Outbox,
    pub(super) queries: Vec<ConfigQuery>,
    pub(super) done: Completions,
}

impl Effects {
    const fn new() -> Effects {
        Effects { out: Vec::new(), queries: Vec::new(), done: Vec::new() }
    }
}

thread_local! {
    /// One reusable `Effects` per thread, so the submit path does not allocate.
    static EFFECTS: std::cell::RefCell<Effects> = const { std::cell::RefCell::new(Effects::new()) };
}

/// Runs `f` with this thread's (empty) `Effects` and puts it back after,
/// emptied. A call nested in `f` (a completion that submits again) gets an
/// `Effects` of its own.
pub(super) fn with_effects<R>(f: impl FnOnce(&mut Effects) -> R) -> R {
    let mut fx = EFFECTS.with(|e| std::mem::take(&mut *e.borrow_mut()));
    let r = f(&mut fx);
    debug_assert!(fx.done.is_empty(), "completions left to run");
    fx.out.clear();
    fx.queries.clear();
    EFFECTS.with(|e| *e.borrow_mut() = fx);
    r
}

/// Runs finished requests' callbacks (outside every lock).
pub(super) fn run_completions(c: impl IntoIterator<Item = (IoDone, IoResult)>) {
    for (done, res) in c {
        done(res);
    }
}
