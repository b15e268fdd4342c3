//! `make bench`: one table of everything that decides what a task costs, measured in one run
//! on this machine: the scheduler end to end, the sandbox alone, compute against native code,
//! the disk, and Ray on the same tasks.

pub mod disk;
pub mod e2e;
pub mod inprocess;
pub mod native;
pub mod ray;
pub mod table;

/// Prints what the benchmark is doing, so no step is a silent minute.
pub fn step(what: &str) {
    eprintln!("bench: {what}");
}
