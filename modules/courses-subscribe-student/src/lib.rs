//! Pattern: **command**. Slice: courses — subscribe a student to a course.
//!
//! `POST /api/courses/{courseId}/subscriptions` with `{"studentId"}` appends `StudentSubscribed`
//! and answers 201 `{"courseId","studentId","position"}`.
//!
//! The decision spans two consistency boundaries, the course and the student (dcb.events'
//! course-subscription example). Its decision model combines four reusable projections of
//! `courses-events` — `course_exists`, `course_capacity`, `subscriptions_of`, `courses_of` —
//! and `student_subscribed`, read in one query and guarded by one append condition:
//! - the course must exist: otherwise 404 `course_not_found`;
//! - the student must not be subscribed yet: otherwise 409 `already_subscribed`;
//! - the course must have a free seat: otherwise 409 `course_fully_booked`;
//! - the student must hold fewer than ten courses: otherwise 409 `student_limit_reached`.
//!
//! Concurrent subscriptions for the last seat: every one reads the same seats, the first append
//! wins, the others' conditions fail, they re-run and are rejected as fully booked.
//!
//! Given/when/then:
//!
//! ```
//! use courses_events::{CourseDefined, CourseId, StudentId, StudentSubscribed};
//! use courses_subscribe_student::{SubscribeError, SubscribeStudent};
//! use fairway_runtime::testing::given;
//! let (c1, ann, bob) = (CourseId::parse("c1")?, StudentId::parse("ann")?, StudentId::parse("bob")?);
//! // Given a one-seat course that ann took, when bob subscribes, then it is fully booked.
//! given([CourseDefined { course_id: c1.clone(), capacity: 1 }])
//!     .and(StudentSubscribed { course_id: c1.clone(), student_id: ann })
//!     .when(SubscribeStudent { course_id: c1.clone(), student_id: bob })
//!     .then_err(SubscribeError::CourseFullyBooked(c1));
//! # Ok::<(), courses_events::IdError>(())
//! ```

use axum::extract::{Path, State};
use courses_events::{
    CourseEvents, CourseId, CourseProjection, MAX_COURSES_PER_STUDENT, StudentId,
    StudentSubscribed, course_capacity, course_exists, courses_of, student_subscribed,
    subscriptions_of,
};
use fairway_runtime::http::{ApiError, Created, JsonBody};
use fairway_runtime::{Ctx, Decide, Decision, DomainError, Module, ModuleKind, Rejection, Runtime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Subscribe `student_id` to `course_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeStudent {
    /// The course.
    pub course_id: CourseId,
    /// The student.
    pub student_id: StudentId,
}

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// No such course.
    #[error("course {0} does not exist")]
    CourseNotFound(CourseId),
    /// The student already has a seat in the course.
    #[error("student {0} is already subscribed to this course")]
    AlreadySubscribed(StudentId),
    /// Every seat is taken.
    #[error("course {0} is fully booked")]
    CourseFullyBooked(CourseId),
    /// The student holds the maximum number of courses.
    #[error("student {0} is already subscribed to {MAX_COURSES_PER_STUDENT} courses")]
    StudentLimitReached(StudentId),
}

impl DomainError for SubscribeError {
    fn code(&self) -> &'static str {
        match self {
            SubscribeError::CourseNotFound(_) => "course_not_found",
            SubscribeError::AlreadySubscribed(_) => "already_subscribed",
            SubscribeError::CourseFullyBooked(_) => "course_fully_booked",
            SubscribeError::StudentLimitReached(_) => "student_limit_reached",
        }
    }
    fn rejection(&self) -> Rejection {
        match self {
            SubscribeError::CourseNotFound(_) => Rejection::NotFound,
            _ => Rejection::Conflict,
        }
    }
}

impl Decide for SubscribeStudent {
    type Events = CourseEvents;
    type Model = (
        CourseProjection<bool>,
        CourseProjection<u32>,
        CourseProjection<u32>,
        CourseProjection<u32>,
        CourseProjection<bool>,
    );
    type Output = ();
    type Error = SubscribeError;
    type Deps = ();

    fn model(&self) -> Self::Model {
        (
            course_exists(&self.course_id),
            course_capacity(&self.course_id),
            subscriptions_of(&self.course_id),
            courses_of(&self.student_id),
            student_subscribed(&self.course_id, &self.student_id),
        )
    }

    fn decide(
        &self,
        &(exists, capacity, taken, courses, subscribed): &(bool, u32, u32, u32, bool),
        _: &Ctx<'_, ()>,
    ) -> Result<Decision, SubscribeError> {
        if !exists {
            return Err(SubscribeError::CourseNotFound(self.course_id.clone()));
        }
        if subscribed {
            return Err(SubscribeError::AlreadySubscribed(self.student_id.clone()));
        }
        if taken >= capacity {
            return Err(SubscribeError::CourseFullyBooked(self.course_id.clone()));
        }
        if courses >= MAX_COURSES_PER_STUDENT {
            return Err(SubscribeError::StudentLimitReached(self.student_id.clone()));
        }
        Ok(Decision::events(vec![
            StudentSubscribed {
                course_id: self.course_id.clone(),
                student_id: self.student_id.clone(),
            }
            .into(),
        ]))
    }
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeBody {
    /// Who subscribes.
    #[schemars(regex(pattern = courses_events::ID_PATTERN))]
    pub student_id: String,
}

/// The path parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CoursePath {
    /// The course.
    #[serde(rename = "courseId")]
    #[schemars(regex(pattern = courses_events::ID_PATTERN))]
    pub course_id: String,
}
async fn subscribe(
    State(rt): State<Runtime>,
    Path(CoursePath { course_id }): Path<CoursePath>,
    JsonBody(body): JsonBody<SubscribeBody>,
) -> Result<Created<Subscribed>, ApiError> {
    let course_id = CourseId::parse(&course_id).map_err(|e| ApiError::bad_field("courseId", e))?;
    let student_id =
        StudentId::parse(&body.student_id).map_err(|e| ApiError::bad_field("studentId", e))?;
    let cmd = SubscribeStudent {
        course_id,
        student_id,
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Created(Subscribed {
        course_id: cmd.course_id.to_string(),
        student_id: cmd.student_id.to_string(),
        position: done.last(),
    }))
}

/// The answer: the course, the student and the position of the subscription.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscribed {
    /// The course.
    pub course_id: String,
    /// The student.
    pub student_id: String,
    /// The subscription's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/courses/{courseId}/subscriptions`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "courses-subscribe-student")
        .describe("Subscribe a student: the course exists and has a seat, at most ten courses per student")
        .post("/api/courses/{courseId}/subscriptions", subscribe)
        .command::<SubscribeStudent>()
        .appends::<StudentSubscribed>()
}
