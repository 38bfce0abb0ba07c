//! Classification metrics with sklearn semantics (REFERENCE.md section 7).
