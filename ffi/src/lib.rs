//! C ABI for shredvault (issue 5 builds it out).
