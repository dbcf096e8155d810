//! The core's integration tests, one binary (a binary per file took
//! minutes of linking in the test run): each module is one concern, as the
//! files were. A test that re-runs this binary as a child process names
//! itself with its module (`crash::crash_writer_entry`).

mod backup;
mod caller;
mod common;
mod compact;
mod counts;
mod crash;
mod epochs;
mod fixture;
mod hardening;
mod hsm;
mod journal;
mod policy_rows;
mod postgres;
mod powerloss;
mod races;
mod retention;
mod rights;
mod rotation;
mod secrets;
mod tamper;
mod vault;
