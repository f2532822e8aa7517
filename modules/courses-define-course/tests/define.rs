//! Given/when/then for defining a course.

#![allow(clippy::unwrap_used)]

use courses_define_course::{DefineCourse, DefineError, check_capacity};
use courses_events::{CourseDefined, CourseId, MAX_CAPACITY};
use fairway_runtime::testing::{given, nothing};

fn course(s: &str) -> CourseId {
    CourseId::parse(s).unwrap()
}

fn define(c: &str, capacity: u32) -> DefineCourse {
    DefineCourse {
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

#[test]
fn a_new_course_is_defined() {
    nothing().when(define("c1", 3)).then([defined("c1", 3)]);
}

#[test]
fn a_course_id_is_defined_once() {
    given([defined("c1", 3)])
        .when(define("c1", 4))
        .then_err(DefineError::CourseExists(course("c1")));
}

#[test]
fn another_course_does_not_block_the_id() {
    given([defined("c2", 3)])
        .when(define("c1", 4))
        .then([defined("c1", 4)]);
}

#[test]
fn capacity_bounds() {
    assert!(check_capacity(0).is_err());
    assert!(check_capacity(MAX_CAPACITY + 1).is_err());
    assert_eq!(check_capacity(MAX_CAPACITY).unwrap(), MAX_CAPACITY);
}
