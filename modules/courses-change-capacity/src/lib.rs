//! Pattern: **command**. Slice: courses — change a course's capacity.
//!
//! `POST /api/courses/{courseId}/capacity` with `{"capacity"}` appends `CourseCapacityChanged`
//! and answers 200 `{"courseId","capacity","position"}`; 404 `course_not_found` for an unknown
//! course, 409 `capacity_unchanged` when it is already that capacity, 409
//! `capacity_below_subscriptions` when more students already hold a seat.
//!
//! Decision model: `course_exists`, `course_capacity` and `subscriptions_of`.
//!
//! Given/when/then:
//!
//! ```
//! use courses_events::{CourseCapacityChanged, CourseDefined, CourseId};
//! use courses_change_capacity::ChangeCapacity;
//! use fairway_runtime::testing::given;
//! let c1 = CourseId::parse("c1")?;
//! given([CourseDefined { course_id: c1.clone(), capacity: 5 }])
//!     .when(ChangeCapacity { course_id: c1.clone(), capacity: 8 })
//!     .then([CourseCapacityChanged { course_id: c1, new_capacity: 8 }]);
//! # Ok::<(), courses_events::IdError>(())
//! ```

use axum::Json;
use axum::extract::{Path, State};
use courses_events::{
    CourseCapacityChanged, CourseEvents, CourseId, CourseProjection, MAX_CAPACITY, course_capacity,
    course_exists, subscriptions_of,
};
use fairway_runtime::http::{ApiError, JsonBody};
use fairway_runtime::{Ctx, Decide, Decision, DomainError, Module, ModuleKind, Rejection, Runtime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Give `course_id` `capacity` seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeCapacity {
    /// The course.
    pub course_id: CourseId,
    /// Its seats from now on.
    pub capacity: u32,
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// No such course.
    #[error("course {0} does not exist")]
    CourseNotFound(CourseId),
    /// The course already has this capacity.
    #[error("the course already has {0} seats")]
    Unchanged(u32),
    /// More students than the new capacity already hold a seat.
    #[error("{0} students already hold a seat")]
    BelowSubscriptions(u32),
}

impl DomainError for ChangeError {
    fn code(&self) -> &'static str {
        match self {
            ChangeError::CourseNotFound(_) => "course_not_found",
            ChangeError::Unchanged(_) => "capacity_unchanged",
            ChangeError::BelowSubscriptions(_) => "capacity_below_subscriptions",
        }
    }
    fn rejection(&self) -> Rejection {
        match self {
            ChangeError::CourseNotFound(_) => Rejection::NotFound,
            _ => Rejection::Conflict,
        }
    }
}

impl Decide for ChangeCapacity {
    type Events = CourseEvents;
    type Model = (
        CourseProjection<bool>,
        CourseProjection<u32>,
        CourseProjection<u32>,
    );
    type Output = ();
    type Error = ChangeError;
    type Deps = ();

    fn model(&self) -> Self::Model {
        (
            course_exists(&self.course_id),
            course_capacity(&self.course_id),
            subscriptions_of(&self.course_id),
        )
    }

    fn decide(
        &self,
        &(exists, capacity, taken): &(bool, u32, u32),
        _: &Ctx<'_, ()>,
    ) -> Result<Decision, ChangeError> {
        if !exists {
            return Err(ChangeError::CourseNotFound(self.course_id.clone()));
        }
        if capacity == self.capacity {
            return Err(ChangeError::Unchanged(capacity));
        }
        if taken > self.capacity {
            return Err(ChangeError::BelowSubscriptions(taken));
        }
        Ok(Decision::events(vec![
            CourseCapacityChanged {
                course_id: self.course_id.clone(),
                new_capacity: self.capacity,
            }
            .into(),
        ]))
    }
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityBody {
    /// The new capacity.
    #[schemars(range(min = 1, max = courses_events::MAX_CAPACITY))]
    pub capacity: u32,
}

/// The path parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CoursePath {
    /// The course.
    #[serde(rename = "courseId")]
    #[schemars(regex(pattern = courses_events::ID_PATTERN))]
    pub course_id: String,
}
async fn change(
    State(rt): State<Runtime>,
    Path(CoursePath { course_id }): Path<CoursePath>,
    JsonBody(body): JsonBody<CapacityBody>,
) -> Result<Json<CapacityChanged>, ApiError> {
    let course_id = CourseId::parse(&course_id).map_err(|e| ApiError::bad_field("courseId", e))?;
    if body.capacity == 0 || body.capacity > MAX_CAPACITY {
        return Err(ApiError::bad_field(
            "capacity",
            format!("must be between 1 and {MAX_CAPACITY}"),
        ));
    }
    let cmd = ChangeCapacity {
        course_id,
        capacity: body.capacity,
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Json(CapacityChanged {
        course_id: cmd.course_id.to_string(),
        capacity: cmd.capacity,
        position: done.last(),
    }))
}

/// The answer: the course, its new capacity and the position of the change.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityChanged {
    /// The course.
    pub course_id: String,
    /// Its capacity now.
    pub capacity: u32,
    /// The change's position (`null` when nothing was appended).
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/courses/{courseId}/capacity`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "courses-change-capacity")
        .describe("Change a course's capacity, never below the seats already taken")
        .post("/api/courses/{courseId}/capacity", change)
        .command::<ChangeCapacity>()
        .appends::<CourseCapacityChanged>()
}
