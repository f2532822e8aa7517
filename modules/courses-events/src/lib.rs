//! `courses-events`: the events of the courses context (dcb.events' course-subscription
//! scenario) — a course is defined with a capacity, its capacity changes, a student subscribes —
//! with their tags, the validated ids, and the **projections** the context's commands combine
//! into their decision models.
//!
//! Layer: a context's shared events crate, above `fairway-runtime`. It must not depend on any
//! module, on a backend, or on anything of another context.
//!
//! Each event is a struct with `#[derive(DomainEvent)]` and a `#[tag("..")]` per tagged field.
//!
//! Tags: every course event carries `course:<courseId>`; a subscription carries
//! `student:<studentId>` as well, so "the course's subscriptions" and "the student's courses"
//! are each one tag query, and a subscription decision spans both boundaries with one read and
//! one append condition.
//!
//! ```
//! use courses_events::{CourseId, StudentId, courses_of, subscriptions_of};
//! use dcb_core::{Query, QueryItem};
//! let (c1, ann) = (CourseId::parse("c1")?, StudentId::parse("ann")?);
//! // A projection is a query and a fold; a command combines several into one decision model.
//! let seats_taken = subscriptions_of(&c1);
//! assert_eq!(
//!     seats_taken.query(),
//!     &Query::item(QueryItem::new().r#type("StudentSubscribed").tag("course:c1"))
//! );
//! assert_eq!(
//!     courses_of(&ann).query(),
//!     &Query::item(QueryItem::new().r#type("StudentSubscribed").tag("student:ann"))
//! );
//! # Ok::<(), courses_events::IdError>(())
//! ```

use std::fmt;

use dcb_core::{Query, QueryItem};
use fairway_runtime::{DomainEvent, Projection, tag};
use serde::{Deserialize, Serialize};

/// The most courses one student may be subscribed to (dcb.events' example uses 10).
pub const MAX_COURSES_PER_STUDENT: u32 = 10;

/// The largest capacity a course may have.
pub const MAX_CAPACITY: u32 = 10_000;

/// The longest id accepted for a course or a student (in bytes).
pub const MAX_ID_LEN: usize = 64;

/// The ids' rule as a regular expression, for the API contract: 1 to [`MAX_ID_LEN`] bytes of
/// letters, digits, `-`, `_` and `.` (what `parse` accepts).
pub const ID_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

/// Why an id is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("must be at most {MAX_ID_LEN} bytes")]
    TooLong,
    /// The id holds a character outside `A-Z a-z 0-9 - _ .`.
    #[error("may only contain letters, digits, '-', '_' and '.'")]
    BadCharacter,
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            /// A validated id (non-empty, at most [`MAX_ID_LEN`] bytes, `A-Z a-z 0-9 - _ .`).
            pub fn parse(s: &str) -> Result<$name, IdError> {
                check_id(s)?;
                Ok($name(s.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<$name, IdError> {
                check_id(&s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type! {
    /// A course's id.
    CourseId
}

id_type! {
    /// A student's id.
    StudentId
}

/// The tag of every event about a course: `course:<id>` (what `#[tag("course")]` gives).
pub fn course_tag(course: &CourseId) -> String {
    tag("course", course)
}

/// The tag of every event about a student: `student:<id>`.
pub fn student_tag(student: &StudentId) -> String {
    tag("student", student)
}

/// A course was defined with a number of seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "camelCase")]
pub struct CourseDefined {
    /// The course.
    #[tag("course")]
    pub course_id: CourseId,
    /// How many students it takes.
    pub capacity: u32,
}

/// A course's number of seats changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "camelCase")]
pub struct CourseCapacityChanged {
    /// The course.
    #[tag("course")]
    pub course_id: CourseId,
    /// How many students it takes from now on.
    pub new_capacity: u32,
}

/// A student took a seat in a course.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "camelCase")]
pub struct StudentSubscribed {
    /// The course.
    #[tag("course")]
    pub course_id: CourseId,
    /// The student.
    #[tag("student")]
    pub student_id: StudentId,
}

fairway_runtime::event_set! {
    /// Every event of the courses context.
    pub enum CourseEvents {
        CourseDefined(CourseDefined),
        CourseCapacityChanged(CourseCapacityChanged),
        StudentSubscribed(StudentSubscribed),
    }
}

/// A projection of the courses context.
pub type CourseProjection<S> = Projection<CourseEvents, S>;

/// Whether the course was defined.
pub fn course_exists(course: &CourseId) -> CourseProjection<bool> {
    Projection::new(
        Query::item(
            QueryItem::new()
                .r#type(CourseDefined::TYPE)
                .tag(course_tag(course)),
        ),
        false,
        |exists, _| *exists = true,
    )
}

/// The course's current capacity (0 before it is defined).
pub fn course_capacity(course: &CourseId) -> CourseProjection<u32> {
    Projection::new(
        Query::item(
            QueryItem::new()
                .types([CourseDefined::TYPE, CourseCapacityChanged::TYPE])
                .tag(course_tag(course)),
        ),
        0,
        |capacity, e| match &e.event {
            CourseEvents::CourseDefined(d) => *capacity = d.capacity,
            CourseEvents::CourseCapacityChanged(c) => *capacity = c.new_capacity,
            CourseEvents::StudentSubscribed(_) => {}
        },
    )
}

/// How many students the course has.
pub fn subscriptions_of(course: &CourseId) -> CourseProjection<u32> {
    Projection::new(
        Query::item(
            QueryItem::new()
                .r#type(StudentSubscribed::TYPE)
                .tag(course_tag(course)),
        ),
        0,
        |n, _| *n = n.saturating_add(1),
    )
}

/// How many courses the student is subscribed to.
pub fn courses_of(student: &StudentId) -> CourseProjection<u32> {
    Projection::new(
        Query::item(
            QueryItem::new()
                .r#type(StudentSubscribed::TYPE)
                .tag(student_tag(student)),
        ),
        0,
        |n, _| *n = n.saturating_add(1),
    )
}

/// Whether the student is already subscribed to the course (both tags on one event).
pub fn student_subscribed(course: &CourseId, student: &StudentId) -> CourseProjection<bool> {
    Projection::new(
        Query::item(
            QueryItem::new()
                .r#type(StudentSubscribed::TYPE)
                .tag(course_tag(course))
                .tag(student_tag(student)),
        ),
        false,
        |subscribed, _| *subscribed = true,
    )
}

#[cfg(test)]
mod id_pattern_tests {
    use super::*;

    #[test]
    fn the_id_pattern_states_the_length_limit() {
        assert!(ID_PATTERN.ends_with(&format!("{{1,{MAX_ID_LEN}}}$")));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fairway_runtime::testing::given;

    fn course(s: &str) -> CourseId {
        CourseId::parse(s).unwrap()
    }

    #[test]
    fn ids_are_validated_also_when_decoded() {
        assert_eq!(CourseId::parse(""), Err(IdError::Empty));
        assert_eq!(StudentId::parse("a:b"), Err(IdError::BadCharacter));
        assert!(serde_json::from_str::<CourseId>("\"a b\"").is_err());
        assert_eq!(
            serde_json::from_str::<CourseId>("\"c1\"").unwrap(),
            course("c1")
        );
    }

    #[test]
    fn a_subscription_carries_both_tags() {
        let e = StudentSubscribed {
            course_id: course("c1"),
            student_id: StudentId::parse("s1").unwrap(),
        };
        assert_eq!(e.tags(), vec!["course:c1", "student:s1"]);
    }

    #[test]
    fn capacity_follows_the_last_change() {
        let history = given([
            fairway_runtime::NewEvent::from(CourseDefined {
                course_id: course("c1"),
                capacity: 5,
            }),
            CourseCapacityChanged {
                course_id: course("c1"),
                new_capacity: 8,
            }
            .into(),
        ])
        .events();
        let decoded: Vec<_> = history
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                fairway_runtime::Sequenced::<CourseEvents>::decode(dcb_core::SequencedEvent {
                    position: dcb_core::Position::from_u64(i as u64 + 1),
                    event,
                })
                .unwrap()
            })
            .collect();
        assert_eq!(course_capacity(&course("c1")).fold_all(&decoded), 8);
        assert!(course_exists(&course("c1")).fold_all(&decoded));
    }
}
