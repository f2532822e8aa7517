//! Given/when/then for changing a course's capacity.

#![allow(clippy::unwrap_used)]

use courses_change_capacity::{ChangeCapacity, ChangeError};
use courses_events::{
    CourseCapacityChanged, CourseDefined, CourseId, StudentId, StudentSubscribed,
};
use fairway_runtime::testing::{given, nothing};

fn course(s: &str) -> CourseId {
    CourseId::parse(s).unwrap()
}

fn change(c: &str, capacity: u32) -> ChangeCapacity {
    ChangeCapacity {
        course_id: course(c),
        capacity,
    }
}

fn defined(c: &str, capacity: u32) -> CourseDefined {
    CourseDefined {
        course_id: course(c),
        capacity,
    }
}

fn subscribed(c: &str, s: &str) -> StudentSubscribed {
    StudentSubscribed {
        course_id: course(c),
        student_id: StudentId::parse(s).unwrap(),
    }
}

#[test]
fn capacity_changes() {
    given([defined("c1", 3)])
        .when(change("c1", 5))
        .then([CourseCapacityChanged {
            course_id: course("c1"),
            new_capacity: 5,
        }]);
}

#[test]
fn unknown_course() {
    nothing()
        .when(change("c1", 5))
        .then_err(ChangeError::CourseNotFound(course("c1")));
}

#[test]
fn same_capacity_after_a_change_is_unchanged() {
    given([defined("c1", 3)])
        .and(CourseCapacityChanged {
            course_id: course("c1"),
            new_capacity: 5,
        })
        .when(change("c1", 5))
        .then_err(ChangeError::Unchanged(5));
}

#[test]
fn not_below_the_seats_taken() {
    given([defined("c1", 3)])
        .and(subscribed("c1", "ann"))
        .and(subscribed("c1", "bob"))
        .when(change("c1", 1))
        .then_err(ChangeError::BelowSubscriptions(2));
}
