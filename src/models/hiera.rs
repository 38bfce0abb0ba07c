//! SAM2.1 image encoder: Hiera trunk and FPN neck.
