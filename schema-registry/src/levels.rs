//! The seven compatibility levels and which versions each checks, as Confluent defines them.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;

use crate::compat::{incompatibilities_with_references, Incompatibility};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    None,
    /// The default: the new schema reads data written with the latest one.
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

pub const LEVELS: [CompatibilityLevel; 7] = [
    CompatibilityLevel::None,
    CompatibilityLevel::Backward,
    CompatibilityLevel::BackwardTransitive,
    CompatibilityLevel::Forward,
    CompatibilityLevel::ForwardTransitive,
    CompatibilityLevel::Full,
    CompatibilityLevel::FullTransitive,
];

impl CompatibilityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of the seven level names (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compatibility level `{0}`: valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
pub struct InvalidLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = InvalidLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LEVELS
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| InvalidLevel(s.to_string()))
    }
}

/// Which way a failed check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The new schema cannot read data written with an old one.
    NewReadsOld,
    /// An old schema cannot read data written with the new one.
    OldReadsNew,
}

/// One failed check against one earlier version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index into the `previous` slice given to [`check`].
    pub previous_index: usize,
    pub direction: Direction,
    pub incompatibility: Incompatibility,
}

/// A parsed schema with the schemas its references resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub schema: Schema,
    pub referenced: Vec<Schema>,
}

impl From<Schema> for Resolved {
    fn from(schema: Schema) -> Self {
        Resolved {
            schema,
            referenced: Vec::new(),
        }
    }
}

/// Checks `new` against earlier live versions, `previous` ordered newest first. Non-transitive
/// levels look at the newest only; transitive ones at all, stopping at the first version that
/// fails (as Confluent does).
pub fn check(level: CompatibilityLevel, new: &Schema, previous: &[Schema]) -> Vec<Failure> {
    let new = Resolved::from(new.clone());
    let previous: Vec<Resolved> = previous.iter().cloned().map(Resolved::from).collect();
    let refs: Vec<&Resolved> = previous.iter().collect();
    check_resolved(level, &new, &refs)
}

/// [`check`] for schemas with references.
pub fn check_resolved(
    level: CompatibilityLevel,
    new: &Resolved,
    previous: &[&Resolved],
) -> Vec<Failure> {
    if level == CompatibilityLevel::None {
        return Vec::new();
    }
    let count = if level.transitive() {
        previous.len()
    } else {
        previous.len().min(1)
    };
    for (i, old) in previous.iter().take(count).enumerate() {
        let mut failures = Vec::new();
        if level.backward() {
            failures.extend(
                incompatibilities_with_references(
                    &new.schema,
                    &new.referenced,
                    &old.schema,
                    &old.referenced,
                )
                .into_iter()
                .map(|inc| Failure {
                    previous_index: i,
                    direction: Direction::NewReadsOld,
                    incompatibility: inc,
                }),
            );
        }
        if level.forward() {
            failures.extend(
                incompatibilities_with_references(
                    &old.schema,
                    &old.referenced,
                    &new.schema,
                    &new.referenced,
                )
                .into_iter()
                .map(|inc| Failure {
                    previous_index: i,
                    direction: Direction::OldReadsNew,
                    incompatibility: inc,
                }),
            );
        }
        if !failures.is_empty() {
            return failures;
        }
    }
    Vec::new()
}
