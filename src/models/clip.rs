//! open_clip CLIP vision tower.
