//! Running a command confined. Knows nothing about policy decisions: it is given a `Profile`.
