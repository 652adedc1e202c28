//! Ctrl-C (SIGINT) and termination requests (SIGTERM, as Slurm and Kubernetes send): the first
//! asks a worker to stop cleanly, giving its trial back to the study; a second of the same kind
//! ends the process at once.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static TERMINATED: AtomicBool = AtomicBool::new(false);
static WATCH: Once = Once::new();

/// Starts watching for the signals (once per process).
pub fn watch() -> Result<()> {
    let mut result = Ok(());
    WATCH.call_once(|| {
        result = (|| {
            for (signal, seen) in [(SIGINT, &INTERRUPTED), (SIGTERM, &TERMINATED)] {
                // The shutdown goes first: it fires only when the flag was already set.
                flag::register_conditional_shutdown(signal, 128 + signal, seen)?;
                flag::register(signal, seen)?;
            }
            Ok(())
        })();
    });
    result
}

/// Whether the process was asked to stop (Ctrl-C or SIGTERM).
pub fn stop_requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) || TERMINATED.load(Ordering::SeqCst)
}

/// Whether the process got SIGTERM, which (unlike a terminal's Ctrl-C) reaches it alone and
/// not its child processes.
pub fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
}
