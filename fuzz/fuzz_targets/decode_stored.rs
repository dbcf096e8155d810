//! Every stored structure decoded from arbitrary bytes (what a damaged or
//! hostile data/ holds): an error or a value, never a panic, never an
//! allocation sized by a length prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    shredvault::fuzzing::decode_stored(bytes);
});
