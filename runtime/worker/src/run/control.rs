//! One task's controls, shared by its thread and whoever steers it (the supervisor, the
//! REST API): stop and pause flags the loop reads without a lock, and the state the status
//! endpoints show, behind a mutex with a condition variable the loop and the driver wait on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::status::{State, TaskStatus};

/// What the task's driver is asked to do once its loop has returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Keep running (restart after a failure, per the policy).
    Run,
    /// Start the task again now (a restart asked for).
    Restart,
    /// Leave: the connector is stopped or deleted, or the worker shuts down.
    Exit,
}

#[derive(Debug)]
struct Inner {
    state: State,
    trace: Option<String>,
    restarts: u64,
    want: Want,
}

#[derive(Debug)]
pub(crate) struct TaskControl {
    pub(crate) id: u32,
    /// The loop leaves at its next check (read on the hot path: an atomic, no lock).
    stop: AtomicBool,
    paused: AtomicBool,
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl TaskControl {
    pub(crate) fn new(id: u32, paused: bool) -> TaskControl {
        TaskControl {
            id,
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(paused),
            inner: Mutex::new(Inner {
                state: State::Unassigned,
                trace: None,
                restarts: 0,
                want: Want::Run,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub(crate) fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Blocks the task's loop while it is paused (and not asked to stop).
    pub(crate) fn wait_while_paused(&self) {
        self.wait_while_paused_unless(|| false)
    }

    /// [`TaskControl::wait_while_paused`], or until `leave()` says the loop must go (looked at
    /// every 200 ms; a source whose lease moved to another worker).
    pub(crate) fn wait_while_paused_unless(&self, leave: impl Fn() -> bool) {
        let mut inner = self.lock();
        while self.is_paused() && !self.should_stop() && !leave() {
            inner = self
                .changed
                .wait_timeout(inner, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        let mut inner = self.lock();
        if inner.state == State::Running {
            inner.state = State::Paused;
        }
        self.changed.notify_all();
    }

    pub(crate) fn resume(&self) {
        self.paused.store(false, Ordering::Release);
        let mut inner = self.lock();
        if inner.state == State::Paused {
            inner.state = State::Running;
        }
        self.changed.notify_all();
    }

    /// Asks the driver for `want` (a restart or an exit): the loop leaves at its next check.
    pub(crate) fn request(&self, want: Want) {
        let mut inner = self.lock();
        // An exit is never downgraded to a restart.
        if inner.want != Want::Exit {
            inner.want = want;
            if want == Want::Restart {
                inner.state = State::Restarting;
            }
        }
        self.stop.store(want != Want::Run, Ordering::Release);
        self.changed.notify_all();
    }

    /// Clears an exit asked for, so that a driver can start again (a stopped connector
    /// resumed).
    pub(crate) fn rearm(&self) {
        let mut inner = self.lock();
        inner.want = Want::Run;
        self.stop.store(false, Ordering::Release);
    }

    pub(crate) fn want(&self) -> Want {
        self.lock().want
    }

    /// A new run of the task begins: RUNNING (or PAUSED), no trace, no request pending.
    pub(crate) fn begin_run(&self) -> Want {
        let mut inner = self.lock();
        if inner.want == Want::Exit {
            return Want::Exit;
        }
        inner.want = Want::Run;
        self.stop.store(false, Ordering::Release);
        inner.state = if self.is_paused() {
            State::Paused
        } else {
            State::Running
        };
        inner.trace = None;
        Want::Run
    }

    pub(crate) fn set(&self, state: State, trace: Option<String>) {
        let mut inner = self.lock();
        inner.state = state;
        inner.trace = trace;
        self.changed.notify_all();
    }

    pub(crate) fn count_restart(&self) {
        self.lock().restarts += 1;
    }

    /// Waits until `timeout` passes (`None`: for ever) or a restart or exit is asked for, and
    /// says which.
    pub(crate) fn wait_for_request(&self, timeout: Option<Duration>) -> Want {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = self.lock();
        loop {
            if inner.want != Want::Run {
                return inner.want;
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Want::Run,
                },
                None => Duration::from_secs(1),
            };
            inner = self
                .changed
                .wait_timeout(inner, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub(crate) fn status(&self) -> TaskStatus {
        let inner = self.lock();
        TaskStatus {
            id: self.id,
            state: inner.state,
            trace: inner.trace.clone(),
            restarts: inner.restarts,
            worker_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_pause_holds_the_loop_until_resumed_or_stopped() {
        let c = Arc::new(TaskControl::new(0, false));
        assert_eq!(c.begin_run(), Want::Run);
        assert_eq!(c.status().state, State::Running);
        c.pause();
        assert_eq!(c.status().state, State::Paused);
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.wait_while_paused())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a paused loop waits");
        c.resume();
        waiter.join().unwrap();
        assert_eq!(c.status().state, State::Running);
    }

    #[test]
    fn requests_wake_the_driver_and_an_exit_is_never_downgraded() {
        let c = Arc::new(TaskControl::new(1, false));
        c.begin_run();
        assert_eq!(
            c.wait_for_request(Some(Duration::from_millis(10))),
            Want::Run
        );
        let asker = {
            let c = c.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                c.request(Want::Restart)
            })
        };
        assert_eq!(c.wait_for_request(None), Want::Restart);
        asker.join().unwrap();
        assert!(c.should_stop(), "the loop leaves for a restart");
        assert_eq!(c.begin_run(), Want::Run);
        assert!(!c.should_stop());
        c.request(Want::Exit);
        c.request(Want::Restart);
        assert_eq!(c.want(), Want::Exit);
        assert_eq!(c.begin_run(), Want::Exit);
    }
}
