//! Python bindings for shredvault (issue 6 builds them out).
