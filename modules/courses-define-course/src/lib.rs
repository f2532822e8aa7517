//! Pattern: **command**. Slice: courses — define a course.
//!
//! `POST /api/courses` with `{"courseId","capacity"}` appends `CourseDefined` and answers 201
//! `{"courseId","capacity","position"}`. A course id is defined once: 409 `course_exists`
//! otherwise; a capacity of 0 or above 10 000 is 400 on field `capacity`.
//!
//! Decision model: one projection, `course_exists` from `courses-events`.
//!
//! Given/when/then:
//!
//! ```
//! use courses_events::{CourseDefined, CourseId};
//! use courses_define_course::{DefineCourse, DefineError};
//! use fairway_runtime::testing::{given, nothing};
//! let c1 = CourseId::parse("c1")?;
//! nothing()
//!     .when(DefineCourse { course_id: c1.clone(), capacity: 5 })
//!     .then([CourseDefined { course_id: c1.clone(), capacity: 5 }]);
//! given([CourseDefined { course_id: c1.clone(), capacity: 5 }])
//!     .when(DefineCourse { course_id: c1.clone(), capacity: 9 })
//!     .then_err(DefineError::CourseExists(c1));
//! # Ok::<(), courses_events::IdError>(())
//! ```

use axum::extract::State;
use courses_events::{
    CourseDefined, CourseEvents, CourseId, CourseProjection, MAX_CAPACITY, course_exists,
};
use fairway_runtime::http::{ApiError, Created, JsonBody};
use fairway_runtime::{Ctx, Decide, Decision, DomainError, Module, ModuleKind, Runtime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Define `course_id` with `capacity` seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefineCourse {
    /// The course.
    pub course_id: CourseId,
    /// Its seats.
    pub capacity: u32,
}

/// Why a definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefineError {
    /// The id is taken.
    #[error("course {0} already exists")]
    CourseExists(CourseId),
}

impl DomainError for DefineError {
    fn code(&self) -> &'static str {
        "course_exists"
    }
}

impl Decide for DefineCourse {
    type Events = CourseEvents;
    type Model = CourseProjection<bool>;
    type Output = ();
    type Error = DefineError;
    type Deps = ();

    fn model(&self) -> Self::Model {
        course_exists(&self.course_id)
    }

    fn decide(&self, exists: &bool, _: &Ctx<'_, ()>) -> Result<Decision, DefineError> {
        if *exists {
            return Err(DefineError::CourseExists(self.course_id.clone()));
        }
        Ok(Decision::events(vec![
            CourseDefined {
                course_id: self.course_id.clone(),
                capacity: self.capacity,
            }
            .into(),
        ]))
    }
}

/// Checks a capacity from a request: 1 to [`MAX_CAPACITY`].
pub fn check_capacity(capacity: u32) -> Result<u32, ApiError> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(ApiError::bad_field(
            "capacity",
            format!("must be between 1 and {MAX_CAPACITY}"),
        ));
    }
    Ok(capacity)
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefineBody {
    /// The course id.
    #[schemars(regex(pattern = courses_events::ID_PATTERN))]
    pub course_id: String,
    /// Its seats.
    #[schemars(range(min = 1, max = courses_events::MAX_CAPACITY))]
    pub capacity: u32,
}

async fn define(
    State(rt): State<Runtime>,
    JsonBody(body): JsonBody<DefineBody>,
) -> Result<Created<DefinedBody>, ApiError> {
    let course_id =
        CourseId::parse(&body.course_id).map_err(|e| ApiError::bad_field("courseId", e))?;
    let cmd = DefineCourse {
        course_id,
        capacity: check_capacity(body.capacity)?,
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Created(DefinedBody {
        course_id: cmd.course_id.to_string(),
        capacity: cmd.capacity,
        position: done.last(),
    }))
}

/// The answer: the course, its capacity and the position of its definition.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinedBody {
    /// The course.
    pub course_id: String,
    /// Its seats.
    pub capacity: u32,
    /// The definition's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/courses`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "courses-define-course")
        .describe("Define a course with its capacity, once per course id")
        .post("/api/courses", define)
        .command::<DefineCourse>()
        .appends::<CourseDefined>()
}
