//! The policy parser on arbitrary text: a `Policy` error or a policy, never
//! a panic; a policy that parses keeps parsing the same from its source.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(policy) = shredvault::Policy::parse(text, "fuzz.toml") {
        let again = shredvault::Policy::parse(policy.source(), "fuzz.toml").expect("reparses");
        assert_eq!(again, policy);
        for category in policy.categories() {
            for rule in &category.retention {
                let _ = rule.describe();
            }
        }
    }
});
