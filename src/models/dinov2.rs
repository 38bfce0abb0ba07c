//! DINOv2 (official hub code semantics).
