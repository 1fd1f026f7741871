//! Prompt-injection screening of untrusted content.
