//! VMamba v2 (SS2D selective scan in libtorch ops).
