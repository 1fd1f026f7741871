//! Secret scanning and redaction.
