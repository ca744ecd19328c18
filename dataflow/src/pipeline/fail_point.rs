//! The crash tests' hook: with the `fail-points` feature (which only the root package's test
//! builds turn on), a run stops at a named point when `STEEL_FAIL_AT=<point>`, exiting at
//! once as a killed process would, without flushing anything. Without the feature it does
//! nothing.

pub(crate) fn fail_point(point: &str) {
    #[cfg(feature = "fail-points")]
    if std::env::var("STEEL_FAIL_AT").is_ok_and(|p| p == point) {
        eprintln!("steel: stopping at fail point `{point}` (STEEL_FAIL_AT)");
        std::process::exit(86);
    }
    #[cfg(not(feature = "fail-points"))]
    let _ = point;
}
