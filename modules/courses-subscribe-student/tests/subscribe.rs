//! Given/when/then for subscribing a student, and races for the last seats.

#![allow(clippy::unwrap_used)]

use courses_events::{
    CourseCapacityChanged, CourseDefined, CourseId, MAX_COURSES_PER_STUDENT, StudentId,
    StudentSubscribed,
};
use courses_subscribe_student::{SubscribeError, SubscribeStudent};
use fairway_runtime::NewEvent;
use fairway_runtime::testing::{given, nothing};

fn course(s: &str) -> CourseId {
    CourseId::parse(s).unwrap()
}

fn student(s: &str) -> StudentId {
    StudentId::parse(s).unwrap()
}

fn defined(c: &str, capacity: u32) -> NewEvent {
    CourseDefined {
        course_id: course(c),
        capacity,
    }
    .into()
}

fn subscribed(c: &str, s: &str) -> StudentSubscribed {
    StudentSubscribed {
        course_id: course(c),
        student_id: student(s),
    }
}

fn subscribe(c: &str, s: &str) -> SubscribeStudent {
    SubscribeStudent {
        course_id: course(c),
        student_id: student(s),
    }
}

#[test]
fn a_student_takes_a_free_seat() {
    given([defined("c1", 2)])
        .when(subscribe("c1", "ann"))
        .then([subscribed("c1", "ann")]);
}

#[test]
fn an_unknown_course_is_not_found() {
    nothing()
        .when(subscribe("c1", "ann"))
        .then_err(SubscribeError::CourseNotFound(course("c1")));
}

#[test]
fn a_student_cannot_subscribe_twice() {
    given([defined("c1", 5)])
        .and(subscribed("c1", "ann"))
        .when(subscribe("c1", "ann"))
        .then_err(SubscribeError::AlreadySubscribed(student("ann")));
}

#[test]
fn a_full_course_is_fully_booked() {
    given([defined("c1", 1)])
        .and(subscribed("c1", "ann"))
        .when(subscribe("c1", "bob"))
        .then_err(SubscribeError::CourseFullyBooked(course("c1")));
}

#[test]
fn a_raised_capacity_frees_a_seat() {
    given([defined("c1", 1)])
        .and(subscribed("c1", "ann"))
        .and(CourseCapacityChanged {
            course_id: course("c1"),
            new_capacity: 2,
        })
        .when(subscribe("c1", "bob"))
        .then([subscribed("c1", "bob")]);
}

#[test]
fn other_courses_seats_do_not_count() {
    given([defined("c1", 1), defined("c2", 1)])
        .and(subscribed("c2", "ann"))
        .when(subscribe("c1", "bob"))
        .then([subscribed("c1", "bob")]);
}

#[test]
fn a_student_holds_at_most_ten_courses() {
    let mut g = given([defined("c0", 1)]);
    for i in 1..=MAX_COURSES_PER_STUDENT {
        let c = format!("c{i}");
        g = g.and(defined(&c, 1)).and(subscribed(&c, "ann"));
    }
    g.when(subscribe("c0", "ann"))
        .then_err(SubscribeError::StudentLimitReached(student("ann")));
}

/// Twenty students race for five seats: exactly five subscribe, the others are fully booked.
#[test]
fn twenty_students_race_for_five_seats() {
    let race = given([defined("c1", 5)])
        .race(20, |i| subscribe("c1", &format!("s{i}")))
        .then_successes(5);
    assert_eq!(
        race.rejections(),
        vec![&SubscribeError::CourseFullyBooked(course("c1")); 15]
    );
    assert!(race.max_attempts() > 1, "they did not race");
}

/// One student races into three courses at the limit's edge: only one more fits.
#[test]
fn one_student_racing_into_courses_respects_the_limit() {
    let mut g = nothing();
    for i in 0..MAX_COURSES_PER_STUDENT + 2 {
        g = g.and(defined(&format!("c{i}"), 5));
    }
    for i in 0..MAX_COURSES_PER_STUDENT - 1 {
        g = g.and(subscribed(&format!("c{i}"), "ann"));
    }
    let race = g
        .race(3, |i| {
            subscribe(
                &format!("c{}", MAX_COURSES_PER_STUDENT - 1 + i as u32),
                "ann",
            )
        })
        .then_successes(1);
    assert_eq!(
        race.rejections(),
        vec![&SubscribeError::StudentLimitReached(student("ann")); 2]
    );
}
