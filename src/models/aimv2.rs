//! Apple AIMv2 vision trunk.
