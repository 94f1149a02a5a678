//! The job runtime: worker threads, interrupts and size limits.
//!
//! A job (one `evaluate`, `discover_slices`, `bin_edges` or `slice_rows` call) runs on a
//! thread of its own ([`run_job`]) while the calling thread waits and polls for interrupts
//! (the PyO3 layer polls Python's signal handlers, which only run on Python's main thread).
//! An interrupt sets the job's [`Interrupt`] flag; every long stage of the job polls it with
//! [`interrupted`], a thread-local lookup and an atomic load, on the job thread and on every
//! worker of the job's rayon pool ([`job_pool`] hands the flag to its workers). A job whose
//! flag was set always ends with [`AssayError::Interrupted`], whatever its stages returned, so
//! the partial sums of a stage that stopped early never reach a report.
//!
//! Panics inside a job (on its thread or in a rayon worker, which rayon re-raises at
//! `install`) are caught and become [`AssayError::Internal`].

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{AssayError, Result};

/// A job's interrupt flag: set once, never cleared.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the job to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Runs `f` with this flag as the current thread's job interrupt (what [`interrupted`]
    /// reads there and what [`job_pool`] hands to the workers of pools built inside `f`).
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Arc<AtomicBool>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = prev);
            }
        }
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.0.clone()));
        let _restore = Restore(prev);
        f()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

fn current_flag() -> Option<Arc<AtomicBool>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether the job running on this thread was asked to stop (false outside a job). Cheap
/// enough to call every few thousand rows.
#[inline]
pub fn interrupted() -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// `Err(Interrupted)` when the job running on this thread was asked to stop.
#[inline]
pub fn check() -> Result<()> {
    if interrupted() {
        Err(AssayError::Interrupted)
    } else {
        Ok(())
    }
}

/// Rows (or items) a long walk handles between two polls of [`interrupted`].
pub const POLL_ROWS: usize = 1 << 16;

/// Rows between two polls where each row updates every replicate slot (a row then costs
/// thousands of operations).
pub const POLL_REPLICATED_ROWS: usize = 1 << 10;

/// How often the calling thread of [`run_job`] polls for interrupts.
pub const POLL_PERIOD: Duration = Duration::from_millis(25);

/// The number of cores this process may use (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most worker threads a job may ask for: 4 x the available cores. More only costs
/// (each is an OS thread started one by one), and a typo such as `n_threads=100000` would
/// otherwise spend minutes starting threads.
pub fn max_threads() -> usize {
    cores().saturating_mul(4)
}

/// A rayon pool owned by one job. Each job builds its own rather than using the global pool
/// so that a process forked after a call (multiprocessing) starts clean, and so that
/// `n_threads` is honoured exactly. `None` means one thread per core. The workers see the
/// calling thread's job interrupt (see [`Interrupt::enter`]).
pub fn job_pool(n_threads: Option<usize>) -> Result<rayon::ThreadPool> {
    if let Some(n) = n_threads {
        let max = max_threads();
        if n == 0 {
            return Err(AssayError::InvalidArgument(
                "n_threads must be at least 1".into(),
            ));
        }
        if n > max {
            return Err(AssayError::InvalidArgument(format!(
                "n_threads must be at most {max} (4 x the {} available cores), got {n}",
                cores()
            )));
        }
    }
    let flag = current_flag();
    rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads.unwrap_or(0))
        .start_handler(move |_| {
            let flag = flag.clone();
            CURRENT.with(|c| *c.borrow_mut() = flag);
        })
        .build()
        .map_err(|e| AssayError::InvalidArgument(format!("could not start worker threads: {e}")))
}

/// The message of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `f`, turning a panic into [`AssayError::Internal`].
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(AssayError::Internal(panic_message(&*payload))),
    }
}

/// Stack of a job thread: as much as a process's main thread usually gets.
const JOB_STACK: usize = 8 << 20;

/// Runs `job` on a thread of its own with a fresh [`Interrupt`] and waits for it, calling
/// `poll` on the calling thread every [`POLL_PERIOD`] until it returns true (then the job is
/// asked to stop and `poll` is not called again). A panic in the job becomes
/// [`AssayError::Internal`]; a job asked to stop returns [`AssayError::Interrupted`] whatever
/// it computed.
pub fn run_job<T: Send>(
    poll: &mut dyn FnMut() -> bool,
    job: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    run_job_fed(poll, &mut || None::<()>, |_fed| job())
}

/// Batches a fed job may have in flight between the calling thread and the job thread.
const FEED_DEPTH: usize = 2;

/// The input of a job fed by its calling thread ([`run_job_fed`]): an iterator that blocks
/// until the calling thread hands over the next item, and ends when the input ends (or the
/// job was asked to stop). Nothing is read before the job asks for its first item, so a job
/// that fails its checks leaves a one-shot input unread.
pub struct Fed<B> {
    items: std::sync::mpsc::Receiver<B>,
    /// Told of every item asked for: the calling thread waits on it for room in the channel.
    want: std::sync::mpsc::Sender<()>,
}

impl<B> Iterator for Fed<B> {
    type Item = B;

    fn next(&mut self) -> Option<B> {
        let _ = self.want.send(());
        self.items.recv().ok()
    }
}

/// Like [`run_job`], but the job's input is produced on the calling thread: `next` is called
/// there, item by item, and the items reach the job through a bounded channel ([`Fed`]).
///
/// Why: an input may be a Python generator (or a reader over a thread-bound resource such as
/// a sqlite connection). Pulled on the calling thread (Python's main thread), it runs where
/// its author expects, and Ctrl-C interrupts it where it blocks (Python raises
/// `KeyboardInterrupt` inside it); pulled on the job thread, a blocked generator could not be
/// interrupted at all. `poll` is called between items (at most every [`POLL_PERIOD`]) and,
/// once the input has ended, every [`POLL_PERIOD`] while the job finishes.
pub fn run_job_fed<T: Send, B: Send>(
    poll: &mut dyn FnMut() -> bool,
    next: &mut dyn FnMut() -> Option<B>,
    job: impl FnOnce(Fed<B>) -> Result<T> + Send,
) -> Result<T> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError, TrySendError};
    let interrupt = Interrupt::new();
    let (tx, rx) = std::sync::mpsc::channel::<Result<T>>();
    let (feed, items) = std::sync::mpsc::sync_channel::<B>(FEED_DEPTH);
    let (want, wanted) = std::sync::mpsc::channel::<()>();
    let ended = || AssayError::Internal("the job thread ended without a result".into());
    let result = std::thread::scope(|scope| {
        let flag = interrupt.clone();
        let fed = Fed { items, want };
        let spawned = std::thread::Builder::new()
            .name("assay-job".into())
            .stack_size(JOB_STACK)
            .spawn_scoped(scope, move || {
                let out = flag.enter(|| catch_panic(|| job(fed)));
                let _ = tx.send(out);
            });
        if let Err(e) = spawned {
            return Err(AssayError::InvalidArgument(format!(
                "could not start the job thread: {e}"
            )));
        }
        // Until the job asks for its first item (or drops its input unread).
        let mut feed = loop {
            match wanted.recv_timeout(POLL_PERIOD) {
                Ok(()) => break Some(feed),
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {
                    if !interrupt.is_set() && poll() {
                        interrupt.trigger();
                        break None; // the job sees the end of its input, then the flag
                    }
                }
            }
        };
        let mut polled = std::time::Instant::now();
        loop {
            if let Some(sender) = &feed {
                match rx.try_recv() {
                    Ok(out) => return out,
                    Err(TryRecvError::Disconnected) => return Err(ended()),
                    Err(TryRecvError::Empty) => {}
                }
                // The channel is full while the job is busy with the items before it: the
                // send is retried every POLL_PERIOD, polling between tries (a job that reads
                // several batches before it computes may hold them for seconds, and Ctrl-C
                // must reach it meanwhile). It fails once the job stopped reading (it
                // returned), and then the input is left.
                let more = match next() {
                    Some(mut item) => loop {
                        match sender.try_send(item) {
                            Ok(()) => break true,
                            Err(TrySendError::Disconnected(_)) => break false,
                            Err(TrySendError::Full(back)) => item = back,
                        }
                        // Woken when the job asks for an item (room in the channel), or
                        // after POLL_PERIOD; a job that returned dropped its side.
                        match wanted.recv_timeout(POLL_PERIOD) {
                            Ok(()) => {}
                            Err(RecvTimeoutError::Disconnected) => break false,
                            Err(RecvTimeoutError::Timeout) => {}
                        }
                        if polled.elapsed() >= POLL_PERIOD {
                            polled = std::time::Instant::now();
                            if !interrupt.is_set() && poll() {
                                interrupt.trigger();
                                break false;
                            }
                        }
                    },
                    None => false,
                };
                if !more {
                    feed = None;
                }
                if polled.elapsed() >= POLL_PERIOD {
                    polled = std::time::Instant::now();
                    if !interrupt.is_set() && poll() {
                        interrupt.trigger();
                        feed = None;
                    }
                }
                continue;
            }
            match rx.recv_timeout(POLL_PERIOD) {
                Ok(out) => return out,
                Err(RecvTimeoutError::Timeout) => {
                    if !interrupt.is_set() && poll() {
                        interrupt.trigger();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(ended()),
            }
        }
    });
    if interrupt.is_set() {
        return Err(AssayError::Interrupted);
    }
    result
}

/// `a x b x ...` of user-controlled sizes, or an error naming `what` when it overflows.
pub fn checked_product(factors: &[usize], what: &str) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, f| acc.checked_mul(*f))
        .ok_or_else(|| AssayError::InvalidArgument(format!("{what} is too large to represent")))
}

/// Refuses a user-controlled count `n` of `what` above `max`, with an error that says the
/// limit.
pub fn check_count(what: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(AssayError::InvalidArgument(format!(
            "{what} must be at most {max}, got {n}"
        )));
    }
    Ok(())
}

/// Panics inside a rayon worker of a job pool: the tests of the FFI boundary use it to show
/// that such a panic surfaces as an `Internal` error.
#[doc(hidden)]
pub fn panic_in_a_worker() -> Result<()> {
    use rayon::prelude::*;
    job_pool(Some(2))?.install(|| {
        (0..64u32).into_par_iter().for_each(|i| {
            if i == 33 {
                panic!("a deliberate panic in a worker for the tests");
            }
        })
    });
    Ok(())
}

/// A vector with room for `capacity` items. Large buffers ask the kernel for transparent huge
/// pages: first-touch page faults otherwise dominate a pass over hundreds of megabytes.
pub fn big_vec<T>(capacity: usize) -> Vec<T> {
    let v = Vec::with_capacity(capacity);
    advise_huge(&v);
    v
}

/// Reserves room for `additional` more items (at least doubling the capacity, as
/// `Vec::reserve` does). A buffer that must move is allocated and advised huge pages before
/// its items are copied in: growing it by `realloc` copied them into memory faulted in 4 KiB
/// pages (a stream's kept rows grow so, batch by batch). (Growing buffers of 32 MiB or more,
/// glibc's own mappings, by `realloc`, which moves their pages instead of copying, measured
/// slower.)
pub fn reserve_big<T: Copy>(v: &mut Vec<T>, additional: usize) {
    if v.capacity() - v.len() >= additional {
        return;
    }
    let need = v.len().saturating_add(additional);
    let cap = need.max(v.capacity().saturating_mul(2));
    let mut grown: Vec<T> = big_vec(cap);
    grown.extend_from_slice(v);
    *v = grown;
}

#[cfg(target_os = "linux")]
fn advise_huge<T>(v: &Vec<T>) {
    const HUGE: usize = 1 << 21;
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < 4 * HUGE {
        return;
    }
    let p = v.as_ptr() as usize;
    let start = (p + HUGE - 1) & !(HUGE - 1);
    let end = (p + bytes) & !(HUGE - 1);
    if end > start {
        // SAFETY: the range lies inside the vector's own allocation; MADV_HUGEPAGE only
        // changes how the kernel backs it, never its contents. Failure is harmless.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge<T>(_: &Vec<T>) {}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn thread_limit_is_enforced_with_the_limit_named() {
        let max = max_threads();
        assert!(max >= 4);
        let e = job_pool(Some(max + 1)).expect_err("refused");
        let msg = e.to_string();
        assert!(matches!(e, AssayError::InvalidArgument(_)));
        assert!(msg.contains(&max.to_string()), "{msg}");
        assert!(job_pool(Some(0)).is_err());
        assert!(job_pool(Some(2)).is_ok());
        assert!(job_pool(None).is_ok());
    }

    #[test]
    fn workers_of_a_job_pool_see_the_job_interrupt() {
        let flag = Interrupt::new();
        let seen = flag.enter(|| {
            let pool = job_pool(Some(2)).unwrap();
            assert!(!interrupted());
            flag.trigger();
            pool.install(|| (0..64).into_par_iter().all(|_| interrupted()))
        });
        assert!(seen);
        // Outside the job nothing is interrupted.
        assert!(!interrupted());
    }

    #[test]
    fn run_job_stops_a_long_job_and_reports_the_interrupt() {
        let mut polls = 0;
        let out: Result<u64> = run_job(
            &mut || {
                polls += 1;
                polls >= 2
            },
            || {
                let pool = job_pool(Some(2))?;
                let start = std::time::Instant::now();
                // A "walk" that only ends when asked to (or after 60 s: a failed test).
                pool.install(|| {
                    while !interrupted() && start.elapsed() < Duration::from_secs(60) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                });
                assert!(start.elapsed() < Duration::from_secs(30));
                Ok(1)
            },
        );
        assert_eq!(out, Err(AssayError::Interrupted));
        assert_eq!(polls, 2);
    }

    #[test]
    fn a_fed_job_gets_every_item_in_order_and_nothing_is_read_before_it_asks() {
        let mut pulled = 0u32;
        let out = run_job_fed(
            &mut || false,
            &mut || {
                pulled += 1;
                (pulled <= 1000).then_some(pulled)
            },
            |fed| Ok(fed.collect::<Vec<u32>>()),
        );
        assert_eq!(out, Ok((1..=1000).collect::<Vec<u32>>()));

        // A job that fails before reading leaves its input untouched.
        let mut pulled = 0u32;
        let out: Result<()> = run_job_fed(
            &mut || false,
            &mut || {
                pulled += 1;
                Some(pulled)
            },
            |_fed| Err(AssayError::InvalidArgument("bad spec".into())),
        );
        assert!(matches!(out, Err(AssayError::InvalidArgument(_))));
        assert_eq!(pulled, 0);

        // A job that stops reading early: the feeding stops too (no endless input).
        let out = run_job_fed(&mut || false, &mut || Some(1u8), |fed| {
            Ok(fed.take(5).count())
        });
        assert_eq!(out, Ok(5));
    }

    #[test]
    fn an_interrupt_while_feeding_ends_the_input_and_reports_the_interrupt() {
        let mut polls = 0;
        let out: Result<usize> = run_job_fed(
            &mut || {
                polls += 1;
                polls >= 2
            },
            &mut || {
                std::thread::sleep(Duration::from_millis(5));
                Some(0u8)
            },
            |fed| Ok(fed.count()),
        );
        assert_eq!(out, Err(AssayError::Interrupted));
    }

    #[test]
    fn an_interrupt_reaches_a_job_that_holds_its_items_while_it_computes() {
        // The job takes three items, then computes for up to 10 s without taking more (the
        // feed channel stays full): the interrupt must still reach it, within a few polls.
        let start = std::time::Instant::now();
        let mut polls = 0;
        let out: Result<Duration> = run_job_fed(
            &mut || {
                polls += 1;
                start.elapsed() > Duration::from_millis(200)
            },
            &mut || Some(0u8),
            |mut fed| {
                for _ in 0..3 {
                    fed.next();
                }
                let busy = std::time::Instant::now();
                while !interrupted() && busy.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(busy.elapsed())
            },
        );
        assert_eq!(out, Err(AssayError::Interrupted));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(polls >= 2);
    }

    #[test]
    fn run_job_returns_results_and_turns_panics_into_internal_errors() {
        assert_eq!(run_job(&mut || false, || Ok(7)), Ok(7));
        let e = run_job::<()>(&mut || false, || panic!("boom {}", 1)).unwrap_err();
        assert_eq!(e, AssayError::Internal("boom 1".into()));
        // A panic in a rayon worker surfaces at `install` and is caught too.
        let e = run_job::<usize>(&mut || false, || {
            let pool = job_pool(Some(2))?;
            Ok(pool.install(|| {
                (0..100usize)
                    .into_par_iter()
                    .map(|i| if i == 57 { panic!("worker {i}") } else { i })
                    .sum()
            }))
        })
        .unwrap_err();
        assert_eq!(e, AssayError::Internal("worker 57".into()));
    }

    #[test]
    fn size_products_are_checked() {
        assert_eq!(checked_product(&[3, 4, 5], "x"), Ok(60));
        assert!(checked_product(&[usize::MAX, 2], "x").is_err());
        assert!(check_count("bins", 11, 10)
            .unwrap_err()
            .to_string()
            .contains("10"));
        assert!(check_count("bins", 10, 10).is_ok());
    }
}
