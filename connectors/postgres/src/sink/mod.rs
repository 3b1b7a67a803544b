//! The `postgres` sink (in progress): its settings so far.

pub mod settings;
