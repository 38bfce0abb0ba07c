//! The linear head and the deit_base attention head.
