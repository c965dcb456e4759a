//! Issue 14 (hardening) regression tests: hardening_mime.
